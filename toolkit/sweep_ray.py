"""A sweep's trials as Ray Tune trials: Ray places and runs them (one `toolkit train` process per trial, on any
machine of the cluster), Optuna's TPE suggests the settings (Ray's OptunaSearch) and successive halving (ASHA) stops
trials that fall behind. The trial folders, summary and ``best`` link are the same as the Optuna backend's.

Every machine must see the sweep folder and the data at the same paths (shared storage), as a multi-machine run's
processes must see its run folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from typing import Optional

from . import tracking
from .cache import replace_atomically
from .errors import ToolkitError
from .ray_token import send_token_if_any
from .sweeps import Best, Sweep, account, run_trial, write_summary

log = logging.getLogger(__name__)
EXPERIMENT = "ray"  # Ray Tune's own records (searcher state, results), inside the sweep folder


NUMBERS = "ray-trials"  # <trial id> -> its number, and one claimed folder per number (mkdir is atomic)


def trial_number(sweep: Sweep, trial_id: str) -> int:
    """The trial folder's number of a Ray trial: the next free one the first time (claimed by creating a folder,
    atomic even on shared storage), the same one when Tune restores the trial."""
    folder = sweep.dir / NUMBERS
    folder.mkdir(exist_ok=True)
    known = folder / f"{trial_id}.json"
    if known.is_file():
        return int(json.loads(known.read_text()))
    number = 0
    while True:
        try:
            (folder / f"{number:03d}").mkdir()
            break
        except FileExistsError:
            number += 1
    replace_atomically(known, json.dumps(number).encode())
    return number


def known_number(sweep: Sweep, trial_id: str) -> Optional[int]:
    with contextlib.suppress(OSError, ValueError):
        return int(json.loads((sweep.dir / NUMBERS / f"{trial_id}.json").read_text()))
    return None


def ray_trial(config: dict, sweep: Sweep) -> None:
    """The trainable: train one trial, telling Tune each validation value (it may stop the trial there), then the
    trial's best value."""
    from ray import tune

    number = trial_number(sweep, tune.get_context().get_trial_id())
    folder = sweep.trial_dir(number)

    def on_evaluation(index: int, value: float) -> bool:
        tune.report({sweep.metric: value, "evaluation": index})
        return False  # Tune's scheduler stops trials itself

    outcome = run_trial(sweep, number, config, (folder / "last").is_dir(), on_evaluation, count_time=False)
    if outcome.state in ("failed", "interrupted") or outcome.value is None:
        raise ToolkitError(f"trial {number} {outcome.state}: {outcome.error or 'no validation metric'}")
    tune.report({sweep.metric: outcome.value})  # the best value: what the searcher learns from


class DefineSpace:
    """Optuna's define-by-run space for Ray's OptunaSearch (a class, not a closure: Tune pickles the searcher)."""

    def __init__(self, params: list):
        self.params = params

    def __call__(self, trial) -> None:
        for param in self.params:
            param.suggest(trial)


def connect(address: Optional[str]) -> None:
    try:
        import ray
    except ImportError:
        raise ToolkitError(
            "--backend ray needs Ray: pip install 'ray[tune]' (or `pip install -e '.[ray]'`), or use --backend optuna."
        ) from None

    if ray.is_initialized():
        return
    if address:
        send_token_if_any()
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as err:
        raise ToolkitError(
            f"cannot reach a Ray cluster at {address}: {err}. Start one (`ray start --head`) or leave --address out "
            f"for a local one."
        ) from None


def trial_resources() -> dict:
    """One CPU per trial, and one GPU where the cluster has GPUs: as many trials at once as the cluster holds."""
    import ray

    return {"cpu": 1, "gpu": 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0}


def build_tuner(sweep: Sweep):
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    trainable = tune.with_resources(tune.with_parameters(ray_trial, sweep=sweep), trial_resources())
    path = sweep.dir / EXPERIMENT
    if tune.Tuner.can_restore(str(path)):
        log.info("continuing the Ray sweep in %s", path)
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, restart_errored=True)
    mode = "max" if sweep.maximize else "min"
    sampler = optuna.samplers.TPESampler(seed=int(sweep.base.get("seed", 42)), n_startup_trials=5)
    searcher = OptunaSearch(
        space=DefineSpace(list(sweep.space.values())), metric=sweep.metric, mode=mode, sampler=sampler
    )
    scheduler = (
        FIFOScheduler()
        if sweep.pruner == "none"
        else ASHAScheduler(time_attr="training_iteration", max_t=1000, grace_period=1, reduction_factor=2)
    )
    budget = None if math.isinf(sweep.remaining()) else max(1.0, sweep.remaining())
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            metric=sweep.metric,
            mode=mode,
            num_samples=sweep.trials,
            time_budget_s=budget,
        ),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(sweep.dir), verbose=0),
    )


def optimize_with_ray(sweep: Sweep, address: Optional[str]) -> tuple[list[dict], Optional[Best]]:
    connect(address)
    tuner = build_tuner(sweep)
    stop = threading.Event()

    def clock() -> None:  # the sweep's spent time, kept in sweep.json across restarts
        tic = time.monotonic()
        while not stop.wait(5):
            tic = account(sweep, tic)
        account(sweep, tic)

    counting = threading.Thread(target=clock, daemon=True)
    counting.start()
    try:
        grid = tuner.fit()
    finally:
        stop.set()
        counting.join()
    rows, best = collect(sweep, grid)
    write_summary(sweep, rows, best)
    return rows, best


def collect(sweep: Sweep, grid) -> tuple[list[dict], Optional[Best]]:
    """One row per Ray trial: finished trials (results.json written) are complete, others stopped by the scheduler
    (pruned) or failed."""
    rows, best = [], None
    for found in grid:
        number = known_number(sweep, found.metrics["trial_id"]) if found.metrics else None
        if number is None:  # never started (the budget ran out first)
            continue
        folder = sweep.trial_dir(number)
        results = {}
        with contextlib.suppress(OSError, ValueError):
            results = json.loads((folder / "results.json").read_text())
        state = "failed" if found.error else ("complete" if results else "pruned")
        if state == "pruned":
            tracking.mark_pruned(folder)
        value = results.get("validation", {}).get(sweep.metric) if results else found.metrics.get(sweep.metric)
        params = dict(found.config or {})
        rows.append(
            {
                "trial": number,
                "state": state,
                sweep.metric: value,
                **params,
                "steps": results.get("steps"),
                "train_seconds": results.get("train_seconds"),
                "folder": folder.name,
            }
        )
        if state == "complete" and value is not None:
            better = best is None or (value > best.value if sweep.maximize else value < best.value)
            if better:
                best = Best(number, value, params)
    rows.sort(key=lambda row: row["trial"])
    return rows, best
