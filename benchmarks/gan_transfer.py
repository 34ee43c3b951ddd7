"""Transfer learning for GANs: digits 5-9 from 50 images per class, fine-tuned from a digits 0-4 GAN (with FreezeD)
against the same GAN trained from scratch on the same 250 images for the same training time.

Steps (all on ../shared/data/images/mnist-test, the first 8,000 images; FID reference: digits 5-9 of the other 2,000):
  1. the FID feature extractor: recipes/configs/seed_cnn_mnist.yaml (the seed CNN on all ten digits)
  2. the source GAN: recipes/configs/gan_mnist.yaml (digits 0-4)
  3. recipes/configs/gan_mnist_finetune.yaml from step 2, and the same config from scratch, --minutes each
Prints FID, KID and the classifier's accuracy on generated digits of each asked-for class, and images/s.
Target: fine-tuning clearly better (lower FID) than from scratch. Usage: python benchmarks/gan_transfer.py [--minutes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)
CONFIGS = ROOT / "recipes" / "configs"
MNIST = ROOT.parent / "shared/data/images/mnist-test"
OUT = ROOT / "runs" / "bench_gan"


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    import toolkit

    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=2.0)
    args = parser.parse_args()
    if not MNIST.is_dir():
        print(f"MNIST not found at {MNIST}", file=sys.stderr)
        return 1
    common = ["overwrite=true", "trackers=[]"]
    classifier = toolkit.train(CONFIGS / "seed_cnn_mnist.yaml", [f"output_dir={OUT}/classifier", *common])
    print(f"feature classifier: test accuracy {classifier.metrics['test']['accuracy']:.4f}")
    tic = time.perf_counter()
    source = toolkit.train(CONFIGS / "gan_mnist.yaml", [f"output_dir={OUT}/source_0_4", *common])
    print(f"source GAN (digits 0-4): {source.metrics['steps']} steps in {time.perf_counter() - tic:.0f} s")
    budget = [
        f"max_train_minutes={args.minutes}",
        "epochs=100000",
        f"gan.eval_classifier={OUT}/classifier",
        f"data.test={MNIST}[8000:]",
        "gan.eval_samples=1000",
        *common,
    ]
    runs = {
        "fine-tuned from 0-4 (FreezeD 1 block)": toolkit.train(
            CONFIGS / "gan_mnist_finetune.yaml", [f"output_dir={OUT}/finetuned", f"gan.init_from={source.dir}", *budget]
        ),
        "from scratch": toolkit.train(
            CONFIGS / "gan_mnist_finetune.yaml",
            [f"output_dir={OUT}/scratch", "gan.init_from=null", "gan.freeze_d_layers=0", *budget],
        ),
    }
    rows = {}
    for name, run in runs.items():
        scores = toolkit.evaluate(run.dir, split="test")  # best/ against digits 5-9 the GANs never saw
        rows[name] = {
            **{k: scores[k] for k in ("fid", "kid", "class_accuracy")},
            "steps": run.metrics["steps"],
            "images_per_second": run.metrics["train_samples_per_second"],
            "best_step": run.metrics["best_step"],
        }
        print(
            f"{name:40s} FID {scores['fid']:7.2f}  KID {scores['kid']:8.3f}  "
            f"class accuracy {scores['class_accuracy']:.3f}  "
            f"{run.metrics['steps']} steps at {run.metrics['train_samples_per_second']:.0f} images/s"
        )
    print(json.dumps(rows))
    write_side_by_side([run.dir for run in runs.values()], OUT / "samples.png")
    print(f"samples (fine-tuned left, from scratch right; a row per digit 5-9): {OUT / 'samples.png'}")
    tuned, scratch = rows.values()
    return 0 if tuned["fid"] < scratch["fid"] else 3


def write_side_by_side(run_dirs: list[Path], path: Path, columns: int = 8) -> None:
    """Each run's best/ EMA generator on the same latents: a row per class, the runs side by side."""
    import torch
    from torchvision.io import write_png
    from torchvision.utils import make_grid

    import toolkit
    from toolkit.recipes.gan.model import to_uint8

    panels = []
    for run_dir in run_dirs:
        gan = toolkit.load(run_dir).gan
        labels = torch.arange(gan.num_classes).repeat_interleave(columns)
        z = torch.randn(columns, gan.latent_dim, generator=torch.Generator().manual_seed(0)).repeat(gan.num_classes, 1)
        panels.append(make_grid(gan.sample(z, labels), nrow=columns, padding=2, pad_value=-1))
    gap = torch.ones(3, panels[0].shape[1], 8)  # a white strip between the panels
    write_png(to_uint8(torch.cat([panels[0], gap, *panels[1:]], dim=2)), str(path))


if __name__ == "__main__":
    sys.exit(main())
