"""Serving under load: `toolkit serve` on loopback, many concurrent gradio_client clients, bounded in time.

Sentiment: 50 clients send 1,000 rt-polarity test sentences (the app batches what waits in its queue, up to 32 per
forward pass, one pass at a time), through the torch weights and then through the ONNX export. Image classifier:
10 clients send hymenoptera validation photos (each answer includes a Grad-CAM map). Prints requests/s, p50/p95/max
latency and the error count per setting; exits non-zero on any error or when the time bound is hit.
With --sweep, instead: the sentiment app (torch weights, 50 clients) under several queue settings (batch size,
workers), each with --requests requests, to choose the shipped ones.
Usage: python benchmarks/serve_load.py [--requests 1000] [--image-requests 200] [--timeout 600] [--sweep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TOOLKIT_SHARED_DATA") or ROOT.parent / "shared" / "data")
TEXTS = SHARED / "sentiment" / "rt-polarity"
IMAGES = SHARED / "images" / "hymenoptera"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(command: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "toolkit", "train", *command], check=True, capture_output=True, cwd=ROOT)


def serve(run: Path, backend: str, deadline: float, queue: tuple[int, int] | None = None):
    """A real `toolkit serve` process (or, with ``queue`` = (batch size, workers), the sentiment app built with
    those queue settings), once it answers on its port."""
    port = free_port()
    command = [sys.executable, "-m", "toolkit", "serve", str(run), "--port", str(port), "--backend", backend]
    if queue:
        command = [
            sys.executable,
            "-c",
            "import sys; from toolkit.web import private_gradio_cache; private_gradio_cache(); "
            "from toolkit.apps.sentiment import build_demo; build_demo(sys.argv[1], sys.argv[2], int(sys.argv[3]), "
            "int(sys.argv[4])).launch(server_name='127.0.0.1', server_port=int(sys.argv[5]))",
            str(run),
            backend,
            str(queue[0]),
            str(queue[1]),
            str(port),
        ]
    return start_server(command, port, deadline), f"http://127.0.0.1:{port}/"


def start_server(command: list[str], port: int, deadline: float, path: str = "/") -> subprocess.Popen:
    """Start ``command`` in a process group of its own and return it once it answers ``path`` on ``port``; exit
    with its error if it does not. Its stderr goes to a file: a pipe nobody reads would stall a server that logs.
    Stop it with :func:`stop_server`."""
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    while time.time() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{' '.join(command[:4])} exited: {log.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return server
        except OSError:
            time.sleep(0.3)
    stop_server(server)
    raise SystemExit(f"{' '.join(command[:4])} did not start in time")


def stop_server(server: subprocess.Popen) -> None:
    """Stop a server and every process it started (LitServe's workers outlive their parent otherwise, and would
    take CPU from the next measurement)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    except ProcessLookupError:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # workers that ignored SIGTERM


def load(url: str, clients: int, payloads: list, endpoint: str, deadline: float) -> dict:
    """``clients`` threads, each with its own gradio_client, share the payloads; latency per request."""
    from gradio_client import Client, handle_file

    per_client = [payloads[i::clients] for i in range(clients)]

    def one_client(items: list) -> tuple[list[float], int]:
        client = Client(url, verbose=False)
        latencies, errors = [], 0
        for item in items:
            if time.time() > deadline:
                errors += 1
                continue
            tic = time.perf_counter()
            try:
                args = [handle_file(item), False] if isinstance(item, Path) else [item]
                client.predict(*args, api_name=endpoint)
                latencies.append(time.perf_counter() - tic)
            except Exception:  # noqa: BLE001  (counted: the benchmark's verdict is the error count)
                errors += 1
        return latencies, errors

    tic = time.perf_counter()
    latencies, errors = [], 0
    with ThreadPoolExecutor(clients) as pool:
        for future in as_completed([pool.submit(one_client, items) for items in per_client]):
            got, bad = future.result()
            latencies += got
            errors += bad
    seconds = time.perf_counter() - tic
    ordered = sorted(latencies) or [float("nan")]
    return {
        "clients": clients,
        "requests": len(payloads),
        "errors": errors,
        "seconds": round(seconds, 1),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "max_s": round(ordered[-1], 3),
    }


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--image-requests", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for each load test")
    parser.add_argument("--sweep", action="store_true", help="compare the sentiment app's queue settings instead")
    args = parser.parse_args()
    if not TEXTS.is_dir() or not IMAGES.is_dir():
        print(
            f"rt-polarity or hymenoptera not found under {SHARED}: this benchmark needs ../shared/data", file=sys.stderr
        )
        return 1
    import pandas as pd

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text_run, image_run = tmp / "sentiment", tmp / "images"
        train(
            [
                "recipes/configs/sentiment_minilm.yaml",
                f"data.train={TEXTS / 'train.csv'}",
                "data.max_train_rows=2000",
                f"data.validation={TEXTS / 'validation.csv'}",
                "epochs=1",
                "batch_size=32",
                f"output_dir={text_run}",
            ]
        )
        sentences = list(pd.read_csv(TEXTS / "test.csv")["text"])
        sentences = (sentences * (args.requests // len(sentences) + 1))[: args.requests]
        if args.sweep:
            settings = [
                (
                    f"batch {batch}, {workers} worker{'s' * (workers > 1)}",
                    text_run,
                    "torch",
                    50,
                    sentences,
                    "/classify",
                    (batch, workers),
                )
                for batch, workers in ((1, 1), (8, 1), (32, 1), (64, 1), (32, 2))
            ]
        else:
            train(["recipes/configs/image_classification_hymenoptera.yaml", "epochs=1", f"output_dir={image_run}"])
            subprocess.run(
                [sys.executable, "-m", "toolkit", "export", str(text_run)], check=True, capture_output=True, cwd=ROOT
            )
            photos = sorted(p for p in (IMAGES / "val").rglob("*.jpg"))
            photos = (photos * (args.image_requests // len(photos) + 1))[: args.image_requests]
            settings = [
                ("sentiment, torch", text_run, "torch", 50, sentences, "/classify", None),
                ("sentiment, ONNX export", text_run, "auto", 50, sentences, "/classify", None),
                ("image classifier + Grad-CAM", image_run, "auto", 10, photos, "/classify", None),
            ]
        for name, run, backend, clients, payloads, endpoint, queue in settings:
            deadline = time.time() + args.timeout
            server, url = serve(run, backend, deadline, queue)
            try:
                rows[name] = load(url, clients, payloads, endpoint, deadline)
            finally:
                stop_server(server)
            print(name, json.dumps(rows[name]), flush=True)
    print(
        f"\n{'app':32} {'clients':>8} {'requests':>9} {'errors':>7} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'max s':>7}"
    )
    for name, r in rows.items():
        print(
            f"{name:32} {r['clients']:8} {r['requests']:9} {r['errors']:7} {r['requests_per_s']:7.1f} "
            f"{r['p50_s']:7.3f} {r['p95_s']:7.3f} {r['max_s']:7.3f}"
        )
    return 1 if any(r["errors"] for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
