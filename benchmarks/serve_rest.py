"""The JSON API under load, against a peer: wrk at 1, 16 and 64 connections posting one rt-polarity sentence per
request to `toolkit serve RUN`'s POST /predict, and to LitServe serving a stock transformers.pipeline on the same
best/ (dynamic batching up to 32, 5 ms wait, its fastest precision here: fp32 where bf16 is emulated), one server
at a time, the same sentences. Prints the hardware, then requests/s, p50, p99 and errors per server and level, and
the predictor's own offline throughput for scale.

Needs Debian's wrk and pip's litserve. The run: --run RUN (a finished sentiment run), else one trained here on
2,000 rt-polarity rows (the shipped MiniLM config, 1 epoch). Usage:
python benchmarks/serve_rest.py [--run RUN] [--seconds 20] [--connections 1,16,64] [--skip-peer]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import TEXTS, free_port, start_server, train  # noqa: E402

LITSERVE_APP = textwrap.dedent(
    """
    import sys
    import litserve as ls
    import torch
    from transformers import pipeline

    class Classifier(ls.LitAPI):
        def setup(self, device):
            torch.set_num_threads(int(sys.argv[3]))
            self.classify = pipeline("text-classification", model=sys.argv[1], top_k=None, device="cpu")

        def decode_request(self, request):
            return request["inputs"]

        def batch(self, inputs):
            return list(inputs)

        def predict(self, texts):
            return self.classify(texts, batch_size=len(texts))

        def unbatch(self, output):
            return list(output)

        def encode_response(self, output):
            return [output]

    if __name__ == "__main__":  # LitServe spawns its workers, which import this file again
        server = ls.LitServer(
            Classifier(max_batch_size=32, batch_timeout=0.005), accelerator="cpu", workers_per_device=1
        )
        server.run(port=int(sys.argv[2]), generate_client_file=False)
    """
)

WRK_SCRIPT = textwrap.dedent(
    """
    local bodies = {}
    for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
    local i = 0
    request = function()
        i = i + 1
        return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, bodies[(i % #bodies) + 1])
    end
    """
)


def wrk(url: str, connections: int, seconds: int, script: Path, bodies: Path) -> dict:
    """wrk's requests/s, p50 and p99 (ms) and error count for one level."""
    done = subprocess.run(
        ["wrk", f"-c{connections}", f"-t{min(2, connections)}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env={"BODIES": str(bodies), "PATH": "/usr/bin:/bin"}, check=True,
    )  # fmt: skip
    out = done.stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50"), "p99": ms("99"),
            "errors": errors}  # fmt: skip


def offline_rate(run: Path, texts: list[str]) -> float:
    """Sentences per second of the run's predictor in one process, batches of 32 (what the server batches)."""
    import toolkit

    predictor = toolkit.load(run)
    predictor(texts[:64])
    started = time.perf_counter()
    predictor(texts[:1024])
    return 1024 / (time.perf_counter() - started)


def main() -> int:
    from toolkit.hardware import benchmark_header

    parser = argparse.ArgumentParser()
    parser.add_argument("--run")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("error: wrk is not installed: apt-get install wrk")
    print(benchmark_header(), flush=True)
    with open(TEXTS / "test.csv", newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:2000]
    levels = [int(n) for n in args.connections.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        run = Path(args.run) if args.run else scratch / "run"
        if not args.run:
            train(["recipes/configs/sentiment_minilm.yaml", f"output_dir={run}", "epochs=1", "data.max_train_rows=2000",
                   "trackers=[]", "max_train_minutes=null"])  # fmt: skip
        bodies = scratch / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"inputs": t}) + "\n" for t in texts))
        script = scratch / "post.lua"
        script.write_text(WRK_SCRIPT)
        (scratch / "litserve_app.py").write_text(LITSERVE_APP)
        from toolkit.hardware import torch_threads

        servers = {"toolkit serve": [sys.executable, "-m", "toolkit", "serve", str(run), "--port", "{port}"]}
        if not args.skip_peer:
            servers["LitServe + pipeline"] = [
                sys.executable, str(scratch / "litserve_app.py"), str(run / "best"), "{port}", str(torch_threads()),
            ]  # fmt: skip
        print(f"offline: the predictor classifies {offline_rate(run, texts):.0f} sentences/s", flush=True)
        for name, command in servers.items():
            port = free_port()
            command = [part.replace("{port}", str(port)) for part in command]
            server = start_server(command, port, time.time() + 300, path="/health")  # both servers have one
            try:
                url = f"http://127.0.0.1:{port}"
                time.sleep(2)
                wrk(url, 4, 3, script, bodies)  # warm-up
                for connections in levels:
                    found = wrk(url, connections, args.seconds, script, bodies)
                    print(f"{name}: {connections} connections: {found['rps']:.1f} req/s, p50 {found['p50']:.1f} ms, "
                          f"p99 {found['p99']:.1f} ms, {found['errors']} errors", flush=True)  # fmt: skip
            finally:
                server.terminate()
                server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
