"""What the benchmarks share: the repository root, the shared data folder, an offline environment (nothing is
fetched from the hub; tokenizers do not fork threads into the subprocesses the benchmarks time) and a timed whole
process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository, or TOOLKIT_SHARED_DATA (e.g. on a lent GPU machine)
SHARED = Path(os.environ.get("TOOLKIT_SHARED_DATA") or ROOT.parent / "shared" / "data")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def go_offline() -> None:
    """Set the offline variables in this process (and so in the processes it starts), unless already set."""
    for name, value in OFFLINE.items():
        os.environ.setdefault(name, value)


def whole_process(command: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of ``command`` run from the repository root; a failure ends the benchmark with its
    error output."""
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - tic, done.stdout
