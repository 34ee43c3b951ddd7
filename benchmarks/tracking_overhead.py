"""What tracking costs a run: `toolkit train` with no tracker against the same run logging to MLflow (a real `mlflow
server`, SQLite, on loopback), W&B (offline) and trackio (local) at once, plus TensorBoard.

Packaged MiniLM, --rows rt-polarity training rows, 1 epoch, batch 32, validation and test of 1,066 rows each,
log_every 10 (the default). The two variants run in alternating pairs (this machine's speed drifts between
minutes); prints each pair's training-loop seconds (results.json train_seconds) and whole-process seconds, and the
median change.
Usage: python benchmarks/tracking_overhead.py [--pairs 3] [--rows 2000] [--log-every 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, go_offline, whole_process  # noqa: E402

DATA = SHARED / "sentiment" / "rt-polarity"
TRACKED = ["tensorboard", "mlflow", "wandb", "trackio"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--default-artifact-root", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return server, uri
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("mlflow server did not start")


def train(folder: Path, name: str, train_csv: Path, trackers: list[str], log_every: int) -> dict:
    config = folder / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "sentiment",
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "data": {"train": str(train_csv), "validation": str(DATA / "validation.csv"),
                         "test": str(DATA / "test.csv")},
                "epochs": 1, "batch_size": 32, "lr": 5e-5, "max_length": 128, "seed": 42,
                "log_every": log_every, "trackers": trackers, "output_dir": str(folder / name),
            }
        )
    )  # fmt: skip
    seconds, _ = whole_process([sys.executable, "-m", "toolkit", "train", str(config)])
    results = json.loads((folder / name / "results.json").read_text())
    return {"wall": seconds, "train": results["train_seconds"], "steps": results.get("steps")}


def main() -> int:
    from toolkit.hardware import benchmark_header

    go_offline()
    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"rt-polarity not found at {DATA}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train_csv = folder / "train.csv"
        pd.read_csv(DATA / "train.csv").sample(n=args.rows, random_state=0).to_csv(train_csv, index=False)
        server, uri = start_mlflow(folder)
        os.environ.update(MLFLOW_TRACKING_URI=uri, WANDB_MODE="offline", WANDB_SILENT="true")
        os.environ["TRACKIO_DIR"] = str(folder / "trackio")
        try:
            rows = []
            for pair in range(args.pairs):
                order = [("none", []), ("tracked", TRACKED)]
                if pair % 2:
                    order.reverse()
                done = {
                    name: train(folder, f"{name}_{pair}", train_csv, trackers, args.log_every)
                    for name, trackers in order
                }
                rows.append(done)
                print(
                    f"pair {pair + 1}: training {done['none']['train']:.2f} s -> {done['tracked']['train']:.2f} s "
                    f"({done['tracked']['train'] / done['none']['train'] - 1:+.1%}); whole process "
                    f"{done['none']['wall']:.1f} s -> {done['tracked']['wall']:.1f} s "
                    f"({done['tracked']['wall'] / done['none']['wall'] - 1:+.1%})",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(30)
    for key, what in (("train", "training loop"), ("wall", "whole process")):
        changes = [r["tracked"][key] / r["none"][key] - 1 for r in rows]
        print(f"{what}: median change with {', '.join(TRACKED)}: {statistics.median(changes):+.1%} "
              f"(pairs: {', '.join(f'{c:+.1%}' for c in changes)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
