"""Translation en->de on Multi30k: the offline warm-started default vs the same architecture from scratch.

Both train for the same fixed budget (default 30 minutes on this CPU), then score sacreBLEU and chrF on the
full test split (1,000 sentences). Also times training samples/s against Seq2SeqTrainer (bf16, dynamic
padding) on the same model and data. Usage: python benchmarks/translation_multi30k.py [--minutes 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from seq2seq_common import ROOT, run_toolkit, table, toolkit_samples_per_second, trainer_samples_per_second

CONFIG = ROOT / "recipes/configs/translation_multi30k_en_de.yaml"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per model")
    parser.add_argument("--speed-steps", type=int, default=40)
    args = parser.parse_args()
    if not (ROOT.parent / "shared/data/translation/multi30k").is_dir():
        print("Multi30k not found at ../shared/data/translation/multi30k", file=sys.stderr)
        return 1
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        budget = f"max_train_minutes={args.minutes}"
        results["warm-started (MiniLM encoder)"] = run_toolkit(CONFIG, Path(tmp) / "warm", budget, score_test=True)
        results["from scratch (same architecture)"] = run_toolkit(CONFIG, Path(tmp) / "scratch", budget, "warm_start.pretrained=false",
                                                                 score_test=True)
    ours = toolkit_samples_per_second(CONFIG, args.speed_steps)
    theirs = trainer_samples_per_second(CONFIG, args.speed_steps)
    rows = [(name, f"{r['test']['bleu']:.2f}", f"{r['test']['chrf']:.2f}", r["steps"], f"{r['train_seconds'] / 60:.1f}")
            for name, r in results.items()]
    print(table(rows, ("model", "test BLEU", "test chrF", "steps", "train min")))
    print(f"\ntraining samples/s: toolkit {ours:.1f}, Seq2SeqTrainer (bf16, dynamic padding) {theirs:.1f}, ratio {ours / theirs:.2f}x")
    print(json.dumps({"results": {k: {"test": v["test"], "steps": v["steps"]} for k, v in results.items()},
                      "toolkit_samples_per_s": ours, "trainer_samples_per_s": theirs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
