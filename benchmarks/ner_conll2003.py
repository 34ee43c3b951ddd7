"""Named-entity recognition on CoNLL-2003: `toolkit train recipes/configs/ner_conll2003.yaml` against a
transformers.Trainer script doing the same work (benchmarks/trainer_ner.py: the run_ner way, same model, epochs,
batch, learning rate, warm-up and length), each a whole process, one after the other; and the baseline that tags
every span seen in training with its most frequent type. Prints the hardware, each side's wall time and
validation and test entity F1.

Usage: python benchmarks/ner_conll2003.py [--rows N] [--epochs 3] [--skip-trainer]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, go_offline, whole_process  # noqa: E402

go_offline()

DATA = SHARED / "ner" / "conll2003"


def read(split: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text().splitlines()]


def spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(first, last + 1, type) of each IOB2 entity."""
    found, start = [], None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not tag.startswith("I-"):
            found.append((start, i, tags[start][2:]))
            start = None
        if tag.startswith("B-"):
            start = i
    return found


def memorized_baseline(train: list[dict], test: list[dict]) -> float:
    """Entity F1 of tagging every word sequence seen as an entity in training with its most frequent type
    (longest match first, left to right)."""
    from seqeval.metrics import f1_score

    kinds: dict[tuple, Counter] = defaultdict(Counter)
    for row in train:
        for first, last, kind in spans(row["ner_tags"]):
            kinds[tuple(row["tokens"][first:last])][kind] += 1
    best = {words: counts.most_common(1)[0][0] for words, counts in kinds.items()}
    longest = max(len(words) for words in best)
    predicted = []
    for row in test:
        words, tags, i = row["tokens"], ["O"] * len(row["tokens"]), 0
        while i < len(words):
            for size in range(min(longest, len(words) - i), 0, -1):
                kind = best.get(tuple(words[i : i + size]))
                if kind:
                    tags[i : i + size] = [f"B-{kind}"] + [f"I-{kind}"] * (size - 1)
                    i += size
                    break
            else:
                i += 1
        predicted.append(tags)
    return f1_score([row["ner_tags"] for row in test], predicted)


def main() -> int:
    from toolkit.hardware import benchmark_header

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, help="the first N training rows (a quick check)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--skip-trainer", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"CoNLL-2003 not found at {DATA}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    print(benchmark_header(), flush=True)
    train = read("train")[: args.rows]
    print(f"baseline (most frequent type of each span seen in training): test F1 "
          f"{100 * memorized_baseline(train, read('test')):.1f}", flush=True)  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.jsonl"
        train_file.write_text("".join(json.dumps(r) + "\n" for r in train))
        overrides = [f"data.train={train_file}", f"epochs={args.epochs}", f"output_dir={tmp}/toolkit", "trackers=[]"]
        seconds, _ = whole_process(
            [f"{sys.prefix}/bin/toolkit", "train", "recipes/configs/ner_conll2003.yaml", *overrides]
        )
        results = json.loads((Path(tmp) / "toolkit" / "results.json").read_text())
        rows.append(("toolkit train", seconds, results["validation"]["f1"], results["test"]["f1"], results["steps"]))
        print(f"toolkit: {seconds:.0f} s, budget {results.get('budget')}", flush=True)
        if not args.skip_trainer:
            seconds, out = whole_process(
                [sys.executable, "benchmarks/trainer_ner.py", str(train_file), str(DATA / "validation.jsonl"),
                 str(DATA / "test.jsonl"), f"{tmp}/trainer", f"--epochs={args.epochs}"]
            )  # fmt: skip
            peer = json.loads(out.strip().splitlines()[-1])
            rows.append(("transformers Trainer (run_ner way)", seconds, peer["validation_f1"], peer["test_f1"], None))
    print(f"\n{'run':36} {'wall s':>8} {'validation F1':>14} {'test F1':>8} {'steps':>6}")
    for name, seconds, validation, test, steps in rows:
        print(f"{name:36} {seconds:8.0f} {100 * validation:14.1f} {100 * test:8.1f} {steps or '':>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
