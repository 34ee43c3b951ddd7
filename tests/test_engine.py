"""The shared engine on a tiny random BERT: learning, checkpoints, reload, LoRA, accumulation, early stop."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import toolkit


def train_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


def test_training_learns_and_writes_a_complete_run(tiny_config):
    run = toolkit.train(tiny_config)
    losses = train_losses(run.dir)
    assert losses[-1] < 0.5 * losses[0], losses
    assert run.metrics["test"]["accuracy"] >= 0.9
    assert set(run.metrics["test"]) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert sum(map(sum, run.metrics["test"]["confusion_matrix"])) == 64
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "results.json",
        "README.md",
        "best/model.safetensors",
        "best/tokenizer.json",
        "best/labels.json",
        "last/model.safetensors",
        "last/training_state.pt",
    ):
        assert (run.dir / name).is_file(), name
    assert json.loads((run.dir / "best/labels.json").read_text()) == ["negative", "positive"]
    card = (run.dir / "README.md").read_text()
    assert f"{run.metrics['test']['accuracy']:.4f}" in card and "Reproduce" in card
    assert not list(run.dir.glob(".*.tmp")) and not list(run.dir.glob(".*.old"))


def test_reloaded_predictor_matches_the_trained_model(tiny_config):
    run = toolkit.train(tiny_config, epochs=1)
    predict = toolkit.load(run.dir)
    texts = ["the film was great", "a dull boring story", "service was awful", "lovely"]
    answers = predict(texts)
    model = run.model.eval()
    with torch.no_grad():
        batch = predict.tokenizer(texts, padding=True, return_tensors="pt")
        expected = model(**batch).logits.softmax(-1)
    got = torch.tensor([[a["scores"][label] for label in predict.labels] for a in answers])
    assert torch.allclose(got, expected, atol=1e-5)
    assert predict("the film was great") == answers[0]
    with pytest.raises(toolkit.ToolkitError, match="input 2 is empty"):
        predict(["fine", "  "])
    # Batches of 3 over length-sorted inputs: the answers still come back in input order, with the same scores.
    small = toolkit.load(run.dir, batch_size=3, device="cpu")
    assert small.batch_size == 3 and small.device.type == "cpu"
    for got, want in zip(small(texts + texts[::-1]), answers + answers[::-1]):
        assert got["label"] == want["label"]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)


def test_every_predictor_shares_one_constructor():
    import inspect

    from toolkit.predictor import Predictor
    from toolkit.recipes.gan.predictors import GanSampler, OnnxGanSampler
    from toolkit.recipes.image_classification.predictors import ImageClassifier, OnnxImageClassifier
    from toolkit.recipes.sentiment.predictors import OnnxTextClassifier, TextClassifier
    from toolkit.recipes.seq2seq.onnx import OnnxTextGenerator
    from toolkit.recipes.seq2seq.predictors import TextGenerator
    from toolkit.recipes.summarization.extractive import ExtractiveSummarizer

    shared = inspect.signature(Predictor.__init__)
    every = (TextClassifier, OnnxTextClassifier, TextGenerator, OnnxTextGenerator, ExtractiveSummarizer)
    for cls in (*every, ImageClassifier, OnnxImageClassifier, GanSampler, OnnxGanSampler):
        assert issubclass(cls, Predictor) and inspect.signature(cls.__init__) == shared, cls


def test_best_checkpoint_is_the_best_validation_step(tiny_config):
    run = toolkit.train(tiny_config, eval_every=5, epochs=2)
    evals = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["split"] == "validation"]
    best = max(evals, key=lambda r: r["accuracy"])  # first of the ties wins, as in the engine
    assert run.metrics["best_step"] == best["step"]
    assert run.metrics["validation"]["accuracy"] == pytest.approx(best["accuracy"])
    assert len(evals) == 40 // 5


def test_early_stopping_stops_after_patience(tiny_config):
    # lr=0 never improves after the first evaluation: patience 2 stops at the third.
    run = toolkit.train(tiny_config, lr=0.0, eval_every=2, patience=2, epochs=4)
    assert run.metrics["steps"] == 6


def test_gradient_accumulation_counts_optimizer_steps(tiny_config):
    run = toolkit.train(tiny_config, grad_accum=4, epochs=1, eval_every="epoch")
    assert run.metrics["steps"] == 5  # 20 batches / 4
    assert run.metrics["train_samples"] == 320


def test_bf16_and_max_steps(tiny_config):
    run = toolkit.train(tiny_config, precision="bf16", max_steps=30, scheduler="cosine")
    assert run.metrics["steps"] == 30
    losses = train_losses(run.dir)
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_lora_on_minilm_learns_and_merges_into_best(tmp_path):
    """LoRA on the packaged MiniLM (a random tiny model gives adapters nothing to adapt)."""
    from conftest import ROOT

    run = toolkit.train(
        ROOT / "recipes/configs/sentiment_minilm.yaml",
        output_dir=str(tmp_path / "lora"),
        trackers=[],
        data={
            "train": str(ROOT / "recipes/data/sentiment_demo/train.csv"),
            "validation": str(ROOT / "recipes/data/sentiment_demo/validation.csv"),
        },
        peft={"enabled": True, "r": 8, "alpha": 16, "target_modules": ["query", "value"]},
        lr=1e-3,
        epochs=3,
    )
    assert run.metrics["validation"]["accuracy"] >= 0.75  # chance is 0.5; one of the 54 rows is 1.9 points
    assert (run.dir / "last/adapter_model.safetensors").is_file()  # training checkpoints hold adapters only
    assert (run.dir / "last/adapter_model.safetensors").stat().st_size < 5_000_000
    assert not (run.dir / "best/adapter_model.safetensors").exists()  # best/ was merged at the end
    assert not any("lora" in key for key in load_file(run.dir / "best/model.safetensors"))
    assert toolkit.evaluate(run.dir, split="validation")["accuracy"] == pytest.approx(
        run.metrics["validation"]["accuracy"]
    )


def test_lora_unmerged_reloads_from_adapters(tiny_config):
    run = toolkit.train(
        tiny_config,
        peft={"enabled": True, "r": 4, "target_modules": ["query", "value"], "merge": False},
        lr=1e-2,
        epochs=2,
    )
    assert (run.dir / "best/adapter_model.safetensors").is_file()
    assert toolkit.evaluate(run.dir)["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])
    texts = ["a great film", "an awful film"]
    model = run.model.eval()
    predict = toolkit.load(run.dir)
    with torch.no_grad():
        expected = model(**predict.tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    got = torch.tensor([[a["scores"][label] for label in predict.labels] for a in predict(texts)])
    assert torch.allclose(got, expected, atol=1e-5)


def test_integer_labels_and_three_classes(tiny_config, tmp_path):
    import pandas as pd

    frame = pd.read_csv(tiny_config["data"]["train"])
    frame["label"] = frame["label"].map({"positive": 10, "negative": 2})
    frame.loc[::3, "label"] = 7
    frame.to_csv(tmp_path / "ints.csv", index=False)
    run = toolkit.train(
        tiny_config, data={"train": str(tmp_path / "ints.csv"), "validation": None, "test": None}, epochs=1
    )
    assert run.metrics["labels"] == ["2", "7", "10"]
    assert set(toolkit.load(run.dir)("great film")["scores"]) == {"2", "7", "10"}


def test_best_by_loss_and_unknown_metric(tiny_config):
    run = toolkit.train(tiny_config, metric="loss", eval_every=5, epochs=2)
    evals = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in evals if r["split"] == "validation"}
    assert run.metrics["metric"] == "loss" and run.metrics["best_step"] == min(losses, key=losses.get)
    with pytest.raises(
        toolkit.ToolkitError, match="metric 'bleu' is not a validation metric.*accuracy, macro_f1, loss"
    ):
        toolkit.train(tiny_config, metric="bleu", output_dir=tiny_config["output_dir"] + "_bleu")
    assert not Path(tiny_config["output_dir"] + "_bleu").exists()


def test_schedule_under_a_time_budget_decays_with_the_time_used():
    """With max_train_minutes, the decay follows the time budget when it runs out before the steps do."""
    import torch

    from toolkit.config import Config
    from toolkit.engine import build_scheduler

    clock = {"seconds": 0.0}
    cfg = Config(max_train_minutes=1.0, warmup_ratio=0.0, scheduler="linear", lr=1.0)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, total_steps=1000, elapsed=lambda: clock["seconds"])
    clock["seconds"] = 45.0  # 3/4 of the budget after only 10 of 1,000 steps
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert abs(scheduler.get_last_lr()[0] - 0.25) < 1e-9
    steps_only = build_scheduler(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), Config(warmup_ratio=0.0), 1000
    )
    for _ in range(10):
        steps_only.optimizer.step()
        steps_only.step()
    assert abs(steps_only.get_last_lr()[0] - 0.99) < 1e-9


def test_a_tie_on_the_metric_goes_to_the_lower_loss():
    from toolkit.config import Config
    from toolkit.tasks import choose_goal, get_task

    spec = get_task("sentiment")
    accuracy, loss = choose_goal(spec, Config(metric="accuracy")), choose_goal(spec, Config(metric="loss"))
    assert accuracy.maximize and not loss.maximize
    assert accuracy.beats(0.9, 0.9, loss=0.1, best_loss=0.2)
    assert not accuracy.beats(0.9, 0.9, loss=0.3, best_loss=0.2)
    assert not accuracy.beats(0.8, 0.9, loss=0.01, best_loss=0.2)
    assert loss.beats(0.2, 0.3)
    assert not choose_goal(spec, Config(metric="accuracy", greater_is_better=False)).beats(0.9, 0.8)


def test_length_groups_cover_every_row_once_and_pad_less_than_random_batches():
    import random

    from toolkit.batching import ShuffledLengthGroups

    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(1000)]
    order = list(ShuffledLengthGroups(lengths, 16, torch.Generator().manual_seed(0)))
    assert sorted(order) == list(range(1000))
    assert order == list(ShuffledLengthGroups(lengths, 16, torch.Generator().manual_seed(0)))  # resume replays it

    def padded(indices):
        return sum(16 * max(lengths[i] for i in indices[s : s + 16]) for s in range(0, len(indices), 16))

    shuffled = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).tolist()
    assert padded(order) < 0.8 * padded(shuffled)


def test_micro_batches_give_the_whole_batch_gradient(tiny_config):
    """Random batches on the CPU run as length-sorted pieces; the gradient must be the whole batch's."""
    from accelerate import Accelerator

    from toolkit import batching, engine
    from toolkit.api import resolve_config
    from toolkit.tasks import get_task

    cfg = resolve_config(tiny_config, group_by_length=False, batch_size=16)
    task = get_task("sentiment").build(cfg)
    assert batching.micro_batch_count(task, cfg, "cpu") == 2 and batching.micro_batch_count(task, cfg, "cuda") == 1
    assert batching.micro_batch_count(task, resolve_config(tiny_config), "cpu") == 1  # length-grouped batches: whole
    loader = engine.train_loader(task, cfg, torch.Generator().manual_seed(0), torch.Generator(), 2)
    assert sum(len(piece["labels"]) for piece in next(iter(loader))) == 16

    indices = list(range(3, 19))
    batch = batching.split_by_length(task, 4)([(i, task.train_set[i]) for i in indices])
    whole = batching.without_length(task.collate)([task.train_set[i] for i in indices])
    lengths = [piece["input_ids"].shape[1] for piece in batch]
    assert len(batch) == 4 and lengths == sorted(lengths) and lengths[0] < whole["input_ids"].shape[1]
    model = task.model.eval()  # no dropout: both ways compute the same function

    class Capture(torch.optim.SGD):
        def step(self, closure=None):
            self.grads = [p.grad.clone() for p in model.parameters()]

    def gradient(batch):
        optimizer = Capture(model.parameters(), lr=0.0)
        losses = engine.default_train_step(task, cfg)(model, batch, [optimizer], Accelerator(cpu=True))
        return losses["loss"], optimizer.grads

    loss_pieces, grads_pieces = gradient(batch)
    loss_whole, grads_whole = gradient(whole)
    assert loss_pieces.item() == pytest.approx(loss_whole.item(), rel=1e-5)
    for a, b in zip(grads_pieces, grads_whole):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
