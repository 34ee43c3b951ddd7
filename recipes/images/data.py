"""Image data: sources (ImageFolder, CSV manifests, hub datasets, scikit-learn digits, MNIST IDX), OpenCV
decoding, torchvision v2 transforms, and a dataset that skips unreadable images instead of crashing.

A source may end in a slice, ``[start:stop]``, to take a fixed part of it in its own order, e.g.
``../shared/data/images/mnist-test[:8000]`` to train and ``...[8000:]`` to test.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from toolkit import splits as splitlib
from toolkit.cache import cache_dir, fingerprint, replace_atomically
from toolkit.data import load_table, require_columns
from toolkit.errors import ToolkitError
from toolkit.splits import label_names

log = logging.getLogger(__name__)

_SLICE = re.compile(r"(?P<base>.+)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]")
BUILTIN_SOURCES = ("sklearn:digits",)


class BadImage(ValueError):
    """An image file that OpenCV cannot decode."""


@dataclass
class ImageSet:
    """One split: images (file paths, or arrays already in memory) and their label names."""

    items: list
    labels: list[str]
    where: str

    def __len__(self) -> int:
        return len(self.items)

    def select(self, keep: Sequence[int]) -> "ImageSet":
        items = self.items.select(keep) if isinstance(self.items, TableImages) else [self.items[i] for i in keep]
        return ImageSet(items, [self.labels[i] for i in keep], self.where)


class TableImages:
    """The image column of a ``datasets`` table, read one item at a time as the loader asks for it: 100,000
    images never become 100,000 arrays in memory. The column holds images (a hub dataset or a saved folder,
    decoded here) or file paths (an image folder or a manifest, decoded by :func:`decode`)."""

    def __init__(self, table, column: str, files: bool = False):
        self.table, self.column, self.files = table, column, files

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> Union[str, np.ndarray]:
        image = self.table[int(index)][self.column]
        if isinstance(image, str):
            return image
        return np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def select(self, keep: Sequence[int]) -> "TableImages":
        return TableImages(self.table.select(keep), self.column, self.files)

    def paths(self) -> list[str]:
        """A table of files: every path, read as one column."""
        return list(self.table[self.column])


def load_images(
    source: str, where: str, split: str = "train", image_column: str = "image", label_column: str = "label"
) -> ImageSet:
    """Load an image source; see the module docstring for the kinds of source."""
    match = _SLICE.fullmatch(source.strip())
    base = match["base"] if match else source.strip()
    images = _load_unsliced(base, where, split, image_column, label_column)
    if match:
        part = slice(int(match["start"]) if match["start"] else None, int(match["stop"]) if match["stop"] else None)
        keep = range(len(images))[part]
        if not keep:
            raise ToolkitError(
                f"{where}: the slice [{match['start']}:{match['stop']}] of '{base}' ({len(images)} images) is empty."
            )
        images = images.select(keep)
    return images


def _load_unsliced(source: str, where: str, split: str, image_column: str, label_column: str) -> ImageSet:
    if source == "sklearn:digits":
        return _sklearn_digits(where)
    if source.startswith("sklearn:"):
        raise ToolkitError(
            f"{where}: unknown built-in source '{source}'. Built-in sources: {', '.join(BUILTIN_SOURCES)}."
        )
    path = Path(source)
    if path.is_dir():
        if _idx_files(path):
            return _mnist_idx(path, where)
        if (
            (path / "dataset_info.json").is_file()
            or (path / "dataset_dict.json").is_file()
            or (path / "state.json").is_file()
        ):
            return _hub_images(source, where, split, image_column, label_column)
        return _image_folder(path, where)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return _csv_manifest(path, where)
        if "idx3" in path.name:
            return _mnist_idx(path.parent, where)
        raise ToolkitError(
            f"{where}: '{source}' is a file but not a CSV manifest (path,label). Give a folder of class "
            "subfolders, a CSV manifest, MNIST IDX files, a hub id or sklearn:digits."
        )
    if source.startswith((".", "/")) or "/" not in source:
        raise ToolkitError(
            f"{where}: '{source}' does not exist. Give a folder of class subfolders, a CSV manifest "
            "(path,label), a folder with MNIST IDX files, a hub dataset id, or sklearn:digits."
        )
    return _hub_images(source, where, split, image_column, label_column)


def _image_folder(root: Path, where: str) -> ImageSet:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ToolkitError(
            f"{where}: folder '{root}' has no class subfolders. Lay images out as {root}/<label>/<image>."
        )
    items, labels = [], []
    for folder in classes:
        files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ToolkitError(f"{where}: class folder '{folder}' is empty. Add images to it or remove it.")
        items += [str(f) for f in files]
        labels += [folder.name] * len(files)
    return file_table(items, labels, where)


def _csv_manifest(path: Path, where: str) -> ImageSet:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ToolkitError(
            f"{where}: manifest '{path}' has no rows. It needs a header `path,label` and one row per image."
        )
    missing = [c for c in ("path", "label") if c not in rows[0]]
    if missing:
        raise ToolkitError(
            f"{where}: manifest '{path}' has no column {' or '.join(missing)} (columns: {', '.join(rows[0])}). "
            "Its header must be `path,label`; paths are relative to the manifest's folder."
        )
    items = [str((path.parent / r["path"]) if not Path(r["path"]).is_absolute() else Path(r["path"])) for r in rows]
    return file_table(items, [str(r["label"]) for r in rows], where)


FILE_COLUMN = "path"


def file_table(paths: list[str], labels: list[str], where: str) -> ImageSet:
    """Image files as a ``datasets`` table of paths, decoded as the loader reads them. Its fingerprint is made of
    each file's path, size and modification time, so that what is derived from it (the decode check) is cached
    until a file changes."""
    import datasets
    import pyarrow as pa

    def stamp(path: str) -> list:
        try:
            found = os.stat(path)
            return [path, found.st_size, found.st_mtime_ns]
        except OSError:  # missing: the decode check names it
            return [path, -1, -1]

    listing = fingerprint("image files", [stamp(p) for p in paths])
    table = datasets.Dataset(pa.table({FILE_COLUMN: pa.array(paths, pa.string())}), fingerprint=listing)
    return ImageSet(TableImages(table, FILE_COLUMN, files=True), labels, where)


def _sklearn_digits(where: str) -> ImageSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 grey levels -> 0..255
    return ImageSet(list(images), [str(int(t)) for t in digits.target], where)


def _idx_files(folder: Path) -> tuple[Path, Path] | None:
    images = sorted(folder.glob("*idx3-ubyte*"))
    labels = sorted(folder.glob("*idx1-ubyte*"))
    return (images[0], labels[0]) if images and labels else None


def _read_idx(path: Path) -> np.ndarray:
    """The IDX format (MNIST): a magic number whose last byte is the number of dimensions, sizes, then uint8 data."""
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ToolkitError(f"'{path}' is not an IDX file of unsigned bytes (bad magic number).")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ToolkitError(f"'{path}' is truncated: its header says {shape} but it holds {array.size} bytes.")
    return array.reshape(shape).copy()  # writable: torch.from_numpy warns on read-only buffers


def _mnist_idx(folder: Path, where: str) -> ImageSet:
    found = _idx_files(folder)
    if found is None:
        raise ToolkitError(
            f"{where}: '{folder}' needs both an *idx3-ubyte[.gz] images file and an *idx1-ubyte[.gz] labels file."
        )
    images, labels = _read_idx(found[0]), _read_idx(found[1])
    if len(images) != len(labels):
        raise ToolkitError(
            f"{where}: {found[0].name} has {len(images)} images but {found[1].name} has {len(labels)} labels."
        )
    return ImageSet(list(images), [str(int(t)) for t in labels], where)


def _hub_images(source: str, where: str, split: str, image_column: str, label_column: str) -> ImageSet:
    table = load_table(source, split)
    require_columns(table, [image_column, label_column], where)
    feature = table.features.get(label_column)
    names = getattr(feature, "names", None)  # a ClassLabel: store its names, not the integers
    labels = [names[v] if names else str(v) for v in table[label_column]]
    return ImageSet(TableImages(table, image_column), labels, where)


def load_splits(cfg) -> tuple[dict, int]:
    """The configured splits as ImageSets (see :func:`toolkit.splits.load_splits`), with data.classes and
    data.max_per_class applied; unreadable files are skipped, and their count returned."""

    def load_split(split: str, source: str, where: str) -> ImageSet:
        found = load_images(source, where, split, cfg.data.image_column, cfg.data.label_column)
        return keep_classes(found, cfg.data.classes, cfg.data.max_per_class if split == "train" else None)

    loaded = splitlib.load_splits(
        cfg,
        load_split,
        "an image folder (one subfolder per class), a CSV manifest "
        "(path,label), a folder of MNIST IDX files, a hub dataset id or sklearn:digits",
    )
    skipped = 0
    for split, images in loaded.items():  # after sampling: only the images that will be used are decoded
        loaded[split], bad = drop_unreadable(images)
        skipped += len(bad)
    return loaded, skipped


def keep_classes(images: ImageSet, classes: list[str] | None, per_class: int | None) -> ImageSet:
    """Only the listed labels (data.classes), and at most the first N images of each (data.max_per_class)."""
    if classes is not None:
        wanted = {str(c) for c in classes}
        missing = sorted(wanted - set(images.labels))
        if missing:
            raise ToolkitError(
                f"{images.where} has no images of data.classes {', '.join(missing)} "
                f"(its labels: {', '.join(label_names(images.labels)[:20])})."
            )
    seen: dict[str, int] = {}
    keep = []
    for i, label in enumerate(images.labels):
        if classes is not None and label not in wanted:
            continue
        seen[label] = seen.get(label, 0) + 1
        if per_class is None or seen[label] <= per_class:
            keep.append(i)
    return images.select(keep) if len(keep) < len(images) else images


def pixel_count(path) -> int | None:
    """Width x height from the file's header, without decoding it (None when Pillow cannot read the header):
    a 442 KB PNG can claim 12000x12000 pixels and take 1.8 GB once decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # lazy: reads the header only
                width, height = image.size
    except Image.DecompressionBombError as err:
        # Over Pillow's own limit (~179 megapixels), far over ours: its message holds the real count.
        found = re.search(r"\((\d+) pixels\)", str(err))
        return int(found.group(1)) if found else 2**62
    except Exception:  # not an image Pillow knows; OpenCV decides later
        return None
    return width * height


def decode(item: Union[str, Path, bytes, np.ndarray], channels: int = 3) -> np.ndarray:
    """An image as an HxWxC uint8 RGB (or grey) array. Files (or their bytes) go through OpenCV; 16-bit, grey and
    RGBA are handled."""
    import cv2

    if isinstance(item, np.ndarray):
        image, from_file = item, False
    else:
        is_bytes = isinstance(item, (bytes, bytearray))
        buffer = np.frombuffer(item, dtype=np.uint8) if is_bytes else np.fromfile(str(item), dtype=np.uint8)
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
        if image is None:
            name = "the image" if is_bytes else f"'{item}'"
            raise BadImage(f"OpenCV cannot decode {name} (corrupt, empty or an unsupported format)")
        from_file = True
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 4:  # drop alpha
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if from_file else cv2.COLOR_RGBA2RGB)
    elif image.shape[2] == 3 and from_file:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 1 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    return np.ascontiguousarray(image)


def readable(item) -> bool:
    """Whether OpenCV decodes the file (at 1/8 scale first: fast)."""
    import cv2

    if isinstance(item, np.ndarray):
        return True
    try:
        buffer = np.fromfile(item, dtype=np.uint8)
    except OSError:  # missing or unreadable
        return False
    if not buffer.size:
        return False
    return (
        cv2.imdecode(buffer, cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None
        or cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) is not None
    )


def check_decodes(items) -> list[bool]:
    """:func:`readable` for every item, in threads (OpenCV releases the GIL while decoding). The answers for a
    table of files are cached under the table's fingerprint (paths, sizes, times): the next run on the same files
    does not decode them again."""
    files = isinstance(items, TableImages) and items.files
    if files:
        found = cache_dir() / f"{fingerprint(items.table._fingerprint, 'decodes', 1)}.json"
        if found.is_file():
            bad = set(json.loads(found.read_text())["unreadable"])
            log.info("decode check of %d image files read from the cache; nothing to redo", len(items))
            return [i not in bad for i in range(len(items))]
    tic = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        ok = list(pool.map(readable, items.paths() if files else items))
    if files:
        unreadable = [i for i, good in enumerate(ok) if not good]
        replace_atomically(found, json.dumps({"unreadable": unreadable}).encode())  # other ranks may read it
        log.info(
            "decode check of %d image files in %.1f s, cached for the next run", len(ok), time.perf_counter() - tic
        )
    return ok


def drop_unreadable(images: ImageSet) -> tuple[ImageSet, list[str]]:
    """Check every file decodes, skip the ones that don't with a warning naming each. A hub or saved table's
    images are decoded as the loader reads them (one that fails then is left out of the loss)."""
    if isinstance(images.items, TableImages) and not images.items.files:
        return images, []
    ok = check_decodes(images.items)
    bad = [str(images.items[i]) for i, good in enumerate(ok) if not good]
    for name in bad:
        log.warning("%s: skipping unreadable image %s (OpenCV cannot decode it)", images.where, name)
    if bad:
        log.warning("%s: skipped %d unreadable image(s) of %d", images.where, len(bad), len(images))
    else:
        return images, bad
    kept = images.select([i for i, good in enumerate(ok) if good])
    if not len(kept):
        raise ToolkitError(f"{images.where}: none of its {len(images)} images could be decoded by OpenCV.")
    return kept, bad


def is_random(image_cfg, train: bool) -> bool:
    """Whether the training transform draws random numbers (else every epoch sees the same tensors)."""
    return train and bool(
        image_cfg.random_resized_crop or image_cfg.hflip or image_cfg.rotation or image_cfg.color_jitter
    )


def build_transform(image_cfg, data: dict, train: bool):
    """torchvision transforms v2 on a uint8 CxHxW tensor: augmentation for training, resize + centre crop otherwise."""
    from torchvision.transforms import v2

    size = data["size"]
    steps = []
    if train and image_cfg.random_resized_crop:
        steps.append(v2.RandomResizedCrop(size, scale=(image_cfg.crop_scale_min, 1.0), antialias=True))
    else:
        steps += [v2.Resize(int(round(size / data["crop_pct"])), antialias=True), v2.CenterCrop(size)]
    if train:
        if image_cfg.hflip:
            steps.append(v2.RandomHorizontalFlip(image_cfg.hflip))
        if image_cfg.rotation:
            steps.append(v2.RandomRotation(image_cfg.rotation))
        if image_cfg.color_jitter:
            amount = image_cfg.color_jitter
            steps.append(
                v2.ColorJitter(brightness=amount, contrast=amount, saturation=amount if data["channels"] == 3 else 0)
            )
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(data["mean"], data["std"])]
    return v2.Compose(steps)


PRETRANSFORMED_BYTES = 512 * 2**20  # above this, fixed-transform arrays are transformed per item, as files are


def data_size(transform) -> int:
    """The side of the images ``transform`` makes (its centre crop)."""
    from torchvision.transforms import v2

    crops = [t.size for t in transform.transforms if isinstance(t, (v2.CenterCrop, v2.RandomResizedCrop))]
    return max(crops[-1]) if crops else 224


IGNORE = -100  # the label of an image that failed to decode mid-run: the loss and metrics leave it out


class ImageDataset(torch.utils.data.Dataset):
    """(image tensor, label id) per item, decoded with OpenCV and transformed with torchvision v2."""

    def __init__(self, images: ImageSet, label_ids: list[int], transform, channels: int, random: bool = True):
        self.images, self.label_ids, self.transform, self.channels = images, label_ids, transform, channels
        self.ready = None
        items = images.items
        in_memory = isinstance(items, list) and items
        if (
            not random
            and in_memory
            and all(isinstance(x, np.ndarray) and x.shape == items[0].shape for x in items)
            and len(items) * channels * data_size(transform) ** 2 * 4 <= PRETRANSFORMED_BYTES
        ):
            # Arrays in memory (MNIST, digits) under a fixed transform: transform them once, in batches.
            batch = torch.from_numpy(np.stack([decode(x, channels) for x in items])).permute(0, 3, 1, 2)
            self.ready = torch.cat([transform(chunk) for chunk in batch.split(1024)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        if self.ready is not None:
            return self.ready[index], self.label_ids[index]
        try:
            array = decode(self.images.items[index], self.channels)
        except BadImage as err:
            # Changed on disk since the up-front check: a blank stand-in that the loss ignores, never a crash mid-epoch.
            log.warning("%s: skipping image: %s", self.images.where, err)
            return self.transform(torch.zeros(self.channels, 8, 8, dtype=torch.uint8)), IGNORE
        return self.transform(torch.from_numpy(array).permute(2, 0, 1)), self.label_ids[index]


def collate(items: list) -> dict:
    return {"pixel_values": torch.stack([x for x, _ in items]), "labels": torch.tensor([y for _, y in items])}
