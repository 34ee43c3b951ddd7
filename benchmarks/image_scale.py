"""Image folders at scale: `toolkit train` of the seed CNN on a folder of 10,000 to 100,000 image files (MNIST test
digits written as PNG files into one folder per digit, each file repeated under a new name), 20 training steps.

For each size: the wall time, the time to the first training step, the data phase and the peak resident memory,
for the first run (every file listed and decode-checked) and the second run on the same files (the decode check
read from the cache). Files are read as the loader asks for them: memory should not grow with the number of images.

Usage: python benchmarks/image_scale.py [--images 10000 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, go_offline  # noqa: E402
from data_scale import measured  # noqa: E402

go_offline()
MNIST = SHARED / "images" / "mnist-test"
STEPS = 20


def make_folder(count: int, folder: Path) -> Path:
    """``count`` PNG files in one subfolder per digit (the 10,000 MNIST test images, repeated)."""
    import cv2

    from toolkit.recipes.images.data import load_images

    root = folder / f"images-{count}"
    if (root / ".complete").is_file():
        return root
    digits = load_images(str(MNIST), "mnist")
    for i in range(count):
        label = digits.labels[i % len(digits)]
        (root / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / label / f"{i:07d}.png"), digits.items[i % len(digits)])
    (root / ".complete").touch()
    return root


def toolkit_run(images: Path, out: Path, cache: Path) -> dict:
    command = [
        sys.executable, "-m", "toolkit", "train", str(ROOT / "recipes/configs/seed_cnn_mnist.yaml"),
        f"data.train={images}", f"data.test={MNIST}[:1000]", f"max_steps={STEPS}", "trackers=[]",
        "eval_every=1000", f"output_dir={out}", "overwrite=true",
    ]  # fmt: skip
    wall, peak, anon, _ = measured(command, cache)
    timings = json.loads((out / "results.json").read_text()).get("timings", {})
    first = timings.get("first_step_at") or sum(timings.get(k, 0) for k in ("start_up", "build"))
    return {"wall": wall, "peak_mb": peak, "anon_mb": anon, "data": timings.get("data"), "first_step": first}


def main() -> int:
    from toolkit.hardware import benchmark_header

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--keep", help="a folder for the generated image folders (kept between invocations)")
    args = parser.parse_args()
    if not MNIST.is_dir():
        print(f"MNIST not found at {MNIST}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    print(benchmark_header(), flush=True)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="toolkit-image-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\n{'images':>8} {'run':14} {'wall s':>8} {'first step s':>13} {'data s':>8} {'peak MB':>8} {'anon MB':>8}")
    for count in args.images:
        images = make_folder(count, folder)
        out, cache = folder / f"run-{count}", folder / f"cache-{count}"
        shutil.rmtree(cache, ignore_errors=True)
        for label in ("first run", "second run"):
            r = toolkit_run(images, out, cache)
            print(
                f"{count:>8,} {label:14} {r['wall']:8.1f} {r['first_step']:13.1f} {r['data'] or 0:8.1f} "
                f"{r['peak_mb']:8.0f} {r['anon_mb']:8.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
