"""What tracking costs a run: `toolkit train` with no tracker against the same run logging to MLflow (a real `mlflow
server`, SQLite, on loopback), W&B (offline) and trackio (local) at once, plus TensorBoard.

Packaged MiniLM, --rows rt-polarity training rows, 1 epoch, batch 32, validation and test of 1,066 rows each,
log_every 10 (the default). The two variants run in alternating pairs (this machine's speed drifts between
minutes); prints each pair's training-loop seconds (results.json train_seconds) and whole-process seconds, and the
median change.
Usage: python benchmarks/tracking_overhead.py [--pairs 3] [--rows 2000] [--log-every 10] [--trackers mlflow,wandb]
"""

from __future__ import annotations

import argparse
import contextlib
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
from common import ROOT, SHARED, go_offline  # noqa: E402

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
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job-runner processes: less CPU
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                time.sleep(10)  # the server's own start-up work settles before anything is timed
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
    seconds, cpu = cpu_by_process([sys.executable, "-m", "toolkit", "train", str(config)])
    results = json.loads((folder / name / "results.json").read_text())
    state = folder / name / "trackers.json"
    worker = json.loads(state.read_text()).get("worker_cpu_seconds", {}) if state.is_file() else {}
    return {
        "worker_before": worker.get("before_training", 0.0),
        "worker_during": worker.get("during_training", 0.0),
        "wall": seconds,
        "train": results["train_seconds"],
        "steady": steady_step_seconds(folder / name),
        "main_cpu": cpu["main"],
        "other_cpu": cpu["others"],
    }


def cpu_by_process(command: list[str]) -> tuple[float, dict]:
    """Run ``command``; its wall seconds and the CPU seconds (user + system) of its own process and of all the
    processes it started (the trackers' worker, W&B's service), sampled every 0.2 s until it exits."""
    import psutil

    tic = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main, seen = psutil.Process(proc.pid), {}
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            for p in [main, *main.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = p.cpu_times()
                    seen[p.pid] = times.user + times.system
        time.sleep(0.2)
    seconds = time.perf_counter() - tic
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{proc.stderr.read()[-3000:]}")
    return seconds, {"main": seen.get(main.pid, 0.0), "others": sum(v for k, v in seen.items() if k != main.pid)}


def steady_step_seconds(run_dir: Path) -> float:
    """Training seconds per step over the run's second half (metrics.jsonl): what tracking costs every step, once
    the trackers have started."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") == "train"]
    half = next(r for r in train if r["step"] >= train[-1]["step"] / 2)
    return (train[-1]["train_seconds"] - half["train_seconds"]) / (train[-1]["step"] - half["step"])


def main() -> int:
    from toolkit.hardware import benchmark_header

    go_offline()
    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--trackers", default=",".join(TRACKED), help="the tracked runs' trackers, comma-separated")
    args = parser.parse_args()
    tracked = args.trackers.split(",")
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
                order = [("none", []), ("tracked", tracked)]
                if pair % 2:
                    order.reverse()
                done = {
                    name: train(folder, f"{name}_{pair}", train_csv, trackers, args.log_every)
                    for name, trackers in order
                }
                rows.append(done)
                print(
                    f"pair {pair + 1}: training {done['none']['train']:.2f} s -> {done['tracked']['train']:.2f} s "
                    f"({done['tracked']['train'] / done['none']['train'] - 1:+.1%}); a step in the second half "
                    f"{done['none']['steady'] * 1000:.0f} ms -> {done['tracked']['steady'] * 1000:.0f} ms "
                    f"({done['tracked']['steady'] / done['none']['steady'] - 1:+.1%}); CPU of the run's own process "
                    f"{done['none']['main_cpu']:.1f} s -> {done['tracked']['main_cpu']:.1f} s, of the processes it "
                    f"started {done['none']['other_cpu']:.1f} s -> {done['tracked']['other_cpu']:.1f} s; whole process "
                    f"{done['none']['wall']:.1f} s -> {done['tracked']['wall']:.1f} s "
                    f"({done['tracked']['wall'] / done['none']['wall'] - 1:+.1%})",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(30)
    extra = [r["tracked"]["other_cpu"] - r["none"]["other_cpu"] for r in rows]
    print(f"CPU seconds the trackers' processes took: median {statistics.median(extra):.1f} s per run")
    cpus = len(os.sched_getaffinity(0))
    before = [r["tracked"]["worker_before"] for r in rows]
    during = [r["tracked"]["worker_during"] / (r["tracked"]["train"] * cpus) for r in rows]
    print(
        f"the trackers' worker (its W&B service included): {statistics.median(before):.1f} CPU s before training "
        f"(imports, set-up, while the model and data load); during training {statistics.median(during):.2%} of the "
        f"{cpus} CPUs' time (pairs: {', '.join(f'{d:.2%}' for d in during)})"
    )
    for key, what in (("train", "training loop"), ("steady", "a step, second half"), ("wall", "whole process")):
        changes = [r["tracked"][key] / r["none"][key] - 1 for r in rows]
        print(f"{what}: median change with {', '.join(tracked)}: {statistics.median(changes):+.1%} "
              f"(pairs: {', '.join(f'{c:+.1%}' for c in changes)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
