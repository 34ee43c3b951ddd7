"""Predictors: load a run's checkpoint and answer raw inputs. The CLI, apps and notebooks all use these."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from .errors import ToolkitError
from .predictor import Predictor, check_texts, load_predictor  # noqa: F401  (load_predictor: the public entry point)


class ImageClassifier(Predictor):
    """Call with an image (a path or an HxWxC uint8 RGB array) or a list of them; an answer is
    ``{"label": best label, "scores": {label: probability}}`` for the top-k labels.

    :meth:`explain` adds a Grad-CAM heatmap over what the model saw.
    """

    def load(self) -> None:
        from torchvision.transforms import v2

        from .images import build_transform

        self.data = self.load_model()
        self.labels = self.data["labels"]
        image = self.cfg.image
        self.transform = build_transform(image, self.data, train=False)
        size = self.data["size"]
        self.view = v2.Compose(
            [v2.Resize(int(round(size / self.data["crop_pct"])), antialias=True), v2.CenterCrop(size)]
        )
        self.max_upload_mb = image.max_upload_mb
        self.max_megapixels = image.max_megapixels
        self.top_k = max(1, min(image.top_k, len(self.labels)))

    def load_model(self) -> dict:
        """Load the network; returns the checkpoint's image settings (size, channels, normalization, labels)."""
        from .vision import load_checkpoint

        self.model, data = load_checkpoint(self.folder)
        self.model.eval().to(self.device)
        return data

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, (str, Path, bytes, bytearray)) or hasattr(inputs, "shape")

    def check(self, inputs: list) -> None:
        pass  # each image is checked (size, pixels, format) as it is read

    def input_size(self, item) -> None:
        return None  # a path, or pixels: bounded by max_upload_mb and max_megapixels as it is read

    def predict_batch(self, images: list) -> list[dict]:
        return [self.answer(row) for row in self.logits(images).softmax(-1)]

    def read(self, image) -> np.ndarray:
        """Decode one input with the model's channels; too large or unreadable files get a ToolkitError."""
        from .images import BadImage, decode, pixel_count

        if isinstance(image, (bytes, bytearray)):  # a file's bytes (the JSON API's body)
            self.check_size("the image", len(image) / 2**20, pixel_count(io.BytesIO(image)))
        elif not hasattr(image, "shape"):
            path = Path(image)
            if path.is_dir():
                raise ToolkitError(
                    f"'{image}' is a folder, not an image file: give one JPEG, PNG, BMP, TIFF or WebP file."
                )
            if not path.is_file():
                raise ToolkitError(f"image '{image}' does not exist.")
            megabytes = path.stat().st_size / 2**20
            self.check_size(f"image '{path.name}'", megabytes, pixel_count(path))  # the header only
        try:
            return decode(image, self.data["channels"])
        except BadImage as err:
            raise ToolkitError(f"{err}. Give a JPEG, PNG, BMP, TIFF or WebP image.") from err

    def check_size(self, name: str, megabytes: float, pixels: int | None) -> None:
        """The image bounds: file size (image.max_upload_mb), then pixels from its header (image.max_megapixels)."""
        if megabytes > self.max_upload_mb:
            raise ToolkitError(
                f"{name} is {megabytes:.1f} MB, over the {self.max_upload_mb:g} MB limit "
                "(image.max_upload_mb). Resize or compress it first."
            )
        if pixels is not None and pixels > self.max_megapixels * 1e6:
            raise ToolkitError(
                f"{name} has {pixels / 1e6:.0f} megapixels, over the {self.max_megapixels:g} "
                "megapixel limit (image.max_megapixels). Resize it first."
            )

    def tensor(self, array) -> torch.Tensor:
        return self.transform(torch.from_numpy(array).permute(2, 0, 1))

    @torch.inference_mode()
    def logits(self, images: list) -> torch.Tensor:
        def batch_logits(chunk: list) -> torch.Tensor:
            return self.forward(torch.stack([self.tensor(self.read(im)) for im in chunk]))

        return torch.stack(self.in_batches(list(images), batch_logits, by_length=False))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's logits (fp32, on the CPU) for a batch of transformed images."""
        from .vision import logits

        with self.computing():
            return logits(self.model, batch.to(self.device)).float().cpu()

    def answer(self, probs: torch.Tensor) -> dict:
        values, indices = probs.topk(self.top_k)
        scores = {self.labels[i]: float(v) for v, i in zip(values.tolist(), indices.tolist())}
        return {"label": self.labels[indices[0]], "scores": scores}

    def explain(self, image, class_index: int | None = None) -> tuple[dict, np.ndarray]:
        """The answer for one image and a Grad-CAM overlay (for the top label, or ``class_index``) on the model's
        view."""
        from .vision import gradcam, overlay

        array = self.read(image)
        x = self.tensor(array)[None].to(self.device)
        with torch.inference_mode():
            probs = self.logits([array])[0].softmax(-1)
        answer = self.answer(probs)
        target = int(probs.argmax()) if class_index is None else class_index
        heat = gradcam(self.model, x, target)  # in fp32 whatever the predictor's precision: a map, not a metric
        view = self.view(torch.from_numpy(array).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        return answer, overlay(view, heat)


MAX_GRID_ROWS = 16  # 256 images: a request's bound for a GAN


class GanSampler(Predictor):
    """A GAN run's EMA generator: image grids from a seed (and a class), interpolations between two seeds."""

    def load(self) -> None:
        spec = json.loads((self.folder / "config.json").read_text())  # the checkpoint holds all it needs
        self.labels = spec["labels"]
        self.gan = self.load_generator(spec)

    def load_generator(self, spec: dict):
        """What samples: here the GAN with its EMA generator (``gan.sample(z, labels)``, latent_dim, num_classes)."""
        from types import SimpleNamespace

        from safetensors.torch import load_file

        from .gan import GAN

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
        from .gan import fixed_noise, grid, grid_labels

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
        from .gan import fixed_noise, slerp, to_uint8

        z0, z1 = fixed_noise(1, self.gan.latent_dim, seed_a)[0], fixed_noise(1, self.gan.latent_dim, seed_b)[0]
        z = slerp(z0, z1, torch.tensor([float(t)]))
        index = self.class_index(label if label is not None else self.labels[0])
        with self.computing(self.gan):
            image = self.gan.sample(
                z.to(self.device), torch.tensor([index], device=self.device) if index is not None else None
            )[0]
        image = image.float().cpu()
        return to_uint8(image).permute(1, 2, 0).numpy()
