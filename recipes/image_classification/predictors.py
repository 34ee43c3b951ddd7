"""The image classifier's predictors: the run's weights, and its ONNX export (the network in ONNX Runtime)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from toolkit.errors import ToolkitError
from toolkit.export import export_module
from toolkit.onnx_backend import open_session
from toolkit.predictor import Predictor
from toolkit.recipes.images import refuse_int8, vision
from toolkit.recipes.images.data import BadImage, build_transform, decode, pixel_count


class ImageClassifier(Predictor):
    """Call with an image (a path or an HxWxC uint8 RGB array) or a list of them; an answer is
    ``{"label": best label, "scores": {label: probability}}`` for the top-k labels.

    :meth:`explain` adds a Grad-CAM heatmap over what the model saw.
    """

    def load(self) -> None:
        from torchvision.transforms import v2

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
        self.model, data = vision.load_checkpoint(self.folder)
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
        with self.computing():
            return vision.logits(self.model, batch.to(self.device)).float().cpu()

    def answer(self, probs: torch.Tensor) -> dict:
        values, indices = probs.topk(self.top_k)
        scores = {self.labels[i]: float(v) for v, i in zip(values.tolist(), indices.tolist())}
        return {"label": self.labels[indices[0]], "scores": scores}

    def explain(self, image, class_index: int | None = None) -> tuple[dict, np.ndarray]:
        """The answer for one image and a Grad-CAM overlay (for the top label, or ``class_index``) on the model's
        view."""
        array = self.read(image)
        x = self.tensor(array)[None].to(self.device)
        with torch.inference_mode():
            probs = self.logits([array])[0].softmax(-1)
        answer = self.answer(probs)
        target = int(probs.argmax()) if class_index is None else class_index
        heat = vision.gradcam(self.model, x, target)  # in fp32 whatever the predictor's precision: a map, not a metric
        view = self.view(torch.from_numpy(array).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        return answer, vision.overlay(view, heat)


class OnnxImageClassifier(ImageClassifier):
    """The ONNX twin of ImageClassifier: the same reading, checks and transforms, the network in ONNX Runtime.
    Grad-CAM (:meth:`explain`) needs gradients, so it loads the checkpoint's torch weights when first asked."""

    uses_torch = False

    def load_model(self) -> dict:
        self.session = open_session(self.folder)
        return json.loads((self.folder / vision.IMAGE_CONFIG).read_text())

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"pixel_values": batch.numpy().astype(np.float32)})
        return torch.from_numpy(logits)

    def explain(self, image, class_index: int | None = None):
        if not hasattr(self, "model"):
            self.model = vision.load_checkpoint(self.folder)[0].eval()
        return super().explain(image, class_index)


def export_image_classifier(folder: Path, path: Path, cfg, quantize: bool) -> str:
    """The classifier's network: transformed pixels (batch x channels x size x size) in, logits out."""
    refuse_int8(cfg.task, quantize)
    model, data = vision.load_checkpoint(folder)

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return vision.logits(self.inner, pixel_values)

    sample = torch.rand(2, data["channels"], data["size"], data["size"])
    export_module(Logits(model.eval()), {"pixel_values": sample}, path, ("logits",))
    return f"{__name__}:OnnxImageClassifier"
