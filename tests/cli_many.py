"""Run many `toolkit` command lines as separate processes without paying the interpreter's start-up and
imports for each: this process imports what the CLI imports once, then forks one child per command line. Each
child runs the real ``toolkit.cli.main(argv)`` with its own stdout and stderr files and exits with its code,
as ``python -m toolkit ARGV`` would (tests/conftest.py's ``run_cli_many``).

Usage: python tests/cli_many.py CASES.json OUT_DIR TIMEOUT   (CASES: a list of argv lists; writes OUT_DIR/N.out,
N.err and N.code; a child past TIMEOUT seconds is killed)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import gradio  # noqa: F401 - imported before the fork, as `toolkit serve`/`studio` would
import torch  # noqa: F401
import transformers  # noqa: F401

from toolkit import api  # noqa: F401
from toolkit.cli import main

PARALLEL = 2


def child(argv: list[str], out: Path, index: int) -> None:
    """In the forked child: stdout and stderr to files, run the CLI, exit with its status."""
    for fd, suffix in ((1, "out"), (2, "err")):
        handle = os.open(out / f"{index}.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = ["toolkit", *argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's errors
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback on stderr, status 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(cases: list[list[str]], out: Path, timeout: float) -> None:
    """Each case in a child, PARALLEL at a time; a child past ``timeout`` seconds is killed (status -9). The
    parent writes each exit status to N.code."""
    running: dict[int, tuple[int, float]] = {}

    def reap(block: bool) -> None:
        while running:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            if pid == 0:
                break
            index, _ = running.pop(pid)
            (out / f"{index}.code").write_text(str(os.waitstatus_to_exitcode(status)))
            block = False
        for pid, (_, started) in list(running.items()):
            if time.monotonic() - started > timeout:
                os.kill(pid, signal.SIGKILL)

    for index, argv in enumerate(cases):
        while len(running) >= PARALLEL:
            reap(block=False)
            time.sleep(0.02)
        pid = os.fork()
        if pid == 0:
            child(argv, out, index)
        running[pid] = (index, time.monotonic())
    while running:
        reap(block=False)
        time.sleep(0.02)


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), float(sys.argv[3]))
