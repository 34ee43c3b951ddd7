"""Where a run's time goes: named phases, summed, written to results.json as "timings" (benchmarks print them)."""

from __future__ import annotations

import contextlib
import os
import time

_totals: dict[str, float] = {}


@contextlib.contextmanager
def phase(name: str):
    """Add the time spent inside the block to phase ``name``."""
    tic = time.perf_counter()
    try:
        yield
    finally:
        _totals[name] = _totals.get(name, 0.0) + time.perf_counter() - tic


def reset(**known: float | None) -> None:
    """Start a run's timings, with phases already measured some other way (e.g. start_up=process_age())."""
    _totals.clear()
    _totals.update({name: seconds for name, seconds in known.items() if seconds is not None})


def mark_once(name: str) -> None:
    """Record the process's age the first time ``name`` is reached (e.g. the first training step)."""
    if name not in _totals:
        age = process_age()
        if age is not None:
            _totals[name] = age


def totals() -> dict:
    return {name: round(seconds, 2) for name, seconds in _totals.items()}


def process_age() -> float | None:
    """Seconds since this process started (Linux), or None: the share of imports and start-up before training."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None
