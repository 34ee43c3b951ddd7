"""A sweep against the shipped settings, on data those settings were not tuned for: rt-polarity cut to its first
500 training rows (a small labelled set, as a new user often has), MiniLM. One `toolkit train` of the shipped
config, then `toolkit sweep` of the same config with a 30-minute budget, each a whole process, one after the other.
Both pick on the validation file; the test file is scored once per run and is not seen by the search. Then both
settings (the shipped ones, the best trial's) are trained again with ``--seeds`` other seeds, so that the difference
can be read against the spread one seed alone gives.

Usage: python benchmarks/sweep_vs_shipped.py [--rows 500] [--budget 30m] [--trials 40] [--seeds 2] [--keep DIR]
(with --keep, a second invocation reuses the runs already there: the sweep continues, here: is already done)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, go_offline, whole_process  # noqa: E402

go_offline()
DATA = SHARED / "sentiment" / "rt-polarity"
CONFIG = "recipes/configs/sentiment_minilm.yaml"


def main() -> int:
    import pandas as pd

    from toolkit.hardware import benchmark_header

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--budget", default="30m")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=2, help="other seeds to train both settings with, afterwards")
    parser.add_argument("--keep", help="a folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"rt-polarity not found at {DATA}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    print(benchmark_header(), flush=True)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="toolkit-sweep-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    train = folder / f"train-{args.rows}.csv"
    pd.read_csv(DATA / "train.csv").head(args.rows).to_csv(train, index=False)
    data = [f"data.train={train}", f"data.validation={DATA / 'validation.csv'}", f"data.test={DATA / 'test.csv'}"]
    shipped_dir, sweep_dir = folder / "shipped", folder / "sweep"
    toolkit = f"{sys.prefix}/bin/toolkit"
    seconds = float("nan")  # a run kept from an earlier invocation: its time is in that one's output
    if not (shipped_dir / "results.json").is_file():
        seconds, _ = whole_process(
            [toolkit, "train", CONFIG, *data, f"output_dir={shipped_dir}", "trackers=[]", "overwrite=true"]
        )
    shipped = json.loads((shipped_dir / "results.json").read_text())
    print(f"shipped settings: {seconds:.0f} s, validation accuracy {shipped['validation']['accuracy']:.4f}, "
          f"test accuracy {shipped['test']['accuracy']:.4f}", flush=True)  # fmt: skip
    sweep_seconds, out = whole_process(
        [toolkit, "sweep", CONFIG, *data, f"output_dir={sweep_dir}",
         f"--trials={args.trials}", f"--budget={args.budget}"]
    )  # fmt: skip
    best = json.loads((sweep_dir / "best" / "results.json").read_text())
    print(out)
    print(f"\n{'run':28} {'wall s':>8} {'validation acc':>15} {'test acc':>9}")
    print(f"{'shipped config':28} {seconds:8.0f} {shipped['validation']['accuracy']:15.4f} "
          f"{shipped['test']['accuracy']:9.4f}")  # fmt: skip
    print(f"{'sweep, best trial':28} {sweep_seconds:8.0f} {best['validation']['accuracy']:15.4f} "
          f"{best['test']['accuracy']:9.4f}")  # fmt: skip
    if args.seeds:
        reseed(folder, data, sweep_dir / "best" / "config.yaml", shipped, best, args.seeds)
    return 0


def reseed(folder: Path, data: list[str], best_config: Path, shipped: dict, best: dict, seeds: int) -> None:
    """Both settings again with other seeds: each one's test accuracy, mean and spread."""
    import statistics

    toolkit = f"{sys.prefix}/bin/toolkit"
    found = {"shipped config": [shipped["test"]["accuracy"]], "best trial's settings": [best["test"]["accuracy"]]}
    for seed in range(1, seeds + 1):
        for name, command in (
            ("shipped config", [toolkit, "train", CONFIG, *data]),
            ("best trial's settings", [toolkit, "train", str(best_config), "max_train_minutes=null"]),
        ):
            out = folder / f"{name.split()[0]}-seed{seed}"
            if not (out / "results.json").is_file():
                whole_process([*command, f"seed={seed}", f"output_dir={out}", "trackers=[]", "overwrite=true"])
            found[name].append(json.loads((out / "results.json").read_text())["test"]["accuracy"])
    print(f"\n{'settings':24} test accuracy by seed (42, 1, 2, ...)      mean    sd")
    for name, values in found.items():
        shown = " ".join(f"{v:.4f}" for v in values)
        print(f"{name:24} {shown:40} {statistics.mean(values):.4f} {statistics.stdev(values):.4f}")


if __name__ == "__main__":
    sys.exit(main())
