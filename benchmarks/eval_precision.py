"""Evaluation precision: speed and accuracy of evaluating in fp32 and in bf16 on this machine, and whether a run's
recorded metrics are what `toolkit eval` gives.

Trains the sentiment run of predict_speed.py twice (packaged MiniLM, 2,000 rt-polarity rows, 1 epoch): once with
`precision: auto` (the machine's choice), once with precision and eval_precision forced to bf16. Then, for each
run, `toolkit eval RUN --data validation.csv --backend torch --precision P` as a whole process for P in fp32 and
bf16 (median of --repeats), its accuracy, and the run's own evaluation time (results.json timings.evaluations).
Usage: python benchmarks/eval_precision.py [--out DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from predict_speed import DATA, ROOT, train


def timed_eval(run: Path, precision: str, repeats: int) -> tuple[float, dict]:
    command = [sys.executable, "-m", "toolkit.cli", "eval", str(run), "--data", str(DATA / "validation.csv")]
    command += ["--backend", "torch", "--precision", precision]
    times, metrics = [], {}
    for _ in range(repeats):
        tic = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - tic)
        metrics = json.loads(done.stdout.splitlines()[-1])
    return statistics.median(times), metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from toolkit.hardware import benchmark_header

    print(benchmark_header())
    out = Path(args.out or tempfile.mkdtemp(prefix="eval_precision_"))
    out.mkdir(parents=True, exist_ok=True)
    print("| run | its own evaluation | recorded accuracy | `toolkit eval` fp32 | `toolkit eval` bf16 | same |")
    print("|---|---|---|---|---|---|")
    for precision in ("auto", "bf16"):
        forced = {} if precision == "auto" else {"precision": precision, "eval_precision": precision}
        run = train(out, f"run_{precision}", overwrite=True, **forced)
        results = json.loads((run / "results.json").read_text())
        recorded, used = results["validation"]["accuracy"], results["eval_precision"]["chosen"]
        scored = {p: timed_eval(run, p, args.repeats) for p in ("fp32", "bf16")}
        cells = [f"{seconds:.1f} s, acc {metrics['accuracy']:.4f}" for seconds, metrics in scored.values()]
        print(
            f"| trained {results['precision']['chosen']}, evaluated {used} "
            f"| {results['timings']['evaluations']:.1f} s | {recorded:.4f} | {cells[0]} | {cells[1]} "
            f"| {scored[used][1]['accuracy'] == recorded} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
