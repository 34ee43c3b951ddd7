"""Where one training step's time goes, by kind of work, with torch's profiler: matrix products against everything
else (autocast's casts, layer norms, softmax, GELU, dropout, embeddings, the optimizer, data collation, Python).

It builds the task as `toolkit train` does (toolkit.plan), prepares it with the engine's own accelerator, loader and
optimizer (toolkit.engine.setup), runs --warmup steps, then profiles --steps more; data as in
benchmarks/train_limit.py (every row longer than the token limit: fixed shapes).

Usage: python benchmarks/train_profile.py [--task sentiment] [--steps 10] [--precision auto] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, go_offline
from train_limit import TASKS, fixed_shape_run

# aten operator name -> the kind of work it is (the first match wins); anything else is "other"
KINDS = [
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")),
    ("casts and copies", ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous")),
    ("layer norm", ("aten::native_layer_norm", "aten::native_layer_norm_backward", "aten::layer_norm")),
    ("softmax", ("aten::_softmax", "aten::_softmax_backward_data", "aten::softmax")),
    ("GELU", ("aten::gelu", "aten::gelu_backward")),
    ("dropout", ("aten::native_dropout", "aten::native_dropout_backward", "aten::bernoulli_", "aten::dropout")),
    ("embeddings", ("aten::embedding", "aten::embedding_backward", "aten::embedding_dense_backward")),
    ("optimizer", ("aten::_fused_adamw_", "Optimizer.step")),
    ("elementwise", ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::div", "aten::sub", "aten::where")),
]


def kind_of(name: str) -> str:
    for kind, names in KINDS:
        if name in names or name.startswith(tuple(n + "." for n in names)):
            return kind
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sentiment", choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = parser.parse_args()
    go_offline()
    sys.path.insert(0, str(ROOT))
    from torch.profiler import ProfilerActivity, profile

    from toolkit.engine import setup, train_mode
    from toolkit.hardware import benchmark_header
    from toolkit.plan import plan

    print(benchmark_header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="train-profile-") as work:
        config, overrides = fixed_shape_run(args.task, Path(work), args.precision)
        overrides += [f"output_dir={work}/run", *args.set]
        planned = plan(config, overrides)
        t = setup(planned, planned.build())
        train_mode(t)  # dropout on, as in training
        batches = iter(t.loader)

        def step():
            batch = next(batches)
            tic = time.perf_counter()
            t.train_step(t.model, batch, t.optimizers, t.accelerator)
            return time.perf_counter() - tic

        for _ in range(args.warmup):
            step()
        plain = sorted(step() for _ in range(args.steps))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
    seconds = collections.Counter()
    for event in prof.key_averages():
        seconds[kind_of(event.key)] += event.self_cpu_time_total / 1e6 / args.steps
    total = sum(seconds.values())
    print(
        f"task {args.task}, precision {planned.machine['precision']['chosen']}, {planned.machine['threads']} threads, "
        f"batch {planned.cfg.batch_size}; step {plain[len(plain) // 2] * 1000:.0f} ms (median of {args.steps}, "
        f"unprofiled); profiled self time per step {total * 1000:.0f} ms:"
    )
    for kind, value in seconds.most_common():
        print(f"  {kind:18s} {value * 1000:7.1f} ms  {value / total:5.1%}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


if __name__ == "__main__":
    main()
