"""A task defined outside the package (text regression, scored by mean squared error) registers itself with its
own config class (its data columns and a section of its own), then trains, evaluates, predicts and serves through
the public API and the app builder, with no change to toolkit/, recipes/ or apps/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, require_shared

from toolkit.config import DataConfig, DataRole, TextConfig, at_least, section, setting


@dataclass
class RegressionData(DataConfig):
    text_column: str = setting("text", "the text", role=DataRole("text", "text", ("text", "sentence")))
    score_column: str = setting("score", "its number", role=DataRole("score", "number", ("score", "value")))


@dataclass
class RegressionSettings:
    """How scores are scaled for training."""

    scale: float = setting(
        1.0, "scores are divided by this for training and multiplied back when predicting", at_least(1e-6)
    )


@dataclass
class RegressionConfig(TextConfig):
    """Text regression: a number per text."""

    data: RegressionData = section(RegressionData)
    regression: RegressionSettings = section(RegressionSettings)


SCORE = {"positive": 1.0, "negative": -1.0}


def made_up_scores(source: Path, target: Path, rows: int) -> Path:
    """rt-polarity rows with a score column: +1 or -1 by the label, shifted a little by the text's length."""
    import pandas as pd

    table = pd.read_csv(source).sample(n=rows, random_state=0)
    table["score"] = [SCORE[label] + min(len(text), 200) / 1000 for text, label in zip(table["text"], table["label"])]
    table[["text", "score"]].to_csv(target, index=False)
    return target


class Regressor:
    """The new task's predictor: a string (or a list) in, ``{"score": float}`` out."""

    def __init__(self, folder: Path, cfg, **_):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.max_length, self.scale, self.torch = cfg.max_length, cfg.regression.scale, torch

    def __call__(self, texts):
        if isinstance(texts, str):
            return self([texts])[0]
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        with self.torch.inference_mode():
            values = (self.model(**batch).logits[:, 0] * self.scale).tolist()
        return [{"score": v} for v in values]


def build(cfg):
    import torch
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    from toolkit.data import load_splits
    from toolkit.engine import Task
    from toolkit.models import load_tokenizer, resolve_model_source

    text, score, scale = cfg.data.text_column, cfg.data.score_column, cfg.regression.scale
    splits = load_splits(cfg, [text, score], [text], score)
    tokenizer = load_tokenizer(cfg.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_source(cfg.model), num_labels=1, problem_type="regression"
    )

    def features(table):
        encoded = tokenizer(list(table[text]), truncation=True, max_length=cfg.max_length)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": float(y) / scale}
            for ids, mask, y in zip(encoded["input_ids"], encoded["attention_mask"], table[score])
        ]

    @torch.no_grad()
    def evaluate(model, loader, accelerator):
        errors = []
        for batch in loader:
            predicted = model(**batch).logits[:, 0] * scale
            batch["labels"] = batch["labels"] * scale
            errors.append(accelerator.gather_for_metrics((predicted - batch["labels"]) ** 2).float().cpu())
        mse = float(torch.cat(errors).mean())
        return {"mse": mse, "loss": mse}

    def save(unwrapped, folder, state_dict=None):
        unwrapped.save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)

    return Task(
        model=model,
        train_set=features(splits["train"]),
        eval_set=features(splits["validation"]),
        collate=DataCollatorWithPadding(tokenizer),
        compute_loss=lambda m, batch: m(**batch).loss,
        evaluate=evaluate,
        save=save,
    )


def evaluate_run(predictor, cfg, data, split):
    from toolkit.data import load_table

    table = load_table(data, split)
    predicted = [a["score"] for a in predictor(list(table[cfg.data.text_column]))]
    gold = list(table[cfg.data.score_column])
    return {"mse": sum((p - y) ** 2 for p, y in zip(predicted, gold)) / len(gold), "count": len(gold)}


def build_demo(run_dir):
    import gradio as gr

    import toolkit

    predict = toolkit.load(run_dir)
    with gr.Blocks() as demo:
        text = gr.Textbox(label="Text")
        value = gr.Number(label="Score")
        gr.Button("Score").click(lambda t: predict(t)["score"], text, value, api_name="score")
    return demo


def test_a_task_from_outside_the_package_trains_evaluates_predicts_and_serves(tmp_path):
    import toolkit
    from toolkit.apps import build_app

    source = require_shared("sentiment", "rt-polarity")
    spec = toolkit.register_task(
        toolkit.TaskSpec(
            name="text_regression",
            description="Text regression: a number per text, scored by mean squared error.",
            build=build,
            predictor=Regressor,
            evaluate_run=evaluate_run,
            app=build_demo,
            metrics=("mse", "loss"),
            lower_is_better=("mse", "loss"),
            config=RegressionConfig,
            usage='predict("a gripping film")  # {"score": ...}',
        ),
        replace=True,
    )
    assert toolkit.get_task("text_regression") is spec
    assert list(spec.roles) == ["text_column", "score_column"]
    with pytest.raises(
        toolkit.ToolkitError, match="unknown config key 'regression.scael'. Did you mean regression.scale"
    ):
        toolkit.train({"task": "text_regression", "regression": {"scael": 2}})
    with pytest.raises(toolkit.ToolkitError, match="'regression.scale' is -1.0; it must be at least"):
        toolkit.train({"task": "text_regression", "regression": {"scale": -1}})
    train = made_up_scores(source / "train.csv", tmp_path / "train.csv", 480)
    validation = made_up_scores(source / "validation.csv", tmp_path / "validation.csv", 120)

    run = toolkit.train(
        {
            "task": "text_regression",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "data": {"train": str(train), "validation": str(validation)},
            "regression": {"scale": 2.0},
            "epochs": 2,
            "batch_size": 32,
            "lr": 1e-4,
            "max_length": 64,
            "trackers": [],
            "output_dir": str(tmp_path / "run"),
        }
    )
    import pandas as pd

    gold = pd.read_csv(validation)["score"]
    print(f"validation MSE {run.metrics['validation']['mse']:.3f}, variance {gold.var(ddof=0):.3f}")
    assert run.metrics["validation"]["mse"] < gold.var(ddof=0)  # better than always answering the mean
    assert 'predict("a gripping film")' in (run.dir / "README.md").read_text()  # the task's own usage line

    saved = (run.dir / "config.yaml").read_text()
    assert "regression:\n  scale: 2.0" in saved and "score_column: score" in saved and "generation" not in saved
    predict = toolkit.load(run.dir)
    assert isinstance(predict("a gripping film")["score"], float)
    evaluated = toolkit.evaluate(run.dir)  # no test split: the validation file, scored by the task's evaluate_run
    assert evaluated["mse"] == pytest.approx(run.metrics["validation"]["mse"], rel=1e-3)

    from gradio_client import Client

    demo = build_app(run.dir)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    try:
        served = Client(f"http://127.0.0.1:{port}/", verbose=False).predict("a dull mess", api_name="/score")
    finally:
        demo.close()
    assert served == pytest.approx(predict("a dull mess")["score"], abs=1e-5)
