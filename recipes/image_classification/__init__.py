"""Image classification: a pretrained CNN (timm, transformers) or the seed CNN, fine-tuned fully, as a
linear probe, or in two stages (head first, then the whole network with a lower backbone learning rate)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import checks
from toolkit.config import Config, section, setting
from toolkit.errors import ToolkitError
from toolkit.metrics import classification_metrics, error_report
from toolkit.models import without_gradients
from toolkit.predictor import names_on_demand
from toolkit.recipes.images import ImageConfig, ImageData
from toolkit.recipes.images import checks as image_checks
from toolkit.shapes import image_bytes_of, label_options, ranked, top_k_of
from toolkit.splits import encode_labels, label_names
from toolkit.tasks import ServeShape, TaskSpec, register

# torch, timm and PIL are imported where they are used: the settings below are read without them.


@dataclass
class ImageClassificationConfig(Config):
    """Image classification: a pretrained CNN (timm, transformers) or a small CNN from scratch."""

    model: str = setting(
        "tf_efficientnet_lite0",
        "a timm name, `hf-hub:timm/<id>`, a transformers image classifier "
        "(hub id or folder), or `seed_cnn` (a small CNN from scratch)",
        model_source=True,
    )
    data: ImageData = section(ImageData)
    image: ImageConfig = section(ImageConfig)

    def base_model(self):
        return self.model if self.image.pretrained else None

    def search_space(self) -> dict:
        """A sweep's image settings: the transfer mode, and how strongly training images are augmented."""
        if not self.image.pretrained:  # from scratch: no transfer mode to choose
            return {"image.crop_scale_min": {"low": 0.08, "high": 1.0}}
        return {
            "image.mode": {"choices": ["lp_ft", "full", "two_stage", "linear_probe"]},
            "image.crop_scale_min": {"low": 0.08, "high": 1.0},  # 1.0: no random crop at all
            "image.color_jitter": {"low": 0.0, "high": 0.4},
        }


log = logging.getLogger(__name__)
CONFUSION_PNG = "confusion_matrix.png"
EXAMPLES = "examples"  # example images for the app, copied into the run folder
METRICS = ("accuracy", "macro_f1", "top5_accuracy", "loss")  # validation metrics; the first picks best/


def build_task(cfg: ImageClassificationConfig):
    from toolkit.engine import Task
    from toolkit.recipes.images import data as imlib
    from toolkit.recipes.images import vision

    splits, skipped = imlib.load_splits(cfg)
    checks.run_checks(cfg, splits, CHECK_DATA)
    names = class_names(splits, cfg)
    ids = {s: encode_labels(images.labels, names, images.where) for s, images in splits.items()}
    model, data = vision.build_model(cfg, len(names))
    head = vision.head_parameter_names(model, data["kind"])
    mode = cfg.image.mode
    scale = backbone_lr_scale(cfg)
    if mode == "linear_probe":
        for name, param in model.named_parameters():
            param.requires_grad_(name in head)
    datasets = image_datasets(cfg, splits, ids, data)
    resuming = cfg.resume and (Path(cfg.output_dir) / "last").is_dir()
    if mode == "lp_ft" and not resuming:  # a resume loads last/ instead
        unaugmented = imlib.build_transform(cfg.image, data, train=False)
        plain = imlib.ImageDataset(splits["train"], ids["train"], unaugmented, data["channels"], random=False)
        fit_probe_head(model, data["kind"], plain, len(names), cfg)
    return Task(
        model=model,
        train_set=datasets["train"],
        eval_set=datasets.get("validation"),
        test_set=datasets.get("test"),
        collate=imlib.collate,
        compute_loss=compute_loss,
        evaluate=lambda m, loader, accelerator: evaluate(m, loader, accelerator, names),
        save=lambda unwrapped, folder, state_dict=None: vision.save_checkpoint(
            unwrapped, folder, data, names, state_dict
        ),
        info={
            "labels": names,
            "examples": example_images(splits),
            "skipped_images": skipped,
            "image": {k: data[k] for k in ("size", "channels")},
        },
        lr_scale=(lambda name: 1.0 if name in head else scale) if scale != 1.0 else None,
        train_mode=train_mode_of(cfg, head) if mode != "full" else None,
        report=report,
        find_unused_parameters=mode == "two_stage",
        evaluate_first=mode == "lp_ft",
        heavy_loading=datasets["train"].ready is None,  # photos decoded and augmented per item: workers pay off
    )


def class_names(splits: dict, cfg: ImageClassificationConfig) -> list[str]:
    """The training data's classes: at least two (an error names the one), and a warning when the images are fewer
    than a batch."""
    names = label_names(splits["train"].labels)
    if len(names) < 2:
        raise ToolkitError(
            f"data.train has a single class ({names[0]}): a classifier needs at least two. "
            "Add a folder (or manifest rows) for each other class."
        )
    if len(splits["train"]) < cfg.batch_size:
        log.warning("data.train has %d images, fewer than batch_size=%d", len(splits["train"]), cfg.batch_size)
    return names


def backbone_lr_scale(cfg: ImageClassificationConfig) -> float:
    """The backbone's learning rate as a fraction of the head's: image.backbone_lr_scale, else 0.1 in two_stage."""
    if cfg.image.backbone_lr_scale is not None:
        return cfg.image.backbone_lr_scale
    return 0.1 if cfg.image.mode == "two_stage" else 1.0


def train_mode_of(cfg: ImageClassificationConfig, head: set[str]):
    """The Task's train_mode: which parameters learn in an epoch (the backbone is frozen while only the head
    trains), and which batch-norm layers keep their statistics."""
    import torch

    mode = cfg.image.mode

    def train_mode(unwrapped, epoch: int) -> None:
        frozen = mode == "linear_probe" or (mode == "two_stage" and epoch < cfg.image.head_epochs)
        for name, param in unwrapped.named_parameters():
            if name not in head:
                param.requires_grad_(not frozen)
        # A frozen backbone keeps its pretrained batch-norm statistics too. So does lp_ft's: the probe head was fitted
        # to features under those statistics, and batch statistics of 16 augmented images shifted the features
        # enough to drop digits from 0.97 to 0.67 validation accuracy after one epoch.
        if frozen or mode == "lp_ft":
            for module in unwrapped.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    return train_mode


def image_datasets(cfg: ImageClassificationConfig, splits: dict, ids: dict, data: dict) -> dict:
    """Each split's images with their class ids, the training split augmented as image settings say."""
    from toolkit.recipes.images import data as imlib

    return {
        s: imlib.ImageDataset(
            images,
            ids[s],
            imlib.build_transform(cfg.image, data, train=s == "train"),
            data["channels"],
            random=imlib.is_random(cfg.image, train=s == "train"),
        )
        for s, images in splits.items()
    }


def example_images(splits: dict) -> list[str]:
    """Up to 8 image files of validation (else of train) for the app's examples."""
    shown = (splits.get("validation") or splits["train"]).items
    return [item for item in (shown[i] for i in range(min(8, len(shown)))) if isinstance(item, str)]


def fit_probe_head(model, kind: str, train_images, num_classes: int, cfg: ImageClassificationConfig) -> None:
    """LP-FT's first stage: the head becomes a logistic-regression probe of the frozen backbone's features."""
    import torch
    from torch.utils.data import DataLoader

    from toolkit.recipes.images import data as imlib
    from toolkit.recipes.images import vision

    loader = DataLoader(train_images, batch_size=2 * cfg.batch_size, collate_fn=imlib.collate)
    features, labels = vision.head_inputs(model, kind, loader)
    weight, bias = vision.fit_linear_probe(features, labels, num_classes, cfg.seed)
    layer = vision.last_linear(model, kind)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    log.info("lp_ft: head fitted as a linear probe on %d training images' features", len(labels))


def compute_loss(model, batch):
    import torch.nn.functional as F

    from toolkit.recipes.images import data as imlib
    from toolkit.recipes.images import vision

    labels = batch["labels"]
    out = vision.logits(model, batch["pixel_values"])
    # Mean over readable images only (an image that failed mid-run carries IGNORE).
    total = F.cross_entropy(out.float(), labels, ignore_index=imlib.IGNORE, reduction="sum")
    return total / (labels != imlib.IGNORE).sum().clamp(min=1)


@without_gradients
def evaluate(model, loader, accelerator, names: list[str]) -> dict:
    """Loss, accuracy, top-5 (more than 5 classes), per-class P/R/F1 and the confusion matrix, over every process."""
    import torch

    from toolkit.recipes.images import vision

    all_logits, all_labels = [], []
    for batch in loader:
        out = vision.logits(model, batch["pixel_values"]).float()
        out, labels = accelerator.gather_for_metrics((out, batch["labels"]))
        all_logits.append(out.cpu())
        all_labels.append(labels.cpu())
    return score(torch.cat(all_logits), torch.cat(all_labels), names)


def score(logits, labels, names: list[str]) -> dict:
    import torch.nn.functional as F

    from toolkit.recipes.images import data as imlib

    keep = labels != imlib.IGNORE
    logits, labels = logits[keep], labels[keep]
    metrics = classification_metrics(labels.numpy(), logits.argmax(-1).numpy(), names)
    metrics["loss"] = float(F.cross_entropy(logits, labels)) if len(labels) else float("nan")
    if len(names) > 5:
        metrics["top5_accuracy"] = float((logits.topk(5, dim=-1).indices == labels[:, None]).any(-1).float().mean())
    return metrics


def report(results: dict, run_dir: Path) -> None:
    """Extra files of a finished run: the confusion matrix, and the app's example images copied into it (a run
    folder must work when copied to another machine)."""
    write_confusion_png(results, run_dir)
    keep_examples(results, run_dir)


def keep_examples(results: dict, run_dir: Path) -> None:
    folder = run_dir / EXAMPLES
    kept = []
    for i, source in enumerate(results.get("examples") or []):
        source = Path(source)
        if source.is_file():
            folder.mkdir(exist_ok=True)
            shutil.copyfile(source, folder / f"{i}{source.suffix.lower()}")
            kept.append(f"{EXAMPLES}/{i}{source.suffix.lower()}")
    results["examples"] = kept  # relative to the run folder


def write_confusion_png(results: dict, run_dir: Path) -> None:
    split = "test" if "test" in results else "validation"
    if "confusion_matrix" in results.get(split, {}):
        save_confusion_png(
            results[split]["confusion_matrix"], results["labels"], run_dir / CONFUSION_PNG, f"{split} split"
        )


def save_confusion_png(matrix: list, names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = min(4 + 0.5 * len(names), 16)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.array(matrix), display_labels=names).plot(ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(f"Confusion matrix ({title})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_run(predictor, cfg: ImageClassificationConfig, source: str, split: str) -> dict:
    """Score a finished run on an image source with the run's classes; unreadable files are skipped and counted."""
    import torch

    from toolkit.recipes.images import data as imlib

    found = imlib.load_images(source, f"'{source}'", split, cfg.data.image_column, cfg.data.label_column)
    found, bad = imlib.drop_unreadable(found)
    labels = torch.tensor(encode_labels(found.labels, predictor.labels, f"'{source}'"))
    logits = predictor.logits(found.items)
    shown = [item if isinstance(item, str) else f"image {i}" for i, item in enumerate(found.items)]
    report = error_report(labels.numpy(), logits.softmax(-1).numpy(), predictor.labels, shown)
    metrics = score(logits, labels, predictor.labels)
    return {**metrics, "ece": report["calibration"]["ece"], "errors": report, "skipped_images": len(bad)}


def load_predictor(folder, cfg: ImageClassificationConfig, **kwargs):
    from .predictors import ImageClassifier

    return ImageClassifier(folder, cfg=cfg, **kwargs)


# A timm run's best/ loads with timm alone (a transformers run's with AutoModelForImageClassification).
STOCK_USAGE = """import json, timm, torch
from PIL import Image
config = json.load(open("{folder}/config.json"))
model = timm.create_model(config["architecture"], num_classes=config["num_classes"], pretrained=True,
                          pretrained_cfg_overlay=dict(config["pretrained_cfg"],
                                                      file="{folder}/model.safetensors")).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
with torch.no_grad():
    probabilities = model(transform(Image.open("photo.jpg").convert("RGB"))[None]).softmax(-1)[0]
dict(zip(config["label_names"], probabilities.tolist()))"""


def serve_answers(answers: list[dict], single: bool, parameters: dict) -> list:
    """[{label, score}] best first for one image; a list of those for several."""
    rows = [ranked(answer["scores"], top_k_of(parameters, len(answer["scores"]))) for answer in answers]
    return rows[0] if single else rows


SERVE = ServeShape(
    read=image_bytes_of,
    read_bytes=lambda body: [body],
    write=serve_answers,
    options=label_options("how many labels, best first (at most the run's image.top_k)"),
    example='{"inputs": "<the image file in base64>", "parameters": {"top_k": 3}}',
    describe="The image file's raw bytes as the body (any content type but JSON), or JSON {inputs: base64 bytes or "
    "a list of them}. Answers [{label, score}] best first.",
    max_body_bytes=64 * 2**20,
    client_call='image_classification("photo.jpg")',
)


def export_onnx(folder: Path, path: Path, cfg, quantize: bool) -> str:
    """`toolkit export`: the network as ONNX (recipes/image_classification/predictors.py)."""
    from .predictors import export_image_classifier

    return export_image_classifier(folder, path, cfg, quantize)


CHECK_DATA = image_checks.data_checks()


def label_issue_spec():
    from toolkit.recipes.images.label_issues import label_issue_spec

    return label_issue_spec()


register(
    TaskSpec(
        rank=40,
        name="image_classification",
        description="Image classification: a pretrained CNN (timm, transformers) or a small CNN from scratch, "
        "fine-tuned or probed.",
        build=build_task,
        predictor=load_predictor,
        evaluate_run=evaluate_run,
        check_data=CHECK_DATA,
        label_issues=label_issue_spec,
        app="toolkit.apps.image_classifier",
        example_config="recipes/configs/image_classification_hymenoptera.yaml",
        metrics=METRICS,
        usage='predict("photo.jpg")',
        pipeline_tag="image-classification",
        serve=SERVE,
        export=export_onnx,
        stock_usage=STOCK_USAGE,
        config=ImageClassificationConfig,
    )
)

# An export written before this task's code moved names its predictor by an old module: found here by name.
__getattr__ = names_on_demand(__name__, {"OnnxImageClassifier": "toolkit.recipes.image_classification.predictors"})
