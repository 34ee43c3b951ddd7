"""Summarization on SciTLDR: the offline bert2bert default (warm-started from MiniLM) against lead-1.

Trains for the config's budget (default 30 minutes on this CPU), scores ROUGE on the full test split
(618 abstracts) next to the lead-1 baseline (the abstract's first sentence), and times training samples/s
against Seq2SeqTrainer (bf16, dynamic padding). Usage: python benchmarks/summarization_scitldr.py [--minutes 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from seq2seq_common import ROOT, run_toolkit, table, toolkit_samples_per_second, trainer_samples_per_second

CONFIG = ROOT / "recipes/configs/summarization_scitldr.yaml"
DATA = ROOT.parent / "shared/data/summarization/scitldr"


def lead_1() -> dict:
    from toolkit.metrics import split_sentences, summarization_metrics

    rows = [json.loads(line) for line in (DATA / "test.jsonl").read_text().splitlines()]
    firsts = [split_sentences(r["document"])[0] for r in rows]
    return summarization_metrics(firsts, [r["summary"] for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--speed-steps", type=int, default=30)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"SciTLDR not found at {DATA}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_toolkit(CONFIG, Path(tmp) / "bert2bert", f"max_train_minutes={args.minutes}", score_test=True)["test"]
    baseline = lead_1()
    rows = [(name, *(f"{m[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")), f"{m['gen_len']:.1f}")
            for name, m in (("bert2bert (MiniLM, warm-started)", ours), ("lead-1", baseline))]
    print(table(rows, ("summarizer", "R-1", "R-2", "R-L", "R-Lsum", "words")))
    speed_ours = toolkit_samples_per_second(CONFIG, args.speed_steps)
    speed_theirs = trainer_samples_per_second(CONFIG, args.speed_steps)
    print(f"\ntraining samples/s: toolkit {speed_ours:.1f}, Seq2SeqTrainer (bf16, dynamic padding) {speed_theirs:.1f}, "
          f"ratio {speed_ours / speed_theirs:.2f}x")
    print(json.dumps({"toolkit": ours, "lead_1": baseline, "toolkit_samples_per_s": speed_ours, "trainer_samples_per_s": speed_theirs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
