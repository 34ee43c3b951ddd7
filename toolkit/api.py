"""The notebook API: train from a config, load a run for prediction, evaluate a run."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Union

from . import timing
from .config import Config, build_config, config_to_dict, load_config
from .errors import ToolkitError
from .run import Run, choose_output_dir, claim_run_dir, prepare_run_dir, read_results, read_run_config
from .tasks import get_task


def resolve_config(source: Union[str, Path, dict, Config], overrides: list[str] | None = None, **kwargs: Any) -> Config:
    """A validated config from a path/dict/Config, CLI-style ``key=value`` strings and keyword overrides.

    Keyword overrides may be nested dicts (``data={"train": "x.csv"}``) or use ``__`` for dots (``data__train=...``).
    """
    cfg = load_config(source, overrides, default_output=False)
    if kwargs:
        values = config_to_dict(cfg)
        for key, value in kwargs.items():
            _merge(values, key.replace("__", ".").split("."), value)
        cfg = build_config(values)
    choose_output_dir(cfg, source)
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
    cfg = resolve_config(config, overrides, **kwargs)  # config errors come before torch is even imported
    from .models import no_transformers_bars

    with no_transformers_bars():  # one progress bar per run: the training one
        return _train(cfg)


def _train(cfg: Config) -> Run:
    from accelerate import PartialState

    from .engine import cpu_only, fit, fit_machine, local_process_count
    from .tasks import choose_metric

    state = PartialState(cpu=cpu_only())
    machine = fit_machine(cfg, local_process_count(state))  # the run's first log line: precision, threads, hardware
    if state.num_processes > 1:  # every rank trains into the folder rank 0 chose (a fresh one is timestamped)
        from accelerate.utils import broadcast_object_list

        cfg.output_dir = broadcast_object_list([cfg.output_dir], from_process=0)[0]
    on_main_process(state, lambda: prepare_run_dir(cfg))  # before anything loads: a refused folder costs nothing
    from accelerate.utils import set_seed

    timing.reset(start_up=timing.process_age())  # the process's imports and config checks so far
    set_seed(cfg.seed)  # new heads and from-scratch models start the same in every run of this config
    spec = get_task(cfg.task)
    choose_metric(spec, cfg)  # a wrong metric name is a config error: stop before anything loads
    # The first process on each machine converts and tokenizes the data into the cache; the others then read it
    # (instead of all of them tokenizing the same rows at once into the same files).
    with timing.phase("build"), state.local_main_process_first():
        task = spec.build(cfg)
    with contextlib.ExitStack() as held:
        on_main_process(state, lambda: held.enter_context(claim_run_dir(cfg)))
        return fit(task, cfg, Path(cfg.output_dir), machine=machine, spec=spec)


def on_main_process(state, check) -> None:
    """Run ``check`` on rank 0 only (the one process that owns the run folder) and raise its ToolkitError on every
    rank, so that no process is left waiting at a barrier for one that refused."""
    message = None
    if state.is_main_process:
        try:
            check()
        except ToolkitError as err:
            message = str(err)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([message], from_process=0)[0]
    if message is not None:
        raise ToolkitError(message)


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
        split = split or spec.eval_split(cfg)
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
    import logging

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
    from . import sweeps
    from .models import no_transformers_bars
    from .run import run_lock

    if backend not in ("optuna", "ray"):
        raise ToolkitError(f"backend '{backend}' is not one of optuna, ray.")
    found = sweeps.prepare(config, overrides, trials, budget, space, pruner)
    new = not found.state  # the folder held no sweep before this call
    found.state.setdefault("backend", backend)
    if found.state["backend"] != backend:
        raise ToolkitError(
            f"'{found.dir}' holds a sweep run with --backend {found.state['backend']}: continue it with that backend."
        )
    with no_transformers_bars(), run_lock(found.dir):
        sweeps.start_folder(found)
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
        sweeps.finish(found)
        return sweeps.result(found, rows, best)
