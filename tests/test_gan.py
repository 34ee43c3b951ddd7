"""GANs on the engine: tiny DCGAN steps, EMA, sample grids, resume, init_from, and bad input."""

import json

import pytest
import torch

import toolkit
from toolkit.errors import ToolkitError


def gan_config(out, **extra):
    values = {"task": "gan", "data": {"train": "sklearn:digits[:640]", "holdout": 0},
              "image": {"channels": 1, "size": 28, "random_resized_crop": False, "hflip": 0.0},
              "gan": {"latent_dim": 16, "channels": 8, "conditional": True, "grid_rows": 4},
              "epochs": 2, "batch_size": 32, "lr": 2e-4, "weight_decay": 0.0, "warmup_ratio": 0.0, "scheduler": "constant",
              "max_grad_norm": None, "seed": 0, "output_dir": str(out), "trackers": [], "log_every": 5}
    for key, value in extra.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    return values


def test_dcgan_shapes_for_grey_and_colour_sizes():
    from toolkit.config import GanConfig
    from toolkit.gan import GAN

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


def test_init_from_loads_and_rejects_other_architectures(tmp_path):
    source = toolkit.train(gan_config(tmp_path / "source", epochs=1))
    tuned = toolkit.train(gan_config(tmp_path / "tuned", epochs=1, gan={"init_from": str(source.dir), "freeze_d_layers": 1}))
    first = "discriminator.blocks.0.0.parametrizations.weight.original"
    assert torch.equal(tuned.model.state_dict()[first], source.model.state_dict()[first])  # FreezeD kept it
    with pytest.raises(ToolkitError, match=r"another architecture \(shapes differ: .*\(8, 1, 4, 4\) vs \(16, 1, 4, 4\)"):
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
        toolkit.train(gan_config(tmp_path / "nan", epochs=5, lr=1e10, save_every=1, eval_every=1000,
                                 gan={"spectral_norm": False, "loss": "nonsaturating"}))
    bad_step = int(re.search(r"diverged at step (\d+)", str(err.value))[1])
    assert bad_step > 1, "pick settings that diverge after a checkpoint"
    state = json.loads((tmp_path / "nan" / "last" / "state.json").read_text())
    assert state["step"] == bad_step - 1  # the checkpoint before the bad step, untouched by it
    weights = load_file(tmp_path / "nan" / "last" / "model.safetensors")
    assert all(torch.isfinite(v.float()).all() for v in weights.values())
    assert not (tmp_path / "nan" / "results.json").exists()
