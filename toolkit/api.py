"""The notebook API: train from a config, load a run for prediction, evaluate a run."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Union

from .config import Config
from .errors import ToolkitError
from .plan import plan, resolve_config
from .run import Run, read_results, read_run_config, run_lock
from .tasks import get_task

# The notebook imports this module first: what only training, sweeps or evaluation need (torch-free as they are)
# is imported where it is used, so that `import toolkit` stays quick.

__all__ = ["check", "evaluate", "load", "plan", "resolve_config", "results", "resume", "sweep", "train"]


def train(config: Union[str, Path, dict, Config], overrides: list[str] | None = None, **kwargs: Any) -> Run:
    """Fine-tune per ``config`` and return the run (its ``dir``, ``metrics`` and trained ``model``).

    Nothing is written until the config, data and model have all loaded: bad input leaves no run folder.
    """
    planned = plan(config, overrides, **kwargs)
    from .engine import fit
    from .models import no_transformers_bars
    from .tracking import open_trackers

    # The trackers' worker imports them while the model and data load.
    trackers = open_trackers(planned.cfg.trackers, planned.cfg.task, planned.processes.is_main_process)
    try:
        with no_transformers_bars():  # one progress bar per run: the training one
            task = planned.build()
            with planned.claimed():
                return fit(planned, task, trackers)
    except BaseException:
        trackers.close("failed")  # no-op when fit already ended them; a run that never started leaves no trace
        raise


def check(config: Union[str, Path, dict, Config], overrides: list[str] | None = None, **kwargs: Any) -> list:
    """The data checks of ``config``'s task on its data, without training: a list of ``toolkit.checks.Finding``
    (each with ``count``, ``examples``, ``fix`` and ``line()``); empty when nothing was found."""
    from .config import load_config

    cfg = load_config(config, overrides, kwargs)  # no output folder: nothing is written
    spec = get_task(cfg.task)
    if spec.check_data is None:
        raise ToolkitError(f"task '{spec.name}' declares no data checks.")
    if cfg.data.checks == "off":
        return []
    from .data import progress_bars

    with progress_bars(False):
        return spec.check_data(cfg)


def resume(run_dir: Union[str, Path], **kwargs: Any) -> Run:
    """Continue a run from its last/ checkpoint with its own saved config."""
    cfg = read_run_config(run_dir)
    return train(cfg, output_dir=str(run_dir), resume=True, **kwargs)


def load(run_dir: Union[str, Path], checkpoint: str = "best", backend: str = "auto", **kwargs: Any):
    """A predictor for a finished run: call it on a string or a list of strings.

    ``backend``: "auto" (the checkpoint's ONNX export when `toolkit export` wrote one, else torch), "onnx" or "torch".
    ``precision=``: fp32, bf16 or fp16 (default: the run's eval_precision on this machine, see toolkit/precision.py).
    """
    from .predictor import load_predictor

    return load_predictor(run_dir, checkpoint, backend, **kwargs)


def evaluate(
    run_dir: Union[str, Path],
    data: str | None = None,
    split: str | None = None,
    checkpoint: str = "best",
    backend: str = "auto",
    predictor=None,
    precision: str | None = None,
) -> dict:
    """Metrics of a run's checkpoint on ``data`` (a file/folder/hub id) or on one of its configured splits;
    ``predictor``: the run's, already loaded (the studio's cache), instead of loading it. ``precision``: what the
    model computes in (fp32, bf16, fp16); default: what the run's own evaluation used (results.json), so that the
    same data gives the run's numbers."""
    cfg = read_run_config(run_dir)
    if data is None and split is not None and split not in ("train", "validation", "test"):
        configured = [name for name in ("train", "validation", "test") if getattr(cfg.data, name)]
        raise ToolkitError(
            f"unknown split '{split}': use one of the run's splits ({', '.join(configured)}), or "
            f"--data FILE (with --split naming a hub dataset's split)."
        )
    spec = get_task(cfg.task)
    if data is None:
        split = split or cfg.eval_split()
        data = getattr(cfg.data, split, None) if split in ("train", "validation", "test") else None
        if not data:
            raise ToolkitError(f"run '{run_dir}' has no data.{split} configured. Pass --data FILE.")
    if spec.evaluate_run is None:
        raise ToolkitError(
            f"`toolkit eval` does not support '{cfg.task}' runs yet; their test metrics are in {run_dir}/results.json."
        )
    if predictor is None:
        # The batches training's evaluation scored, in data order: in bf16 a row's numbers depend on its batch.
        batch_size = cfg.eval_batch_size or 2 * cfg.batch_size
        chosen = _eval_precision(run_dir, precision, checkpoint, backend)
        predictor = load(run_dir, checkpoint, backend, batch_size=batch_size, **chosen)
        predictor.sort_by_length = False
    unbounded = getattr(predictor, "unbounded", contextlib.nullcontext)  # a task's own predictor may have no bounds
    with unbounded():  # a data file's long rows are scored, as training's evaluation scored them
        return spec.evaluate_run(predictor, cfg, data, split or "test")


def _eval_precision(run_dir: Union[str, Path], requested: str | None, checkpoint: str, backend: str) -> dict:
    """The precision= for evaluation's predictor: the one asked for, else the one the run's metrics were computed
    in; nothing for a run that recorded none (its predictor then chooses on this machine), nor where the backend
    is the checkpoint's ONNX export, which computes as it was written (fp32 or int8), as predict and serve use it."""
    from . import precision
    from .checkpoint import find_checkpoint
    from .predictor import read_export

    log = logging.getLogger(__name__)
    chosen = precision.name_of(requested) if requested else precision.recorded(Path(run_dir))
    if chosen is None:
        return {}
    if not requested and backend != "torch":
        folder = find_checkpoint(Path(run_dir), checkpoint)
        if folder is not None and read_export(folder) is not None:
            log.info("evaluating the ONNX export (--backend torch scores the weights in %s, as the run did)", chosen)
            return {}
    log.info("evaluating in %s (%s)", chosen, "--precision" if requested else "as the run evaluated, in results.json")
    return {"precision": chosen}


def results(run_dir: Union[str, Path]) -> dict:
    """The metrics a run recorded at the end of training (results.json)."""
    return read_results(run_dir)


def sweep(
    config: Union[str, Path, dict, Config],
    overrides: list[str] | None = None,
    trials: int = 10,
    budget: Union[str, float, None] = None,
    space: Union[str, Path, dict, None] = None,
    pruner: str = "median",
    backend: str = "optuna",
    address: str | None = None,
):
    """Search settings for ``config``: ``trials`` runs (at most ``budget``, e.g. "30m", of wall time) under the
    sweep folder (``output_dir``, default ``runs/<config>-sweep``), each an ordinary run folder; returns the trials'
    table and the best one (also linked as ``<sweep>/best``). Calling it again continues the same sweep."""
    if backend not in ("optuna", "ray"):
        raise ToolkitError(f"backend '{backend}' is not one of optuna, ray.")
    from . import sweeps
    from .models import no_transformers_bars

    found = sweeps.prepare(config, overrides, trials, budget, space, pruner)
    new = not found.state  # the folder held no sweep before this call
    found.state.setdefault("backend", backend)
    if found.state["backend"] != backend:
        raise ToolkitError(
            f"'{found.dir}' holds a sweep run with --backend {found.state['backend']}: continue it with that backend."
        )
    with no_transformers_bars(), run_lock(found.dir):
        sweeps.start_folder(found)
        sweeps.start_tracking(found)
        try:
            if backend == "ray":
                from .sweep_ray import optimize_with_ray

                rows, best = optimize_with_ray(found, address)
            else:
                sweeps.optimize(found)
                study = sweeps.open_study(found)
                best = sweeps.write_study_summary(found, study)
                rows = sweeps.trial_rows(found, study)
        except ToolkitError:
            if new:  # refused before any trial finished: bad input leaves nothing behind
                sweeps.clear_if_nothing_finished(found)
            raise
        sweeps.finish(found, best)
        return sweeps.result(found, rows, best)
