"""The notebook API: train from a config, load a run for prediction, evaluate a run."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any, Union

from .config import Config, build_config, config_to_dict, load_config
from .errors import ToolkitError
from .run import Run, prepare_run_dir, read_results, read_run_config

# Task name -> recipe module (``recipes.<name>`` with ``build_task`` and ``evaluate_run``).
RECIPES = {"sentiment": "recipes.sentiment", "text_classification": "recipes.sentiment",
           "translation": "recipes.translation", "summarization": "recipes.summarization",
           "image_classification": "recipes.image_classification", "gan": "recipes.gan"}


def recipe(task: str):
    if task not in RECIPES:
        raise ToolkitError(f"unknown task '{task}'. Known tasks: {', '.join(sorted(RECIPES))}.")
    return importlib.import_module(RECIPES[task])


def resolve_config(source: Union[str, Path, dict, Config], overrides: list[str] | None = None, **kwargs: Any) -> Config:
    """A validated config from a path/dict/Config, CLI-style ``key=value`` strings and keyword overrides.

    Keyword overrides may be nested dicts (``data={"train": "x.csv"}``) or use ``__`` for dots (``data__train=...``).
    """
    cfg = load_config(source, overrides)
    if kwargs:
        values = config_to_dict(cfg)
        for key, value in kwargs.items():
            _merge(values, key.replace("__", ".").split("."), value)
        cfg = build_config(values)
    return cfg


def _merge(values: dict, path: list[str], value: Any) -> None:
    node = values
    for part in path[:-1]:
        node = node.setdefault(part, {})
    if isinstance(value, dict) and isinstance(node.get(path[-1]), dict):
        for key, inner in value.items():
            _merge(node[path[-1]], [key], inner)
    else:
        node[path[-1]] = value


def train(config: Union[str, Path, dict, Config], overrides: list[str] | None = None, **kwargs: Any) -> Run:
    """Fine-tune per ``config`` and return the run (its ``dir``, ``metrics`` and trained ``model``).

    Nothing is written until the config, data and model have all loaded: bad input leaves no run folder.
    """
    from accelerate import PartialState

    from .engine import choose_metric, cpu_only, fit

    cfg = resolve_config(config, overrides, **kwargs)
    state = PartialState(cpu=cpu_only())
    run_dir = prepare_run_dir(cfg)
    from accelerate.utils import set_seed

    set_seed(cfg.seed)  # new heads and from-scratch models start the same in every run of this config
    task = recipe(cfg.task).build_task(cfg)
    choose_metric(task, cfg)  # a wrong metric name is a config error: stop before writing anything
    state.wait_for_everyone()  # every rank has checked the folder before rank 0 changes it
    if state.is_main_process and cfg.overwrite and not cfg.resume and run_dir.exists():
        shutil.rmtree(run_dir)
    state.wait_for_everyone()
    return fit(task, cfg, run_dir)


def resume(run_dir: Union[str, Path], **kwargs: Any) -> Run:
    """Continue a run from its last/ checkpoint with its own saved config."""
    cfg = read_run_config(run_dir)
    return train(cfg, output_dir=str(run_dir), resume=True, **kwargs)


def load(run_dir: Union[str, Path], checkpoint: str = "best", **kwargs: Any):
    """A predictor for a finished run: call it on a string or a list of strings."""
    from .predict import load_predictor

    return load_predictor(run_dir, checkpoint, **kwargs)


def evaluate(run_dir: Union[str, Path], data: str | None = None, split: str | None = None, checkpoint: str = "best") -> dict:
    """Metrics of a run's checkpoint on ``data`` (a file/folder/hub id) or on one of its configured splits."""
    cfg = read_run_config(run_dir)
    if data is None:
        # A GAN is compared with the images it learned from when no other split is set (as FID usually is).
        split = split or ("test" if cfg.data.test else "validation" if cfg.data.validation or cfg.task != "gan" else "train")
        data = getattr(cfg.data, split, None) if split in ("train", "validation", "test") else None
        if not data:
            raise ToolkitError(f"run '{run_dir}' has no data.{split} configured. Pass --data FILE.")
    module = recipe(cfg.task)
    if not hasattr(module, "evaluate_run"):
        raise ToolkitError(f"`toolkit eval` does not support '{cfg.task}' runs yet; their test metrics are in {run_dir}/results.json.")
    return module.evaluate_run(load(run_dir, checkpoint), cfg, data, split or "test")


def results(run_dir: Union[str, Path]) -> dict:
    """The metrics a run recorded at the end of training (results.json)."""
    return read_results(run_dir)
