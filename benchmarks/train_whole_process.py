"""Training as users feel it: process start to results.json with validation and test metrics, `toolkit train`
against a transformers.Trainer script (benchmarks/trainer_sentiment.py) doing the same work, one after the other.

Packaged MiniLM, 2,000 rt-polarity training rows, 1 epoch, batch 32, lr 5e-5, max length 128, no warm-up or
weight decay, one validation pass (1,066 rows) and one test pass (1,066 rows); --seeds runs, each seed's pair
back to back. Each side trains in its fastest precision on this machine: toolkit with `precision: auto`, the
Trainer in what auto chose (bf16 where the CPU computes it natively, else fp32); --precision sets both. Prints the
whole-process times, test accuracy per seed and on average, and where each one's time went.
Usage: python benchmarks/train_whole_process.py [--seeds 42 43 44] [--precision auto|fp32|bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TOOLKIT_SHARED_DATA") or ROOT.parent / "shared" / "data")
DATA = SHARED / "sentiment" / "rt-polarity"
PHASES = [
    "start_up",
    "data",
    "model",
    "build",
    "training",
    "evaluations",
    "checkpoints",
    "reload_best",
    "final_validation",
    "final_test",
]


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    return seconds, done


def run_toolkit(folder: Path, train_csv: Path, seed: int, overrides: list[str], precision: str) -> dict:
    config = folder / f"toolkit_{seed}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "sentiment",
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "data": {
                    "train": str(train_csv),
                    "validation": str(DATA / "validation.csv"),
                    "test": str(DATA / "test.csv"),
                },
                "epochs": 1,
                "batch_size": 32,
                "lr": 5e-5,
                "max_length": 128,
                "seed": seed,
                "precision": {"fp32": "no"}.get(precision, precision),
                "warmup_ratio": 0.0,
                "weight_decay": 0.0,
                "eval_every": "epoch",
                "trackers": [],
                "output_dir": str(folder / f"toolkit_{seed}"),
            }
        )
    )
    seconds, _ = timed([sys.executable, "-m", "toolkit", "train", str(config), *overrides])
    results = json.loads((folder / f"toolkit_{seed}" / "results.json").read_text())
    timings = dict(results["timings"])
    timings["build"] = timings.get("build", 0) - timings.get("data", 0) - timings.get("model", 0)  # the rest of it
    return {
        "seconds": seconds,
        "test_accuracy": results["test"]["accuracy"],
        "timings": timings,
        "precision": results["precision"]["chosen"],
    }


def run_trainer(folder: Path, train_csv: Path, seed: int, precision: str) -> dict:
    out = folder / f"trainer_{seed}"
    seconds, done = timed(
        [
            sys.executable,
            str(ROOT / "benchmarks/trainer_sentiment.py"),
            str(train_csv),
            str(DATA / "validation.csv"),
            str(DATA / "test.csv"),
            str(out),
            "--seed",
            str(seed),
            "--precision",
            precision,
        ]
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out / "results.json").is_file()
    return {
        "seconds": seconds,
        "test_accuracy": report["test"]["accuracy"],
        "timings": report["timings"],
        "precision": precision,
    }


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto: each side in the precision toolkit's auto picks for this machine",
    )
    parser.add_argument("--toolkit-only", action="store_true", help="skip the Trainer runs (for ablations)")
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides for the toolkit runs, e.g. group_by_length=false"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"rt-polarity not found at {DATA}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    import pandas as pd

    from toolkit import hardware

    trainer_precision = args.precision
    if args.precision == "auto":
        trainer_precision = hardware.choose_precision("auto", hardware.detect()).name
    print(f"precision: toolkit {args.precision}, Trainer {trainer_precision}", flush=True)
    runs = {"Trainer script": [], "toolkit train": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train_csv = folder / "train.csv"
        pd.read_csv(DATA / "train.csv").sample(n=args.rows, random_state=0).to_csv(train_csv, index=False)
        for seed in args.seeds:
            if not args.toolkit_only:
                runs["Trainer script"].append(run_trainer(folder, train_csv, seed, trainer_precision))
            runs["toolkit train"].append(run_toolkit(folder, train_csv, seed, args.overrides, args.precision))
            print(
                f"seed {seed}: "
                + ", ".join(
                    f"{n} {r[-1]['seconds']:.1f} s ({r[-1]['precision']}), test acc {r[-1]['test_accuracy']:.4f}"
                    for n, r in runs.items()
                    if r
                ),
                flush=True,
            )
    if args.toolkit_only:
        runs.pop("Trainer script")

    print(f"\n{'whole process (start to results.json)':40} {'median s':>9} {'mean test acc':>14}")
    medians = {}
    for name, results in runs.items():
        medians[name] = statistics.median(r["seconds"] for r in results)
        print(f"{name:40} {medians[name]:9.1f} {statistics.mean(r['test_accuracy'] for r in results):14.4f}")
    if "Trainer script" in medians:
        print(f"toolkit speed-up, whole process: {medians['Trainer script'] / medians['toolkit train']:.2f}x")

    print(f"\nwhere the time went (median s over {len(args.seeds)} seeds)")
    print(f"{'phase':22}" + "".join(f"{name:>16}" for name in runs))
    table = {}
    for phase in PHASES + ["everything else"]:
        row = {}
        for name, results in runs.items():
            if phase == "everything else":
                values = [r["seconds"] - sum(v for k, v in r["timings"].items() if k in PHASES) for r in results]
            else:
                values = [r["timings"].get(phase, 0.0) for r in results]
            row[name] = statistics.median(values)
        table[phase] = row
        print(f"{phase:22}" + "".join(f"{row[name]:16.2f}" for name in runs))
    print(json.dumps({"runs": runs, "phases": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
