"""Fine-tuning against a linear probe on classes ImageNet lacks: handwritten digits through the shipped
ImageNet EfficientNet-Lite0 config.

Data: ../shared/data/images/mnist-test, 100 training images per digit (from the first 5,000), validation the
next 400 images, test 2,000 others. Runs the shipped image config with only the data paths changed (as a user
would), the same with the previous default (two_stage), and the logistic-regression probe of the same frozen
features. Prints validation and test accuracy and seconds. Usage: python benchmarks/image_new_classes.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from image_common import ROOT, linear_probe

CONFIG = ROOT / "recipes/configs/image_classification_hymenoptera.yaml"
MNIST = ROOT.parent / "shared/data/images/mnist-test"
DATA = [f"data.train={MNIST}[:5000]", "data.max_per_class=100", f"data.validation={MNIST}[5000:5400]",
        f"data.test={MNIST}[6000:8000]"]


def fine_tune(*overrides: str) -> dict:
    import toolkit

    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        run = toolkit.train(CONFIG, [f"output_dir={tmp}/run", "trackers=[]", *DATA, *overrides])
        wall = time.perf_counter() - tic
    m = run.metrics
    return {"validation": m["validation"]["accuracy"], "test": m["test"]["accuracy"], "seconds": wall, "best_step": m["best_step"],
            "steps": m["steps"]}


def main() -> int:
    if not MNIST.is_dir():
        print(f"MNIST not found at {MNIST}", file=sys.stderr)
        return 1
    probe = linear_probe(CONFIG, *DATA)
    shipped = fine_tune(*sys.argv[1:])
    previous = fine_tune("image.mode=two_stage", "image.head_epochs=2", "lr=1e-3", *sys.argv[1:])
    print(f"{'model':<44} {'val acc':>8} {'test acc':>8} {'seconds':>8}")
    for name, r in (("linear probe (scikit-learn, frozen features)", probe), ("shipped config (lp_ft)", shipped),
                    ("previous default (two_stage)", previous)):
        print(f"{name:<44} {r['validation']:>8.4f} {r['test']:>8.4f} {r['seconds']:>8.0f}")
    print(json.dumps({"probe": probe, "shipped": shipped, "two_stage": previous}))
    return 0 if shipped["test"] >= probe["test"] else 3


if __name__ == "__main__":
    sys.exit(main())
