"""Fine-tuning against a linear probe on classes ImageNet lacks: handwritten digits through the shipped
ImageNet EfficientNet-Lite0 config.

Data: ../shared/data/images/mnist-test, 100 training images per digit (from the first 5,000), validation the
next 400 images, test 2,000 others. Runs the shipped image config with only the data paths changed (as a user
would), with --with-previous the earlier default (two_stage) too, and the logistic-regression probe of the same frozen
features. Prints validation and test accuracy and seconds.
Usage: python benchmarks/image_new_classes.py [--with-previous] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from image_common import ROOT, linear_probe

CONFIG = ROOT / "recipes/configs/image_classification_hymenoptera.yaml"
MNIST = ROOT.parent / "shared/data/images/mnist-test"
DATA = [
    f"data.train={MNIST}[:5000]",
    "data.max_per_class=100",
    f"data.validation={MNIST}[5000:5400]",
    f"data.test={MNIST}[6000:8000]",
]


def fine_tune(*overrides: str) -> dict:
    import toolkit

    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        run = toolkit.train(CONFIG, [f"output_dir={tmp}/run", "trackers=[]", *DATA, *overrides])
        wall = time.perf_counter() - tic
    m = run.metrics
    return {
        "validation": m["validation"]["accuracy"],
        "test": m["test"]["accuracy"],
        "seconds": wall,
        "best_step": m["best_step"],
        "steps": m["steps"],
    }


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--with-previous", action="store_true", help="also run the previous default (two_stage, lr 1e-3)"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides for the fine-tunes")
    args = parser.parse_args()
    if not MNIST.is_dir():
        print(f"MNIST not found at {MNIST}", file=sys.stderr)
        return 1
    results = {
        "linear probe (scikit-learn, frozen features)": linear_probe(CONFIG, *DATA),
        "shipped config (lp_ft)": fine_tune(*args.overrides),
    }
    if args.with_previous:
        results["previous default (two_stage)"] = fine_tune(
            "image.mode=two_stage", "image.head_epochs=2", "lr=1e-3", *args.overrides
        )
    print(f"{'model':<44} {'val acc':>8} {'test acc':>8} {'seconds':>8}")
    for name, r in results.items():
        print(f"{name:<44} {r['validation']:>8.4f} {r['test']:>8.4f} {r['seconds']:>8.0f}")
    print(json.dumps(results))
    probe, shipped = results["linear probe (scikit-learn, frozen features)"], results["shipped config (lp_ft)"]
    return 0 if shipped["test"] >= probe["test"] else 3


if __name__ == "__main__":
    sys.exit(main())
