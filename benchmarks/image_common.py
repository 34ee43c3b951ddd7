"""Shared by the image benchmarks: the linear-probe baseline every fine-tune is printed beside.

The probe is scikit-learn's logistic regression (L2 strength by 3-fold cross-validation on the training
features) on the frozen pretrained backbone's features of the un-augmented training images, scored on the
same validation and test images as the fine-tune.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)  # the shipped configs name their data relative to the repository root


def linear_probe(config: Path, *overrides: str) -> dict:
    """Accuracy of a logistic-regression probe on the config's pretrained backbone, per split, and its seconds."""
    import numpy as np
    from torch.utils.data import DataLoader

    from toolkit.api import resolve_config
    from toolkit.recipes.images import data as imlib
    from toolkit.recipes.images import vision
    from toolkit.splits import encode_labels, label_names

    tic = time.perf_counter()
    cfg = resolve_config(config, [*overrides, "output_dir=/tmp/unused"])
    splits, _ = imlib.load_splits(cfg)
    names = label_names(splits["train"].labels)
    model, data = vision.build_model(cfg, len(names))
    transform = imlib.build_transform(cfg.image, data, train=False)
    features = {}
    for split, found in splits.items():
        dataset = imlib.ImageDataset(
            found, encode_labels(found.labels, names, split), transform, data["channels"], random=False
        )
        features[split] = vision.head_inputs(
            model, data["kind"], DataLoader(dataset, batch_size=64, collate_fn=imlib.collate)
        )
    weight, bias = vision.fit_linear_probe(*features["train"], len(names), cfg.seed)
    out = {}
    for split, (x, y) in features.items():
        predictions = (x @ weight.numpy().T + bias.numpy()).argmax(1)
        out[split] = float(np.mean(predictions == y))
    out["seconds"] = time.perf_counter() - tic
    return out
