"""DCGAN generator and discriminator (28-64 px, grey or colour), class-conditional through conditional batch norm
in the generator and a projection discriminator (Miyato & Koyama 2018); spectral norm, the non-saturating and
hinge losses, and an EMA generator."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.checkpoint import find_checkpoint
from toolkit.errors import ToolkitError
from toolkit.recipes.images.vision import IMAGE_CONFIG, _timm_model, load_checkpoint, logits, model_kind
from toolkit.run import read_run_config


def upsamplings(size: int) -> int:
    """How many x2 steps from a 4-8 px seed to ``size`` (28 -> 7 -> 14 -> 28: 2; 64 -> 8 -> ... -> 64: 3)."""
    for k in range(1, 6):
        if size % 2**k == 0 and size // 2**k <= 8:
            return k
    raise ToolkitError(
        f"image.size={size} does not work for the DCGAN: use a multiple of 4 from 16 to 128 (e.g. 28, 32, 64)."
    )


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose scale and shift are looked up per class (de Vries et al. 2017; SNGAN, BigGAN). The class
    modulates every layer while z stays the generator's only input, so z keeps deciding what varies within a
    class (a class embedding concatenated to z let the generator ignore z: one image per class)."""

    def __init__(self, features: int, num_classes: int, batch_norm=nn.BatchNorm2d):
        super().__init__()
        self.norm = batch_norm(features, affine=False)
        self.scale = nn.Embedding(num_classes, features)
        self.shift = nn.Embedding(num_classes, features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)  # not len(x): an export keeps the batch dynamic
        return self.norm(x) * self.scale(labels).view(shape) + self.shift(labels).view(shape)


class Generator(nn.Module):
    def __init__(self, latent_dim: int, channels: int, size: int, image_channels: int, num_classes: int = 0):
        super().__init__()
        self.k = upsamplings(size)
        self.seed = size // 2**self.k
        self.width = channels * 2 ** (self.k - 1)

        def norm(features: int, batch_norm=nn.BatchNorm2d) -> nn.Module:
            return ConditionalBatchNorm(features, num_classes, batch_norm) if num_classes else batch_norm(features)

        self.project = nn.Linear(latent_dim, self.width * self.seed**2)
        self.norms = nn.ModuleList([norm(self.width * self.seed**2, nn.BatchNorm1d)])
        self.ups = nn.ModuleList()
        width = self.width
        for _ in range(self.k - 1):
            self.ups.append(nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False))
            self.norms.append(norm(width // 2))
            width //= 2
        self.to_image = nn.ConvTranspose2d(width, image_channels, 4, 2, 1)
        self.conditional = bool(num_classes)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.normed(0, self.project(z), labels)).view(-1, self.width, self.seed, self.seed)
        for i, up in enumerate(self.ups, start=1):
            h = F.relu(self.normed(i, up(h), labels))
        return torch.tanh(self.to_image(h))

    def normed(self, i: int, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.norms[i](x, labels) if self.conditional else self.norms[i](x)


class Discriminator(nn.Module):
    def __init__(self, channels: int, size: int, image_channels: int, num_classes: int = 0, spectral_norm: bool = True):
        super().__init__()
        norm = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        k = upsamplings(size)
        width, side = channels, size
        self.blocks = nn.ModuleList()
        previous = image_channels
        for _ in range(k):
            self.blocks.append(nn.Sequential(norm(nn.Conv2d(previous, width, 4, 2, 1)), nn.LeakyReLU(0.2)))
            previous, width, side = width, width * 2, side // 2
        features = previous * side * side
        self.out = norm(nn.Linear(features, 1))
        self.embed = norm(nn.Embedding(num_classes, features)) if num_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = images
        for block in self.blocks:
            h = block(h)
        h = h.flatten(1)
        score = self.out(h).squeeze(1)
        if self.embed is not None:
            score = score + (self.embed(labels) * h).sum(1)  # projection: real for *this* class?
        return score


class GAN(nn.Module):
    """Generator, discriminator and the generator's moving average (not trained; used for samples and metrics)."""

    def __init__(self, gan_cfg, size: int, image_channels: int, num_classes: int = 0):
        super().__init__()
        n = num_classes if gan_cfg.conditional else 0
        self.generator = Generator(gan_cfg.latent_dim, gan_cfg.channels, size, image_channels, n)
        self.discriminator = Discriminator(gan_cfg.channels, size, image_channels, n, gan_cfg.spectral_norm)
        self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.register_buffer(
            "ema_updates", torch.zeros((), dtype=torch.long)
        )  # saved, so a resume continues the warm-up
        self.latent_dim, self.num_classes = gan_cfg.latent_dim, n

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        # Warm-up: early on the average follows the generator closely, else it would hold the random start for
        # thousands of steps (0.999^500 = 0.6).
        self.ema_updates += 1
        t = float(self.ema_updates)
        decay = min(decay, (1 + t) / (10 + t))
        for avg, live in zip(self.ema.parameters(), self.generator.parameters()):
            avg.lerp_(live, 1 - decay)
        for avg, live in zip(self.ema.buffers(), self.generator.buffers()):
            avg.copy_(live)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] from the EMA generator (eval mode: batch-norm running statistics)."""
        was = self.ema.training
        self.ema.eval()
        out = self.ema(z, labels if self.num_classes else None)
        self.ema.train(was)
        return out


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def fixed_noise(count: int, latent_dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))


def grid_labels(rows: int, num_classes: int) -> torch.Tensor | None:
    """Row r of a class-conditional grid shows class r mod num_classes."""
    if not num_classes:
        return None
    return torch.arange(rows).repeat_interleave(rows) % num_classes


def freeze_lower_blocks(discriminator: Discriminator, count: int) -> None:
    """FreezeD: keep the discriminator's first ``count`` blocks as they were trained on the source data."""
    if count > len(discriminator.blocks):
        raise ToolkitError(
            f"gan.freeze_d_layers={count}, but the discriminator has {len(discriminator.blocks)} blocks."
        )
    for block in discriminator.blocks[:count]:
        block.requires_grad_(False)


def load_matching(model: GAN, state: dict, source: str) -> None:
    """Load a checkpoint into ``model``; parameters that do not match are named in the error."""
    target = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if wrong or missing or unexpected:
        parts = [
            f"shapes differ: {', '.join(wrong[:5])}" if wrong else "",
            f"missing: {', '.join(missing[:5])}" if missing else "",
            f"not in this model: {', '.join(unexpected[:5])}" if unexpected else "",
        ]
        raise ToolkitError(
            f"gan.init_from '{source}' is another architecture ({'; '.join(p for p in parts if p)}). "
            "Use the same image.size, image.channels, gan.latent_dim, gan.channels and gan.conditional as that run."
        )
    model.load_state_dict(state)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def grid(images: torch.Tensor, rows: int) -> torch.Tensor:
    """A rows x rows uint8 grid image (C x H x W) from images in [-1, 1]."""
    from torchvision.utils import make_grid

    picture = make_grid(images[: rows * rows], nrow=rows, padding=2, pad_value=-1)
    return to_uint8(picture[:1] if images.shape[1] == 1 else picture)  # make_grid repeats grey to RGB


def slerp(z0: torch.Tensor, z1: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two latents at fractions ``ts`` (Gaussian latents live near a sphere)."""
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.acos((a * b).sum().clamp(-1 + 1e-6, 1 - 1e-6))
    ts = ts[:, None]
    return (torch.sin((1 - ts) * omega) * z0 + torch.sin(ts * omega) * z1) / math.sin(float(omega))


class ClassifierFeatures(nn.Module):
    """FID/KID's feature extractor (Inception weights cannot be downloaded here): a finished image-classification
    run (e.g. the seed CNN on digits), or an ImageNet backbone by timm name (the packaged ``tf_efficientnet_lite0``
    for colour images). Its penultimate features of images in [0, 1], resized and normalised as it expects."""

    def __init__(self, source):
        super().__init__()
        if Path(source).is_dir():
            read_run_config(source)  # a run folder, or one clear error
            folder = find_checkpoint(Path(source), "best", intact=True)
            if folder is None:
                raise ToolkitError(f"run '{source}' has no best/ checkpoint yet. Train it first with `toolkit train`.")
            if not (folder / IMAGE_CONFIG).is_file():
                raise ToolkitError(
                    f"'{source}' is not an image-classification run: FID needs one as its feature extractor."
                )
            model, self.data = load_checkpoint(folder)  # the checkpoint alone, as the image predictor loads it
            self.model, self.labels = model.eval(), self.data["labels"]
        else:
            self.model = imagenet_backbone(str(source))
            self.data, self.labels = self.model.toolkit_data, []
        self.register_buffer("mean", torch.tensor(self.data["mean"]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(self.data["std"]).view(1, -1, 1, 1))
        self.num_features = int(
            self.embed(torch.zeros(1, self.data["channels"], self.data["size"], self.data["size"])).shape[1]
        )

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float()
        channels = self.data["channels"]
        if images.shape[1] != channels:
            images = images.mean(1, keepdim=True) if channels == 1 else images.expand(-1, 3, -1, -1)
        if images.shape[-1] != self.data["size"] or images.shape[-2] != self.data["size"]:
            images = F.interpolate(
                images, size=(self.data["size"],) * 2, mode="bilinear", antialias=True, align_corners=False
            )
        return (images - self.mean) / self.std

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prepare(images)
        if hasattr(self.model, "hidden"):  # the seed CNN: the Dense 64 layer
            return self.model.hidden(self.model.forward_features(x))
        if hasattr(self.model, "forward_head"):  # timm: pooled features before the classifier
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        out = self.model(pixel_values=x, output_hidden_states=True)  # transformers: pooled last hidden state
        return (
            out.hidden_states[-1].mean(dim=(2, 3)) if out.hidden_states[-1].ndim == 4 else out.hidden_states[-1][:, 0]
        )

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return logits(self.model, self.prepare(images)).argmax(-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # FID and KID are updated with the same chunk one after the other: embed it once (half an evaluation's time).
        last = getattr(self, "_last", None)
        if last is not None and last[0] is images:
            return last[1]
        features = self.embed(images)
        self._last = (images, features)
        return features


def imagenet_backbone(name: str) -> nn.Module:
    """A pretrained timm backbone without its classifier (its data config as ``toolkit_data``)."""
    try:
        kind = model_kind(name)
    except ToolkitError as err:
        raise ToolkitError(f"gan.eval_classifier: {err}") from None
    if kind != "timm":
        raise ToolkitError(
            f"gan.eval_classifier '{name}' is neither a run folder nor a timm model name "
            "(e.g. tf_efficientnet_lite0, whose ImageNet weights are packaged)."
        )
    model, data, spec = _timm_model(name, True, 0, 3)
    model.toolkit_data = {**data, **spec, "kind": kind, "num_classes": 0}
    return model.eval()


@torch.no_grad()
def sample_for_metrics(
    gan: GAN, count: int, seed: int, batch: int = 256, device=None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``count`` EMA samples in [0, 1], classes in equal shares for a conditional model (and those classes);
    ``device``: where the generator is (default: where its weights are)."""
    z = fixed_noise(count, gan.latent_dim, seed + 1)
    labels = torch.arange(count) % gan.num_classes if gan.num_classes else None
    device = device or next(gan.parameters()).device
    out = [
        gan.sample(z[i : i + batch].to(device), None if labels is None else labels[i : i + batch].to(device)).cpu()
        for i in range(0, count, batch)
    ]
    return (torch.cat(out) + 1) / 2, labels


class GenerationScorer:
    """FID and KID (torchmetrics, with ``features`` as the extractor) of generated sets against one fixed real set
    (images in [0, 1]). The real features are computed once (reset_real_features=False), not at every evaluation:
    with EfficientNet-Lite0 features that is most of an evaluation's time."""

    def __init__(self, real: torch.Tensor, features: ClassifierFeatures):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        self.features = features
        self.fid = FrechetInceptionDistance(feature=features, normalize=True, reset_real_features=False)
        self.kid = KernelInceptionDistance(
            feature=features, normalize=True, subset_size=min(100, len(real)), subsets=20, reset_real_features=False
        )
        for chunk in real.split(512):
            for metric in (self.fid, self.kid):
                metric.update(chunk, real=True)

    def __call__(
        self, fake: torch.Tensor, fake_labels: torch.Tensor | None = None, names: list[str] | None = None
    ) -> dict:
        """Scores of ``fake``; for a conditional model also how often the classifier sees the asked-for class,
        overall and per class."""
        if len(fake) < self.kid.subset_size:
            raise ToolkitError(
                f"{len(fake)} generated images are fewer than KID's subset of {self.kid.subset_size}: "
                "raise gan.eval_samples."
            )
        for metric in (self.fid, self.kid):
            metric.reset()  # the fake features only
        for chunk in fake.split(512):
            for metric in (self.fid, self.kid):
                metric.update(chunk, real=False)
        kid_mean, _ = self.kid.compute()
        out = {"fid": float(self.fid.compute()), "kid": float(kid_mean), "count": len(fake)}
        if fake_labels is not None and names is not None:
            index = {name: i for i, name in enumerate(self.features.labels)}
            if all(name in index for name in names):
                wanted = torch.tensor([index[names[i]] for i in fake_labels.tolist()])
                seen = torch.cat([self.features.predict(chunk) for chunk in fake.split(512)])
                hits = (seen == wanted).float()
                out["class_accuracy"] = float(hits.mean())
                out["per_class_accuracy"] = {name: float(hits[fake_labels == i].mean()) for i, name in enumerate(names)}
        return out


def generation_metrics(
    real: torch.Tensor,
    fake: torch.Tensor,
    features: ClassifierFeatures,
    fake_labels: torch.Tensor | None = None,
    names: list[str] | None = None,
) -> dict:
    """One-off FID/KID (and class accuracy) of ``fake`` against ``real``; see GenerationScorer."""
    return GenerationScorer(real, features)(fake, fake_labels, names)
