"""GAN demo: a seed (and a class, for conditional models) gives an image grid, downloadable as PNG; a slider walks
between the images of two seeds.

Run: ``python -m toolkit.apps.gan RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from toolkit.api import load
from toolkit.errors import ToolkitError
from toolkit.run import read_results
from toolkit.web import app_temp_folder


def enlarge(image: np.ndarray, side: int = 256) -> np.ndarray:
    """Nearest-neighbour upscaling, so 28-pixel digits stay sharp on screen."""
    factor = max(1, side // max(image.shape[:2]))
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    return big if big.ndim == 3 else big[:, :, None]


def build_demo(run_dir: str | Path, backend: str = "auto", predictor=None) -> gr.Blocks:
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    sampler = predictor if predictor is not None else load(run_dir, backend=backend)
    conditional = bool(sampler.gan.num_classes)
    out_dir = app_temp_folder("toolkit-gan-")

    def as_rgb(image: np.ndarray) -> np.ndarray:
        return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image

    def generate(seed: float, label: str | None):
        try:
            picture = as_rgb(sampler.grid(int(seed), label if conditional else None, rows=4))
        except ToolkitError as err:
            raise gr.Error(str(err)) from None
        path = out_dir / f"samples_seed{int(seed)}{'_' + label if conditional and label else ''}.png"
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        return enlarge(picture, 512), str(path)

    def walk(seed_a: float, seed_b: float, t: float, label: str | None):
        try:
            return enlarge(
                as_rgb(sampler.interpolate(int(seed_a), int(seed_b), float(t), label if conditional else None))
            )
        except ToolkitError as err:
            raise gr.Error(str(err)) from None

    scores = results.get("validation") or {}
    shown = ", ".join(
        f"{k.upper()} {scores[k]:.3f}"
        for k in ("fid", "kid", "class_accuracy")
        if isinstance(scores.get(k), (int, float))
    )
    with gr.Blocks(title=f"{run_dir.name}: GAN", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# {run_dir.name}\nA {'class-conditional ' if conditional else ''}DCGAN "
            f"({sampler.gan.generator.seed * 2**sampler.gan.generator.k} px). {shown}"
        )
        label = gr.Dropdown(
            sampler.labels, value=sampler.labels[0], label="Class", visible=conditional, elem_id="label"
        )
        with gr.Row():
            with gr.Column():
                seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                download = gr.DownloadButton("Download PNG", elem_id="download")
            grid = gr.Image(label="Samples (4 x 4)", type="numpy", elem_id="grid")
        gr.Markdown("### Walk between two seeds")
        with gr.Row():
            with gr.Column():
                seed_a = gr.Number(value=1, precision=0, label="From seed", elem_id="seed_a")
                seed_b = gr.Number(value=2, precision=0, label="To seed", elem_id="seed_b")
                t = gr.Slider(0, 1, value=0.5, step=0.05, label="Position", elem_id="position")
            walked = gr.Image(label="Interpolated", type="numpy", elem_id="walked")
        button.click(generate, inputs=[seed, label], outputs=[grid, download], api_name="generate")
        t.release(walk, inputs=[seed_a, seed_b, t, label], outputs=[walked], api_name="interpolate")
    demo.queue(default_concurrency_limit=1)
    return demo


if __name__ == "__main__":
    from toolkit.web import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/gan_mnist")
