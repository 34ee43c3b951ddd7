"""DCGAN generator and discriminator (28-64 px, grey or colour), class-conditional through a projection
discriminator (Miyato & Koyama 2018), spectral norm, the non-saturating and hinge losses, and an EMA generator."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ToolkitError


def upsamplings(size: int) -> int:
    """How many x2 steps from a 4-8 px seed to ``size`` (28 -> 7 -> 14 -> 28: 2; 64 -> 8 -> ... -> 64: 3)."""
    for k in range(1, 6):
        if size % 2**k == 0 and size // 2**k <= 8:
            return k
    raise ToolkitError(f"image.size={size} does not work for the DCGAN: use a multiple of 4 from 16 to 128 (e.g. 28, 32, 64).")


class Generator(nn.Module):
    def __init__(self, latent_dim: int, channels: int, size: int, image_channels: int, num_classes: int = 0):
        super().__init__()
        self.k = upsamplings(size)
        self.seed = size // 2**self.k
        self.width = channels * 2 ** (self.k - 1)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.project = nn.Sequential(nn.Linear(latent_dim, self.width * self.seed**2), nn.BatchNorm1d(self.width * self.seed**2), nn.ReLU())
        blocks, width = [], self.width
        for _ in range(self.k - 1):
            blocks += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU()]
            width //= 2
        blocks += [nn.ConvTranspose2d(width, image_channels, 4, 2, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = z * self.embed(labels)  # multiplicative conditioning keeps the latent's scale
        h = self.project(z).view(len(z), self.width, self.seed, self.seed)
        return self.blocks(h)


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
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))  # saved, so a resume continues the warm-up
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
        raise ToolkitError(f"gan.freeze_d_layers={count}, but the discriminator has {len(discriminator.blocks)} blocks.")
    for block in discriminator.blocks[:count]:
        block.requires_grad_(False)


def load_matching(model: GAN, state: dict, source: str) -> None:
    """Load a checkpoint into ``model``; parameters that do not match are named in the error."""
    target = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in state.items() if k in target and v.shape != target[k].shape]
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if wrong or missing or unexpected:
        parts = [f"shapes differ: {', '.join(wrong[:5])}" if wrong else "", f"missing: {', '.join(missing[:5])}" if missing else "",
                 f"not in this model: {', '.join(unexpected[:5])}" if unexpected else ""]
        raise ToolkitError(f"gan.init_from '{source}' is another architecture ({'; '.join(p for p in parts if p)}). "
                           "Use the same image.size, image.channels, gan.latent_dim, gan.channels and gan.conditional as that run.")
    model.load_state_dict(state)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def grid(images: torch.Tensor, rows: int) -> torch.Tensor:
    """A rows x rows uint8 grid image (C x H x W) from images in [-1, 1]."""
    from torchvision.utils import make_grid

    picture = make_grid(images[: rows * rows], nrow=rows, padding=2, pad_value=-1)
    return to_uint8(picture[:1] if images.shape[1] == 1 else picture)  # make_grid repeats grey to RGB


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation between two latents (Gaussian latents live near a sphere)."""
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.acos((a * b).sum().clamp(-1 + 1e-6, 1 - 1e-6))
    ts = torch.linspace(0, 1, steps)[:, None]
    out = (torch.sin((1 - ts) * omega) * z0 + torch.sin(ts * omega) * z1) / math.sin(float(omega))
    return out
