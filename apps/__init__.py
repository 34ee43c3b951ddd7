"""Gradio apps, one per task, each built from a finished run directory by ``build_demo(run_dir)``."""

from __future__ import annotations

import importlib
from pathlib import Path

from toolkit.errors import ToolkitError

APPS = {"sentiment": "apps.sentiment", "text_classification": "apps.sentiment",
        "translation": "apps.translation", "summarization": "apps.summarization",
        "image_classification": "apps.image_classifier", "gan": "apps.gan"}


def metrics_markdown(results: dict, names: list[str]) -> str:
    """The run's validation and test scores of ``names``, as Markdown lines."""
    lines = []
    for split in ("validation", "test"):
        scores = results.get(split) or {}
        shown = [f"{name} {scores[name]:.3f}" for name in names if isinstance(scores.get(name), (int, float))]
        if shown:
            lines.append(f"**{split}** ({scores.get('count', '?')} examples): " + ", ".join(shown))
    return "\n\n".join(lines) or "No metrics recorded for this run."


def build_app(run_dir: str | Path):
    """The ``gr.Blocks`` app for a run, picked by the run's task."""
    from toolkit.run import read_run_config

    task = read_run_config(run_dir).task
    if task not in APPS:
        raise ToolkitError(f"run '{run_dir}' is a '{task}' run, which has no app yet. Apps: {', '.join(sorted(APPS))}.")
    return importlib.import_module(APPS[task]).build_demo(run_dir)


def launch(run_dir: str | Path, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs):
    demo = build_app(run_dir)
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size="20mb", **kwargs)
