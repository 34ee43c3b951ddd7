"""The engine's training step under two sets of overrides, A and B, timed in one process.

On a shared machine the processor's speed moves by up to 2x from one minute to the next (a 2048x2048 bf16 product
measured 391 to 793 GFLOP/s within a minute here), so separate runs cannot tell a 10% change. Both sides are built
as `toolkit train` builds them (toolkit.plan, toolkit.engine.setup), with the same data (as in
benchmarks/train_limit.py: every row longer than the token limit, every batch the same shape), and are timed in
alternating blocks of steps; each round compares the two medians.

Usage: python benchmarks/train_ab.py --a dropout_draws=torch --b dropout_draws=packed [--task sentiment]
       [--rounds 5] [--steps 6] [--precision auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, go_offline
from train_limit import TASKS, fixed_shape_run


def endless(loader):
    while True:
        yield from loader


def build(config: str, overrides: list[str], output_dir: Path):
    """A prepared Training and a function timing its next step."""
    from toolkit.engine import setup, train_mode
    from toolkit.plan import plan

    planned = plan(config, [*overrides, f"output_dir={output_dir}"])
    t = setup(planned, planned.build())
    train_mode(t)
    batches = endless(t.loader)

    def step() -> float:
        batch = next(batches)
        tic = time.perf_counter()
        t.train_step(t.model, batch, t.optimizers, t.accelerator)
        return time.perf_counter() - tic

    return t, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="*", default=[], metavar="KEY=VALUE", help="side A's overrides")
    parser.add_argument("--b", nargs="*", default=[], metavar="KEY=VALUE", help="side B's overrides")
    parser.add_argument("--task", default="sentiment", choices=list(TASKS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="steps per side in each round")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    go_offline()
    sys.path.insert(0, str(ROOT))
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="train-ab-") as work:
        config, shared = fixed_shape_run(args.task, Path(work), args.precision)
        choices = {"A": args.a, "B": args.b}
        sides = {name: build(config, [*shared, *extra], Path(work) / name) for name, extra in choices.items()}
        for _, step in sides.values():
            for _ in range(3):  # warm-up: the first steps pay for kernel selection
                step()
        rounds = []
        for number in range(args.rounds):
            medians = {name: statistics.median(step() for _ in range(args.steps)) for name, (_, step) in sides.items()}
            rounds.append(medians)
            print(
                f"round {number + 1}: A {medians['A'] * 1000:.0f} ms, B {medians['B'] * 1000:.0f} ms "
                f"(B/A {medians['B'] / medians['A']:.2f})",
                flush=True,
            )
    t = sides["A"][0]
    ratios = sorted(r["B"] / r["A"] for r in rounds)
    print(
        f"task {args.task}, precision {t.machine['precision']['chosen']}, batch {t.cfg.batch_size}; "
        f"A {' '.join(args.a) or '(shipped)'}: median step {statistics.median(r['A'] for r in rounds) * 1000:.0f} ms; "
        f"B {' '.join(args.b) or '(shipped)'}: {statistics.median(r['B'] for r in rounds) * 1000:.0f} ms; "
        f"B/A per round: median {statistics.median(ratios):.2f} (min {ratios[0]:.2f}, max {ratios[-1]:.2f})"
    )


if __name__ == "__main__":
    main()
