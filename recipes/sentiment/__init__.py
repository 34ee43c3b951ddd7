"""Sentiment / text classification: any number of string or integer labels, full fine-tune or LoRA."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from toolkit import checks
from toolkit.config import DataConfig, DataRole, TextConfig, section, setting
from toolkit.data import (
    EVAL_FIX,
    LENGTH,
    by_length,
    drop_empty_text,
    drop_missing_labels,
    encode,
    first_rows,
    is_streaming,
    lengths,
    load_splits,
    load_table,
    require_columns,
)
from toolkit.errors import ToolkitError
from toolkit.metrics import calibration, classification_metrics, error_report
from toolkit.models import (
    apply_lora,
    load_text_classifier,
    load_tokenizer,
    lora_merge_finalizer,
    save_model,
    tokenizer_fingerprint,
    without_gradients,
)
from toolkit.shapes import label_options, ranked, texts_of, top_k_of
from toolkit.splits import check_labels, encode_labels, label_key, label_names, table_label_names, unique_values
from toolkit.tasks import ServeShape, TaskSpec, register
from toolkit.timing import phase

from .predictors import OnnxTextClassifier, TextClassifier, export_text_classifier  # noqa: F401  (ONNX: by name)

if TYPE_CHECKING:
    from toolkit.engine import Task

# Heavy libraries (torch, transformers, pandas) are imported where they are used: declaring the task, reading a
# run's config and the ONNX predictor never load them.


@dataclass
class TextClassificationData(DataConfig):
    """The text and label columns of a text classification table."""

    text_column: str = setting(
        "text",
        "the text to classify",
        role=DataRole("text", "text", ("text", "sentence", "review", "content", "body", "comment", "document")),
    )
    label_column: str = setting(
        "label",
        "its label: strings or integers, any number of them",
        role=DataRole("label", "label", ("label", "labels", "sentiment", "class", "category", "target", "polarity")),
    )
    missing_labels: Literal["skip", "error"] = setting(
        "skip",
        "rows with an empty, `NaN` or `null` label: `skip` (counted in the log; they never become a class) or `error`",
    )


@dataclass
class TextClassificationConfig(TextConfig):
    """Text classification: a pretrained encoder with a new classification head."""

    data: TextClassificationData = section(TextClassificationData)


LABELS_FILE = "labels.json"


def tokenize_batch(tokenizer, cfg: TextClassificationConfig, names: list[str]):
    """A batch of rows -> token ids, label ids and lengths (a ``datasets`` batched map function)."""
    index = {name: i for i, name in enumerate(names)}
    text, label = cfg.data.text_column, cfg.data.label_column

    def tokenize(batch: dict) -> dict:
        encoded = dict(tokenizer(batch[text], truncation=True, max_length=cfg.max_length))
        try:
            encoded["labels"] = [index[label_key(v)] for v in batch[label]]
        except KeyError as err:  # only a stream gets here: a table's labels are checked before
            raise ToolkitError(
                f"data.train has the label {err.args[0]!r}, not among the classes of the stream's first rows and of "
                f"the validation data ({', '.join(names)}). Give a data.validation with every class."
            ) from None
        encoded[LENGTH] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    return tokenize


def build_task(cfg: TextClassificationConfig) -> Task:
    from transformers import DataCollatorWithPadding

    from toolkit.engine import Task

    with phase("data"):
        text, label = cfg.data.text_column, cfg.data.label_column
        splits = load_splits(cfg, [text, label], [text], label, cfg.data.missing_labels)
        names = table_label_names(splits["train"], label)
        if is_streaming(splits["train"]) and "validation" in splits:  # a stream's first rows may lack a class
            names = label_names({*names, *(label_key(v) for v in unique_values(splits["validation"], label))})
        if len(names) < 2:
            raise ToolkitError(
                f"data.train has a single label ({names[0]}): a classifier needs at least two. Check data.label_column."
            )
        for split, table in splits.items():
            check_labels(table, label, names, f"data.{split}")
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        checks.run_checks(cfg, splits, lambda cfg, splits: check_data(cfg, splits, tokenizer))
        key = {
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "max_length": cfg.max_length,
            "text": text,
            "label": label,
            "labels": names,
        }
        tokenize = tokenize_batch(tokenizer, cfg, names)
        features = {s: encode(t, tokenize, key, f"data.{s}") for s, t in splits.items()}
    with phase("model"):
        model = load_text_classifier(cfg.model, names, cfg.trust_remote_code, cfg.attn_implementation)
    if cfg.peft.enabled:
        model = apply_lora(model, cfg.peft, task_type="SEQ_CLS")

    def save(unwrapped, folder: Path, state_dict=None, merge_lora: bool = False) -> None:
        save_model(unwrapped, tokenizer, folder, state_dict, merge_lora)
        (folder / LABELS_FILE).write_text(json.dumps(names))

    return Task(
        model=model,
        train_set=features["train"],
        eval_set=by_length(features.get("validation")),
        test_set=by_length(features.get("test")),
        collate=DataCollatorWithPadding(tokenizer),
        compute_loss=lambda model, batch: model(**batch).loss,
        evaluate=lambda model, loader, accelerator: evaluate(model, loader, accelerator, names),
        save=save,
        train_lengths=lengths(features["train"]),
        info={"labels": names, "examples": first_rows(splits.get("validation", splits["train"]), text)},
        finalize=lora_merge_finalizer(cfg, save),
    )


def check_data(cfg: TextClassificationConfig, splits: dict | None = None, tokenizer=None) -> list:
    """Duplicates and conflicting labels, leakage, labels in one split only, class imbalance, truncation and very
    short texts (``toolkit check``; ``toolkit train`` runs it on the splits it loaded)."""
    text, label = cfg.data.text_column, cfg.data.label_column
    if splits is None:
        splits = load_splits(cfg, [text, label], [text], label, cfg.data.missing_labels)
    tokenizer = tokenizer or load_tokenizer(cfg.model, cfg.trust_remote_code)

    def texts(table) -> list[str]:
        return [str(v) for v in table[text]]

    def label_counts(table):
        return Counter(label_key(v) for v in table[label])

    return [
        *checks.duplicates(splits, lambda row: str(row[text]), lambda row: label_key(row[label])),
        *checks.leakage(splits, lambda row: str(row[text]), "texts"),
        *checks.label_coverage(splits, label_counts, "rows"),
        *checks.imbalance(label_counts(splits["train"])),
        *checks.truncation(splits, texts, tokenizer, cfg.max_length, "texts"),
        *checks.short(splits, texts, "texts"),
    ]


@without_gradients
def evaluate(model, loader, accelerator, names: list[str]) -> dict:
    """Loss and classification metrics over ``loader``, gathered from every process."""
    import torch

    confidences, predictions, labels, losses = [], [], [], []
    for batch in loader:
        out = model(**batch)
        confidence, preds = out.logits.float().softmax(-1).max(-1)
        confidence, preds, gold = accelerator.gather_for_metrics((confidence, preds, batch["labels"]))
        loss = accelerator.gather_for_metrics(out.loss.detach().float().repeat(len(batch["labels"])))
        confidences.append(confidence.cpu())
        predictions.append(preds.cpu())
        labels.append(gold.cpu())
        losses.append(loss.cpu())
    gold, predicted = torch.cat(labels).numpy(), torch.cat(predictions).numpy()
    metrics = classification_metrics(gold, predicted, names)
    ece = calibration(torch.cat(confidences).numpy(), predicted == gold)["ece"]
    return {"loss": float(torch.cat(losses).mean()), **metrics, "ece": ece}


def evaluate_run(predictor, cfg: TextClassificationConfig, source: str, split: str) -> dict:
    """Score a finished run's predictor on a data file with the run's own columns and labels."""
    table = load_table(source, split)
    where = f"'{source}'"
    require_columns(table, [cfg.data.text_column, cfg.data.label_column], where, EVAL_FIX)
    table = drop_empty_text(table, [cfg.data.text_column], where)
    table = drop_missing_labels(table, cfg.data.label_column, where, cfg.data.missing_labels)
    gold = encode_labels(list(table[cfg.data.label_column]), predictor.labels, where)
    texts = list(table[cfg.data.text_column])
    answers = predictor(texts)
    index = {name: i for i, name in enumerate(predictor.labels)}
    metrics = classification_metrics(np.array(gold), np.array([index[a["label"]] for a in answers]), predictor.labels)
    probs = np.array([[a["scores"].get(name, 0.0) for name in predictor.labels] for a in answers])
    report = error_report(np.array(gold), probs, predictor.labels, texts)
    return {**metrics, "ece": report["calibration"]["ece"], "errors": report}


def label_rows(cfg: TextClassificationConfig):
    """data.train's rows as `toolkit label-issues` ranks them (rows without text or label are left out)."""
    from toolkit.label_issues import ROW_COLUMN, LabelRows, numbered

    text, label = cfg.data.text_column, cfg.data.label_column
    if not cfg.data.train:
        raise ToolkitError("no training data: set data.train=FILE, the file whose labels to check.")
    where = f"data.train ('{cfg.data.train}')"
    table = numbered(load_table(cfg.data.train, "train"))
    require_columns(table, [text, label], where, EVAL_FIX)
    table = drop_missing_labels(drop_empty_text(table, [text], where), label, where, "skip")
    names = table_label_names(table, label)
    index = {name: i for i, name in enumerate(names)}
    return LabelRows(
        table=table,
        labels=[index[label_key(v)] for v in table[label]],
        names=names,
        shown=[str(v) for v in table[text]],
        numbers=list(table[ROW_COLUMN]),
    )


def label_probabilities(predictor, rows, indices, names: list[str]):
    from toolkit.label_issues import in_order

    return in_order(predictor.probabilities([rows.shown[i] for i in indices]), predictor.labels, names)


def frozen_features(cfg: TextClassificationConfig, rows):
    from toolkit.models import sentence_embeddings

    return sentence_embeddings(cfg.model, rows.shown, cfg.max_length, cfg.trust_remote_code)


def label_issue_spec():
    from toolkit.label_issues import LabelIssueSpec, copy_with

    return LabelIssueSpec(
        rows=label_rows,
        correct=copy_with(lambda cfg: cfg.data.label_column),
        probabilities=label_probabilities,
        features=frozen_features,
        # Noisy labels: a gentler schedule than the shipped one learns the texts before it learns their wrong
        # labels (2,000 rt-polarity rows, 10% flipped: top-K precision 48.5% at 3 epochs/5e-5, 42% at 4/1e-4).
        fold_overrides=["epochs=3", "lr=5e-5"],
    )


def load_predictor(folder: Path, cfg: TextClassificationConfig, **kwargs):
    return TextClassifier(folder, cfg=cfg, **kwargs)


def serve_answers(answers: list[dict], single: bool, parameters: dict) -> list:
    """Per input, its labels with their probabilities, best first: [[{label, score}, ...], ...] (a list per input,
    one input or several, as the Inference API answers text classification)."""
    return [ranked(answer["scores"], top_k_of(parameters, len(answer["scores"]))) for answer in answers]


SERVE = ServeShape(
    read=texts_of,
    write=serve_answers,
    options=label_options("how many labels, best first (default: all)"),
    example='{"inputs": "a gripping, beautifully acted film", "parameters": {"top_k": 2}}',
    describe="inputs: a text or a list of texts. Answers, per text, [{label, score}] best first.",
    client_call='text_classification("a gripping, beautifully acted film")',
)


register(
    TaskSpec(
        rank=10,
        name="sentiment",
        aliases=("text_classification",),
        description="Text classification (sentiment or any labels): a pretrained encoder with a new classification "
        "head.",
        build=build_task,
        predictor=load_predictor,
        evaluate_run=evaluate_run,
        check_data=check_data,
        label_issues=label_issue_spec,
        app="toolkit.apps.sentiment",
        example_config="recipes/configs/sentiment_minilm.yaml",
        metrics=("accuracy", "macro_f1", "loss"),
        config=TextClassificationConfig,
        export=export_text_classifier,
        usage='predict("a gripping, beautifully acted film")',
        pipeline_tag="text-classification",
        serve=SERVE,
        stock_usage="from transformers import pipeline\n"
        'classify = pipeline("text-classification", model="{folder}", top_k=None)\n'
        'classify("a gripping, beautifully acted film")',
    )
)
