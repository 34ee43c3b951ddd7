"""The seed CNN on MNIST digits: this project's recipe vs the same network in Keras 3 on its torch backend.

Data: ../shared/data/images/mnist-test, the first 8,000 images to train, the other 2,000 to test. Both sides:
Conv 32 3x3 ReLU, max-pool, Conv 64 3x3 ReLU, max-pool, flatten, Dense 64 ReLU, Dense 10; 5 epochs of Adam
(lr 1e-3), batch 32, sparse categorical cross-entropy, pixels scaled to [0, 1], final weights kept.
Prints accuracy and wall time of both and the ratio. Target: accuracy >= 0.98 and faster than Keras.
Usage: python benchmarks/seed_cnn_mnist.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"
ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)
CONFIG = ROOT / "recipes/configs/seed_cnn_mnist.yaml"
MNIST = ROOT.parent / "shared/data/images/mnist-test"


def run_toolkit() -> dict:
    import toolkit

    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        run = toolkit.train(CONFIG, [f"output_dir={tmp}/run", "trackers=[]"])
        wall = time.perf_counter() - tic
    return {
        "accuracy": run.metrics["test"]["accuracy"],
        "train_seconds": run.metrics["train_seconds"],
        "wall_seconds": wall,
    }


def run_keras() -> dict:
    import keras
    import numpy as np

    from toolkit.recipes.images.data import load_images

    def arrays(part: str):
        found = load_images(f"{MNIST}{part}", "mnist")
        return np.stack(found.items)[..., None].astype("float32") / 255.0, np.array([int(v) for v in found.labels])

    tic = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = arrays("[:8000]"), arrays("[8000:]")
    keras.utils.set_random_seed(42)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        metrics=["accuracy"],
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    fit_tic = time.perf_counter()
    model.fit(x_train, y_train, epochs=5, batch_size=32, shuffle=True, verbose=0)
    train_seconds = time.perf_counter() - fit_tic
    _, accuracy = model.evaluate(x_test, y_test, batch_size=64, verbose=0)
    return {"accuracy": float(accuracy), "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - tic}


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    if not MNIST.is_dir():
        print(f"MNIST not found at {MNIST}", file=sys.stderr)
        return 1
    ours, keras_ = run_toolkit(), run_keras()
    for name, r in (("toolkit", ours), ("Keras 3 (torch backend)", keras_)):
        print(
            f"{name:24s} test accuracy {r['accuracy']:.4f}  training {r['train_seconds']:.1f} s  "
            f"wall {r['wall_seconds']:.1f} s"
        )
    ratio = keras_["train_seconds"] / ours["train_seconds"]
    print(
        f"toolkit trains {ratio:.2f}x as fast as Keras "
        f"(wall, all in: {keras_['wall_seconds'] / ours['wall_seconds']:.2f}x)"
    )
    print(json.dumps({"toolkit": ours, "keras": keras_, "speedup": ratio}))
    return 0 if ours["accuracy"] >= 0.98 and ratio > 1 else 3


if __name__ == "__main__":
    sys.exit(main())
