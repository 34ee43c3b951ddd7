"""Translation on Multi30k: the offline warm-started default vs the same architecture from scratch, and how
well the default holds on test sentences far from its training data.

Each model trains with `toolkit train` in its own process for the same wall-clock budget (default 30 minutes
on this CPU). Test sacreBLEU and chrF are scored on the full test split (1,000 sentences, test_2016_flickr) and
on its quarter least like the training data: the 250 sentences whose English word trigrams are least often
found in the training sources. Also counts outputs with a spaced hyphen or apostrophe ("T - shirt", "l ' eau"),
and times training samples/s against Seq2SeqTrainer (bf16, dynamic padding) on the same model and data.
Usage: python benchmarks/translation_multi30k.py [--target de|fr] [--minutes 30] [--no-scratch | --no-warm] [--no-speed]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seq2seq_common import ROOT, table, toolkit_samples_per_second, trainer_samples_per_second

DATA = ROOT.parent / "shared/data/translation/multi30k"
SPACED = re.compile(r"\w [-'’] ?\w|\w ?[-'’] \w")


def trigrams(text: str) -> set:
    words = re.findall(r"\w+", text.lower())
    return set(zip(words, words[1:], words[2:]))


def far_from_train(rows: list[dict], source: str, share: float = 0.25) -> list[int]:
    """Indices of the test rows whose source trigrams are least often seen in the training sources."""
    seen = set()
    for line in (DATA / "train.jsonl").read_text(encoding="utf-8").splitlines():
        seen |= trigrams(json.loads(line)[source])
    overlap = [len(g & seen) / max(1, len(g)) for g in (trigrams(r[source]) for r in rows)]
    order = sorted(range(len(rows)), key=lambda i: overlap[i])
    return sorted(order[: int(share * len(rows))])


def train(config: Path, out: Path, *overrides: str) -> tuple[dict, float]:
    tic = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "toolkit", "train", str(config), f"output_dir={out}", "trackers=[]", *overrides],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return json.loads((out / "results.json").read_text()), time.perf_counter() - tic


def score(run_dir: Path, rows: list[dict], far: list[int], source: str, target: str) -> dict:
    import toolkit
    from toolkit.recipes.translation import translation_metrics

    outputs = [a["output"] for a in toolkit.load(run_dir)([r[source] for r in rows])]
    references = [r[target].strip() for r in rows]
    return {
        "test": translation_metrics(outputs, references),
        "far": translation_metrics([outputs[i] for i in far], [references[i] for i in far]),
        "spaced_punctuation": sum(bool(SPACED.search(o)) for o in outputs) / len(outputs),
        "samples": outputs[:3],
    }


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="de", choices=["de", "fr"])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per model")
    parser.add_argument("--no-scratch", action="store_true", help="skip the from-scratch baseline")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-started default (run the baseline alone)")
    parser.add_argument("--no-speed", action="store_true", help="skip the samples/s comparison with Seq2SeqTrainer")
    parser.add_argument("--speed-steps", type=int, default=40)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"Multi30k not found at {DATA}", file=sys.stderr)
        return 1
    config = ROOT / f"recipes/configs/translation_multi30k_en_{args.target}.yaml"
    rows = [json.loads(line) for line in (DATA / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    far = far_from_train(rows, "en")
    models = {} if args.no_warm else {"warm-started (MiniLM encoder)": []}
    if not args.no_scratch:
        models["from scratch (same architecture)"] = ["warm_start.pretrained=false"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(models.items()):
            out = Path(tmp) / f"run{i}"
            metrics, wall = train(config, out, f"max_train_minutes={args.minutes}", *overrides)
            results[name] = {
                **score(out, rows, far, "en", args.target),
                "steps": metrics["steps"],
                "train_seconds": metrics["train_seconds"],
                "wall_seconds": wall,
                "validation_bleu": metrics["validation"]["bleu"],
            }
    header = (
        "model",
        "test BLEU",
        "test chrF",
        f"far {len(far)} BLEU",
        "far chrF",
        "val BLEU",
        "spaced -/'",
        "steps",
        "train min",
        "whole min",
    )
    print(
        table(
            [
                (
                    name,
                    f"{r['test']['bleu']:.2f}",
                    f"{r['test']['chrf']:.2f}",
                    f"{r['far']['bleu']:.2f}",
                    f"{r['far']['chrf']:.2f}",
                    f"{r['validation_bleu']:.2f}",
                    f"{100 * r['spaced_punctuation']:.1f}%",
                    r["steps"],
                    f"{r['train_seconds'] / 60:.1f}",
                    f"{r['wall_seconds'] / 60:.1f}",
                )
                for name, r in results.items()
            ],
            header,
        )
    )
    speed = {}
    if not args.no_speed:
        speed = {
            "toolkit": toolkit_samples_per_second(config, args.speed_steps),
            "trainer": trainer_samples_per_second(config, args.speed_steps),
        }
        print(
            f"\ntraining samples/s: toolkit {speed['toolkit']:.1f}, Seq2SeqTrainer (bf16, dynamic padding) "
            f"{speed['trainer']:.1f}, ratio {speed['toolkit'] / speed['trainer']:.2f}x"
        )
    print(json.dumps({"results": results, "samples_per_second": speed}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
