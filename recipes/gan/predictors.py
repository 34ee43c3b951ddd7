"""The GAN's predictors: samples, grids and interpolations from the run's EMA generator, and from its ONNX export
(torch draws the noise from the same seeds; the generator runs in ONNX Runtime)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file

from toolkit.errors import ToolkitError
from toolkit.export import export_module
from toolkit.onnx_backend import open_session
from toolkit.predictor import Predictor
from toolkit.recipes.gan.model import GAN, fixed_noise, grid, grid_labels, slerp, to_uint8
from toolkit.recipes.images import refuse_int8

MAX_GRID_ROWS = 16  # 256 images: a request's bound


class GanSampler(Predictor):
    """A GAN run's EMA generator: image grids from a seed (and a class), interpolations between two seeds."""

    def load(self) -> None:
        spec = json.loads((self.folder / "config.json").read_text())  # the checkpoint holds all it needs
        self.labels = spec["labels"]
        self.gan = self.load_generator(spec)

    def load_generator(self, spec: dict):
        """What samples: here the GAN with its EMA generator (``gan.sample(z, labels)``, latent_dim, num_classes)."""
        gan = GAN(SimpleNamespace(**spec["gan"]), spec["size"], spec["channels"], len(self.labels))
        gan.load_state_dict(load_file(self.folder / "model.safetensors"))
        return gan.eval().to(self.device)

    def __call__(self, seed: int = 0, label=None, rows: int = 4) -> np.ndarray:
        return self.grid(seed, label, rows)

    def class_index(self, label) -> int | None:
        if not self.gan.num_classes:
            return None
        if str(label) not in self.labels:
            raise ToolkitError(f"class '{label}' is not one this GAN was trained on: {', '.join(self.labels)}.")
        return self.labels.index(str(label))

    def grid(self, seed: int = 0, label=None, rows: int = 4) -> np.ndarray:
        """A rows x rows grid (H x W x C uint8) from ``seed``; every cell of class ``label`` when conditional."""
        if not isinstance(rows, int) or not 1 <= rows <= MAX_GRID_ROWS:
            raise ToolkitError(f"rows={rows!r}: a grid has 1 to {MAX_GRID_ROWS} rows (of as many images each).")

        z = fixed_noise(rows * rows, self.gan.latent_dim, seed)
        index = self.class_index(label) if label is not None else None
        labels = torch.full((rows * rows,), index) if index is not None else grid_labels(rows, self.gan.num_classes)
        with self.computing(self.gan):
            images = self.gan.sample(z.to(self.device), labels.to(self.device) if labels is not None else None)
        images = images.float().cpu()
        return grid(images, rows).permute(1, 2, 0).numpy()

    def interpolate(self, seed_a: int, seed_b: int, t: float, label=None) -> np.ndarray:
        """The image at fraction ``t`` of the way from seed_a's latent to seed_b's (H x W x C uint8)."""
        z0, z1 = fixed_noise(1, self.gan.latent_dim, seed_a)[0], fixed_noise(1, self.gan.latent_dim, seed_b)[0]
        z = slerp(z0, z1, torch.tensor([float(t)]))
        index = self.class_index(label if label is not None else self.labels[0])
        with self.computing(self.gan):
            image = self.gan.sample(
                z.to(self.device), torch.tensor([index], device=self.device) if index is not None else None
            )[0]
        image = image.float().cpu()
        return to_uint8(image).permute(1, 2, 0).numpy()


class OnnxGenerator:
    """An exported generator, called as GAN.sample is."""

    def __init__(self, session, latent_dim: int, num_classes: int):
        self.session, self.latent_dim, self.num_classes = session, latent_dim, num_classes

    def sample(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        feed = {"z": z.numpy().astype(np.float32)}
        if self.num_classes:
            feed["labels"] = labels.numpy().astype(np.int64)
        (images,) = self.session.run(None, feed)
        return torch.from_numpy(images)


class OnnxGanSampler(GanSampler):
    """The ONNX twin of GanSampler: the same grids and interpolations from the same seeds (torch draws the noise)."""

    uses_torch = False

    def load_generator(self, spec: dict) -> OnnxGenerator:
        classes = len(self.labels) if spec["gan"].get("conditional") else 0
        return OnnxGenerator(open_session(self.folder), spec["gan"]["latent_dim"], classes)

    def computing(self, module=None):
        return contextlib.nullcontext()  # an export computes in fp32


def export_generator(folder: Path, path: Path, cfg, quantize: bool) -> str:
    """The GAN's EMA generator: latents (and class indices, when conditional) in, images in [-1, 1] out."""
    refuse_int8(cfg.task, quantize)
    sampler = GanSampler(folder, cfg=cfg, device="cpu", precision="fp32")
    gan = sampler.gan
    inputs = {"z": torch.randn(2, gan.latent_dim)}
    if gan.num_classes:
        inputs["labels"] = torch.tensor([0, gan.num_classes - 1])
    export_module(gan.ema, inputs, path, ("images",))  # Generator.forward(z, labels)
    return f"{__name__}:OnnxGanSampler"
