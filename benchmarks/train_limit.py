"""How close `toolkit train` comes to this machine's matrix-multiply limit, per task: the model FLOP/s of training
(forward and backward, counted by torch's FlopCounterMode on one of the run's own batches) against the GEMM rate of
a dense 2048x2048 product in the precision the run chose, with the threads it used.

Every training row is made longer than the run's token limit, so that each one is cut to exactly that many tokens
and every batch has the same shape: the FLOPs of one batch are the FLOPs of all. The rate is over the training
clock (results.json's train_seconds: evaluation and start-up excluded); the whole process is timed beside it.

Usage: python benchmarks/train_limit.py [--tasks sentiment ner qa translation] [--steps 40] [--precision auto]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

from common import ROOT, SHARED, go_offline, whole_process

# task: (shipped config, overrides; the batch and token limit are each config's own unless set here)
TASKS = {
    "sentiment": ("recipes/configs/sentiment_minilm.yaml", ["batch_size=32", "max_length=48"]),
    "ner": ("recipes/configs/ner_conll2003.yaml", []),
    "qa": ("recipes/configs/qa_squad.yaml", []),
    "translation": ("recipes/configs/translation_multi30k_en_de.yaml", []),
}
ROWS = 2000


def read_jsonl(path: Path, limit: int) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(limit), fh)]


def long_rows(rows: list, join, size: int) -> list:
    """Consecutive rows joined in groups of ``size``: each longer than any token limit used here."""
    return [join(rows[i : i + size]) for i in range(0, len(rows) - size + 1, size)]


def write_data(task: str, folder: Path) -> dict:
    """The training file of ``task`` with rows longer than its limit; returns its data.* overrides."""
    if task == "sentiment":
        with open(SHARED / "sentiment/rt-polarity/train.csv", encoding="utf-8") as fh:
            source = list(csv.DictReader(fh))[: ROWS * 4]
        rows = long_rows(source, lambda g: {"text": " ".join(r["text"] for r in g), "label": g[0]["label"]}, 4)
        path = folder / "train.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, ["text", "label"])
            writer.writeheader()
            writer.writerows(rows)
        return {"data.train": path}
    if task == "ner":
        source = read_jsonl(SHARED / "ner/conll2003/train.jsonl", ROWS * 30)
        join = lambda g: {"tokens": sum((r["tokens"] for r in g), []), "ner_tags": sum((r["ner_tags"] for r in g), [])}  # noqa: E731
        rows = long_rows(source, join, 30)
    elif task == "qa":
        rows = [r for r in read_jsonl(SHARED / "qa/squad/train.jsonl", ROWS * 10) if len(r["context"].split()) > 320]
        rows = rows[:ROWS]
    else:
        source = read_jsonl(SHARED / "translation/multi30k/train.jsonl", ROWS * 6)
        rows = long_rows(source, lambda g: {k: " ".join(r[k] for r in g) for k in ("en", "de", "fr")}, 6)
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"data.train": path}


def flops_per_sample(config: str, overrides: list[str], output_dir: Path) -> tuple[float, dict]:
    """Forward and backward FLOPs of one training example, counted on one of the run's batches; and its shape."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from toolkit.batching import without_length
    from toolkit.plan import plan

    planned = plan(config, [*overrides, f"output_dir={output_dir}"])
    task = planned.build()
    size = planned.cfg.batch_size
    batch = without_length(task.collate)([task.train_set[i] for i in range(size)])
    model = task.model.train()
    with FlopCounterMode(display=False) as counter:
        task.compute_loss(model, batch).backward()
    shapes = {k: list(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    return counter.get_total_flops() / size, shapes


GEMM = """
import sys, time, torch
precision, threads, n = sys.argv[1], int(sys.argv[2]), 2048
torch.set_num_threads(threads)
dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
for _ in range(3):
    a @ b
best = float("inf")
for _ in range(20):
    tic = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - tic)
print(2 * n**3 / best / 1e9)
"""


def gemm_limit(precision: str, threads: int) -> float:
    """GFLOP/s of a dense 2048 x 2048 product in ``precision`` with ``threads`` torch threads, the best of 20, in a
    process of its own (nothing else of this one's running beside it)."""
    _, out = whole_process([sys.executable, "-c", GEMM, precision, str(threads)])
    return float(out.strip().splitlines()[-1])


def fixed_shape_run(task: str, folder: Path, precision: str) -> tuple[str, list[str]]:
    """``task``'s shipped config and the overrides that train it on fixed-shape data written to ``folder``, in
    ``precision`` (auto, fp32 or bf16), without validation or test; shared by the training benchmarks."""
    config, own = TASKS[task]
    data = write_data(task, folder)
    overrides = [*own, *(f"{k}={v}" for k, v in data.items()), "data.validation=null", "data.test=null"]
    return config, [*overrides, f"precision={'no' if precision == 'fp32' else precision}"]  # fp32 is "no" there


def measure(task: str, steps: int, precision: str, work: Path) -> dict:
    folder = work / task
    folder.mkdir(parents=True)
    config, overrides = fixed_shape_run(task, folder, precision)
    overrides += [f"max_steps={steps}", "eval_every=1000000", "max_train_minutes=null"]
    run_dir = folder / "run"
    seconds, _ = whole_process([sys.executable, "-m", "toolkit", "train", config, *overrides, f"output_dir={run_dir}"])
    results = json.loads((run_dir / "results.json").read_text())
    per_sample, shapes = flops_per_sample(config, overrides, folder / "count")
    chosen, threads = results["precision"]["chosen"], results["threads"]
    # The processor's speed moves by up to 2x within minutes on a shared machine: the limit is the best of three
    # measurements (each the best of 20 products), so that the share is not flattered by a slow moment.
    limit = max(gemm_limit(chosen, threads) for _ in range(3))
    rate = per_sample * results["train_samples"] / results["train_seconds"] / 1e9
    return {
        "task": task,
        "precision": chosen,
        "threads": threads,
        "batch": shapes,
        "GFLOP per sample": round(per_sample / 1e9, 3),
        "samples/s": round(results["train_samples"] / results["train_seconds"], 2),
        "model GFLOP/s": round(rate, 1),
        "GEMM limit GFLOP/s": round(limit, 1),
        "share of limit": f"{rate / limit:.0%}",
        "train seconds": results["train_seconds"],
        "whole process seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=40, help="training steps per task (default 40)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    go_offline()
    sys.path.insert(0, str(ROOT))
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="train-limit-") as work:
        for task in args.tasks:
            print(json.dumps(measure(task, args.steps, args.precision, Path(work))), flush=True)


if __name__ == "__main__":
    main()
