"""One run, one set of numbers, in fp32 and in bf16, for every task family: the metrics a run records are what
`toolkit eval` gives on the same data, the model `toolkit.train` returns computes what the stock reload of best/
computes, and ONNX agrees with PyTorch within the precision's tolerance.

bf16 runs on every x86 CPU (only slowly where it is not native), so these tests force it: `precision=bf16` trains
in it and `eval_precision=bf16` evaluates in it, as `precision: auto` does on a CPU with native bf16 or a GPU."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import (  # noqa: F401
    FILLER,
    NEGATIVE,
    POSITIVE,
    copy_data,
    gan_config,
    image_config,
    seq2seq_config,
    tiny_t5,
    write_folder,
)

import toolkit
from toolkit import hardware, precision

PRECISIONS = {"fp32": "no", "bf16": "bf16"}  # the name results.json records -> the config's spelling
# How far two computations of the same weights may be apart: none where both compute the same way; in bf16, its
# 8-bit mantissa (a relative 4e-3 per rounding, a few roundings deep in a small model).
BF16_TOLERANCE = 0.05


def forced(name: str) -> dict:
    return {"precision": PRECISIONS[name], "eval_precision": PRECISIONS[name]}


def scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def assert_recorded_equals_eval(run, name: str, data, split: str = "validation", must: tuple = ()) -> dict:
    """results.json's metrics for ``split`` are exactly what `toolkit eval` gives on the same data, and say which
    precision computed them."""
    results = json.loads((run.dir / "results.json").read_text())
    assert results["eval_precision"]["chosen"] == name, results["eval_precision"]
    scored = toolkit.evaluate(run.dir, data=str(data), backend="torch")
    shared = {k: v for k, v in scalars(results[split]).items() if k in scored}
    assert set(must) <= set(shared), (must, results[split], scored)
    # Equal but for float summation order (a FID's features computed in other batches): a prediction that changed
    # would move a metric by a whole example's share.
    calibration = {k: shared.pop(k) for k in ("ece",) if k in shared}
    assert {k: scored[k] for k in shared} == pytest.approx(shared, rel=1e-5, abs=1e-9)
    # The calibration error sums confidences: float32 rounding in them moves it by about 1e-7.
    assert {k: scored[k] for k in calibration} == pytest.approx(calibration, abs=1e-6)
    return results


def assert_close(ours, theirs, name: str, exact: float = 1e-5) -> float:
    """The largest difference; within ``exact`` where both sides compute in fp32, within bf16's tolerance else."""
    difference = float(
        (torch.as_tensor(ours, dtype=torch.float64) - torch.as_tensor(theirs, dtype=torch.float64)).abs().max()
    )
    assert difference <= (exact if name == "fp32" else BF16_TOLERANCE), difference
    return difference


def assert_predictor_precision(run_dir, name: str, answer) -> None:
    """The run's predictor computes in its evaluation precision: in bf16 its answers move (a little) from fp32's."""
    ours, full = toolkit.load(run_dir, backend="torch"), toolkit.load(run_dir, backend="torch", precision="fp32")
    assert ours.precision == name and full.precision == "fp32"
    difference = assert_close(answer(ours), answer(full), name, exact=0.0)
    assert (difference > 0) == (name == "bf16"), difference


# ----- the rule itself, on machines the tests are not on -----
def test_evaluation_precision_follows_the_hardware(monkeypatch):
    monkeypatch.delenv(hardware.PRECISION_ENV, raising=False)
    native = hardware.Machine(cpu_model="Zen 4", cpu_flags=frozenset({"avx2", "avx512_bf16"}))
    emulated = hardware.Machine(cpu_model="Zen 3", cpu_flags=frozenset({"avx2"}))
    gpu = hardware.Machine(accelerator="cuda", gpu_name="H100", gpu_bf16=True)
    old_gpu = hardware.Machine(accelerator="cuda", gpu_name="T4", gpu_bf16=False)
    choose = lambda requested, trained, machine: precision.choose_eval_precision(requested, trained, machine).name
    assert choose("auto", "bf16", native) == "bf16" and choose("auto", "bf16", gpu) == "bf16"
    assert choose("auto", "fp16", old_gpu) == "fp16"
    assert choose("auto", "bf16", emulated) == "fp32"  # bf16 forced on a CPU that emulates it: scored in fp32
    assert choose("auto", "fp32", native) == "fp32" and choose("auto", "bf16", old_gpu) == "fp32"
    assert choose("bf16", "fp32", emulated) == "bf16" and choose("no", "bf16", native) == "fp32"
    monkeypatch.setenv(hardware.PRECISION_ENV, "bf16")  # what `auto` means here: a native-bf16 machine's choice
    assert hardware.choose_precision("auto", emulated).name == "bf16" and choose("auto", "bf16", emulated) == "bf16"
    monkeypatch.setenv(hardware.PRECISION_ENV, "bf17")
    with pytest.raises(toolkit.ToolkitError, match="TOOLKIT_PRECISION=bf17 is not a precision"):
        hardware.choose_precision("auto", emulated)


# ----- classification -----
def assert_validation_loss_is_the_predictors(run, data) -> None:
    """The validation loss results.json records is what the run's predictor computes on the same batches (an
    evaluation in another precision than recorded moves it by far more than summation order does)."""
    import csv

    rows = list(csv.DictReader(open(data)))
    results = json.loads((run.dir / "results.json").read_text())
    predictor = toolkit.load(run.dir, backend="torch")
    batch_size = predictor.cfg.eval_batch_size or 2 * predictor.cfg.batch_size  # training's evaluation batches
    losses = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        texts = [r["text"] for r in chunk]
        batch = predictor.tokenizer(
            texts, truncation=True, max_length=predictor.max_length, padding=True, return_tensors="pt"
        )
        labels = torch.tensor([results["labels"].index(r["label"]) for r in chunk])
        with predictor.computing(), torch.no_grad():
            losses += [float(predictor.model(**batch, labels=labels).loss)] * len(chunk)
    assert sum(losses) / len(losses) == pytest.approx(results["validation"]["loss"], rel=1e-6)


@pytest.mark.parametrize("name", PRECISIONS)
def test_text_classification(name, tiny_config, text_data, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from toolkit.export import export_run

    # One epoch on the validation rows too: a half-trained model, many answers near the boundary.
    run = toolkit.train({**tiny_config, **forced(name), "epochs": 1, "lr": 1e-3})
    assert_recorded_equals_eval(run, name, text_data["validation"], must=("accuracy",))
    assert_recorded_equals_eval(run, name, text_data["test"], split="test", must=("accuracy",))
    assert_validation_loss_is_the_predictors(run, text_data["validation"])

    texts = ["a good film with plot", "the acting was awful", "it was a movie", "quite lovely and dull"]
    best = run.dir / "best"
    batch = AutoTokenizer.from_pretrained(best)(texts, padding=True, return_tensors="pt")
    stock = AutoModelForSequenceClassification.from_pretrained(best).eval()
    with torch.no_grad():
        assert_close(run.model.eval()(**batch).logits, stock(**batch).logits, "fp32")  # plain model out

    assert_predictor_precision(run.dir, name, lambda p: p.probabilities(texts))
    export_run(run.dir)
    onnx, ours = toolkit.load(run.dir), toolkit.load(run.dir, backend="torch")
    assert type(onnx).__name__ == "OnnxTextClassifier"
    assert_close(onnx.probabilities(texts), ours.probabilities(texts), name, exact=1e-4)
    # With an export beside it, `toolkit eval` still gives the run's numbers (a bf16 run's: from the torch weights).
    if name == "bf16":
        assert_recorded_equals_eval(run, name, text_data["validation"], must=("accuracy",))


def test_a_bf16_run_is_scored_in_what_this_machine_evaluates_it_in(tiny_config, text_data):
    """precision=bf16 with eval_precision auto: where this CPU only emulates bf16, evaluation takes the plain model in
    fp32 (accelerate's bf16 autocast is on it while it trains); where bf16 is native, in bf16. Either way the run's
    numbers are `toolkit eval`'s."""
    run = toolkit.train({**tiny_config, "precision": "bf16", "epochs": 1, "lr": 1e-3})
    here = precision.choose_eval_precision("auto", "bf16", hardware.detect(torch)).name
    assert_recorded_equals_eval(run, here, text_data["validation"], must=("accuracy",))
    assert_recorded_equals_eval(run, here, text_data["test"], split="test", must=("accuracy",))
    assert_validation_loss_is_the_predictors(run, text_data["validation"])
    assert toolkit.load(run.dir, backend="torch").precision == here


# ----- token classification -----
def tagged_rows(count: int, seed: int) -> list[dict]:
    """Sentences of the test vocabulary: praise words are GOOD entities, complaints BAD, a praise word after
    another one continues its entity."""
    rng, rows = random.Random(seed), []
    for _ in range(count):
        words = rng.choices(FILLER + POSITIVE + NEGATIVE, k=rng.randint(4, 12))
        tags, previous = [], "O"
        for word in words:
            kind = "GOOD" if word in POSITIVE else "BAD" if word in NEGATIVE else None
            tag = "O" if kind is None else (f"I-{kind}" if previous.endswith(kind) else f"B-{kind}")
            tags.append(tag)
            previous = tag
        rows.append({"tokens": words, "ner_tags": tags})
    return rows


def train_on_rows(tiny_config, name: str, task: str, train: list[dict], validation: list[dict], folder, **extra):
    """The tiny BERT trained for ``task`` on rows written as JSON lines; returns the run and its validation file."""
    files = {}
    for split, rows in (("train", train), ("validation", validation)):
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {split: str(path) for split, path in files.items()}
    run = toolkit.train({**tiny_config, **forced(name), "task": task, "data": data, "lr": 2e-3, **extra})
    return run, files["validation"]


@pytest.mark.parametrize("name", PRECISIONS)
def test_token_classification(name, tiny_config, tmp_path):
    import numpy as np
    from transformers import AutoModelForTokenClassification

    from toolkit.export import export_run

    run, validation = train_on_rows(
        tiny_config, name, "ner", tagged_rows(240, 0), tagged_rows(80, 1), tmp_path, epochs=1
    )
    assert_recorded_equals_eval(run, name, validation, must=("f1", "precision", "recall"))

    tagger = toolkit.load(run.dir, backend="torch", precision="fp32")
    encodings = tagger.tokenizer.encode_batch([" ".join(r["tokens"]) for r in tagged_rows(4, 2)])
    width = max(len(e.ids) for e in encodings)
    feed = {
        key: np.array([list(getattr(e, attr)) + [0] * (width - len(e.ids)) for e in encodings], dtype=np.int64)
        for key, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids"))
    }
    stock = AutoModelForTokenClassification.from_pretrained(run.dir / "best").eval()
    with torch.no_grad():
        tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
        assert_close(run.model.eval()(**tensors).logits, stock(**tensors).logits, "fp32")

    assert_predictor_precision(run.dir, name, lambda p: p.logits(feed))
    export_run(run.dir)
    onnx = toolkit.load(run.dir)
    assert type(onnx).__name__ == "OnnxTokenTagger"
    assert_close(onnx.logits(feed), toolkit.load(run.dir, backend="torch").logits(feed), name, exact=1e-4)


# ----- extractive question answering -----
def qa_rows(count: int, seed: int) -> list[dict]:
    """Which word is the praise (or the complaint)? A passage of test words holding one of each."""
    rng, rows = random.Random(seed), []
    for i in range(count):
        words = rng.choices(FILLER, k=rng.randint(6, 14))
        good, bad = rng.choice(POSITIVE), rng.choice(NEGATIVE)
        words.insert(rng.randrange(len(words) + 1), good)
        words.insert(rng.randrange(len(words) + 1), bad)
        asked = good if i % 2 else bad
        context = " ".join(words)
        start = len(" ".join(words[: words.index(asked)])) + (1 if words.index(asked) else 0)
        question = "which word was good" if i % 2 else "which word was bad"
        rows.append(
            {
                "id": str(i),
                "question": question,
                "context": context,
                "answers": {"text": [asked], "answer_start": [start]},
            }
        )
    return rows


@pytest.mark.parametrize("name", PRECISIONS)
def test_question_answering(name, tiny_config, tmp_path):
    import numpy as np
    from transformers import AutoModelForQuestionAnswering

    from toolkit.export import export_run

    settings = {"qa": {"stride": 16}, "max_length": 48, "epochs": 2}
    run, validation = train_on_rows(tiny_config, name, "qa", qa_rows(240, 0), qa_rows(60, 1), tmp_path, **settings)
    assert_recorded_equals_eval(run, name, validation, must=("exact_match", "f1"))

    pairs = [{"question": r["question"], "context": r["context"]} for r in qa_rows(4, 2)]
    answerer = toolkit.load(run.dir, backend="torch", precision="fp32")
    encoded = answerer.tokenizer([p["question"] for p in pairs], [p["context"] for p in pairs], padding=True)
    feed = {k: np.array(v, dtype=np.int64) for k, v in encoded.items()}
    stock = AutoModelForQuestionAnswering.from_pretrained(run.dir / "best").eval()
    with torch.no_grad():
        tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
        ours, theirs = run.model.eval()(**tensors), stock(**tensors)
        assert_close(ours.start_logits, theirs.start_logits, "fp32")
        assert_close(ours.end_logits, theirs.end_logits, "fp32")

    assert_predictor_precision(run.dir, name, lambda p: np.stack(p.logits(feed)))
    export_run(run.dir)
    onnx = toolkit.load(run.dir)
    assert type(onnx).__name__ == "OnnxQuestionAnswerer"
    torch_side = toolkit.load(run.dir, backend="torch")
    assert_close(np.stack(onnx.logits(feed)), np.stack(torch_side.logits(feed)), name, exact=1e-4)


# ----- sequence to sequence -----
@pytest.mark.parametrize("name", PRECISIONS)
def test_translation(name, tiny_t5, copy_data, tmp_path):  # noqa: F811 (conftest fixtures)
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    run = toolkit.train(seq2seq_config(tiny_t5, copy_data, tmp_path, max_steps=40, **forced(name)))
    assert_recorded_equals_eval(run, name, copy_data / "validation.jsonl", must=("bleu",))

    best = run.dir / "best"
    tokenizer = AutoTokenizer.from_pretrained(best)
    batch = tokenizer(["red cat one two", "the sun tree moon house"], padding=True, return_tensors="pt")
    decoder = torch.tensor([[0, 4, 5], [0, 6, 7]])
    stock = AutoModelForSeq2SeqLM.from_pretrained(best).eval()
    with torch.no_grad():
        ours = run.model.eval()(**batch, decoder_input_ids=decoder).logits
        assert_close(ours, stock(**batch, decoder_input_ids=decoder).logits, "fp32")

    def scores(predictor):
        with predictor.computing(), torch.no_grad():
            return predictor.model(**batch, decoder_input_ids=decoder).logits

    assert_predictor_precision(run.dir, name, scores)


# ----- images -----
@pytest.fixture(scope="module")
def colour_folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("colours")
    return {split: write_folder(base / split, n, seed) for split, n, seed in (("train", 16, 0), ("val", 10, 1))}


@pytest.mark.parametrize("name", PRECISIONS)
def test_image_classification(name, colour_folders, tmp_path):
    from conftest import timm_reload

    run = toolkit.train(image_config(colour_folders, tmp_path / "run", max_steps=2, **forced(name)))
    assert_recorded_equals_eval(run, name, colour_folders["val"], split="test", must=("accuracy",))
    stock = timm_reload(run.dir / "best")
    pixels = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert_close(run.model.eval()(pixels), stock(pixels), "fp32")
    files = sorted(str(p) for p in colour_folders["val"].rglob("*.*"))[:6]
    assert_predictor_precision(run.dir, name, lambda p: p.logits(files))


# ----- GAN -----
@pytest.fixture(scope="module")
def digit_features(tmp_path_factory):
    """A seed CNN trained briefly on digits: the feature extractor of the GAN runs' FID and KID."""
    out = tmp_path_factory.mktemp("digit_features") / "run"
    image = {"pretrained": False, "channels": 1, "size": 28, "random_resized_crop": False, "hflip": 0.0}
    run = toolkit.train(
        {
            "task": "image_classification",
            "model": "seed_cnn",
            "data": {"train": "sklearn:digits[:400]"},
            "image": {**image, "mean": [0.0], "std": [1.0]},
            "epochs": 1,
            "batch_size": 32,
            "lr": 2e-3,
            "seed": 0,
            "output_dir": str(out),
            "trackers": [],
        }
    )
    return run.dir


@pytest.mark.parametrize("name", PRECISIONS)
def test_gan(name, digit_features, tmp_path):
    from toolkit.recipes.gan.predictors import GanSampler

    run = toolkit.train(
        gan_config(
            tmp_path / "run",
            epochs=1,
            data={"train": "sklearn:digits[:320]"},
            gan={"eval_classifier": str(digit_features), "eval_samples": 64},
            **forced(name),
        )
    )
    assert_recorded_equals_eval(run, name, "sklearn:digits[:320]", must=("fid", "kid"))

    reloaded = GanSampler(run.dir / "best", precision="fp32")
    z, labels = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 10
    with torch.no_grad():
        assert_close(run.model.eval().sample(z, labels), reloaded.gan.sample(z, labels), "fp32")

    def samples(sampler):
        with sampler.computing(sampler.gan), torch.no_grad():
            return sampler.gan.sample(z, labels).float()

    assert_predictor_precision(run.dir, name, samples)
