"""What the trackers cost each training step, measured inside one run: this machine's speed drifts by more than
the effect from one minute to the next, so separate tracked and untracked runs cannot show a few percent.

One `toolkit train` logs to MLflow (a real `mlflow server`, SQLite, loopback), W&B (offline), trackio (local) and
TensorBoard, all at once (or --trackers). Once its trackers have started, the script freezes their worker process
(and W&B's service) with SIGSTOP for one block of seconds and lets it run (SIGCONT) the next, in turn, until
training ends. A frozen worker takes no CPU and wakes nothing up; a running one does everything it must, the work
it missed while frozen included, so the running blocks carry all of tracking's cost. Each 10-step interval of
metrics.jsonl (its training seconds) falls in one block or is dropped where a switch falls inside it; every running
block is compared with the frozen blocks on either side of it, and the median of those ratios is reported.
What this does not cover: the worker's start-up, which overlaps the model and data loading (tracking_overhead.py
measures it), and the run process's side of the pipe (one JSON line per record).

Usage: python benchmarks/tracking_interleaved.py [--block 15] [--epochs 3] [--trackers tensorboard,mlflow,...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, go_offline  # noqa: E402
from tracking_overhead import DATA, TRACKED, start_mlflow  # noqa: E402


def write_config(folder: Path, trackers: list[str], epochs: int) -> Path:
    config = folder / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "sentiment",
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "data": {"train": str(DATA / "train.csv"), "validation": str(DATA / "validation.csv"),
                         "test": str(DATA / "test.csv")},
                "epochs": epochs, "batch_size": 32, "lr": 5e-5, "max_length": 128, "seed": 42,
                "log_every": 10, "trackers": trackers, "output_dir": str(folder / "run"),
            }
        )
    )  # fmt: skip
    return config


def worker_processes(run: subprocess.Popen) -> list:
    """The trackers' worker and everything it started (W&B's service)."""
    import psutil

    procs = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(run.pid).children():
            if "toolkit.tracking" in " ".join(child.cmdline()):
                procs += [child, *child.children(recursive=True)]
    return procs


def signal_all(procs: list, sig: int) -> None:
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def trackers_started(run_dir: Path) -> bool:
    """The worker has started its trackers (and moved to idle priority) once trackers.json names a run id."""
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((run_dir / "trackers.json").read_text())
        return any(isinstance(v, dict) and v for k, v in state.items() if k != "worker_pid")
    return False


def alternate(run: subprocess.Popen, run_dir: Path, block: float) -> list[tuple[float, bool]]:
    """Freeze and free the worker in turn until the run ends; the wall time of each switch and the state after it."""
    while run.poll() is None and not trackers_started(run_dir):
        time.sleep(0.2)
    time.sleep(5)  # the catch-up and first records settle
    switches, running = [], True
    while run.poll() is None:
        procs = worker_processes(run)
        running = not running
        signal_all(procs, signal.SIGCONT if running else signal.SIGSTOP)
        switches.append((time.time(), running))
        deadline = time.monotonic() + block
        while run.poll() is None and time.monotonic() < deadline:
            if not running and done_training(run_dir):
                break  # the run's end must not wait on a frozen worker
            time.sleep(0.1)
        if done_training(run_dir):
            break
    signal_all(worker_processes(run), signal.SIGCONT)
    return switches


def done_training(run_dir: Path) -> bool:
    with contextlib.suppress(OSError):
        return (run_dir / "results.json").exists() or '"split": "test"' in (run_dir / "metrics.jsonl").read_text()
    return False


def step_times_by_block(run_dir: Path, switches: list[tuple[float, bool]]) -> list[tuple[bool, list[float]]]:
    """Each block's state and the seconds per step of the 10-step intervals wholly inside it."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") == "train"]
    blocks = [(state, []) for _, state in switches]
    edges = [t for t, _ in switches] + [float("inf")]
    for before, after in zip(train, train[1:]):
        if after["step"] <= before["step"] or after["train_seconds"] <= before["train_seconds"]:
            continue  # a new epoch's first record (evaluation in between is off the training clock anyway)
        for i in range(len(switches)):
            if edges[i] <= before["time"] and after["time"] < edges[i + 1]:
                per_step = (after["train_seconds"] - before["train_seconds"]) / (after["step"] - before["step"])
                blocks[i][1].append(per_step)
                break
    return blocks


def main() -> int:
    from toolkit.hardware import benchmark_header

    go_offline()
    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--block", type=float, default=15.0, help="seconds frozen, then seconds running, in turn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trackers", default=",".join(TRACKED))
    args = parser.parse_args()
    trackers = args.trackers.split(",")
    if not DATA.is_dir():
        print(f"rt-polarity not found at {DATA}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server, uri = start_mlflow(folder)
        os.environ.update(MLFLOW_TRACKING_URI=uri, WANDB_MODE="offline", WANDB_SILENT="true")
        os.environ["TRACKIO_DIR"] = str(folder / "trackio")
        try:
            config = write_config(folder, trackers, args.epochs)
            command = [sys.executable, "-m", "toolkit", "train", str(config)]
            with open(folder / "stderr.txt", "w") as stderr:  # a pipe nobody reads would fill and stop the run
                run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
                switches = alternate(run, folder / "run", args.block)
                run.wait()
            if run.returncode != 0:
                raise SystemExit(f"toolkit train failed:\n{(folder / 'stderr.txt').read_text()[-3000:]}")
            blocks = step_times_by_block(folder / "run", switches)
        finally:
            server.terminate()
            server.wait(30)
    means = [(state, statistics.mean(times) if times else None) for state, times in blocks]
    ratios = []
    for i, (state, mean) in enumerate(means):
        beside = [means[j] for j in (i - 1, i + 1) if 0 <= j < len(means)]
        frozen = [m for s, m in beside if not s and m is not None]
        if state and mean is not None and frozen:
            ratios.append(mean / statistics.mean(frozen) - 1)
    on = [t for s, times in blocks if s for t in times]
    off = [t for s, times in blocks if not s for t in times]
    print(f"trackers: {', '.join(trackers)}; blocks of {args.block:.0f} s: {len(blocks)} blocks, "
          f"{len(on)} intervals running, {len(off)} frozen")  # fmt: skip
    print(f"seconds per step: worker running {statistics.median(on) * 1000:.0f} ms (median of intervals), "
          f"frozen {statistics.median(off) * 1000:.0f} ms")  # fmt: skip
    print(
        f"each running block against the frozen blocks beside it: median {statistics.median(ratios):+.1%}, "
        f"mean {statistics.mean(ratios):+.1%} over {len(ratios)} blocks "
        f"(quartiles {statistics.quantiles(ratios, n=4)[0]:+.1%} .. {statistics.quantiles(ratios, n=4)[2]:+.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
