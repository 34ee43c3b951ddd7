"""Input bounds, measured as users meet them: how long one request at each task's bound takes, how fast one over it
is refused, and whether a served app's resident memory comes back after large inputs.

- Question answering (the shipped qa_squad config: MiniLM, 384-token windows, a few training steps; the answers'
  quality does not matter here): a 20,000-character passage (the bound) answered, and a 1 MB one refused, by the
  predictor in this process.
- Sentiment (the shipped sentiment_minilm config, a few steps): a real `toolkit serve` process; its resident memory
  before, after 20 requests at the bound (100,000 characters each), after 5 requests of 5 MB (refused), and once
  its periodic malloc trim (30 s) has run.
Prints the hardware first. Usage: python benchmarks/input_bounds.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import go_offline  # noqa: E402
from serve_load import serve, train  # noqa: E402
from serve_soak import resident_mib  # noqa: E402

go_offline()
ROOT = Path(__file__).resolve().parents[1]
FILLER = "The committee met again and discussed the budget for the coming year. "


def measure_qa(out: Path) -> None:
    import toolkit
    from toolkit.errors import ToolkitError

    run = out / "qa"
    train(["recipes/configs/qa_squad.yaml", "max_steps=3", f"output_dir={run}", "trackers=[]"])
    answerer = toolkit.load(run, backend="torch")
    answerer({"question": "warm up?", "context": FILLER})
    question, fact = "Which city hosted the final?", "The final was hosted by Lisbon. "
    for chars in (4_000, answerer.bounds.max_chars):
        context = FILLER * ((chars - len(fact) - len(question)) // len(FILLER)) + fact
        started = time.perf_counter()
        answerer({"question": question, "context": context})
        took = time.perf_counter() - started
        print(f"qa: a {len(question) + len(context):,}-character request answered in {took:.2f} s")
    huge = {"question": question, "context": FILLER * 15_000}
    started = time.perf_counter()
    try:
        answerer(huge)
    except ToolkitError as err:
        took = time.perf_counter() - started
        print(f"qa: a {len(huge['context']):,}-character request refused in {took:.4f} s: {err}")


def measure_server_memory(out: Path) -> None:
    from gradio_client import Client

    run = out / "sentiment"
    train(["recipes/configs/sentiment_minilm.yaml", "max_steps=3", f"output_dir={run}", "trackers=[]"])
    server, url = serve(run, "torch", time.time() + 300)
    try:
        client = Client(url, verbose=False)
        client.predict("a warm-up sentence", api_name="/classify")
        print(f"serve: resident {resident_mib(server.pid):.0f} MiB after one request")
        at_bound = "a wonderful film " * 5_882  # 99,994 characters
        started = time.perf_counter()
        for _ in range(20):
            client.predict(at_bound, api_name="/classify")
        took = (time.perf_counter() - started) / 20
        print(f"serve: resident {resident_mib(server.pid):.0f} MiB after 20 requests of 100,000 characters "
              f"({took:.2f} s each)")  # fmt: skip
        huge = "a wonderful film " * 300_000  # 5.1 MB
        started = time.perf_counter()
        for _ in range(5):
            client.predict(huge, api_name="/classify")
        took = (time.perf_counter() - started) / 5
        print(f"serve: resident {resident_mib(server.pid):.0f} MiB after 5 requests of 5 MB, refused "
              f"({took:.2f} s each)")  # fmt: skip
        time.sleep(35)
        print(f"serve: resident {resident_mib(server.pid):.0f} MiB 35 s later (after a malloc trim)")
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> int:
    from toolkit.hardware import benchmark_header

    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", help="a folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    print(benchmark_header(), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.keep or scratch)
        measure_qa(out)
        measure_server_memory(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
