"""Soak: `toolkit serve` under steady load for --minutes (default 10), loopback only, bounded in time.

The sentiment app (a run trained on 2,000 rt-polarity rows, torch weights), 50 gradio_client clients as in
serve_load.py, each sending rt-polarity test sentences one after another without pause until the time is up.
Every minute it prints the requests answered, errors and the server's resident memory. Passes (exit 0) with no
error and the final resident memory within 10 % of the reading after the first minute.
Usage: python benchmarks/serve_soak.py [--minutes 10] [--clients 50] [--run RUN]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from serve_load import ROOT, TEXTS, serve, train


def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def soak(url: str, clients: int, texts: list[str], stop_at: float, counts: dict, lock: threading.Lock) -> None:
    from gradio_client import Client

    def one_client(offset: int) -> None:
        client = Client(url, verbose=False)
        i = offset
        while time.time() < stop_at:
            try:
                client.predict(texts[i % len(texts)], api_name="/classify")
                key = "answered"
            except Exception:  # noqa: BLE001  (counted: the soak's verdict is the error count)
                key = "errors"
            with lock:
                counts[key] += 1
            i += clients

    threads = [threading.Thread(target=one_client, args=(k,), daemon=True) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, stop_at - time.time() + 120))


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--run", help="a finished sentiment run (default: train one on 2,000 rt-polarity rows)")
    args = parser.parse_args()
    if not TEXTS.is_dir():
        print(f"rt-polarity not found at {TEXTS}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    import pandas as pd

    texts = list(pd.read_csv(TEXTS / "test.csv")["text"])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "run"
        if not args.run:
            train(
                [
                    str(ROOT / "recipes/configs/sentiment_minilm.yaml"),
                    f"data.train={TEXTS / 'train.csv'}",
                    f"data.validation={TEXTS / 'validation.csv'}",
                    "data.max_train_rows=2000",
                    "epochs=1",
                    f"output_dir={run}",
                    "trackers=[]",
                ]
            )
        server, url = serve(run, "torch", time.time() + 120)
        try:
            counts, lock = {"answered": 0, "errors": 0}, threading.Lock()
            start = time.time()
            stop_at = start + 60 * args.minutes
            worker = threading.Thread(target=soak, args=(url, args.clients, texts, stop_at, counts, lock), daemon=True)
            worker.start()
            readings = []
            print(f"\n{'minute':>6} {'answered':>9} {'errors':>7} {'requests/s':>11} {'resident MiB':>13}", flush=True)
            previous = 0
            for minute in range(1, int(args.minutes) + 1):
                time.sleep(max(0.0, start + 60 * minute - time.time()))
                memory = resident_mib(server.pid)
                readings.append(memory)
                with lock:
                    answered, errors = counts["answered"], counts["errors"]
                print(
                    f"{minute:6d} {answered:9d} {errors:7d} {(answered - previous) / 60:11.1f} {memory:13.0f}",
                    flush=True,
                )
                previous = answered
            worker.join(timeout=180)
        finally:
            server.terminate()
            server.wait(timeout=30)
    growth = readings[-1] / readings[0] - 1 if readings else float("nan")
    print(
        f"\n{counts['answered']} requests answered, {counts['errors']} errors in {args.minutes:g} min; resident memory "
        f"{readings[0]:.0f} MiB after the first minute, {readings[-1]:.0f} MiB at the end ({growth:+.1%})"
    )
    ok = counts["errors"] == 0 and abs(growth) <= 0.10
    print("PASS" if ok else "FAIL: errors, or memory moved by more than 10 %")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
