"""Prediction speed: toolkit's predictors (torch, ONNX fp32, ONNX int8) against a stock transformers pipeline on
the same best/ folder.

Trains the sentiment run once (packaged MiniLM, 2,000 rt-polarity rows, 1 epoch, as sentiment_vs_trainer.py), then:
  1. whole process, one sentence: a stock `pipeline` script vs `toolkit predict RUN TEXT` (median of --repeats);
  2. `toolkit.load` on a warm machine (the second load in one process);
  3. throughput on the 1,066 rt-polarity test sentences in one process, with accuracy and the largest score
     difference from the pipeline's.
Usage: python benchmarks/predict_speed.py [--run RUN] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TOOLKIT_SHARED_DATA") or ROOT.parent / "shared" / "data")
DATA = SHARED / "sentiment" / "rt-polarity"
TEXT = "a gripping, beautifully acted film"
PIPELINE_SCRIPT = """import sys
from transformers import pipeline
classify = pipeline("text-classification", model=sys.argv[1], top_k=None)
print(classify(sys.argv[2]))"""


def train(out: Path, name: str = "run", **overrides) -> Path:
    """The benchmark's sentiment run in ``out/name``; ``overrides``: other config values (e.g. precision)."""
    import pandas as pd

    import toolkit

    rows = pd.read_csv(DATA / "train.csv").sample(n=2000, random_state=0)
    rows.to_csv(out / "train.csv", index=False)
    run = toolkit.train(
        {
            "task": "sentiment",
            "data": {"train": str(out / "train.csv"), "validation": str(DATA / "validation.csv")},
            "epochs": 1,
            "batch_size": 32,
            "lr": 5e-5,
            "max_length": 128,
            "seed": 42,
            "precision": "auto",
            "output_dir": str(out / name),
            "trackers": [],
            **overrides,
        }
    )
    return run.dir


def whole_process(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def throughput(predict, texts: list[str]) -> tuple[float, list[dict]]:
    predict(texts[:64])  # warm-up
    tic = time.perf_counter()
    answers = predict(texts)
    return len(texts) / (time.perf_counter() - tic), answers


def export(run: Path, quantize: bool) -> None:
    command = [sys.executable, "-m", "toolkit", "export", str(run)] + (["--quantize", "int8"] if quantize else [])
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="a finished sentiment run (default: train one on rt-polarity)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"rt-polarity not found at {DATA}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    import pandas as pd
    from transformers import pipeline

    import toolkit

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else train(Path(tmp))
        best = run / "best"
        assert not (best / "onnx").exists(), "start from a run without an export"
        test = pd.read_csv(DATA / "test.csv")
        texts, gold = list(test["text"]), list(test["label"].astype(str))
        toolkit_cli = [sys.executable, "-m", "toolkit", "predict", str(run), TEXT]
        rows = {}

        def measure(name: str, command: list[str], backend: str) -> None:
            seconds = whole_process(command, args.repeats)
            toolkit.load(run, backend=backend)
            tic = time.perf_counter()
            predictor = toolkit.load(run, backend=backend)
            load_s = time.perf_counter() - tic
            speed, answers = throughput(predictor, texts)
            rows[name] = {
                "one_sentence_s": seconds,
                "warm_load_s": load_s,
                "sentences_per_s": speed,
                "answers": answers,
            }

        stock = pipeline("text-classification", model=str(best), top_k=None)
        seconds = whole_process([sys.executable, "-c", PIPELINE_SCRIPT, str(best), TEXT], args.repeats)
        speed, raw = throughput(lambda batch: stock(batch, batch_size=32), texts)
        answers = [
            {"label": max(r, key=lambda s: s["score"])["label"], "scores": {s["label"]: s["score"] for s in r}}
            for r in raw
        ]
        rows["stock pipeline (batch_size=32)"] = {
            "one_sentence_s": seconds,
            "warm_load_s": None,
            "sentences_per_s": speed,
            "answers": answers,
        }
        measure("toolkit, torch", toolkit_cli + ["--backend", "torch"], "torch")
        export(run, quantize=False)
        measure("toolkit, ONNX fp32 (toolkit export)", toolkit_cli, "onnx")
        export(run, quantize=True)
        measure("toolkit, ONNX int8 (--quantize int8)", toolkit_cli, "onnx")

    reference = rows["stock pipeline (batch_size=32)"]
    print(
        f"\n{'predictor':40} {'1 sentence, whole process':>26} {'warm load':>10} {'sentences/s':>12} "
        f"{'x pipeline':>11} {'test acc':>9} {'max |score diff|':>17}"
    )
    summary = {}
    for name, r in rows.items():
        accuracy = sum(a["label"] == g for a, g in zip(r["answers"], gold)) / len(gold)
        diff = max(
            abs(a["scores"][k] - b["scores"][k])
            for a, b in zip(r["answers"], reference["answers"])
            for k in a["scores"]
        )
        load = f"{r['warm_load_s']:.2f} s" if r["warm_load_s"] is not None else "-"
        print(
            f"{name:40} {r['one_sentence_s']:24.2f} s {load:>10} {r['sentences_per_s']:12.1f} "
            f"{r['sentences_per_s'] / reference['sentences_per_s']:10.2f}x {accuracy:9.4f} {diff:17.2e}"
        )
        summary[name] = {
            "one_sentence_s": round(r["one_sentence_s"], 2),
            "warm_load_s": r["warm_load_s"],
            "sentences_per_s": round(r["sentences_per_s"], 1),
            "accuracy": accuracy,
            "max_score_diff": diff,
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
