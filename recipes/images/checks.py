"""Data checks of image tasks: tiny images, images of another mode, duplicates within a split and across splits,
labels in one split only, class imbalance (``toolkit check``; training runs them on the splits it loaded)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit import checks

TINY_SIDE = 32  # pixels on a side (or half image.size, if smaller): an image says little once scaled up that far
SCANNED = 20_000  # images read per split (the first ones): header, a small grey thumbnail and a hash


@dataclass
class Seen:
    name: str
    size: tuple[int, int]  # width, height
    mode: str
    exact: str  # the file's (or array's) bytes
    thumb: np.ndarray  # 32x32 grey


def look(item, index: int) -> Seen | None:
    """What the checks need of one image, without decoding it at full size where Pillow can help (JPEG draft)."""
    from PIL import Image

    if isinstance(item, np.ndarray):
        array = item if item.ndim == 3 else item[:, :, None]
        grey = Image.fromarray(array.mean(axis=2).astype(np.uint8))
        mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(array.shape[2], f"{array.shape[2]} channels")
        size = (array.shape[1], array.shape[0])
        return Seen(f"image {index}", size, mode, digest(array.tobytes()), thumbnail(grey))
    try:
        with Image.open(item) as image:
            size, mode = image.size, image.mode
            image.draft("L", (64, 64))  # JPEG: decode at 1/2 to 1/8 scale
            near = thumbnail(image.convert("L"))
        return Seen(Path(str(item)).name, size, mode, digest(Path(str(item)).read_bytes()), near)
    except Exception:  # noqa: BLE001 - unreadable images are skipped and counted when the data loads
        return None


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def thumbnail(grey) -> np.ndarray:
    """A 32x32 grey thumbnail: near-duplicates are found by comparing these."""
    from PIL import Image

    return np.asarray(grey.resize((32, 32), Image.Resampling.BOX), dtype=np.uint8)


# Correlation of two thumbnails over which they are one picture: half-size JPEG copies of hymenoptera photos
# correlate 0.975-1.0 with their original (95% over 0.99); no two of 3,000 MNIST digits do over 0.983.
SAME_PICTURE = 0.985
CHUNK = 2048


def unit_rows(looks: list[Seen]) -> np.ndarray:
    """Each thumbnail centred and scaled to length 1: a dot product of two rows is their correlation."""
    x = np.stack([s.thumb.ravel() for s in looks]).astype(np.float32) if looks else np.zeros((0, 1024), np.float32)
    x -= x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)  # a flat image matches nothing


def earlier_copy(looks: list[Seen]) -> list[int | None]:
    """For each image, the first earlier one of the list that is the same picture (or None)."""
    z, found = unit_rows(looks), []
    for start in range(0, len(looks), CHUNK):
        stop = min(start + CHUNK, len(looks))
        same = (z[start:stop] @ z[:stop].T) > SAME_PICTURE
        same &= np.arange(stop)[None, :] < np.arange(start, stop)[:, None]  # earlier images only
        found += [int(row.argmax()) if row.any() else None for row in same]
    return found


def in_other(looks: list[Seen], others: list[Seen]) -> list[bool]:
    """For each image of ``looks``, whether ``others`` hold the same picture."""
    z, other, found = unit_rows(looks), unit_rows(others), []
    for start in range(0, len(looks), CHUNK):
        found += [bool(row.any()) for row in (z[start : start + CHUNK] @ other.T) > SAME_PICTURE]
    return found


def check_images(splits: dict, size: int | None) -> list:
    """Every check on ImageSets {split: ImageSet}; ``size``: the side the model sees (image.size), if set."""
    seen = {
        split: [look(images.items[i], i) for i in range(min(len(images), SCANNED))] for split, images in splits.items()
    }
    tiny_side = min(TINY_SIDE, size // 2) if size else TINY_SIDE
    labels = {split: images.labels[: len(seen[split])] for split, images in splits.items()}
    findings = []
    for split, looks in seen.items():
        findings += tiny_or_other_mode(split, [s for s in looks if s is not None], tiny_side)
        findings += duplicate_images(split, looks, labels[split])
    findings += leaked_images(seen)
    findings += checks.label_coverage(splits, lambda images: Counter(images.labels), "images")
    findings += checks.imbalance(Counter(splits["train"].labels), what="images")
    return findings


def tiny_or_other_mode(split: str, looks: list[Seen], tiny_side: int) -> list:
    findings, where = [], f"data.{split}"
    tiny = [s for s in looks if min(s.size) < tiny_side]
    if tiny:
        findings.append(
            checks.Finding("tiny images", where, len(tiny), len(looks),
                           f"images are under {tiny_side} pixels on a side",
                           "drop them or find larger ones: scaled up to the model's size they are mostly blur",
                           [f"{s.name} ({s.size[0]}x{s.size[1]})" for s in tiny])
        )  # fmt: skip
    modes = Counter(s.mode for s in looks)
    if len(modes) > 1:
        usual = modes.most_common(1)[0][0]
        other = [s for s in looks if s.mode != usual]
        findings.append(
            checks.Finding("image modes", where, len(other), len(looks),
                           f"images are of another mode than most ({usual}): "
                           f"{', '.join(f'{m} {n}' for m, n in modes.most_common()[1:])}",
                           "they are converted when loaded; check that they belong (scans, masks and icons often "
                           "differ in mode)", [f"{s.name} ({s.mode})" for s in other])
        )  # fmt: skip
    return findings


def duplicate_images(split: str, looks: list, labels: list[str]) -> list:
    where = f"data.{split}"
    kept = [(s, lab) for s, lab in zip(looks, labels) if s is not None]
    exact = set(checks.repeats([s.exact for s, _ in kept]))
    copies = earlier_copy([s for s, _ in kept])
    near = [i for i, j in enumerate(copies) if j is not None and i not in exact]
    conflicts = [(i, j) for i, j in enumerate(copies) if j is not None and kept[i][1] != kept[j][1]]
    findings = []
    if exact:
        findings.append(
            checks.Finding("duplicates", where, len(exact), len(kept), "images repeat an earlier file byte for byte",
                           "drop the copies", [kept[i][0].name for i in sorted(exact)])
        )  # fmt: skip
    if near:
        findings.append(
            checks.Finding("near-duplicates", where, len(near), len(kept),
                           "images are the same picture as an earlier one (re-encoded, resized or recompressed)",
                           "drop the copies", [f"{kept[i][0].name} = {kept[copies[i]][0].name}" for i in near])
        )  # fmt: skip
    if conflicts:
        findings.append(
            checks.Finding("conflicting labels", where, len(conflicts), len(kept),
                           "images are the same picture as an earlier one with another label",
                           "give each picture one label (`toolkit label-issues` ranks the likely wrong ones)",
                           [f"{kept[i][0].name} ({kept[i][1]}) = {kept[j][0].name} ({kept[j][1]})"
                            for i, j in conflicts])
        )  # fmt: skip
    return findings


def leaked_images(seen: dict) -> list:
    if "train" not in seen:
        return []
    train = [s for s in seen["train"] if s is not None]
    findings = []
    for split in ("validation", "test"):
        looks = [s for s in seen.get(split, []) if s is not None]
        leaked = [s for s, hit in zip(looks, in_other(looks, train)) if hit]
        if leaked:
            findings.append(
                checks.Finding("leakage", f"data.{split}", len(leaked), len(looks), "images are also in data.train",
                               f"drop them from data.{split}: scores on them are memory, not generalization",
                               [s.name for s in leaked])
            )  # fmt: skip
    return findings


def data_checks(size_of: Callable = lambda cfg: cfg.image.size) -> Callable:
    """An image task's ``check_data``; ``size_of(cfg)``: the side its model sees (None: unknown before it loads)."""

    def check_data(cfg, splits: dict | None = None) -> list:
        if splits is None:
            from toolkit.recipes.images import data as imlib

            splits, _ = imlib.load_splits(cfg)
        return check_images(splits, size_of(cfg))

    return check_data
