"""Sweeps: many runs of one config with sampled settings, to find good ones for the user's own data.

Optuna samples the settings (TPE) and prunes trials whose validation curve falls behind (the median of the other
trials at the same step, or successive halving), through the evaluations each run already makes. Every trial is an
ordinary `toolkit train` process into ``<sweep>/trial-NNN``: eval, predict, serve and the studio read it as any run.
The study lives in the sweep folder (``study.db``, SQLite), so the same command after a crash or ``kill -9``
continues it: finished trials are kept, the interrupted one resumes from its ``last/`` checkpoint (or starts again),
and no trial number is used twice. ``backend="ray"`` runs the same trials as Ray Tune trials
(toolkit.sweep_ray; toolkit.api.sweep chooses the backend).

A sweep folder holds ``sweep.json`` (what is searched, and the time spent), ``base.yaml`` (the config every trial
starts from), ``study.db``, ``logs/`` (each trial's output), the trial folders, ``summary.md`` and ``best`` (a link
to the best trial's folder).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

from . import interrupt, tracking
from .cache import replace_atomically
from .config import (
    Config,
    apply_overrides,
    build_config,
    config_class,
    config_to_dict,
    has_key,
    model_sources,
    read_yaml,
)
from .errors import ToolkitError
from .run import CONFIG_FILE, LOCK, lock_holder
from .tasks import choose_goal, get_task

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
STUDY_FILE = "study.db"
BASE_CONFIG = "base.yaml"
SUMMARY = "summary.md"
BEST = "best"
LOGS = "logs"
MARKER = ".toolkit-sweep"
POLL_SECONDS = 1.0
RESERVED_SECONDS = 20.0  # a trial's start and end outside its training clock (imports, model, final scoring)
SPEC_FIELDS = ("low", "high", "log", "step", "choices")
STEERING_KEYS = ("output_dir", "resume", "overwrite")  # set per trial by the sweep


# ----- search spaces -----


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (``low``..``high``, ``log`` scale, ``step``) or a list of ``choices``."""

    key: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[tuple] = None

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step or 1))

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def edges(self) -> list:
        """The values a trial can take at the ends of the range (each is checked against the config)."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def as_dict(self) -> dict:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def default_space(cfg: Config, spec) -> dict:
    """The space a sweep searches when the user gives none: around the config's own values (the shipped ones are a
    good centre), plus what the task declares (its config's ``search_space()``; a key set to None there is left out)."""
    space: dict[str, Any] = {
        "lr": {"low": _round(cfg.lr / 5), "high": _round(cfg.lr * 5), "log": True},
        "warmup_ratio": {"low": 0.0, "high": 0.2},
        "weight_decay": {"low": 0.0, "high": 0.1},
        "batch_size": {"choices": sorted({max(1, cfg.batch_size // 2), cfg.batch_size, cfg.batch_size * 2})},
    }
    if cfg.max_steps:
        space["max_steps"] = {"low": max(1, cfg.max_steps // 2), "high": cfg.max_steps * 2}
    else:
        space["epochs"] = {"low": _round(max(cfg.epochs / 2, 0.1)), "high": _round(cfg.epochs * 2)}
    peft = getattr(cfg, "peft", None)
    if peft is not None and peft.enabled:
        space["peft.r"] = {"choices": [4, 8, 16, 32]}
    space.update(cfg.search_space())
    return {k: v for k, v in space.items() if v is not None}


def check_no_code(key: str, base: dict, where: str) -> None:
    """A space may not turn on remote code (trust_remote_code), nor search where weights load from in a config that
    trusts remote code: a searched model folder would then run its own Python in every trial."""
    if key == "trust_remote_code":
        raise ToolkitError(
            f"{where}: trust_remote_code cannot be searched: it runs Python from the model folder. Set it in the "
            f"config, knowingly, if the model needs it."
        )
    if base.get("trust_remote_code") and key in model_sources(build_config(base)):
        raise ToolkitError(
            f"{where}: {key} cannot be searched in a config with trust_remote_code: true: each value would run "
            f"its own Python. Sweep one model at a time, or search {key} with trust_remote_code: false."
        )


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def parse_space(values: Any, base: dict, where: str) -> dict[str, Param]:
    """A space (``{key: {low, high[, log, step]} or {choices: [...]}}``) checked against the config: unknown keys,
    bad ranges and values the key does not allow each raise one error naming them."""
    if not isinstance(values, dict) or not values:
        raise ToolkitError(
            f"{where}: a search space maps config keys to ranges or choices, e.g. `lr: {{low: 1e-5, high: 1e-3, "
            f"log: true}}` and `batch_size: {{choices: [16, 32]}}`."
        )

    cls = config_class(base["task"])
    params = {}
    for key, spec in values.items():
        key = str(key)
        if not has_key(cls, key) or key in STEERING_KEYS or key == "task":
            raise ToolkitError(
                f"{where}: '{key}' is not a setting a sweep can search for task '{base['task']}'. Use config keys "
                f"(`toolkit train --help`, docs/configuration.md), e.g. lr, epochs, batch_size."
            )
        check_no_code(key, base, where)
        param = _param(key, spec, where)
        for value in param.edges():
            try:
                build_config(apply_overrides(base, [f"{key}={json.dumps(value)}"]))
            except ToolkitError as err:
                raise ToolkitError(f"{where}: {key} = {value!r} is not allowed: {err}") from None
        params[key] = param
    return params


def _param(key: str, spec: Any, where: str) -> Param:
    shape = "{low: A, high: B} (optionally log: true, step: S) or {choices: [...]}"
    if not isinstance(spec, dict) or not spec:
        raise ToolkitError(f"{where}: {key} must be {shape}, not {spec!r}.")
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise ToolkitError(f"{where}: {key} has unknown field(s) {', '.join(unknown)}; use {shape}.")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ToolkitError(f"{where}: {key}: choices must be a non-empty list, alone: {{choices: [16, 32]}}.")
        if not all(isinstance(c, (str, int, float, bool)) or c is None for c in choices):
            raise ToolkitError(f"{where}: {key}: each choice must be a number, text, true/false or null.")
        return Param(key, choices=tuple(choices))
    low, high, log_scale, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    numbers = [v for v in (low, high, step) if v is not None]
    if low is None or high is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise ToolkitError(f"{where}: {key} needs numbers low and high: {shape}.")
    if not all(math.isfinite(v) for v in numbers) or not low < high:
        raise ToolkitError(f"{where}: {key}: low ({low}) must be below high ({high}).")
    if not isinstance(log_scale, bool):
        raise ToolkitError(f"{where}: {key}: log must be true or false.")
    if log_scale and low <= 0:
        raise ToolkitError(f"{where}: {key}: a log scale needs low above 0 (it is {low}).")
    if step is not None and (step <= 0 or log_scale):
        raise ToolkitError(f"{where}: {key}: step must be above 0, and cannot be combined with log: true.")
    return Param(key, low, high, log_scale, step)


def read_space(source: Union[str, Path, dict, None], base: dict, spec) -> dict[str, Param]:
    """The user's space (a YAML file or a dict), else the task's default one around ``base``."""
    if source is None:
        return parse_space(default_space(build_config(base), spec), base, "the default search space")
    if isinstance(source, dict):
        return parse_space(source, base, "the search space")
    return parse_space(read_yaml(source), base, f"search space '{source}'")


# ----- the sweep folder -----


@dataclass
class Sweep:
    """A sweep's folder and settings."""

    dir: Path
    base: dict  # the config every trial starts from (plain values)
    space: dict[str, Param]
    metric: str
    maximize: bool
    trials: int
    budget_seconds: Optional[float]
    pruner: str = "median"
    state: dict = field(default_factory=dict)  # sweep.json
    cwd: str = field(default_factory=os.getcwd)  # where trials run (relative data paths are read from here)

    @property
    def spent(self) -> float:
        return float(self.state.get("spent_seconds", 0.0))

    def remaining(self) -> float:
        return math.inf if self.budget_seconds is None else self.budget_seconds - self.spent

    def trial_dir(self, number: int) -> Path:
        return self.dir / f"trial-{number:03d}"

    def save_state(self) -> None:
        replace_atomically(self.dir / SWEEP_FILE, json.dumps(self.state, indent=1).encode())


def parse_budget(text: Union[str, float, int, None]) -> Optional[float]:
    """Seconds from ``90``, ``90s``, ``30m``, ``2h`` (None: no budget)."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        units = {"s": 1, "m": 60, "h": 3600}
        try:
            seconds = float(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else float(raw)
        except ValueError:
            seconds = math.nan
    if not math.isfinite(seconds):
        raise ToolkitError(f"budget '{text}' is not a duration: give seconds or e.g. 90s, 30m, 2h.")
    if seconds <= 0:
        raise ToolkitError(f"budget '{text}' must be above 0: give the sweep's wall time, e.g. 90s, 30m or 2h.")
    return seconds


MAX_TRIALS = 1000  # trial folders are numbered trial-000 to trial-999, so that they list in order


def prepare(
    config: Union[str, Path, dict, Config],
    overrides: Optional[list[str]],
    trials: int,
    budget: Union[str, float, None],
    space: Union[str, Path, dict, None],
    pruner: str,
) -> Sweep:
    """Check everything (config, space, budget, folder) before any trial starts; a bad one writes nothing."""
    if not isinstance(trials, int) or trials < 1:
        raise ToolkitError(f"trials must be a whole number of 1 or more, not {trials!r}.")
    if trials > MAX_TRIALS:
        raise ToolkitError(
            f"trials {trials} is more than a sweep runs: give 1 to {MAX_TRIALS} (trial folders are numbered trial-000 "
            f"to trial-999). To stop by time instead, give a budget, e.g. --budget 2h."
        )
    if pruner not in ("median", "halving", "none"):
        raise ToolkitError(f"pruner '{pruner}' is not one of median, halving, none.")
    budget_seconds = parse_budget(budget)
    if isinstance(config, Config):
        values = config_to_dict(config)
    elif isinstance(config, dict):
        values = copy.deepcopy(config)
    else:
        values = read_yaml(config)
    cfg = build_config(apply_overrides(values, overrides or []))
    folder = (Path(cfg.output_dir) if cfg.output_dir else default_sweep_dir(config, cfg)).absolute()
    base = {k: v for k, v in config_to_dict(cfg).items() if k not in STEERING_KEYS}
    # Each trial logs to the sweep's trackers, grouped under it; not to TensorBoard, whose files in every trial would
    # fill the folder (metrics.jsonl has the curves).
    base["trackers"] = [name for name in base.get("trackers", []) if name != "tensorboard"]
    spec = get_task(cfg.task)
    params = read_space(space, base, spec)
    goal = choose_goal(spec, cfg)
    sweep = Sweep(folder, base, params, goal.metric, goal.maximize, trials, budget_seconds, pruner)
    check_same_sweep(sweep)
    return sweep


def default_sweep_dir(source, cfg: Config) -> Path:
    """``runs/<config file name>-sweep`` (``runs/<task>-sweep`` for a dict or Config)."""
    named = isinstance(source, (str, Path))
    return Path("runs") / f"{Path(source).stem if named else cfg.task}-sweep"


def identity(sweep: Sweep) -> dict:
    """What makes two sweeps the same one: the config and the space (trials and budget may change on a rerun)."""
    return {
        "base": json.loads(json.dumps(sweep.base, default=str)),
        "space": {k: p.as_dict() for k, p in sweep.space.items()},
        "metric": sweep.metric,
        "maximize": sweep.maximize,
    }


def check_same_sweep(sweep: Sweep) -> None:
    """A folder holding another sweep (other config or space), or anything but a sweep, is refused."""
    folder = sweep.dir
    state_file = folder / SWEEP_FILE
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        before, now = state.get("identity", {}), identity(sweep)
        if before != now:
            changed = sorted(
                _flat_keys(before.get("base", {}), now["base"])
                | ({"space"} if before.get("space") != now["space"] else set())
            )
            raise ToolkitError(
                f"'{folder}' holds a sweep of other settings (differs in: {', '.join(changed) or 'metric'}). Run the "
                f"same command to continue it, or give another output_dir=... for a new sweep."
            )
        sweep.state = state
    elif folder.exists() and any(folder.iterdir()):
        raise ToolkitError(
            f"'{folder}' exists and does not hold a sweep. Give another output_dir=... (the sweep's folder)."
        )


def _flat_keys(a: dict, b: dict, prefix: str = "") -> set:
    keys = set()
    for key in set(a) | set(b):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            keys |= _flat_keys(a[key], b[key], f"{prefix}{key}.")
        elif a.get(key) != b.get(key):
            keys.add(prefix + key)
    return keys


def start_folder(sweep: Sweep) -> None:
    sweep.dir.mkdir(parents=True, exist_ok=True)
    (sweep.dir / MARKER).write_text(json.dumps({"toolkit_sweep": 1}) + "\n")
    (sweep.dir / LOGS).mkdir(exist_ok=True)
    (sweep.dir / BASE_CONFIG).write_text(yaml.safe_dump(sweep.base, sort_keys=False))
    sweep.state.setdefault("spent_seconds", 0.0)
    sweep.state.update(
        finished=False,  # set when the trials or the budget run out (see finish)
        identity=identity(sweep),
        trials=sweep.trials,
        budget_seconds=sweep.budget_seconds,
        pruner=sweep.pruner,
    )
    sweep.save_state()


# ----- one trial: a `toolkit train` process -----


def trial_command(sweep: Sweep, number: int, params: dict, resume: bool) -> list[str]:
    folder = sweep.trial_dir(number)
    if resume:  # its own saved config, budget included
        return [sys.executable, "-m", "toolkit", "train", "--resume", str(folder)]
    overrides = [f"{key}={json.dumps(value)}" for key, value in params.items()]
    minutes = trial_minutes(sweep)
    if minutes is not None:
        overrides.append(f"max_train_minutes={minutes:.4g}")
    return [
        sys.executable, "-m", "toolkit", "train", str(sweep.dir / BASE_CONFIG), *overrides,
        f"output_dir={folder}", "overwrite=true",
    ]  # fmt: skip


def trial_minutes(sweep: Sweep) -> Optional[float]:
    """The trial's training budget: the config's, cut to what is left of the sweep's."""
    own = sweep.base.get("max_train_minutes")
    left = sweep.remaining()
    if math.isinf(left):
        return own
    left_minutes = max(left - RESERVED_SECONDS, 1.0) / 60
    return min(own, left_minutes) if own else left_minutes


def _trial_process() -> None:
    """In the trial's process, before it starts: a process group of its own (a Ctrl+C at the terminal reaches the
    sweep, which tells the trial). The trial watches the sweep (interrupt.watch_parent): when the sweep dies, however
    it dies (kill -9 included), the trial gets one SIGTERM, saves last/ and stops. (Not also Linux's parent-death
    signal: two SIGTERMs would stop it at once, without saving.)"""
    os.setpgid(0, 0)


@dataclass
class TrialOutcome:
    state: str  # complete, pruned, failed, interrupted
    value: Optional[float] = None
    error: str = ""


def run_trial(
    sweep: Sweep,
    number: int,
    params: dict,
    resume: bool,
    on_evaluation: Callable[[int, float], bool],
    count_time: bool = True,
) -> TrialOutcome:
    """Train one trial, report each validation value to ``on_evaluation(evaluation number, value)`` as it is
    logged, and ask the run to finish early (SIGUSR1: it then scores best/ and ends as any run) when that returns
    True. ``count_time``: add the trial's wall time to the sweep's spent time (one trial at a time; Ray keeps its
    own clock)."""
    folder = sweep.trial_dir(number)
    wait_for_free(folder)
    log_path = sweep.dir / LOGS / f"{folder.name}.log"
    command = trial_command(sweep, number, params, resume)
    env = {
        **os.environ,
        **sweep.state.get("tracking_env", {}),  # the trial's tracker group and parent run
        "TOOLKIT_SWEEP_TRIAL": str(number),
        interrupt.PARENT_ENV: str(os.getpid()),
    }
    with log_path.open("a") as out:
        out.write(f"$ {' '.join(command)}\n# started at {time.time():.3f}\n")
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_trial_process)  # noqa: S603 - our own command
        pruned = False
        reader = ValidationReader(folder / "metrics.jsonl", sweep.metric)
        tic = time.monotonic()
        stop_sent = False
        try:
            while proc.poll() is None:
                time.sleep(POLL_SECONDS)
                tic = account(sweep, tic) if count_time else tic
                if interrupt.stop_requested() and not stop_sent:  # a SIGTERM to the sweep (the studio's Stop)
                    stop_sent = True
                    proc.send_signal(signal.SIGTERM)  # the trial saves last/; the next invocation resumes it
                for step, value in reader.new_values():
                    if not pruned and on_evaluation(step, value):
                        pruned = True
                        proc.send_signal(signal.SIGUSR1)
                        log.info(
                            "trial %d: pruned at step %d (%s %.4g); finishing it", number, step, sweep.metric, value
                        )
        except BaseException:  # Ctrl+C, or an error: the trial saves last/; the sweep resumes it next time
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=120)
            if count_time:
                account(sweep, tic)
            raise
        if count_time:
            account(sweep, tic)
        for index, value in reader.new_values():
            if not pruned:
                on_evaluation(index, value)
    finished = (folder / "results.json").is_file() and (proc.returncode == 0 or pruned)
    if finished:  # a prune signal that came as the run was exiting may have ended it there, after its results
        results = json.loads((folder / "results.json").read_text())
        value = results.get("validation", {}).get(sweep.metric)
        return TrialOutcome("pruned" if pruned else "complete", value)
    if proc.returncode == 130 or stop_sent:  # stopped (a trial stopped while still starting dies of the SIGTERM)
        return TrialOutcome("interrupted")
    return TrialOutcome("failed", error=last_error(log_path))


def wait_for_free(folder: Path, seconds: float = 120) -> None:
    """A trial left running by a killed sweep is saving last/ (it got SIGTERM): wait for it to let go."""
    deadline = time.monotonic() + seconds
    while folder.is_dir() and lock_holder(folder) and time.monotonic() < deadline:
        time.sleep(0.5)


def account(sweep: Sweep, since: float) -> float:
    """Add the time since ``since`` to the sweep's spent time (kept in sweep.json across restarts)."""
    now = time.monotonic()
    sweep.state["spent_seconds"] = sweep.spent + (now - since)
    sweep.save_state()
    return now


def last_error(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    return errors[-1] if errors else "\n".join(lines[-5:])


class ValidationReader:
    """The validation values a run appends to metrics.jsonl, read as they arrive (complete lines only), numbered
    1, 2, 3...: the pruner compares trials at the same evaluation (after the same number of epochs, with
    eval_every=epoch), whatever their batch size and so their step count."""

    def __init__(self, path: Path, metric: str):
        self.path, self.metric, self.offset, self.count = path, metric, 0, 0

    def new_values(self) -> list[tuple[int, float]]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        found = []
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a blank line, or one torn by a kill: the run's own reader skips it too
                continue
            value = record.get(self.metric)
            if record.get("split") == "validation" and isinstance(value, (int, float)) and math.isfinite(value):
                self.count += 1
                found.append((self.count, float(value)))
        return found


# ----- the Optuna loop -----


def open_study(sweep: Sweep):
    import optuna

    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    storage = f"sqlite:///{(sweep.dir / STUDY_FILE).resolve()}"
    existing = len(sweep.state.get("numbers_started", []))
    # Seeded, and moved on by the trials already drawn: a resumed sweep does not draw its first settings again.
    sampler = optuna.samplers.TPESampler(seed=int(sweep.base.get("seed", 42)) + existing, n_startup_trials=5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name="sweep",
        storage=storage,
        direction="maximize" if sweep.maximize else "minimize",
        sampler=sampler,
        pruner=pruners[sweep.pruner](),
        load_if_exists=True,
    )


def optimize(sweep: Sweep) -> None:
    """Trials until ``sweep.trials`` exist or the budget is spent; an interrupted trial of an earlier invocation
    is finished first."""
    import optuna

    study = open_study(sweep)
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial = optuna.trial.Trial(study, frozen._trial_id)
        resume = (sweep.trial_dir(frozen.number) / "last").is_dir()
        log.info(
            "trial %d was interrupted: %s", frozen.number, "resuming it from last/" if resume else "running it again"
        )
        finish_trial(sweep, study, trial, frozen.params, resume)
    while len(study.trials) < sweep.trials:
        if interrupt.stop_requested():
            raise KeyboardInterrupt  # asked to stop between two trials
        if sweep.remaining() <= RESERVED_SECONDS:
            log.info("the sweep's budget is spent (%.0f s): no more trials", sweep.spent)
            break
        trial = study.ask()
        params = {key: param.suggest(trial) for key, param in sweep.space.items()}
        sweep.state.setdefault("numbers_started", []).append(trial.number)
        sweep.save_state()
        log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in params.items()))
        finish_trial(sweep, study, trial, params, resume=False)


def finish_trial(sweep: Sweep, study, trial, params: dict, resume: bool) -> None:
    import optuna

    def on_evaluation(index: int, value: float) -> bool:
        trial.report(value, index)
        return trial.should_prune()

    write_study_summary(sweep, study)  # the running trial is listed (the studio's Live tab) with its settings
    outcome = run_trial(sweep, trial.number, params, resume, on_evaluation)
    if outcome.state == "interrupted":
        raise KeyboardInterrupt  # the trial stays RUNNING in the study: the next invocation resumes it
    if outcome.state == "failed" or outcome.value is None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if outcome.error.startswith("error:") and not completed_trials(study):
            raise first_trial_error(params, outcome.error[len("error:") :].strip())  # said once, as the error line
        log.warning("trial %d failed: %s", trial.number, outcome.error or "no validation metric")
    elif outcome.state == "pruned":
        trial.set_user_attr("value", outcome.value)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        tracking.mark_pruned(sweep.trial_dir(trial.number))
    else:
        study.tell(trial, outcome.value)
        log.info("trial %d: %s %.4g", trial.number, sweep.metric, outcome.value)
    write_study_summary(sweep, study)


def completed_trials(study) -> list:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def first_trial_error(params: dict, reason: str) -> ToolkitError:
    """The first trial's own error. When it names one of the trial's searched values (a missing data file or model
    among the choices), that value is the culprit, and other trials may run: say so rather than "every trial"."""
    named = [key for key, value in params.items() if isinstance(value, str) and f"'{value}'" in reason]
    if named:
        values = ", ".join(f"{key}='{params[key]}'" for key in named)
        return ToolkitError(
            f"the first trial failed on the searched value {values}: {reason} Fix or remove that value in the "
            f"search space."
        )
    return ToolkitError(f"the first trial failed, so every trial would: {reason}")


def clear_if_nothing_finished(sweep: Sweep) -> None:
    """Empty the sweep's folder when no trial finished (its lock aside: run_lock removes it, and the folder)."""
    if any(sweep.dir.glob("trial-*/results.json")):
        return
    for entry in sweep.dir.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


# ----- results -----


def trial_rows(sweep: Sweep, study) -> list[dict]:
    rows = []
    for frozen in study.get_trials(deepcopy=False):
        folder = sweep.trial_dir(frozen.number)
        results = {}
        with contextlib.suppress(OSError, ValueError):
            results = json.loads((folder / "results.json").read_text())
        value = frozen.value if frozen.value is not None else frozen.user_attrs.get("value")
        rows.append(
            {
                "trial": frozen.number,
                "state": frozen.state.name.lower(),
                sweep.metric: value,
                **frozen.params,
                "steps": results.get("steps"),
                "train_seconds": results.get("train_seconds"),
                "seconds": round(frozen.duration.total_seconds(), 1) if frozen.duration else None,
                "folder": folder.name,
            }
        )
    return rows


def best_trial(study):
    return study.best_trial if completed_trials(study) else None


@dataclass
class Best:
    number: int
    value: float
    params: dict


def write_study_summary(sweep: Sweep, study) -> Optional[Best]:
    best = best_trial(study)
    found = Best(best.number, best.value, best.params) if best is not None else None
    write_summary(sweep, trial_rows(sweep, study), found)
    return found


def write_summary(sweep: Sweep, rows: list[dict], best: Optional[Best]) -> None:
    """summary.md (the trials' table, the best one named first) and the ``best`` link to its folder."""
    lines = [f"# Sweep {sweep.dir.name}", ""]
    if best is not None:
        lines += [
            f"Best: trial {best.number} ({sweep.trial_dir(best.number).name}), validation {sweep.metric} "
            f"{best.value:.4g}: " + ", ".join(f"{k}={_shown(v)}" for k, v in best.params.items()),
            "",
        ]
        link_best(sweep, best.number)
    if rows:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_shown(row.get(k)) for k in keys) + " |" for row in rows]
    spent = f"{sweep.spent / 60:.1f} min"
    budget = f" of {sweep.budget_seconds / 60:g}" if sweep.budget_seconds else ""
    lines += ["", f"Time: {spent}{budget}. Trials: {len(rows)} of {sweep.trials}."]
    replace_atomically(sweep.dir / SUMMARY, ("\n".join(lines) + "\n").encode())
    replace_atomically(sweep.dir / "trials.json", json.dumps(rows, indent=1, default=str).encode())


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def link_best(sweep: Sweep, number: int) -> None:
    """``best`` -> the best trial's folder, replaced in one step."""
    link = sweep.dir / BEST
    tmp = sweep.dir / f".{BEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(sweep.trial_dir(number).name, target_is_directory=True)
    os.replace(tmp, link)


@dataclass
class SweepResult:
    """A finished (or stopped) sweep: its folder, the best trial's folder and its value, and every trial's row."""

    dir: Path
    best_dir: Optional[Path]
    best_value: Optional[float]
    metric: str
    trials: list[dict]


def start_tracking(sweep: Sweep) -> None:
    """Group the trials in the trackers the config names (tensorboard aside): a W&B and trackio group, an MLflow
    parent run."""
    names = sweep.base.get("trackers", [])
    if names:
        space = {key: param.as_dict() for key, param in sweep.space.items()}
        sweep.state["tracking_env"] = tracking.start_sweep(sweep.dir, names, sweep.base["task"], space)
        sweep.save_state()


def finish(sweep: Sweep, best: Optional[Best] = None) -> None:
    """Mark the sweep done: its trials or its budget ran out (a stopped or killed sweep is not finished)."""
    sweep.state["finished"] = True
    sweep.save_state()
    if sweep.state.get("tracking_env"):
        trial = sweep.trial_dir(best.number).name if best is not None else None
        tracking.end_sweep(sweep.dir, sweep.metric, best.value if best is not None else None, trial)


def read_state(folder: Path) -> Optional[dict]:
    """A sweep folder's sweep.json, or None when ``folder`` holds no sweep."""
    try:
        state = json.loads((folder / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and (folder / MARKER).is_file() else None


def finished_study(state: dict, rows: list[dict]):
    """An in-memory Optuna study of a sweep's completed trials, from its trials' table and the space in its
    sweep.json (for Optuna's plots; the same for both backends, and no lock on a running sweep's study.db)."""
    import optuna

    identity = state.get("identity") or {}
    space = {key: _param(key, spec, "sweep.json") for key, spec in (identity.get("space") or {}).items()}
    metric = identity.get("metric")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if identity.get("maximize", True) else "minimize")
    for row in rows:
        if row.get("state") == "complete" and isinstance(row.get(metric), (int, float)):
            study.enqueue_trial({key: row[key] for key in space if key in row})
            trial = study.ask()
            for param in space.values():
                param.suggest(trial)  # the enqueued value: the trial's own
            study.tell(trial, row[metric])
    return study


def promote(sweep_dir: Union[str, Path], dest: Union[str, Path]) -> Path:
    """Copy the sweep's best trial to ``dest``, a run folder of its own (its config names its new folder); the copy
    is made beside ``dest`` and renamed into place, so a failure leaves nothing half-copied."""
    sweep_dir, dest = Path(sweep_dir), Path(dest)
    best = sweep_dir / BEST
    if not best.is_dir():
        raise ToolkitError(f"'{sweep_dir}' has no best trial yet: promote it once a trial has finished.")
    if dest.exists():
        raise ToolkitError(f"'{dest}' exists: choose another name for the promoted run.")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.promoting")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(best.resolve(), tmp, symlinks=True, ignore=shutil.ignore_patterns(LOCK))
        values = yaml.safe_load((tmp / CONFIG_FILE).read_text())
        values["output_dir"] = str(dest.absolute())
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(values, sort_keys=False))
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def result(sweep: Sweep, rows: list[dict], best: Optional[Best]) -> SweepResult:
    best_dir = sweep.trial_dir(best.number) if best is not None else None
    return SweepResult(sweep.dir, best_dir, best.value if best else None, sweep.metric, rows)
