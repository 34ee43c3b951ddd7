"""A graceful stop for `toolkit train`: the first Ctrl+C or SIGTERM finishes the current step, saves last/ and
stops (resumable exactly, see engine.after_optimizer_step); a second one interrupts at once. SIGUSR1 (a sweep
pruning the trial) ends training after the current step as if its steps were done: best/ is scored and the run
finishes normally. No torch here, so the command line installs it before anything heavy is imported."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)
_stop = {"requested": False, "finish": False}


def request_stop(signum=None, frame=None) -> None:
    """Signal handler. Several processes (DDP) stop at once: they could not agree on the step without talking at
    every step."""
    if _stop["requested"] or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise KeyboardInterrupt
    _stop["requested"] = True
    log.warning("stopping after this step and saving last/ (press Ctrl+C again to stop at once)")


def stop_requested() -> bool:
    return _stop["requested"]


def request_finish(signum=None, frame=None) -> None:
    _stop["finish"] = True
    log.warning("asked to finish (a sweep pruned this trial): ending training after this step")


def finish_requested() -> bool:
    return _stop["finish"]


def install_stop_handlers() -> None:
    _stop.update(requested=False, finish=False)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if hasattr(signal, "SIGUSR1"):  # not on Windows
        signal.signal(signal.SIGUSR1, request_finish)
