"""The JSON API under load, against a peer: wrk at 1, 16 and 64 connections posting one rt-polarity sentence per
request to `toolkit serve RUN`'s POST /predict, and to LitServe serving a stock transformers.pipeline on the same
best/ (dynamic batching up to 32, 5 ms wait, its fastest precision here: bf16 where the CPU computes it natively,
else fp32; --peer-precision overrides), one server
at a time, the same sentences. Prints the hardware, then requests/s, p50, p99 and errors per server and level, and
the predictor's own offline throughput for scale. --soak N then keeps wrk at the last level on `toolkit serve` for
N minutes, printing each minute's figures and the server's resident memory; --tasks ner,qa,image measures small runs
of those tasks' shipped configs the same way (CoNLL-2003 test sentences, SQuAD questions, one hymenoptera photo as
the raw body), with no peer; --export int8 serves each run from its ONNX export (int8 for the transformer tasks).

Needs Debian's wrk and pip's litserve. The run: --run RUN (a finished sentiment run), else one trained here on
2,000 rt-polarity rows (the shipped MiniLM config, 1 epoch). Usage:
python benchmarks/serve_rest.py [--run RUN] [--seconds 20] [--connections 1,16,64] [--skip-peer] [--waits 0,4]
    [--tasks ner,qa,image] [--soak 10]
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
from serve_load import IMAGES, ROOT, TEXTS, free_port, start_server, stop_server, train  # noqa: E402
from serve_soak import resident_mib  # noqa: E402

LITSERVE_APP = textwrap.dedent(
    """
    import sys
    import litserve as ls
    import torch
    from transformers import pipeline

    class Classifier(ls.LitAPI):
        def setup(self, device):
            torch.set_num_threads(int(sys.argv[3]))
            dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[sys.argv[4]]
            self.classify = pipeline(
                "text-classification", model=sys.argv[1], top_k=None, device="cpu", dtype=dtype
            )

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

# The other tasks' runs for --tasks: the shipped config on a slice of its data (speed, not accuracy, is measured),
# and what each request sends.
TASK_RUNS = {
    "ner": ["recipes/configs/ner_conll2003.yaml", "data.max_train_rows=500", "data.max_eval_rows=200", "epochs=1"],
    "qa": ["recipes/configs/qa_squad.yaml", "data.max_train_rows=300", "data.max_eval_rows=100", "epochs=1"],
    "image": ["recipes/configs/image_classification_hymenoptera.yaml", "epochs=1"],
}
SHARED = ROOT.parent / "shared" / "data"


def task_bodies(task: str, count: int = 500) -> list[str]:
    """JSON request bodies of real test inputs (an image request's body is the file, written by image_body)."""
    if task == "ner":
        rows = [json.loads(line) for line in (SHARED / "ner/conll2003/test.jsonl").open()][:count]
        return [json.dumps({"inputs": " ".join(row["tokens"])}) for row in rows]
    rows = [json.loads(line) for line in (SHARED / "qa/squad/validation.jsonl").open()][:count]
    return [json.dumps({"inputs": {"question": r["question"], "context": r["context"]}}) for r in rows]


WRK_IMAGE_SCRIPT = textwrap.dedent(
    """
    local fh = io.open(os.getenv("BODIES"), "rb")
    local body = fh:read("*a")
    fh:close()
    request = function()
        return wrk.format("POST", "/predict", {["Content-Type"] = "image/jpeg"}, body)
    end
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
        ["wrk", f"-c{connections}", f"-t{min(2, connections)}", f"-d{seconds}s", "--latency", "-s", str(script),
         "--timeout", "60s", url],  # the server's own bound (504 after 60 s), not wrk's 2 s
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


def measure(
    name: str, command: list[str], levels: list[int], seconds: int, script: Path, bodies: Path, soak_minutes: int = 0
) -> None:
    """Start one server, warm it up, print wrk's figures at each level; then, with ``soak_minutes``, wrk at the
    last level for that many minutes, a line per minute with the server's resident memory."""  # fmt: skip
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    server = start_server(command, port, time.time() + 300, path="/health")  # both servers have one
    try:
        url = f"http://127.0.0.1:{port}"
        time.sleep(2)
        wrk(url, 4, 3, script, bodies)  # warm-up
        for connections in levels:
            found = wrk(url, connections, seconds, script, bodies)
            print(f"{name}: {connections} connections: {found['rps']:.1f} req/s, p50 {found['p50']:.1f} ms, "
                  f"p99 {found['p99']:.1f} ms, {found['errors']} errors", flush=True)  # fmt: skip
        if soak_minutes:
            start = resident_mib(server.pid)
            print(f"soak: {levels[-1]} connections for {soak_minutes} min; resident memory {start:.0f} MiB", flush=True)
            for minute in range(1, soak_minutes + 1):
                found = wrk(url, levels[-1], 60, script, bodies)
                print(f"soak minute {minute}: {found['rps']:.1f} req/s, p99 {found['p99']:.1f} ms, "
                      f"{found['errors']} errors, resident {resident_mib(server.pid):.0f} MiB", flush=True)  # fmt: skip
    finally:
        stop_server(server)


def task_figures(
    task: str, scratch: Path, levels: list[int], seconds: int, serve_args: list[str], export: str = "none"
) -> None:
    """A small run of the task's shipped config, served and measured like the sentiment run (no peer); with
    ``export``, served from its ONNX export."""
    run = scratch / f"{task}_run"
    train([*TASK_RUNS[task], f"output_dir={run}", "trackers=[]", "max_train_minutes=null"])
    if export != "none":  # the run's fastest backend: int8 for the transformer tasks, fp32 for the image network
        quantize = ["--quantize", "int8"] if export == "int8" and task != "image" else []
        subprocess.run([sys.executable, "-m", "toolkit", "export", str(run), *quantize], check=True, cwd=ROOT)
    bodies, script = scratch / f"{task}.bodies", scratch / f"{task}.lua"
    if task == "image":
        photo = sorted((IMAGES / "val" / "bees").glob("*.jpg"))[0]
        bodies.write_bytes(photo.read_bytes())
        script.write_text(WRK_IMAGE_SCRIPT)
    else:
        bodies.write_text("".join(body + "\n" for body in task_bodies(task)))
        script.write_text(WRK_SCRIPT)
    command = [sys.executable, "-m", "toolkit", "serve", str(run), "--port", "{port}", *serve_args]
    measure(f"toolkit serve ({task}, export {export})", command, levels, seconds, script, bodies)


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
    parser.add_argument(
        "--waits", default="", help="toolkit serve once per --max-wait-ms value (e.g. 0,2,4,8), to choose the default"
    )
    parser.add_argument("--serve-args", default="", help="more `toolkit serve` flags, e.g. '--max-batch 16'")
    parser.add_argument("--tasks", default="", help="also ner, qa, image (comma-separated): toolkit serve alone")
    parser.add_argument("--soak", type=int, default=0, help="minutes at the last level after the sentiment figures")
    parser.add_argument("--export", choices=["none", "fp32", "int8"], default="none", help="serve an ONNX export")
    parser.add_argument("--peer-precision", choices=["auto", "fp32", "bf16"], default="auto")
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
        if args.export != "none":  # toolkit serve then answers with ONNX Runtime; the peer keeps the weights
            quantize = ["--quantize", "int8"] if args.export == "int8" else []
            subprocess.run([sys.executable, "-m", "toolkit", "export", str(run), *quantize], check=True, cwd=ROOT)
        bodies = scratch / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"inputs": t}) + "\n" for t in texts))
        script = scratch / "post.lua"
        script.write_text(WRK_SCRIPT)
        (scratch / "litserve_app.py").write_text(LITSERVE_APP)
        from toolkit.hardware import choose_precision, detect, torch_threads

        peer_precision = args.peer_precision
        if peer_precision == "auto":  # the peer's fastest: bf16 weights where the CPU computes bf16 natively
            peer_precision = "bf16" if choose_precision("auto", detect()).name == "bf16" else "fp32"

        ours = [sys.executable, "-m", "toolkit", "serve", str(run), "--port", "{port}", *args.serve_args.split()]
        servers = {"toolkit serve": ours}
        if args.waits:
            servers = {f"toolkit serve --max-wait-ms {w}": [*ours, "--max-wait-ms", w] for w in args.waits.split(",")}
        if not args.skip_peer:
            servers[f"LitServe + pipeline ({peer_precision})"] = [
                sys.executable, str(scratch / "litserve_app.py"), str(run / "best"), "{port}", str(torch_threads()),
                peer_precision,
            ]  # fmt: skip
        print(f"offline: the predictor classifies {offline_rate(run, texts):.0f} sentences/s", flush=True)
        for name, command in servers.items():
            soak = args.soak if name.startswith("toolkit serve") and name == next(iter(servers)) else 0
            measure(name, command, levels, args.seconds, script, bodies, soak)
        for task in filter(None, args.tasks.split(",")):
            task_figures(task, scratch, levels, args.seconds, args.serve_args.split(), args.export)
    return 0


if __name__ == "__main__":
    sys.exit(main())
