"""One planning step: everything a training run decides before its model and data load, decided once.

``plan(config)`` resolves the config, its task, the metric that picks best/ (a Goal), this machine's precision and
threads, and the run folder (checked now, claimed by ``Plan.claimed()``); ``engine.fit(plan, task)`` then trains.
The CLI, the notebook API, a sweep's trials (each a ``toolkit train`` process) and the studio's runs all go through it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from . import timing
from .config import Config, load_config
from .errors import ToolkitError
from .run import choose_output_dir, claim_run_dir, prepare_run_dir
from .tasks import Goal, TaskSpec, choose_goal, get_task


def resolve_config(source: Union[str, Path, dict, Config], overrides: list[str] | None = None, **kwargs: Any) -> Config:
    """A validated config from a path/dict/Config, CLI-style ``key=value`` strings and keyword overrides (nested
    dicts, ``data={"train": "x.csv"}``, or ``__`` for dots, ``data__train=...``), with its output folder chosen."""
    cfg = load_config(source, overrides, kwargs)
    choose_output_dir(cfg, source)
    return cfg


@dataclass(frozen=True)
class Plan:
    """What one training run has decided: read by the engine, never looked up again."""

    cfg: Config
    spec: TaskSpec
    goal: Goal  # the metric that picks best/ and which way it wins
    machine: dict  # machine.fit_machine's record: precision chosen and why, threads, hardware
    run_dir: Path  # checked; held only inside claimed()
    processes: Any  # accelerate's PartialState: this process's rank among the run's

    def build(self):
        """The task's model and data (engine.Task). The first process on each machine converts and tokenizes the data
        into the cache; the others then read it (instead of all of them tokenizing the same rows at once)."""
        with timing.phase("build"), self.processes.local_main_process_first():
            return self.spec.build(self.cfg)

    @contextlib.contextmanager
    def claimed(self):
        """Hold the run folder while the block trains: rank 0 locks it, checks it again and clears an earlier run
        for overwrite=true; the lock is released however the block ends."""
        with contextlib.ExitStack() as held:
            on_main_process(self.processes, lambda: held.enter_context(claim_run_dir(self.cfg)))
            yield self.run_dir


def plan(source: Union[str, Path, dict, Config], overrides: list[str] | None = None, **kwargs: Any) -> Plan:
    """Resolve a run from its config: config errors come before torch is even imported, and a refused run folder or
    metric before anything loads."""
    cfg = resolve_config(source, overrides, **kwargs)
    check_trackers(cfg)
    spec = get_task(cfg.task)
    goal = choose_goal(spec, cfg)
    from accelerate import PartialState
    from accelerate.utils import set_seed

    from .machine import cpu_only, fit_machine, local_process_count

    processes = PartialState(cpu=cpu_only())
    machine = fit_machine(cfg, local_process_count(processes))  # the run's first log line: precision, threads
    if processes.num_processes > 1:  # every rank trains into the folder rank 0 chose (a fresh one is timestamped)
        from accelerate.utils import broadcast_object_list

        cfg.output_dir = broadcast_object_list([cfg.output_dir], from_process=0)[0]
    on_main_process(processes, lambda: prepare_run_dir(cfg))
    timing.reset(start_up=timing.process_age())  # the process's imports and config checks so far
    set_seed(cfg.seed)  # new heads and from-scratch models start the same in every run of this config
    return Plan(cfg, spec, goal, machine, Path(cfg.output_dir), processes)


def check_trackers(cfg: Config) -> None:
    """A tracker the config names must be installed: said before anything loads, not found out after training."""
    from .tracking import missing

    absent = missing(cfg.trackers)
    if absent:
        names = " ".join(absent)
        raise ToolkitError(
            f"trackers: {', '.join(absent)} not installed here. Install with `pip install {names}` (or "
            f"`pip install 'toolkit[tracking]'`), or leave {'it' if len(absent) == 1 else 'them'} out of trackers."
        )


def on_main_process(processes, check) -> None:
    """Run ``check`` on rank 0 only (the one process that owns the run folder) and raise its ToolkitError on every
    rank, so that no process is left waiting at a barrier for one that refused."""
    message = None
    if processes.is_main_process:
        try:
            check()
        except ToolkitError as err:
            message = str(err)
    if processes.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([message], from_process=0)[0]
    if message is not None:
        raise ToolkitError(message)
