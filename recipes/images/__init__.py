"""The image family, shared by image classification and GANs: the image-folder data and model settings (here),
reading and transforming images (data.py) and the CNNs (vision.py).

Only the settings are imported with the package: torch and timm load with data.py and vision.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from toolkit.config import DataConfig, DataRole, above, at_least, between, setting
from toolkit.errors import ToolkitError


@dataclass
class ImageData(DataConfig):
    """Images: class folders, a path/label table, or an image column of a hub or saved dataset."""

    image_column: str = setting(
        "image",
        "images from a table, a hub or a saved dataset: the image (or path) column",
        role=DataRole("image", "image", ("image", "img", "path", "file", "filename", "picture")),
    )
    label_column: str = setting(
        "label",
        "its label (class folders need none)",
        role=DataRole("label", "label", ("label", "labels", "class", "category", "species", "target")),
    )
    classes: Optional[list[str]] = setting(None, "keep only these labels (e.g. digits 0-4)", shown="all")
    max_per_class: Optional[int] = setting(
        None, "keep the first N training images of each label (few-shot)", at_least(1), shown="all"
    )


@dataclass
class ImageConfig:
    """Input size, augmentation (torchvision transforms v2) and the transfer mode. Unset `size`, `channels`, `mean`,
    `std` and `crop_pct` come from the backbone's pretrained data config (timm's, or the image processor's for
    transformers models)."""

    pretrained: bool = setting(True, "ImageNet (or the checkpoint's) weights; false: random")
    # lp_ft: fine-tuning with a random head distorts the pretrained features, and lost to a probe on classes ImageNet
    # lacks (Kumar et al. 2022)
    mode: Literal["full", "linear_probe", "two_stage", "lp_ft"] = setting(
        "full",
        "`full`, `linear_probe` (frozen backbone and batch-norm statistics), `two_stage` (`head_epochs` of "
        "head only, then everything), `lp_ft` (the head fitted as a logistic-regression probe first, then everything "
        "fine-tuned)",
    )
    head_epochs: float = setting(1.0, "`two_stage`: epochs that train only the head", at_least(0))
    backbone_lr_scale: Optional[float] = setting(
        None, "the backbone learns at `lr` times this", at_least(0), shown="0.1 for `two_stage`, else 1"
    )
    size: Optional[int] = setting(
        None, "input size in pixels (GANs: 16-128, multiples of 4)", at_least(8), shown="backbone's"
    )
    channels: Optional[int] = setting(None, "1 (grey) or 3", ("1 or 3", lambda v: v in (1, 3)), shown="backbone's")
    crop_pct: Optional[float] = setting(
        None, "evaluation: resize to size / crop_pct, then centre-crop", between(0.05, 1), shown="backbone's"
    )
    mean: Optional[list[float]] = setting(None, "normalisation mean, one per channel", shown="backbone's")
    std: Optional[list[float]] = setting(None, "normalisation standard deviation, one per channel", shown="backbone's")
    random_resized_crop: bool = setting(True, "training augmentation: a random crop, resized")
    crop_scale_min: float = setting(0.25, "smallest random crop, as a fraction of the image area", between(0.01, 1))
    hflip: float = setting(0.5, "probability of a horizontal flip", between(0, 1))
    rotation: float = setting(0.0, "random rotation in degrees, either way", between(0, 180))
    color_jitter: float = setting(0.0, "brightness, contrast and saturation amount", between(0, 1))
    max_upload_mb: float = setting(10.0, "predict and the app refuse larger files", above(0))
    max_megapixels: float = setting(
        40.0, "... and images of more pixels (read from the header before decoding)", above(0)
    )
    top_k: int = setting(5, "labels shown by predict and the app", at_least(1))


def refuse_int8(task: str, quantize: bool) -> None:
    if quantize:
        raise ToolkitError(
            f"--quantize int8 quantizes a transformer's matrix products; a {task} export is fp32. "
            f"Export without --quantize."
        )
