"""Extractive question answering on SQuAD v1.1 (../shared/data: the official dev set split by article):
`toolkit train recipes/configs/qa_squad.yaml` (a 30-minute training budget on 2 CPU cores) against a
transformers.Trainer script doing the same work (benchmarks/trainer_qa.py: the run_qa way, same model, batch,
learning rate, warm-up, window and stride, and the number of steps toolkit's budget bought), each a whole process,
one after the other; and the baseline that answers with the context sentence sharing the most words with the
question. Prints the hardware, each side's wall time and validation exact match and F1.

Usage: python benchmarks/qa_squad.py [--minutes 30] [--skip-trainer]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, go_offline, whole_process  # noqa: E402

go_offline()
DATA = SHARED / "qa" / "squad"


def read(split: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text().splitlines()]


def overlap_baseline(rows: list[dict]) -> dict:
    """SQuAD scores of answering with the context sentence that shares the most words with the question."""
    from toolkit.recipes.qa import squad_metrics

    def words(text: str) -> set[str]:
        return set(re.findall(r"\w+", text.lower()))

    predictions = []
    for row in rows:
        sentences = re.split(r"(?<=[.!?])\s+", row["context"])
        question = words(row["question"])
        predictions.append(max(sentences, key=lambda s: len(words(s) & question)))
    return squad_metrics(predictions, [row["answers"]["text"] for row in rows])


def main() -> int:
    from toolkit.hardware import benchmark_header

    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30, help="toolkit's training budget (max_train_minutes)")
    parser.add_argument("--skip-trainer", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"SQuAD not found at {DATA}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    print(benchmark_header(), flush=True)
    baseline = overlap_baseline(read("validation"))
    print(f"baseline (the sentence sharing most words with the question): EM {baseline['exact_match']:.1f}, "
          f"F1 {baseline['f1']:.1f}", flush=True)  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"max_train_minutes={args.minutes}", f"output_dir={tmp}/toolkit", "trackers=[]"]
        seconds, _ = whole_process([f"{sys.prefix}/bin/toolkit", "train", "recipes/configs/qa_squad.yaml", *overrides])
        results = json.loads((Path(tmp) / "toolkit" / "results.json").read_text())
        validation, steps = results["validation"], results["steps"]
        rows.append(("toolkit train", seconds, validation["exact_match"], validation["f1"], steps))
        print(f"toolkit: {seconds:.0f} s, {steps} steps, budget {results.get('budget')}", flush=True)
        if not args.skip_trainer:
            seconds, out = whole_process(
                [sys.executable, "benchmarks/trainer_qa.py", str(DATA / "train.jsonl"),
                 str(DATA / "validation.jsonl"), f"{tmp}/trainer", f"--steps={steps}"]
            )  # fmt: skip
            peer = json.loads(out.strip().splitlines()[-1])
            rows.append(("transformers Trainer (run_qa way)", seconds, peer["exact_match"], peer["f1"], steps))
    print(f"\n{'run':36} {'wall s':>8} {'EM':>6} {'F1':>6} {'steps':>6}")
    for name, seconds, em, f1, steps in rows:
        print(f"{name:36} {seconds:8.0f} {em:6.1f} {f1:6.1f} {steps:>6}")
    print(f"{'baseline (sentence overlap)':36} {'':>8} {baseline['exact_match']:6.1f} {baseline['f1']:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
