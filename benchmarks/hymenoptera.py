"""Ants vs bees: the shipped EfficientNet-Lite0 config (packaged ImageNet weights), fine-tuned on hymenoptera
train (244 images), accuracy on val (153), beside a logistic-regression probe of the same frozen features.
Also the zero-shot check of the weight mapping: how often ImageNet's 'ant' (310) or 'bee' (309) is among the
top 5 before any fine-tuning.

Target: accuracy >= 0.93 (the PyTorch transfer-learning tutorial's ResNet-18 reaches ~0.94 on a GPU) in under
15 minutes on this CPU. Usage: python benchmarks/hymenoptera.py [key=value overrides]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from image_common import ROOT, linear_probe

CONFIG = ROOT / "recipes/configs/image_classification_hymenoptera.yaml"
VAL = ROOT.parent / "shared/data/images/hymenoptera/val"


def zero_shot_rate() -> float:
    import torch

    from toolkit.api import resolve_config
    from toolkit.recipes.images import data as imlib
    from toolkit.recipes.images.vision import _packaged_file, build_model, efficientnet_pytorch_to_timm

    cfg = resolve_config(CONFIG, ["output_dir=/tmp/unused"])
    model, data = build_model(cfg, 1000)
    model.load_state_dict(efficientnet_pytorch_to_timm(torch.load(_packaged_file(cfg.model), weights_only=True), model))
    transform = imlib.build_transform(cfg.image, data, train=False)
    files = sorted(VAL.rglob("*.jpg"))
    hits = 0
    with torch.inference_mode():
        for start in range(0, len(files), 32):
            x = torch.stack(
                [transform(torch.from_numpy(imlib.decode(f)).permute(2, 0, 1)) for f in files[start : start + 32]]
            )
            hits += sum(309 in row or 310 in row for row in model.eval()(x).topk(5).indices.tolist())
    return hits / len(files)


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    import toolkit

    if not VAL.is_dir():
        print(f"hymenoptera not found at {VAL}", file=sys.stderr)
        return 1
    rate = zero_shot_rate()
    probe = linear_probe(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        run = toolkit.train(CONFIG, [f"output_dir={tmp}/run", "trackers=[]", *sys.argv[1:]])
        wall = time.perf_counter() - tic
    m = run.metrics
    print(f"zero-shot (before fine-tuning): ant or bee in the top 5 for {rate:.3f} of val images")
    print(
        f"linear probe (scikit-learn on frozen features): val accuracy {probe['validation']:.4f} "
        f"({probe['seconds']:.0f} s)"
    )
    print(
        f"fine-tuned: val accuracy {m['validation']['accuracy']:.4f} (best of {m['steps']} steps), "
        f"training {m['train_seconds']:.0f} s at {m['train_samples_per_second']:.1f} images/s, wall {wall:.0f} s in all"
    )
    print(
        json.dumps(
            {
                "zero_shot_top5_rate": rate,
                "probe_val_accuracy": probe["validation"],
                "val_accuracy": m["validation"]["accuracy"],
                "train_seconds": m["train_seconds"],
                "images_per_second": m["train_samples_per_second"],
                "wall_seconds": wall,
            }
        )
    )
    return 0 if m["validation"]["accuracy"] >= 0.93 else 3


if __name__ == "__main__":
    sys.exit(main())
