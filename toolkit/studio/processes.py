"""The studio's child processes: a command as the user would type it, and whether a recorded process still runs."""

from __future__ import annotations

import os
import shlex


def command_text(argv: list[str]) -> str:
    return shlex.join(argv)


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); None without /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid, started: int | None = None) -> bool:
    """Whether process ``pid`` still runs and is the one started at ``started`` (a pid can be reused)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not a run of this studio
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False  # ended, not reaped yet
    except OSError:
        return True  # no /proc (macOS): trust the signal
    return started is None or process_start(pid) == started
