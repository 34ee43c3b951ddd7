"""A graceful stop for `toolkit train`: the first Ctrl+C or SIGTERM finishes the current step, saves last/ and
stops (resumable exactly, see engine.after_optimizer_step); a second one interrupts at once. SIGUSR1 (a sweep
pruning the trial) ends training after the current step as if its steps were done: best/ is scored and the run
finishes normally. No torch here, so the command line installs it before anything heavy is imported."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)
_stop = {"requested": False, "finish": False}
# Set by a sweep or the studio for the training it starts: that parent's pid, watched by watch_parent.
PARENT_ENV = "TOOLKIT_PARENT_PID"


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


def watch_parent(poll_seconds: float = 1.0) -> None:
    """In a command started by a sweep or the studio (PARENT_ENV names that parent): when the parent is gone, however
    it went (kill -9, a crash, the OS), stop as SIGTERM stops, saving last/, instead of training on unwatched. The
    parent resumes it when it runs again. A watchdog rather than Linux's parent-death signal alone: that one fires
    when the spawning thread ends, and the studio spawns from short-lived worker threads."""
    value = os.environ.pop(PARENT_ENV, "")  # popped: this command's own children have another parent
    if not value.isdigit():
        return
    parent = int(value)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        log.warning("the process that started this one (pid %d) is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, as any stop request

    threading.Thread(target=watch, name="toolkit-watch-parent", daemon=True).start()
