"""Image classification: sources and decoding, the EfficientNet-Lite0 weight mapping, training modes,
Grad-CAM, the CLI, and bad input. Tiny random timm models on image folders made here."""

import copy
import json
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from conftest import (
    ROOT,
    check_run_folder,
    image_config,
    require_shared,
    run_cli,
    run_cli_many,
    write_config,
    write_folder,
)

import toolkit
from toolkit.errors import ToolkitError
from toolkit.recipes.images import data as imlib
from toolkit.splits import label_names


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    base = tmp_path_factory.mktemp("colours")
    return {split: write_folder(base / split, n, seed) for split, n, seed in (("train", 24, 0), ("val", 10, 1))}


@pytest.fixture(scope="module")
def colour_run(colour_data, tmp_path_factory):
    return toolkit.train(image_config(colour_data, tmp_path_factory.mktemp("colour_run") / "run"))


def test_decode_grey_rgba_and_16_bit(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 128  # BGRA: red, half transparent
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    deep = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    cv2.imwrite(str(tmp_path / "deep.png"), deep)

    out = imlib.decode(tmp_path / "grey.png")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8 and (out[..., 0] == grey).all()
    out = imlib.decode(tmp_path / "rgba.png")
    assert out.shape == (8, 8, 3) and tuple(out[0, 0]) == (200, 0, 0)  # RGB order, alpha dropped
    out = imlib.decode(tmp_path / "deep.png", channels=1)
    assert out.shape == (8, 8, 1) and out.dtype == np.uint8
    assert out[7, 7, 0] == round(63000 / 257)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(imlib.BadImage, match="broken.jpg"):
        imlib.decode(tmp_path / "broken.jpg")


def test_sources_digits_slices_manifest_and_mnist(tmp_path):
    digits = imlib.load_images("sklearn:digits[:100]", "data.train")
    assert len(digits) == 100 and digits.items[0].shape == (8, 8) and digits.items[0].max() > 200
    assert (
        imlib.load_images("sklearn:digits[-97:]", "x").labels == imlib.load_images("sklearn:digits", "x").labels[-97:]
    )
    write_folder(tmp_path / "folder", per_class=2)
    (tmp_path / "manifest.csv").write_text("path,label\nfolder/red/0.jpg,red\nfolder/blue/1.png,blue\n")
    manifest = imlib.load_images(str(tmp_path / "manifest.csv"), "data.train")
    assert manifest.labels == ["red", "blue"] and imlib.decode(manifest.items[0]).shape[2] == 3
    (tmp_path / "bad.csv").write_text("file,class\nx.jpg,a\n")
    with pytest.raises(ToolkitError, match="path,label"):
        imlib.load_images(str(tmp_path / "bad.csv"), "data.train")
    with pytest.raises(ToolkitError, match="sklearn:digits"):
        imlib.load_images("sklearn:iris", "data.train")
    mnist = require_shared("images", "mnist-test")
    test = imlib.load_images(f"{mnist}[8000:]", "data.test")
    assert len(test) == 2000 and test.items[0].shape == (28, 28)
    assert sorted(set(test.labels)) == [str(d) for d in range(10)]


def test_packaged_efficientnet_lite0_knows_ants_and_bees():
    """The legacy EfficientNet-PyTorch weights, renamed into timm: zero-shot, ImageNet's 'ant' (310) and
    'bee' (309) are in the top 5 for most hymenoptera validation images (a wrong mapping gives noise)."""
    from toolkit.config import load_config
    from toolkit.recipes.images.vision import build_model

    val = require_shared("images", "hymenoptera", "val")
    cfg = load_config({"task": "image_classification", "model": "tf_efficientnet_lite0", "image": {"pretrained": True}})
    model, data = build_model(cfg, num_classes=1000)
    assert data["mean"] == [0.5, 0.5, 0.5] and data["size"] == 224
    from toolkit.recipes.images.vision import _packaged_file, efficientnet_pytorch_to_timm

    original = torch.load(_packaged_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    model.load_state_dict(efficientnet_pytorch_to_timm(original, model))  # the 1000-class ImageNet head back
    model.eval()
    transform = imlib.build_transform(cfg.image, data, train=False)
    files = sorted(val.rglob("*.jpg"))
    hits = correct = 0
    with torch.inference_mode():
        for start in range(0, len(files), 32):
            chunk = files[start : start + 32]
            x = torch.stack([transform(torch.from_numpy(imlib.decode(f)).permute(2, 0, 1)) for f in chunk])
            top5 = model(x).topk(5).indices
            for f, row in zip(chunk, top5.tolist()):
                hits += 309 in row or 310 in row
                correct += row[0] == (310 if f.parent.name == "ants" else 309)
    rate = hits / len(files)
    print(
        f"zero-shot: ant or bee in top-5 for {rate:.3f} of {len(files)} images; "
        f"top-1 right for {correct / len(files):.3f}"
    )
    assert rate >= 0.9


def test_train_reload_predict_and_eval(colour_run, colour_data, tmp_path):
    import shutil

    results = colour_run.metrics
    assert results["validation"]["accuracy"] >= 0.9, results["validation"]
    assert check_run_folder(colour_run.dir)["pipeline_tag"] == "image-classification"
    # timm alone reloads best/ as the model card shows: the same weights, labels and preprocessing settings.
    import timm
    from conftest import timm_reload

    from toolkit.recipes.images.vision import load_checkpoint

    best = colour_run.dir / "best"
    config = json.loads((best / "config.json").read_text())
    stock = timm_reload(best)
    ours, data = load_checkpoint(best)
    pixels = torch.rand(2, 3, data["size"], data["size"])
    with torch.no_grad():
        assert torch.allclose(stock(pixels), ours.eval()(pixels), atol=1e-6)
    resolved = timm.data.resolve_data_config(model=stock)
    assert list(resolved["mean"]) == pytest.approx(data["mean"]) and resolved["input_size"][-1] == data["size"]
    assert config["label_names"] == results["labels"]
    assert 'timm.create_model(config["architecture"]' in (colour_run.dir / "README.md").read_text()

    moved = shutil.copytree(colour_run.dir, tmp_path / "moved")  # another machine: the run folder alone
    examples = json.loads((moved / "results.json").read_text())["examples"]
    assert examples and all((moved / e).is_file() for e in examples)
    first = str(moved / examples[0])
    assert toolkit.load(moved)(first)["scores"] == pytest.approx(toolkit.load(colour_run.dir)(first)["scores"])
    losses = [
        json.loads(line)["loss"]
        for line in (colour_run.dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line).get("split") == "train"
    ]
    assert losses[-1] < losses[0]
    assert (colour_run.dir / "confusion_matrix.png").stat().st_size > 1000
    assert results["test"]["per_class"]["red"]["support"] == 10

    predictor = toolkit.load(colour_run.dir)
    files = sorted(str(p) for p in colour_data["val"].rglob("*.*"))
    x = torch.stack([predictor.tensor(predictor.read(f)) for f in files[:6]])
    colour_run.model.eval()
    full = toolkit.load(colour_run.dir, precision="fp32")  # the returned model computes in fp32, as a reload does
    with torch.inference_mode():
        assert torch.allclose(full.logits(files[:6]), colour_run.model(x), atol=1e-5)  # reloaded = trained
    answers = predictor(files)
    assert sum(a["label"] == f.split("/")[-2] for a, f in zip(answers, files)) / len(files) >= 0.9

    done = run_cli("predict", str(colour_run.dir), files[0], files[-1])
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["input"] for line in lines] == [files[0], files[-1]] and lines[0]["label"] == "blue"
    done = run_cli("eval", str(colour_run.dir), "--data", str(colour_data["val"]))
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout.splitlines()[-1])
    assert metrics["accuracy"] == pytest.approx(results["test"]["accuracy"])


def test_onnx_export_answers_as_torch_does(colour_run, colour_data, tmp_path):
    import shutil

    from toolkit.recipes.image_classification.predictors import OnnxImageClassifier

    run = shutil.copytree(colour_run.dir, tmp_path / "run")  # the module's run stays without an export
    done = run_cli("export", str(run))
    assert done.returncode == 0, done.stderr
    onnx, torch_ = toolkit.load(run), toolkit.load(run, backend="torch", precision="fp32")
    assert isinstance(onnx, OnnxImageClassifier) and not isinstance(torch_, OnnxImageClassifier)
    files = sorted(str(p) for p in colour_data["val"].rglob("*.*"))
    assert torch.allclose(onnx.logits(files), torch_.logits(files), atol=1e-4)
    answer, heat = onnx.explain(files[0])  # Grad-CAM from the checkpoint's torch weights
    assert answer["label"] == torch_(files[0])["label"] and heat.ndim == 3
    done = run_cli("predict", str(run), files[0])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["label"] == torch_(files[0])["label"]
    refused = run_cli("export", str(run), "--quantize", "int8")
    assert refused.returncode != 0 and "error: --quantize int8" in refused.stderr
    assert isinstance(toolkit.load(run), OnnxImageClassifier)  # the export written before is still there
    record = run / "best/onnx/export.json"  # one written when its predictor lived in toolkit/onnx_images.py
    record.write_text(
        json.dumps({**json.loads(record.read_text()), "predictor": "toolkit.onnx_images:OnnxImageClassifier"})
    )
    assert torch.equal(toolkit.load(run).logits(files), onnx.logits(files))


def test_corrupt_and_undecodable_images_are_skipped(colour_data, tmp_path, caplog):
    import shutil

    train = shutil.copytree(colour_data["train"], tmp_path / "train")
    (train / "red" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    (train / "blue" / "notes.txt").write_text("not an image")
    (train / "blue" / "empty.png").write_bytes(b"")
    data = {**colour_data, "train": train}
    with caplog.at_level("WARNING"):
        run = toolkit.train(image_config(data, tmp_path / "run", epochs=1))
    assert run.metrics["skipped_images"] == 3
    text = caplog.text
    assert "corrupt.jpg" in text and "notes.txt" in text and "empty.png" in text and "skipped 3 unreadable" in text


def test_bad_input_is_refused_without_a_run_folder(colour_data, tmp_path):
    (tmp_path / "one" / "ants").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "one" / "ants" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "empty" / "ants").mkdir(parents=True)
    (tmp_path / "empty" / "bees").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "empty" / "ants" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cases = [
        ({"data": {"train": str(tmp_path / "one")}}, "single class"),
        ({"data": {"train": str(tmp_path / "empty")}}, "class folder '.*bees' is empty"),
        ({"model": "efficientnet_lite00"}, "Close names: .*efficientnet_lite0"),
        ({"model": "microsoft/resnet-18"}, "HF_HUB_OFFLINE=1"),
        ({"model": "resnet18", "image": {"pretrained": True}}, "cannot load model 'timm/resnet18"),
        ({"data": {"train": str(tmp_path / "nowhere")}}, "does not exist"),
    ]

    configs = [
        write_config(tmp_path / f"c{i}.yaml", image_config(colour_data, tmp_path / f"run{i}", **extra))
        for i, (extra, _) in enumerate(cases)
    ]
    results = run_cli_many([["train", str(config)] for config in configs])  # a process each, forked
    for i, ((extra, message), done) in enumerate(zip(cases, results)):
        assert done.returncode == 2, (extra, done.stderr[-2000:])
        assert __import__("re").search(message, done.stderr), (message, done.stderr[-2000:])
        assert not (tmp_path / f"run{i}").exists()


def test_oversized_and_unreadable_uploads_are_refused(colour_run, tmp_path):
    from toolkit.recipes.image_classification.predictors import ImageClassifier

    predictor = toolkit.load(colour_run.dir)
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8))
    predictor.max_upload_mb = 0.5
    with pytest.raises(ToolkitError, match="over the 0.5 MB limit"):
        predictor(str(big))
    (tmp_path / "x.jpg").write_text("hello")
    with pytest.raises(ToolkitError, match="cannot decode"):
        predictor(str(tmp_path / "x.jpg"))
    assert isinstance(predictor, ImageClassifier)
    # A decompression bomb: 12000x12000 of one colour compresses to well under a megabyte, and would take
    # hundreds of megabytes once decoded. It is refused from its header, before decoding.
    bomb = tmp_path / "bomb.png"
    cv2.imwrite(str(bomb), np.zeros((12000, 12000, 1), dtype=np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert bomb.stat().st_size < 0.5 * 2**20
    import importlib

    images_module = importlib.import_module("toolkit.recipes.images.data")
    decode = images_module.decode
    decoded = []
    images_module.decode = lambda *a, **k: decoded.append(a) or decode(*a, **k)  # a spy: is it ever decoded?
    try:
        with pytest.raises(ToolkitError, match="144 megapixels, over the 40 megapixel limit"):
            predictor(str(bomb))
    finally:
        images_module.decode = decode
    assert decoded == []
    # Over Pillow's own bomb limit, the count is still the real one (400, not 2**62 / 1e6).
    huge = tmp_path / "huge.png"
    chunk = lambda kind, data: (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )
    huge.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ToolkitError, match="has 400 megapixels, over the 40 megapixel limit"):
        predictor(str(huge))
    with pytest.raises(ToolkitError, match="is a folder, not an image file"):
        predictor(str(tmp_path))


def test_linear_probe_and_two_stage_freeze_what_they_should(colour_data, tmp_path):
    from toolkit.engine import fit
    from toolkit.plan import plan
    from toolkit.recipes.images.vision import head_parameter_names

    def trained(**image):
        folder = tmp_path / "-".join(f"{k}{v}" for k, v in image.items())
        planned = plan(image_config(colour_data, folder, epochs=1, image=image))
        task = planned.build()
        before = copy.deepcopy(task.model.state_dict())
        with planned.claimed():
            fit(planned, task)
        head = head_parameter_names(task.model, "timm")
        after = task.model.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        return changed, head

    changed, head = trained(mode="linear_probe")
    assert changed == head  # conv weights and batch-norm statistics untouched
    changed, head = trained(mode="two_stage", head_epochs=1)  # one epoch: the head stage only
    assert changed == head
    changed, head = trained(mode="two_stage", head_epochs=0)
    assert head < changed and any("conv_stem" in k for k in changed)


def test_lp_ft_starts_from_the_probe_and_never_ends_below_it(colour_data, tmp_path):
    """lp_ft: the head is scikit-learn's logistic regression on the frozen features before any step (the
    step-0 evaluation scores exactly the probe's predictions), and best/ is never below that."""
    from torch.utils.data import DataLoader

    from toolkit.api import resolve_config
    from toolkit.recipes.images import data as imlib
    from toolkit.recipes.images.vision import build_model, fit_linear_probe, head_inputs

    cfg = resolve_config(image_config(colour_data, tmp_path / "run", epochs=2, lr=3e-3, image={"mode": "lp_ft"}))
    torch.manual_seed(cfg.seed)
    model, data = build_model(cfg, 2)  # the same random backbone build_task makes under the same seed
    splits, _ = imlib.load_splits(cfg)
    names = label_names(splits["train"].labels)
    plain = imlib.build_transform(cfg.image, data, train=False)
    features = {
        s: head_inputs(
            model,
            "timm",
            DataLoader(
                imlib.ImageDataset(found, [names.index(x) for x in found.labels], plain, 3, random=False),
                batch_size=16,
                collate_fn=imlib.collate,
            ),
        )
        for s, found in splits.items()
    }
    weight, bias = fit_linear_probe(*features["train"], 2, cfg.seed)
    x, y = features["validation"]
    probe_accuracy = float(((x @ weight.numpy().T + bias.numpy()).argmax(1) == y).mean())

    run = toolkit.train(cfg)
    records = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["split"] == "validation")
    assert first["step"] == 0 and first["accuracy"] == pytest.approx(probe_accuracy)
    assert run.metrics["validation"]["accuracy"] >= probe_accuracy


def test_gradcam_highlights_a_planted_square(tmp_path):
    """Class 'square' has a bright 6x6 square somewhere on noise; Grad-CAM for it must light up the square."""
    from toolkit.api import resolve_config
    from toolkit.recipes.image_classification.predictors import ImageClassifier

    rng = np.random.default_rng(0)
    boxes = {}
    for split, n in (("train", 150), ("val", 20)):
        for name in ("plain", "square"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 60, (28, 28), dtype=np.uint8)
                if name == "square":
                    y, x = rng.integers(2, 20, size=2)
                    image[y : y + 6, x : x + 6] = 255
                    boxes[str(tmp_path / split / name / f"{i}.png")] = (y, x)
                cv2.imwrite(str(tmp_path / split / name / f"{i}.png"), image)
    cfg = {
        "task": "image_classification",
        "model": "seed_cnn",
        "data": {"train": str(tmp_path / "train"), "validation": str(tmp_path / "val")},
        "image": {"pretrained": False, "channels": 1, "size": 28, "random_resized_crop": False, "hflip": 0},
        "epochs": 4,
        "batch_size": 16,
        "lr": 2e-3,
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "trackers": [],
    }
    run = toolkit.train(resolve_config(cfg))
    assert run.metrics["validation"]["accuracy"] >= 0.95
    predictor = toolkit.load(run.dir)
    assert isinstance(predictor, ImageClassifier)
    inside = []
    for path, (y, x) in [(p, b) for p, b in boxes.items() if "/val/" in p]:
        answer, overlay = predictor.explain(path, class_index=predictor.labels.index("square"))
        assert overlay.shape == (28, 28, 3) and overlay.dtype == np.uint8
        from toolkit.recipes.images.vision import gradcam

        heat = gradcam(predictor.model, predictor.tensor(predictor.read(path))[None], predictor.labels.index("square"))
        assert heat.shape == (28, 28) and 0 <= heat.min() and heat.max() <= 1
        mask = np.zeros_like(heat, dtype=bool)
        mask[y : y + 6, x : x + 6] = True
        inside.append(heat[mask].mean() > 2 * heat[~mask].mean())
    assert np.mean(inside) >= 0.8, inside


def test_shipped_configs_load():
    from toolkit.api import resolve_config

    for name in ("image_classification_hymenoptera", "seed_cnn_mnist"):
        cfg = resolve_config(ROOT / "recipes" / "configs" / f"{name}.yaml")
        assert cfg.task == "image_classification" and cfg.data.train


def test_saved_hub_style_image_dataset_source(tmp_path):
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)) for _ in range(4)]
    features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=["cat", "dog"])})
    datasets.Dataset.from_dict({"img": pictures, "kind": [0, 1, 1, 0]}, features=features).save_to_disk(
        str(tmp_path / "saved")
    )
    found = imlib.load_images(str(tmp_path / "saved"), "data.train", image_column="img", label_column="kind")
    assert found.labels == ["cat", "dog", "dog", "cat"] and found.items[0].shape == (12, 10, 3)
    with pytest.raises(ToolkitError, match="column 'image' is missing"):
        imlib.load_images(str(tmp_path / "saved"), "data.train")


def test_transformers_image_classifier_from_a_local_folder(colour_data, tmp_path):
    """A (tiny, random) transformers ResNet with its image processor, fine-tuned, reloaded, explained."""
    from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor

    folder = tmp_path / "tiny_resnet"
    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    ResNetForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        folder
    )
    run = toolkit.train(
        image_config(colour_data, tmp_path / "run", model=str(folder), image={"pretrained": True, "size": None})
    )
    assert run.metrics["validation"]["accuracy"] >= 0.9
    predictor = toolkit.load(run.dir)
    assert predictor.data["size"] == 32 and predictor.data["mean"] == [0.5] * 3
    red = sorted(str(p) for p in (colour_data["val"] / "red").iterdir())[0]
    answer, heat = predictor.explain(red)
    assert answer["label"] == "red" and heat.shape == (32, 32, 3)
