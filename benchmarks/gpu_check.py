"""On a CUDA machine: a few hundred steps of every task's shipped config in bf16 through `toolkit train`, the
sentiment job against transformers.Trainer, and the FSDP preset on one GPU. Prints one table; exits non-zero when
any check fails.

Usage: python benchmarks/gpu_check.py [--data ../shared/data] [--only text|images] [--check NAME] [--steps 300]
                                      [--out DIR]
(benchmarks/gpu_check.sh runs it on a machine lent by the device tool, with the assets of gpu_carry.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checks(data: Path, steps: int) -> list[dict]:
    """Each check: a name, its group, and the `toolkit train` arguments (config, then overrides)."""
    rt = data / "sentiment/rt-polarity"
    m30k = data / "translation/multi30k"
    tldr = data / "summarization/scitldr"
    images = data / "images"
    common = ["precision=bf16", f"max_steps={steps}", f"eval_every={steps}", "trackers=[]"]
    return [
        {
            "name": "sentiment (MiniLM)",
            "group": "text",
            "args": [
                "recipes/configs/sentiment_minilm.yaml",
                f"data.train={rt}/train.csv",
                f"data.validation={rt}/validation.csv",
                f"data.test={rt}/test.csv",
                *common,
            ],
        },
        {
            "name": "translation en-de (MiniLM warm start)",
            "group": "text",
            "args": [
                "recipes/configs/translation_multi30k_en_de.yaml",
                f"data.train={m30k}/train.jsonl",
                f"data.validation={m30k}/validation.jsonl",
                f"data.test={m30k}/test.jsonl",
                "data.max_eval_rows=300",
                *common,
            ],
        },
        {
            "name": "summarization (extractive MiniLM)",
            "group": "text",
            "args": [
                "recipes/configs/summarization_scitldr.yaml",
                f"data.train={tldr}/train.jsonl",
                f"data.validation={tldr}/validation.jsonl",
                f"data.test={tldr}/test.jsonl",
                *common,
            ],
        },
        {
            "name": "NER (MiniLM, CoNLL-2003)",
            "group": "text",
            "args": [
                "recipes/configs/ner_conll2003.yaml",
                f"data.train={data}/ner/conll2003/train.jsonl",
                f"data.validation={data}/ner/conll2003/validation.jsonl",
                f"data.test={data}/ner/conll2003/test.jsonl",
                *common,
            ],
        },
        {
            "name": "question answering (MiniLM, SQuAD)",
            "group": "text",
            "args": [
                "recipes/configs/qa_squad.yaml",
                f"data.train={data}/qa/squad/train.jsonl",
                f"data.validation={data}/qa/squad/validation.jsonl",
                *common,
            ],
        },
        {
            "name": "FSDP preset, 1 GPU: sentiment",
            "group": "text",
            "launch": ["--config_file", "recipes/accelerate/fsdp.yaml", "--num_processes", "1"],
            "args": [
                "recipes/configs/sentiment_minilm.yaml",
                f"data.train={rt}/train.csv",
                f"data.validation={rt}/validation.csv",
                *common,
            ],
        },
        {
            "name": "image classification (EfficientNet-Lite0)",
            "group": "images",
            "args": [
                "recipes/configs/image_classification_hymenoptera.yaml",
                f"data.train={images}/hymenoptera/train",
                f"data.validation={images}/hymenoptera/val",
                *common,
            ],
        },
        {
            "name": "seed CNN (MNIST)",
            "group": "images",
            "args": [
                "recipes/configs/seed_cnn_mnist.yaml",
                f"data.train={images}/mnist-test[:8000]",
                f"data.test={images}/mnist-test[8000:]",
                *common,
            ],
        },
        {
            "name": "GAN (conditional DCGAN, MNIST)",
            "group": "images",
            "args": ["recipes/configs/gan_mnist.yaml", f"data.train={images}/mnist-test[:8000]", *common],
        },
    ]


def run_check(check: dict, out: Path) -> dict:
    run_dir = out / check["name"].split(" ")[0].replace(",", "")
    if "launch" in check:
        run_dir = out / "fsdp"
        command = [sys.executable, "-m", "accelerate.commands.launch", *check["launch"], "-m", "toolkit", "train"]
    else:
        command = [sys.executable, "-m", "toolkit", "train"]
    command += [*check["args"], f"output_dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    row = {"check": check["name"], "whole_s": round(seconds, 1), "ok": proc.returncode == 0}
    if not row["ok"]:
        row["error"] = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        (out / f"{run_dir.name}.log").write_text(proc.stdout + proc.stderr)
        return row
    results = json.loads((run_dir / "results.json").read_text())
    row.update(
        steps=results.get("steps"),
        train_s=results.get("train_seconds"),
        samples_per_s=results.get("train_samples_per_second"),
    )
    scores = results.get("test") or results.get("validation") or {}
    metric = results.get("metric")
    if isinstance(scores.get(metric), (int, float)):
        row["metric"] = f"{'test' if results.get('test') else 'validation'} {metric} {scores[metric]:.3f}"
    return row


def trainer_comparison(data: Path, out: Path) -> dict:
    """benchmarks/sentiment_vs_trainer.py (2,000 rt-polarity rows, 1 epoch, batch 32, bf16) on this GPU."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "benchmarks/sentiment_vs_trainer.py", "--skip-padded"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TOOLKIT_SHARED_DATA": str(data)},
    )
    row = {
        "check": "sentiment: toolkit vs Trainer (bf16)",
        "whole_s": round(time.perf_counter() - start, 1),
        "ok": proc.returncode == 0,
    }
    (out / "trainer.log").write_text(proc.stdout + proc.stderr)
    if not row["ok"]:
        row["error"] = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        return row
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, theirs = results["toolkit recipe (bf16, length-grouped)"], results["Trainer bf16, dynamic padding"]
    row.update(
        samples_per_s=ours["samples_per_s"],
        train_s=ours["seconds"],
        metric=f"{ours['samples_per_s'] / theirs['samples_per_s']:.2f}x Trainer's samples/s; test acc "
        f"{ours['test_accuracy']:.3f} vs {theirs['test_accuracy']:.3f}",
    )
    return row


def gpu_name() -> str:
    import torch

    if not torch.cuda.is_available():
        return ""
    return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}"


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--only", choices=["text", "images"])
    parser.add_argument("--check", default="", help="run only the checks whose name holds this text")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--allow-cpu", action="store_true", help="try the checks' plumbing on a CPU (a few steps)")
    args = parser.parse_args()
    device = gpu_name() or ("CPU (--allow-cpu)" if args.allow_cpu else "")
    if not device:
        print("error: no CUDA device: this check is for a GPU machine.", file=sys.stderr)
        return 2
    print(device, flush=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for check in checks(args.data.resolve(), args.steps):
        if args.only in (None, check["group"]) and args.check.lower() in check["name"].lower():
            rows.append(run_check(check, out))
            print(json.dumps(rows[-1]), flush=True)
    if args.only in (None, "text") and args.check.lower() in "sentiment: toolkit vs trainer":
        rows.append(trainer_comparison(args.data.resolve(), out))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'check':42} {'status':6} {'steps':>5} {'whole s':>8} {'train s':>8} {'samples/s':>9}  result")
    for r in rows:
        print(
            f"{r['check']:42} {'ok' if r['ok'] else 'FAILED':6} {r.get('steps') or '':>5} {r['whole_s']:8.1f} "
            f"{r.get('train_s') or '':>8} {round(r['samples_per_s'], 1) if r.get('samples_per_s') else '':>9}  "
            f"{r.get('metric', '') if r['ok'] else r['error']}"
        )
    (out / "gpu_check.json").write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    return 0 if rows and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
