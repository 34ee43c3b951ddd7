"""ONNX exports of the image tasks (`toolkit export`): the classifier's network and the GAN's EMA generator, and
their predictors. torch still decodes and transforms the pixels (or draws a seed's noise), so that the export answers
with the same inputs as the torch predictor; the network runs in ONNX Runtime."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from .errors import ToolkitError
from .export import export_module
from .onnx_backend import open_session
from .predict import GanSampler, ImageClassifier


def refuse_int8(task: str, quantize: bool) -> None:
    if quantize:
        raise ToolkitError(
            f"--quantize int8 quantizes a transformer's matrix products; a {task} export is fp32. "
            f"Export without --quantize."
        )


def export_image_classifier(folder: Path, path: Path, cfg, quantize: bool) -> str:
    """The classifier's network: transformed pixels (batch x channels x size x size) in, logits out."""
    from .vision import load_checkpoint, logits

    refuse_int8(cfg.task, quantize)
    model, data = load_checkpoint(folder)

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return logits(self.inner, pixel_values)

    sample = torch.rand(2, data["channels"], data["size"], data["size"])
    export_module(Logits(model.eval()), {"pixel_values": sample}, path, ("logits",))
    return "toolkit.onnx_images:OnnxImageClassifier"


def export_generator(folder: Path, path: Path, cfg, quantize: bool) -> str:
    """The GAN's EMA generator: latents (and class indices, when conditional) in, images in [-1, 1] out."""
    refuse_int8(cfg.task, quantize)
    sampler = GanSampler(folder, cfg=cfg, device="cpu", precision="fp32")
    gan = sampler.gan
    inputs = {"z": torch.randn(2, gan.latent_dim)}
    if gan.num_classes:
        inputs["labels"] = torch.tensor([0, gan.num_classes - 1])
    export_module(gan.ema, inputs, path, ("images",))  # Generator.forward(z, labels)
    return "toolkit.onnx_images:OnnxGanSampler"


class OnnxImageClassifier(ImageClassifier):
    """The ONNX twin of ImageClassifier: the same reading, checks and transforms, the network in ONNX Runtime.
    Grad-CAM (:meth:`explain`) needs gradients, so it loads the checkpoint's torch weights when first asked."""

    uses_torch = False

    def load_model(self) -> dict:
        from .vision import IMAGE_CONFIG

        self.session = open_session(self.folder)
        return json.loads((self.folder / IMAGE_CONFIG).read_text())

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"pixel_values": batch.numpy().astype(np.float32)})
        return torch.from_numpy(logits)

    def explain(self, image, class_index: int | None = None):
        from .vision import load_checkpoint

        if not hasattr(self, "model"):
            self.model = load_checkpoint(self.folder)[0].eval()
        return super().explain(image, class_index)


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
