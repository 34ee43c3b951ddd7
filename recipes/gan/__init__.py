"""GANs: a DCGAN trained from scratch or fine-tuned from another run (gan.init_from, with FreezeD), on any
image source the image recipes read (MNIST IDX, sklearn:digits, ImageFolder, ...)."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from toolkit import checks
from toolkit.checkpoint import find_checkpoint
from toolkit.config import Config, above, at_least, between, section, setting
from toolkit.errors import ToolkitError
from toolkit.predictor import names_on_demand
from toolkit.recipes.images import ImageConfig, ImageData
from toolkit.recipes.images import checks as image_checks
from toolkit.splits import encode_labels, label_names
from toolkit.tasks import ServeShape, TaskSpec, register

if TYPE_CHECKING:
    import torch

    from toolkit.recipes.gan import model as ganlib

# torch is imported where it is used: the settings below are read without it.


@dataclass
class GanConfig:
    """DCGAN (Radford et al. 2016), optionally class-conditional (conditional batch norm in the generator, projection
    discriminator), spectral norm, non-saturating or hinge loss, and an exponential moving average of the generator
    for sampling."""

    latent_dim: int = setting(64, "size of the latent z", at_least(1))
    channels: int = setting(
        64, "width of the last generator / first discriminator block; doubles per block", at_least(1)
    )
    conditional: bool = setting(
        False,
        "class-conditional: class-wise batch-norm scale and shift in the generator (z "
        "stays its only input), projection discriminator (Miyato & Koyama 2018)",
    )
    spectral_norm: bool = setting(True, "spectral norm on the discriminator")
    loss: Literal["nonsaturating", "hinge"] = setting("nonsaturating", "the adversarial loss")
    d_lr_scale: float = setting(1.0, "the discriminator learns at `lr` times this", above(0))
    beta1: float = setting(0.5, "Adam beta1 of both optimizers", between(0, 1, True))
    beta2: float = setting(0.999, "Adam beta2 of both optimizers", between(0, 1, True))
    ema_decay: float = setting(
        0.999, "moving average of the generator (with a warm-up), used for samples and metrics", between(0, 1, True)
    )
    init_from: Optional[str] = setting(
        None, "fine-tune from this GAN run's generator and discriminator", shown="unset", model_source=True
    )
    freeze_d_layers: int = setting(
        0, "FreezeD (Mo et al. 2020): freeze this many of the discriminator's first blocks", at_least(0)
    )
    grid_rows: int = setting(8, "rows of the fixed-noise sample grid written at every evaluation", at_least(1))
    # ImageNet Inception weights cannot be downloaded here, hence a classifier of the user's choice.
    eval_classifier: Optional[str] = setting(
        None,
        "FID/KID feature extractor: a finished image-classification run (e.g. a seed CNN on digits), or an "
        "ImageNet timm backbone by name (`tf_efficientnet_lite0`, packaged, for colour images); best/ is the lowest "
        "FID",
        shown="unset",
        model_source=True,
    )
    eval_samples: int = setting(
        1000, "generated (and at most this many real) images per FID/KID evaluation", at_least(2)
    )


@dataclass
class GanRunConfig(Config):
    """GANs: a DCGAN from scratch or fine-tuned from another run, on any image source image classification reads
    (its `image.size` and `image.channels` set the generated images)."""

    model: str = setting("dcgan", "the architecture: a DCGAN (the only one so far)")
    data: ImageData = section(ImageData)
    image: ImageConfig = section(ImageConfig)
    gan: GanConfig = section(GanConfig)

    def base_model(self):
        return None  # from scratch, or another GAN run (gan.init_from): no hub model

    def eval_split(self) -> str:
        """FID is usually taken against the images the GAN learned from, when no other split is set."""
        return "test" if self.data.test else "validation" if self.data.validation else "train"


SAMPLES = "samples"
METRICS = ("fid", "kid", "loss")  # validation metrics; the first picks best/


def data_config(cfg: GanRunConfig) -> dict:
    channels, size = cfg.image.channels or 1, cfg.image.size or 28
    return {"size": size, "channels": channels, "mean": [0.5] * channels, "std": [0.5] * channels, "crop_pct": 1.0}


def build_task(cfg: GanRunConfig):
    import torch

    from toolkit.engine import Task
    from toolkit.recipes.images import data as imlib

    splits, _ = imlib.load_splits(cfg)
    checks.run_checks(cfg, splits, CHECK_DATA)
    names = label_names(splits["train"].labels)
    train = splits["train"]
    if len(train) < cfg.batch_size:
        raise ToolkitError(
            f"data.train has {len(train)} images, fewer than batch_size={cfg.batch_size}: lower batch_size "
            "or add images (batch-norm and the discriminator need full batches)."
        )
    data = data_config(cfg)
    datasets = image_datasets(cfg, splits, names, data)
    model = build_gan(cfg, data, names)
    return Task(
        model=model,
        train_set=datasets["train"],
        eval_set=datasets.get("validation")
        or torch.utils.data.Subset(datasets["train"], range(min(cfg.gan.eval_samples, len(train)))),
        collate=imlib.collate,
        compute_loss=None,
        evaluate=sample_evaluator(cfg, model, names),
        save=lambda unwrapped, folder, state_dict=None: save(unwrapped, folder, cfg, data, names, state_dict),
        info={"labels": names, "image": {k: data[k] for k in ("size", "channels")}},
        optimizers=lambda m, c: optimizers(m, c),
        train_step=lambda m, batch, opts, accelerator: train_step(m, batch, opts, accelerator, cfg),
    )


def image_datasets(cfg: GanRunConfig, splits: dict, names: list[str], data: dict) -> dict:
    """Each split's images, resized and centre-cropped only (no augmentation): images held in memory are then
    transformed once."""
    from toolkit.recipes.images import data as imlib

    return {
        s: imlib.ImageDataset(
            images,
            encode_labels(images.labels, names, images.where),
            imlib.build_transform(cfg.image, data, train=False),
            data["channels"],
            random=False,
        )
        for s, images in splits.items()
    }


def build_gan(cfg: GanRunConfig, data: dict, names: list[str]) -> ganlib.GAN:
    """The DCGAN for these images and classes: new, or with gan.init_from's weights and FreezeD's frozen blocks."""
    from toolkit.recipes.gan import model as ganlib

    model = ganlib.GAN(cfg.gan, data["size"], data["channels"], len(names))
    if cfg.gan.init_from:
        load_init(model, cfg.gan.init_from)
    if cfg.gan.freeze_d_layers:
        ganlib.freeze_lower_blocks(model.discriminator, cfg.gan.freeze_d_layers)
    return model


def sample_evaluator(cfg: GanRunConfig, model: ganlib.GAN, names: list[str]):
    """The Task's evaluate: FID/KID with gan.eval_classifier's features, and the EMA generator's fixed-noise grid."""
    import torch

    from toolkit.recipes.gan import model as ganlib

    run_dir = Path(cfg.output_dir)
    rows = cfg.gan.grid_rows
    noise = ganlib.fixed_noise(rows * rows, cfg.gan.latent_dim, cfg.seed)
    labels = ganlib.grid_labels(rows, model.num_classes)
    calls = {"n": 0, "scorer": None}
    features = ganlib.ClassifierFeatures(cfg.gan.eval_classifier) if cfg.gan.eval_classifier else None

    def evaluate(wrapped, loader, accelerator) -> dict:
        """The fixed-noise grid of the EMA generator, to samples/ and TensorBoard; FID/KID with a feature classifier."""
        gan = accelerator.unwrap_model(wrapped)
        calls["n"] += 1
        metrics = {}
        if features is not None:
            if calls["scorer"] is None:  # the real images do not change: their features once per run
                real = torch.cat([batch["pixel_values"] for batch in loader]).cpu()
                real = accelerator.gather_for_metrics(real) if accelerator.num_processes > 1 else real
                calls["scorer"] = ganlib.GenerationScorer((real + 1) / 2, features)
            fake, fake_labels = ganlib.sample_for_metrics(gan, cfg.gan.eval_samples, cfg.seed)
            metrics = calls["scorer"](fake, fake_labels, names if gan.num_classes else None)
        if accelerator.is_main_process:
            path = run_dir / SAMPLES / f"eval_{calls['n']:04d}.png"
            write_samples(gan, noise, labels, rows, path, accelerator, calls["n"])
        return metrics

    return evaluate


def write_samples(gan: ganlib.GAN, noise, labels, rows: int, path: Path, accelerator, step: int) -> None:
    """The generator's grid of ``noise`` (and ``labels``), as a PNG at ``path`` and in TensorBoard at ``step``."""
    from torchvision.io import write_png

    from toolkit.recipes.gan import model as ganlib

    device = accelerator.device
    picture = ganlib.grid(gan.sample(noise.to(device), None if labels is None else labels.to(device)).cpu(), rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(picture, str(path))
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("samples", picture, step)


def optimizers(model: ganlib.GAN, cfg: GanRunConfig) -> list:
    import torch

    betas = (cfg.gan.beta1, cfg.gan.beta2)
    trainable = lambda module: [p for p in module.parameters() if p.requires_grad]
    return [
        torch.optim.Adam(trainable(model.generator), lr=cfg.lr, betas=betas),
        torch.optim.Adam(trainable(model.discriminator), lr=cfg.lr * cfg.gan.d_lr_scale, betas=betas),
    ]


def train_step(model, batch, opts, accelerator, cfg: GanRunConfig) -> dict:
    """One discriminator step on real and generated images, then one generator step; then the EMA."""
    import torch

    from toolkit.recipes.gan import model as ganlib

    gan = accelerator.unwrap_model(model)
    opt_g, opt_d = opts
    real = batch["pixel_values"]
    labels = batch["labels"] if gan.num_classes else None
    z = torch.randn(len(real), gan.latent_dim, device=real.device)
    fake = gan.generator(z, labels)
    d = ganlib.d_loss(cfg.gan.loss, gan.discriminator(real, labels), gan.discriminator(fake.detach(), labels))
    opt_d.zero_grad(set_to_none=True)
    accelerator.backward(d)
    average_gradients(gan.discriminator, accelerator)
    opt_d.step()
    g = ganlib.g_loss(cfg.gan.loss, gan.discriminator(fake, labels))
    opt_g.zero_grad(set_to_none=True)
    accelerator.backward(g)
    average_gradients(gan.generator, accelerator)
    opt_g.step()
    gan.update_ema(cfg.gan.ema_decay)
    return {"d_loss": d, "g_loss": g}


def average_gradients(module: torch.nn.Module, accelerator) -> None:
    """Several processes: average each gradient over them (what DDP does), since the step calls the unwrapped
    generator and discriminator separately."""
    if accelerator.num_processes > 1:
        for param in module.parameters():
            if param.grad is not None:
                param.grad.copy_(accelerator.reduce(param.grad, "mean"))


def save(model: ganlib.GAN, folder: Path, cfg: GanRunConfig, data: dict, names: list[str], state_dict=None) -> None:
    from safetensors.torch import save_file

    state = state_dict if state_dict is not None else model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architecture": "dcgan",
                "size": data["size"],
                "channels": data["channels"],
                "labels": names,
                "gan": {k: getattr(cfg.gan, k) for k in ("latent_dim", "channels", "conditional", "spectral_norm")},
            },
            indent=2,
        )
    )
    (folder / "labels.json").write_text(json.dumps(names))


def load_init(model: ganlib.GAN, source: str) -> None:
    """Weights of another GAN run (its best/, else last/) for fine-tuning."""
    from safetensors.torch import load_file

    from toolkit.recipes.gan import model as ganlib

    run = Path(source)
    folder = (
        run if (run / "model.safetensors").is_file() else (find_checkpoint(run, "best") or find_checkpoint(run, "last"))
    )
    if folder is None or not (folder / "model.safetensors").is_file():
        raise ToolkitError(f"gan.init_from '{source}' holds no GAN checkpoint (best/ or last/ with model.safetensors).")
    ganlib.load_matching(model, load_file(folder / "model.safetensors"), source)


def evaluate_run(sampler, cfg: GanRunConfig, source: str, split: str) -> dict:
    """FID, KID (and per-class accuracy for a conditional model) of a run's EMA generator against ``source``."""
    import torch

    from toolkit.recipes.gan import model as ganlib
    from toolkit.recipes.images import data as imlib

    if not cfg.gan.eval_classifier:
        raise ToolkitError(
            "`toolkit eval` of a GAN needs gan.eval_classifier: a finished image-classification run whose "
            "features FID/KID use (e.g. recipes/configs/seed_cnn_mnist.yaml's run for digits)."
        )
    found = imlib.load_images(source, f"'{source}'", split, cfg.data.image_column, cfg.data.label_column)
    found = imlib.keep_classes(found, cfg.data.classes, None)
    found, _ = imlib.drop_unreadable(found)
    data = data_config(cfg)
    dataset = imlib.ImageDataset(
        found, [0] * len(found), imlib.build_transform(cfg.image, data, train=False), data["channels"], random=False
    )
    count = min(cfg.gan.eval_samples, len(dataset))
    real = torch.stack([dataset[i][0] for i in range(count)])
    features = ganlib.ClassifierFeatures(cfg.gan.eval_classifier)
    with sampler.computing(sampler.gan):  # all of it, as in training's evaluation: the feature classifier too
        fake, labels = ganlib.sample_for_metrics(sampler.gan, cfg.gan.eval_samples, cfg.seed, device=sampler.device)
        return ganlib.generation_metrics(
            (real + 1) / 2, fake, features, labels, sampler.labels if sampler.gan.num_classes else None
        )


def load_predictor(folder, cfg: GanRunConfig, **kwargs):
    from .predictors import GanSampler

    return GanSampler(folder, cfg=cfg, **kwargs)


def serve_inputs(inputs) -> tuple[list, bool]:
    """{"seed": int, "label": class (conditional GANs), "rows": grid rows}, or a list of them."""
    items, single = ([inputs], True) if isinstance(inputs, dict) else (inputs, False)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ToolkitError('inputs must be {"seed": 0, "label": "3", "rows": 4} (label and rows optional) or a list.')
    for item in items:
        unknown = sorted(set(item) - {"seed", "label", "rows"})
        if unknown:
            raise ToolkitError(f"inputs take seed, label and rows, not {', '.join(unknown)}.")
        if not isinstance(item.get("seed", 0), int) or not isinstance(item.get("rows", 4), int):
            raise ToolkitError("seed and rows must be whole numbers.")
    return items, single


def serve_answers(answers: list, single: bool, parameters: dict):
    """{"image": the grid as a PNG in base64, "format": "png"} per request."""
    from PIL import Image

    rows = []
    for grid in answers:
        buffer = io.BytesIO()
        Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(buffer, format="PNG")
        rows.append({"image": base64.b64encode(buffer.getvalue()).decode(), "format": "png"})
    return rows[0] if single else rows


SERVE = ServeShape(
    read=serve_inputs,
    call=lambda sampler, items, options: [
        sampler.grid(i.get("seed", 0), i.get("label"), i.get("rows", 4)) for i in items
    ],
    write=serve_answers,
    example='{"inputs": {"seed": 7, "rows": 4}}',
    describe="inputs: {seed, label (a class of a conditional GAN), rows (1-16)} or a list of them. Answers {image: "
    "a rows x rows grid as a PNG in base64, format: png} per input.",
)


def export_onnx(folder: Path, path: Path, cfg, quantize: bool) -> str:
    """`toolkit export`: the EMA generator as ONNX (recipes/gan/predictors.py)."""
    from .predictors import export_generator

    return export_generator(folder, path, cfg, quantize)


CHECK_DATA = image_checks.data_checks(lambda cfg: data_config(cfg)["size"])


register(
    TaskSpec(
        rank=50,
        name="gan",
        description="Image generation: a (class-conditional) DCGAN from scratch or fine-tuned from another GAN run.",
        build=build_task,
        predictor=load_predictor,
        evaluate_run=evaluate_run,
        check_data=CHECK_DATA,
        app="toolkit.apps.gan",
        example_config="recipes/configs/gan_mnist.yaml",
        metrics=METRICS,
        lower_is_better=METRICS,
        config=GanRunConfig,
        serve=SERVE,
        export=export_onnx,
        usage="predict.grid(seed=0)  # an image grid (numpy array); predict.interpolate(0, 1, 0.5) walks between seeds",
    )
)

# An export written before this task's code moved names its predictor by an old module: found here by name.
__getattr__ = names_on_demand(__name__, {"OnnxGanSampler": "toolkit.recipes.gan.predictors"})
