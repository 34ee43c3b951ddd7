"""Label issues of image classification: its training images and labels, folds written as CSV manifests (files) or
PNG class folders (images held in memory), probabilities from the fold's classifier, and frozen CNN features for
the probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import ToolkitError


def label_rows(cfg):
    from toolkit.label_issues import LabelRows
    from toolkit.recipes.images import data as imlib
    from toolkit.splits import label_names

    if not cfg.data.train:
        raise ToolkitError("no training data: set data.train to the images whose labels to check.")
    where = f"data.train ('{cfg.data.train}')"
    images = imlib.load_images(cfg.data.train, where, "train", cfg.data.image_column, cfg.data.label_column)
    ok = imlib.check_decodes(images.items) if not isinstance(images.items, imlib.TableImages) else None
    numbers = [i for i in range(len(images)) if ok is None or ok[i]]
    if len(numbers) < len(images):
        images = images.select(numbers)
    names = label_names(images.labels)
    index = {name: i for i, name in enumerate(names)}
    items = [images.items[i] for i in range(len(images))]
    return LabelRows(
        table=items,
        labels=[index[label] for label in images.labels],
        names=names,
        shown=[item if isinstance(item, str) else f"image {n}" for item, n in zip(items, numbers)],
        numbers=numbers,
    )


def write_fold(rows, indices, folder: Path) -> str:
    """Files as a manifest of their paths; images held in memory as PNGs in class folders."""
    import csv

    from PIL import Image

    if all(isinstance(rows.table[i], str) for i in indices):
        path = folder / "train.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            writer.writerows([str(Path(rows.table[i]).absolute()), rows.names[rows.labels[i]]] for i in indices)
        return str(path)
    root = folder / "images"
    for i in indices:
        label = rows.names[rows.labels[i]]
        (root / label).mkdir(parents=True, exist_ok=True)
        array = np.asarray(rows.table[i])
        Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[2] == 1 else array).save(
            root / label / f"{i}.png"
        )
    return str(root)


def probabilities(predictor, rows, indices, names: list[str]):
    from toolkit.label_issues import in_order

    probs = predictor.logits([rows.table[i] for i in indices]).softmax(-1).numpy()
    return in_order(probs, predictor.labels, names)


def frozen_features(cfg, rows):
    """The pretrained backbone's pooled features (no head) of each image, as the model would see it."""
    import torch

    from toolkit.recipes.images import data as imlib
    from toolkit.recipes.images import vision

    if vision.model_kind(cfg.model) != "timm" or not cfg.image.pretrained:
        raise ToolkitError("the probe needs a pretrained timm backbone (its frozen features): use --method finetune.")
    model, data = vision.build_model(cfg, 0)  # num_classes 0: timm's pooled features
    model.eval()
    transform = imlib.build_transform(cfg.image, data, train=False)
    out = []
    with torch.inference_mode():
        for start in range(0, len(rows.table), 32):
            chunk = rows.table[start : start + 32]
            batch = torch.stack(
                [transform(torch.from_numpy(imlib.decode(item, data["channels"])).permute(2, 0, 1)) for item in chunk]
            )
            out.append(model(batch).float().reshape(len(chunk), -1).numpy())
    features = np.concatenate(out)
    return features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-9)


def corrected_manifest(cfg, changes: dict, out: Path) -> Path:
    """Every image of data.train with its label, corrected where ``changes`` says ({row: label}), as a CSV
    manifest (path,label) that data.train can name; the images stay where they are."""
    import csv

    if Path(out).suffix.lower() != ".csv":
        raise ToolkitError(f"'{out}': the corrected labels of images are a CSV manifest; give a .csv name.")
    rows = label_rows(cfg)
    if not all(isinstance(item, str) for item in rows.table):
        raise ToolkitError("these images are not files: a manifest of corrected labels needs image files.")
    partial = Path(out).with_name(Path(out).name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for item, label, number in zip(rows.table, rows.labels, rows.numbers):
            writer.writerow([str(Path(item).absolute()), changes.get(number, rows.names[label])])
    partial.replace(out)
    return Path(out)


def label_issue_spec():
    from toolkit.label_issues import LabelIssueSpec

    return LabelIssueSpec(
        rows=label_rows, write=write_fold, probabilities=probabilities, features=frozen_features,
        correct=corrected_manifest,
    )  # fmt: skip
