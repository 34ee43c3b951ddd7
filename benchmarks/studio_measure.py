"""The studio, measured: time from Start to the first point of the curve, the studio's memory with 5 runs loaded
for Try, and a prediction's latency in the studio against the same run's standalone app.

Each figure from real processes on loopback: `toolkit studio` and `toolkit serve`, driven by gradio_client.
- Start to first point: /start (what the Start button calls) of the shipped sentiment_minilm.yaml (packaged
  MiniLM, the demo data), then /live until the run has a training record (step > 0); also the time to the first
  validation point. Median of --repeats runs.
- Memory: the studio process's resident memory (psutil) after start-up, then after /predict on each of 5
  finished runs (copies of one MiniLM run: 5 models stay loaded with --max-loaded 5).
- Latency: 50 sequential one-sentence requests, the studio's /predict against `toolkit serve`'s /classify on
  the same run, after 5 warm-up requests each; median and p95.
Usage: python benchmarks/studio_measure.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, start_server  # noqa: E402  (the same server start as the load test)

CONFIG = "sentiment_minilm.yaml"
SENTENCE = "a gripping, beautifully acted film"


def serve(command: list[str], port: int) -> subprocess.Popen:
    return start_server([sys.executable, "-m", "toolkit", *command, "--port", str(port)], port, time.time() + 120)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


def until(client, name: str, done, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        live = client.predict(name, api_name="/live")
        if done(live):
            return live
        time.sleep(0.05)
    raise SystemExit(f"{name}: timed out; last {live}")


def latencies(call, n: int = 50) -> list[float]:
    for _ in range(5):
        call()
    out = []
    for _ in range(n):
        tic = time.perf_counter()
        call()
        out.append(time.perf_counter() - tic)
    return sorted(out)


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    import psutil
    from gradio_client import Client

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs, port = Path(tmp) / "runs", free_port()
        studio = serve(["studio", "--runs", str(runs), "--max-loaded", "5"], port)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            first_points, first_evals = [], []
            for i in range(args.repeats):
                name = f"run{i}"
                tic = time.perf_counter()
                client.predict(CONFIG, ["log_every=1", "trackers=[]"], name, api_name="/start")
                until(client, name, lambda r: r["step"] > 0)
                first_points.append(time.perf_counter() - tic)
                until(client, name, lambda r: r["last_validation"])
                first_evals.append(time.perf_counter() - tic)
                until(client, name, lambda r: r["status"] == "finished")
                print(
                    name, f"first point {first_points[-1]:.1f} s, first validation {first_evals[-1]:.1f} s", flush=True
                )
            rows["start to first training point (median)"] = f"{statistics.median(first_points):.1f} s"
            rows["start to first validation point (median)"] = f"{statistics.median(first_evals):.1f} s"

            # Five finished runs to load: copies of run0 (its best/, config, results and marker).
            for i in range(1, 6):
                target = runs / f"copy{i}"
                target.mkdir()
                for entry in (".toolkit-run", "config.yaml", "results.json", "metrics.jsonl", "README.md", "best"):
                    source = runs / "run0" / entry
                    (shutil.copytree if source.is_dir() else shutil.copy)(source, target / entry)
            process = psutil.Process(studio.pid)
            before = process.memory_info().rss
            for i in range(1, 6):
                client.predict(f"copy{i}", SENTENCE, api_name="/predict")
            after = process.memory_info().rss
            rows["studio memory, no model loaded"] = f"{before / 2**20:.0f} MiB"
            rows["studio memory, 5 runs loaded"] = (
                f"{after / 2**20:.0f} MiB ({(after - before) / 5 / 2**20:.0f} MiB a run)"
            )
            in_studio = latencies(lambda: client.predict("copy1", SENTENCE, api_name="/predict"))
        finally:
            stop(studio)
        app_port = free_port()
        app = serve(["serve", str(runs / "copy1"), "--backend", "torch"], app_port)
        try:
            app_client = Client(f"http://127.0.0.1:{app_port}/", verbose=False)
            standalone = latencies(lambda: app_client.predict(SENTENCE, api_name="/classify"))
        finally:
            stop(app)
    for name, values in (
        ("prediction in the studio (/predict)", in_studio),
        ("prediction in `toolkit serve` (/classify)", standalone),
    ):
        rows[name] = (
            f"median {statistics.median(values) * 1000:.0f} ms, "
            f"p95 {values[int(0.95 * (len(values) - 1))] * 1000:.0f} ms"
        )
    print()
    for name, value in rows.items():
        print(f"{name:45} {value}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
