"""GANs on the engine: tiny DCGAN steps, EMA, sample grids, resume, init_from, and bad input."""

import base64
import json

import numpy as np
import pytest
import torch
from conftest import api_served, browser, check_run_folder, gan_config, post_json, serve

import toolkit
from toolkit.errors import ToolkitError


def test_dcgan_shapes_for_grey_and_colour_sizes():
    from toolkit.recipes.gan import GanConfig
    from toolkit.recipes.gan.model import GAN

    for size, channels in ((28, 1), (32, 3), (64, 3)):
        gan = GAN(GanConfig(latent_dim=8, channels=8, conditional=True), size, channels, num_classes=3)
        z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
        images = gan.generator(z, y)
        assert images.shape == (4, channels, size, size) and images.abs().max() <= 1
        assert gan.discriminator(images, y).shape == (4,)
    with pytest.raises(ToolkitError, match="image.size=30"):
        GAN(GanConfig(), 30, 1)


def test_gan_steps_losses_ema_grid_and_resume(tmp_path):
    full = toolkit.train(gan_config(tmp_path / "full", epochs=2))
    records = [json.loads(line) for line in (full.dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") == "train"]
    assert train and all(torch.isfinite(torch.tensor([r["d_loss"], r["g_loss"]])).all() for r in train)
    gan = full.model
    assert any(not torch.equal(a, b) for a, b in zip(gan.ema.parameters(), gan.generator.parameters()))
    grids = sorted((full.dir / "samples").glob("*.png"))
    assert len(grids) >= 2
    assert check_run_folder(full.dir)["library_name"] == "pytorch"
    saved = (full.dir / "config.yaml").read_text()
    assert "\ngan:" in saved and "\nimage:" in saved and "\npeft:" not in saved
    from torchvision.io import read_image

    picture = read_image(str(grids[-1]))
    assert picture.shape == (1, 4 * 30 + 2, 4 * 30 + 2) and picture.float().std() > 10  # a 4x4 grid, not blank

    # Stop mid-way through the second epoch (as a killed run would, at its last checkpoint), then resume with
    # the full run's config: the same weights as two epochs straight.
    import yaml

    half_dir = tmp_path / "half"
    toolkit.train(gan_config(half_dir, epochs=2, max_steps=25))
    saved = yaml.safe_load((half_dir / "config.yaml").read_text())
    (half_dir / "config.yaml").write_text(yaml.safe_dump({**saved, "max_steps": None}))
    assert json.loads((half_dir / "last" / "state.json").read_text())["step"] == 25
    half = toolkit.resume(half_dir)
    for (name, a), b in zip(full.model.state_dict().items(), half.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


def test_onnx_export_of_the_generator_draws_what_torch_draws(tmp_path):
    from conftest import run_cli

    from toolkit.recipes.gan.predictors import GanSampler, OnnxGanSampler

    run = toolkit.train(gan_config(tmp_path / "run", epochs=1))
    done = run_cli("export", str(run.dir))
    assert done.returncode == 0, done.stderr
    onnx, torch_ = toolkit.load(run.dir), toolkit.load(run.dir, backend="torch", precision="fp32")
    assert isinstance(onnx, OnnxGanSampler) and type(torch_) is GanSampler
    z, labels = torch.randn(6, 16, generator=torch.Generator().manual_seed(3)), torch.arange(6) % 10
    assert torch.allclose(onnx.gan.sample(z, labels), torch_.gan.sample(z, labels), atol=1e-4)
    # uint8 pixels: a value on a rounding edge may move by one level
    assert np.abs(onnx.grid(seed=5, label="3").astype(int) - torch_.grid(seed=5, label="3")).max() <= 1
    assert np.abs(onnx.interpolate(1, 2, 0.5).astype(int) - torch_.interpolate(1, 2, 0.5)).max() <= 1
    with pytest.raises(ToolkitError, match="class 'x'"):
        onnx.grid(label="x")
    refused = run_cli("export", str(run.dir), "--quantize", "int8")
    assert refused.returncode != 0 and "error: --quantize int8" in refused.stderr
    assert isinstance(toolkit.load(run.dir), OnnxGanSampler)  # the export written before is still there


def test_init_from_loads_and_rejects_other_architectures(tmp_path):
    source = toolkit.train(gan_config(tmp_path / "source", epochs=1))
    tuned = toolkit.train(
        gan_config(tmp_path / "tuned", epochs=1, gan={"init_from": str(source.dir), "freeze_d_layers": 1})
    )
    first = "discriminator.blocks.0.0.parametrizations.weight.original"
    assert torch.equal(tuned.model.state_dict()[first], source.model.state_dict()[first])  # FreezeD kept it
    with pytest.raises(
        ToolkitError, match=r"another architecture \(shapes differ: .*\(8, 1, 4, 4\) vs \(16, 1, 4, 4\)"
    ):
        toolkit.train(gan_config(tmp_path / "wrong", gan={"init_from": str(source.dir), "channels": 16}))
    assert not (tmp_path / "wrong").exists()


def test_too_small_dataset_is_refused(tmp_path):
    with pytest.raises(ToolkitError, match="fewer than batch_size=64"):
        toolkit.train(gan_config(tmp_path / "small", batch_size=64, data={"train": "sklearn:digits[:40]"}))
    assert not (tmp_path / "small").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    import re

    from safetensors.torch import load_file

    with pytest.raises(ToolkitError, match="diverged") as err:
        # Warm-up from lr 0: step 1 leaves the weights as they are (and is checkpointed); then lr 1e28 blows up.
        toolkit.train(
            gan_config(
                tmp_path / "nan",
                epochs=5,
                lr=1e30,
                warmup_ratio=1.0,
                scheduler="linear",
                save_every=1,
                eval_every=1000,
                gan={"spectral_norm": False, "loss": "nonsaturating"},
            )
        )
    bad_step = int(re.search(r"diverged at step (\d+)", str(err.value))[1])
    assert bad_step >= 2
    state = json.loads((tmp_path / "nan" / "last" / "state.json").read_text())
    assert state["step"] == bad_step - 1  # the checkpoint before the bad step, untouched by it
    weights = load_file(tmp_path / "nan" / "last" / "model.safetensors")
    assert all(torch.isfinite(v.float()).all() for v in weights.values())
    assert not (tmp_path / "nan" / "results.json").exists()


@pytest.fixture(scope="module")
def digit_classifier(tmp_path_factory):
    """The seed CNN trained on scikit-learn's digits with the image-classification recipe: FID's feature extractor."""
    out = tmp_path_factory.mktemp("digit_classifier") / "run"
    run = toolkit.train(
        {
            "task": "image_classification",
            "model": "seed_cnn",
            "data": {"train": "sklearn:digits[:1500]"},
            "image": {
                "pretrained": False,
                "channels": 1,
                "size": 28,
                "mean": [0.0],
                "std": [1.0],
                "random_resized_crop": False,
                "hflip": 0.0,
            },
            "epochs": 6,
            "batch_size": 32,
            "lr": 2e-3,
            "weight_decay": 0.0,
            "seed": 0,
            "output_dir": str(out),
            "trackers": [],
        }
    )
    assert run.metrics["validation"]["accuracy"] >= 0.9
    return run.dir


def test_fid_sanity_and_a_trained_generator(digit_classifier, tmp_path):
    from toolkit.recipes.gan import model as ganlib
    from toolkit.recipes.images import data as imlib

    features = ganlib.ClassifierFeatures(digit_classifier)
    found = imlib.load_images("sklearn:digits[:600]", "x")
    real = torch.stack([torch.from_numpy(imlib.decode(a, 1)).permute(2, 0, 1) for a in found.items]).float() / 255
    real = torch.nn.functional.interpolate(real, size=(28, 28), mode="bilinear", antialias=True)
    scorer = ganlib.GenerationScorer(real, features)  # the real features once, for both comparisons
    same, noise = scorer(real), scorer(torch.rand(600, 1, 28, 28))
    assert abs(same["fid"]) < 0.5 and noise["fid"] > 20
    assert abs(same["kid"]) < 0.05 * noise["kid"]  # KID is an unbiased estimate: about 0, either side, for equal sets

    run = toolkit.train(
        gan_config(
            tmp_path / "run",
            epochs=30,
            data={"train": "sklearn:digits"},
            gan={"eval_classifier": str(digit_classifier), "eval_samples": 600},
        )
    )
    trained = run.metrics["validation"]
    print(
        f"FID same {same['fid']:.3f}, noise {noise['fid']:.1f}, trained GAN {trained['fid']:.1f}; "
        f"class accuracy {trained['class_accuracy']:.2f}"
    )
    assert trained["fid"] < noise["fid"] / 3
    assert trained["class_accuracy"] > 0.5  # far above the 0.1 of chance
    # No mode collapse: within a class, samples vary with z about as much as real digits of a class do (a class
    # embedding concatenated to z gave one image per class: pixel std 0.05 against the real 0.3).
    z, labels = torch.randn(400, 16, generator=torch.Generator().manual_seed(1)), torch.arange(400) % 10
    fake = run.model.sample(z, labels)
    real_labels = torch.tensor([int(x) for x in found.labels])
    spread = lambda images, y: torch.stack([images[y == c].std(0).mean() for c in range(10)])
    fake_spread, real_spread = spread(fake, labels), spread(real * 2 - 1, real_labels)
    print("within-class pixel std, generated vs real:", fake_spread.numpy().round(3), real_spread.numpy().round(3))
    assert (fake_spread > 0.5 * real_spread).all()
    done = __import__("conftest").run_cli("eval", str(run.dir))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1])["fid"] < noise["fid"] / 3


@pytest.mark.slow
def test_gan_app_client_and_browser(tmp_path):
    import cv2
    from gradio_client import Client
    from playwright.sync_api import expect, sync_playwright

    from toolkit.apps.gan import build_demo

    run = toolkit.train(gan_config(tmp_path / "run", epochs=1))
    sampler = toolkit.load(run.dir)
    expected = sampler.grid(7, "3", rows=4)
    assert expected.shape == (4 * 30 + 2, 4 * 30 + 2, 1)
    assert not np.array_equal(sampler.grid(8, "3"), expected) and np.array_equal(sampler.grid(7, "3"), expected)
    with pytest.raises(ToolkitError, match="a grid has 1 to 16 rows"):  # a request's bound: 256 images, not 1e6
        sampler.grid(7, "3", rows=1000)
    with api_served(run.dir) as server:  # the JSON API: a grid as a PNG in base64
        status, answer = post_json(server.url, {"inputs": {"seed": 7, "label": "3", "rows": 4}})
        assert status == 200 and answer["format"] == "png"
        png = cv2.imdecode(np.frombuffer(base64.b64decode(answer["image"]), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert (png == expected[:, :, 0]).all()
        status, answer = post_json(server.url, {"inputs": {"seed": 7, "rows": 99}})
        assert status == 422 and "a grid has 1 to 16 rows" in answer["error"]
    demo, url = serve(build_demo, run.dir)
    try:
        client = Client(url, verbose=False)
        shown, png = client.predict(7, "3", api_name="/generate")
        saved = cv2.imread(png, cv2.IMREAD_GRAYSCALE)
        assert saved.shape == expected.shape[:2] and (saved == expected[:, :, 0]).all()  # the PNG holds the grid
        start = client.predict(1, 2, 0.0, "3", api_name="/interpolate")
        end = client.predict(1, 2, 1.0, "3", api_name="/interpolate")
        assert cv2.imread(start) is not None and not (cv2.imread(start) == cv2.imread(end)).all()
        with pytest.raises(Exception, match="not in the list of choices"):  # Gradio checks the dropdown
            client.predict(7, "x", api_name="/generate")
        with sync_playwright() as p:
            page = browser(p).new_page()
            page.goto(url)
            page.locator("#seed input").fill("7")
            page.locator("#generate").click()
            expect(page.locator("#grid img")).to_be_visible(timeout=30_000)
            with page.expect_download(timeout=30_000) as download:
                page.locator("#download").click()
            target = tmp_path / "downloaded.png"
            download.value.save_as(target)
            shown_class = sampler.grid(7, "0", rows=4)  # the dropdown starts at the first class
            assert (cv2.imread(str(target), cv2.IMREAD_GRAYSCALE) == shown_class[:, :, 0]).all()
    finally:
        demo.close()


def test_colour_fid_on_the_packaged_efficientnet_lite0_features():
    """Colour FID/KID with the ImageNet EfficientNet-Lite0 backbone: real photos against themselves about 0, against
    noise large; it has no class names, so no class accuracy; a name that is not a model is refused."""
    from conftest import require_shared

    from toolkit.recipes.gan import model as ganlib
    from toolkit.recipes.images import data as imlib

    val = require_shared("images", "hymenoptera", "val")
    found = imlib.load_images(str(val), "x")
    photos = [torch.from_numpy(imlib.decode(found.items[i], 3)).permute(2, 0, 1) for i in range(0, len(found), 2)]
    real = (
        torch.stack(
            [
                torch.nn.functional.interpolate(p[None].float(), size=(64, 64), mode="bilinear", antialias=True)[0]
                for p in photos
            ]
        )
        / 255
    )
    features = ganlib.ClassifierFeatures("tf_efficientnet_lite0")
    assert features.num_features == 1280 and features.labels == []
    scorer = ganlib.GenerationScorer(real, features)
    same = scorer(real)
    noise = scorer(torch.rand_like(real), torch.zeros(len(real), dtype=torch.long), ["ants"])
    print(f"EfficientNet-Lite0 FID: same {same['fid']:.2f}, noise {noise['fid']:.1f}")
    assert abs(same["fid"]) < 0.5 and noise["fid"] > 100 and "class_accuracy" not in noise
    with pytest.raises(ToolkitError, match="neither a run folder nor a timm model"):
        ganlib.ClassifierFeatures("runs/no_such_run")
