"""The studio's training queue: job files, the `toolkit train` child processes they start, stop and resume.

A job is one JSON file in <root>/.studio/jobs/: its command, when it was queued, its process. At most
``max_running`` jobs train at once; the rest wait, oldest first. Each job is a child process in a session of its
own, so a crash in training cannot take the studio down. A job does not outlive the studio: when the studio is gone
(stopped, killed, crashed) the child saves last/ and stops (interrupt.watch_parent), and the next studio queues it
again, in its old place, to resume from there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import interrupt
from .. import run as runlib
from .. import sweeps as sweeplib
from ..config import load_config, model_sources
from ..errors import ToolkitError
from ..sweeps import prepare
from .paths import NAME, StudioPaths, display_path, read_json_or_none, trial_parts
from .processes import command_text, process_alive, process_start


class JobQueue:
    """Queued and started jobs, and each run's status, which the queue owns (the catalog reads it from here)."""

    def __init__(self, paths: StudioPaths, lock, max_running: int = 1, allow_remote_code: bool = False):
        self.paths, self.lock, self.max_running = paths, lock, max_running
        self.allow_remote_code = allow_remote_code  # --allow-remote-code: jobs may run a model folder's own Python
        self.children: dict[str, subprocess.Popen] = {}

    def read_job(self, name: str) -> dict:
        """The job file of run ``name``; {} when there is none or it is not a job (a stray or damaged file). A
        sweep's trial has none: its sweep's job started it."""
        if trial_parts(name):
            return {}
        path = self.paths.job_path(name)
        try:
            job = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {}
        ok = isinstance(job, dict) and job.get("name") == name and isinstance(job.get("argv"), list)
        return job if ok and isinstance(job.get("queued_at"), (int, float)) else {}

    def is_sweep(self, name: str) -> bool:
        """A sweep's folder, or a queued sweep (its job runs `toolkit sweep`)."""
        if trial_parts(name):
            return False
        if (self.paths.run_dir(name) / sweeplib.MARKER).is_file():
            return True
        return self.read_job(name).get("argv", [])[1:2] == ["sweep"]

    def finished_on_disk(self, name: str) -> bool:
        run_dir = self.paths.run_dir(name)
        if self.is_sweep(name):
            return bool((sweeplib.read_state(run_dir) or {}).get("finished"))
        results = read_json_or_none(run_dir / runlib.RESULTS_FILE) if run_dir.is_dir() else None
        return isinstance(results, dict) and "steps" in results

    def resumable_on_disk(self, name: str) -> bool:
        """A run with last/; a sweep that began (the same command continues it)."""
        from ..checkpoint import find_checkpoint

        run_dir = self.paths.run_dir(name)
        if self.is_sweep(name):
            return sweeplib.read_state(run_dir) is not None
        return run_dir.is_dir() and find_checkpoint(run_dir, "last") is not None

    def status(self, name: str) -> str:
        """queued, starting, training, finished, stopped, interrupted (died: resumable), failed, or unknown. A sweep
        is training while its `toolkit sweep` holds its folder, finished when its trials or budget ran out."""
        run_dir, job = self.paths.run_dir(name), self.read_job(name)
        if job.get("state") == "queued":
            return "queued"
        if run_dir.is_dir() and runlib.lock_holder(run_dir) is not None:
            return "training"
        child = self.children.get(name)
        if child is not None:
            if child.poll() is None:
                return "starting"  # importing and loading, before the run folder is claimed
        elif job.get("state") == "started" and process_alive(job.get("pid"), job.get("pid_start")):
            return "starting"  # started by an earlier studio process
        if self.finished_on_disk(name):
            return "finished"
        code = job.get("returncode")
        if isinstance(code, int) and code > 0 and code != 130:
            return "failed"  # an error (bad data, divergence): resuming would fail the same way; the log says why
        if self.resumable_on_disk(name):
            return "stopped" if job.get("stop_requested") else "interrupted"
        if job or run_dir.is_dir():
            return "failed"
        return "unknown"

    def jobs(self) -> list[dict]:
        found = (self.read_job(p.stem) for p in self.paths.jobs_dir.glob("*.json") if NAME.fullmatch(p.stem))
        return [job for job in found if job]

    def write_job(self, job: dict) -> None:
        path = self.paths.job_path(job["name"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job, indent=1))
        tmp.replace(path)

    def train_command(self, config: str | Path, overrides: list[str], name: str) -> list[str]:
        """The `toolkit train` line of a new run (checked as `toolkit train` would check it); raises ToolkitError."""
        run_dir = self.paths.run_dir(name)
        argv = ["toolkit", "train", display_path(config), *overrides, f"output_dir={display_path(run_dir)}"]
        cfg = load_config(config, argv[3:])  # an unknown task or key is refused here
        self.check_no_remote_code(cfg)
        return argv

    def sweep_command(
        self, config: str | Path, overrides: list[str], name: str, trials: int, budget: str | None
    ) -> list[str]:
        """The `toolkit sweep` line of a new sweep (checked as `toolkit sweep` checks it); raises ToolkitError."""
        argv = self.train_command(config, overrides, name)  # the config, its task, no remote code
        argv[1] = "sweep"
        prepare(config, argv[3:], trials, budget or None, None, "median")  # trials, budget, the folder
        return [*argv, f"--trials={trials}", *([f"--budget={budget}"] if budget else [])]

    def check_no_remote_code(self, cfg) -> None:
        """Anyone who reaches the studio can start jobs: unless it was started with --allow-remote-code, a job may not
        run Python from a model folder (trust_remote_code) nor load a model from the uploads folder."""
        if self.allow_remote_code:
            return
        if cfg.trust_remote_code:
            raise ToolkitError(
                "trust_remote_code: true is refused in the studio: it runs Python from the model folder "
                "in the training process, for anyone who can reach the studio. Start the studio with "
                "--allow-remote-code to permit it, or train from a terminal."
            )

        for key, value in model_sources(cfg).items():
            if (
                isinstance(value, str)
                and value
                and (
                    Path(value).expanduser().resolve() == self.paths.uploads
                    or self.paths.uploads in Path(value).expanduser().resolve().parents
                )
            ):
                raise ToolkitError(
                    f"{key} points into the studio's uploads ({value}): models are not loaded from "
                    f"uploads. Start the studio with --allow-remote-code to permit it."
                )

    def submit(
        self, config: str | Path, overrides: list[str], name: str, trials: int | None = None, budget: str | None = None
    ) -> dict:
        """Queue a new run, or with ``trials`` a sweep of that many trials (within ``budget``, e.g. "30m"); it starts
        when a training slot is free."""
        with self.lock:
            if trials is None:
                argv = self.train_command(config, overrides, name)
            else:
                argv = self.sweep_command(config, overrides, name, trials, budget)
            if self.paths.run_dir(name).exists() or self.status(name) in ("queued", "starting", "training"):
                raise ToolkitError(f"a run named '{name}' already exists under {self.paths.root}: choose another name.")
            return self._queue(name, argv)

    def resume(self, name: str) -> dict:
        """Queue the exact continuation of a stopped or interrupted run from its last/ checkpoint."""
        with self.lock:
            parts = trial_parts(name)
            if parts:
                raise ToolkitError(f"'{name}' is a trial of the sweep '{parts[0]}': resume the sweep, it resumes it.")
            status = self.status(name)
            if status not in ("stopped", "interrupted"):
                raise ToolkitError(f"run '{name}' is {status}: only a stopped or interrupted run can be resumed.")
            if self.is_sweep(name):
                return self._resume_sweep(name)
            self.check_no_remote_code(runlib.read_run_config(self.paths.run_dir(name)))
            return self._queue(name, ["toolkit", "train", "--resume", display_path(self.paths.run_dir(name))])

    def _resume_sweep(self, name: str) -> dict:
        """The same `toolkit sweep` command again: it continues the sweep (its interrupted trial from last/)."""
        argv = self.read_job(name).get("argv", [])
        if argv[1:2] != ["sweep"]:
            raise ToolkitError(
                f"sweep '{name}' was not started by this studio: continue it with the `toolkit sweep` command that "
                f"started it."
            )
        return self._queue(name, argv)

    def _queue(self, name: str, argv: list[str]) -> dict:
        job = {"name": name, "argv": argv, "state": "queued", "queued_at": time.time()}
        self.write_job(job)
        self.schedule()
        return self.read_job(name)

    def schedule(self) -> None:
        """Start queued jobs, oldest first, while fewer than ``max_running`` train."""
        with self.lock:
            jobs = self.jobs()
            busy = sum(self.status(j["name"]) in ("starting", "training") for j in jobs)
            for job in sorted((j for j in jobs if j.get("state") == "queued"), key=lambda j: j["queued_at"]):
                if busy >= self.max_running:
                    break
                self._start(job)
                busy += 1

    def _start(self, job: dict) -> None:
        log = open(self.paths.log_path(job["name"]), "ab")
        log.write(f"$ {command_text(job['argv'])}\n".encode())
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5", interrupt.PARENT_ENV: str(os.getpid())}
        # No shell: the arguments go to the child as they are. A new session: a Ctrl+C at the studio's terminal
        # stops the studio, and the child then stops on its own, saving last/ (PARENT_ENV).
        child = subprocess.Popen(
            [sys.executable, "-m", "toolkit", *job["argv"][1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.children[job["name"]] = child
        job.update(
            state="started",
            pid=child.pid,
            pid_start=process_start(child.pid),
            started_at=time.time(),
            returncode=None,
            stop_requested=False,
        )
        self.write_job(job)

    def stop(self, name: str) -> str:
        """Stop a run: a queued one leaves the queue; a training one saves last/ after its current step and exits."""
        with self.lock:
            job, status = self.read_job(name), self.status(name)
            if status == "queued":
                self.paths.job_path(name).unlink(missing_ok=True)
                return "removed from the queue"
            if status not in ("starting", "training"):
                raise ToolkitError(f"run '{name}' is not training (it is {status}).")
            parts = trial_parts(name)
            if parts:
                raise ToolkitError(f"'{name}' is a trial of the sweep '{parts[0]}': stop the sweep, it stops it.")
            if job.get("stop_requested"):
                return "already stopping: last/ is saved after the current step"  # a second signal would not wait
            holder = runlib.lock_holder(self.paths.run_dir(name)) if status == "training" else None
            pid = holder.get("pid") if holder else job.get("pid")  # a run started from a terminal has no job
            if not isinstance(pid, int):
                raise ToolkitError(f"run '{name}' is trained by a process this studio cannot signal ({holder}).")
            try:
                os.kill(pid, signal.SIGTERM)  # toolkit train: finish the step, save last/, exit
            except OSError as err:
                raise ToolkitError(f"cannot stop run '{name}' (process {pid}): {err.strerror or err}.") from err
            if job:
                job["stop_requested"] = True
                self.write_job(job)
            return "stopping: last/ is saved after the current step"

    def poll(self) -> None:
        """Record the exit of children that ended, queue again what an earlier studio left, then start what waits."""
        with self.lock:
            for name, child in list(self.children.items()):
                code = child.poll()
                if code is not None:
                    del self.children[name]
                    job = self.read_job(name)
                    if job:
                        job.update(state="ended", returncode=code, ended_at=time.time())
                        self.write_job(job)
            self.requeue_orphans()
            self.schedule()

    def requeue_orphans(self) -> None:
        """Jobs an earlier studio started that ended without it (it was stopped or killed first, so they stopped,
        saving last/): each is queued again to resume, in its old place in the queue. A job still finishing its
        step is left until it has ended."""
        for job in self.jobs():
            name = job["name"]
            if job.get("state") != "started" or name in self.children or job.get("stop_requested"):
                continue
            if self.status(name) != "interrupted":
                continue
            argv = job["argv"]
            if argv[1:2] == ["train"]:
                argv = ["toolkit", "train", "--resume", display_path(self.paths.run_dir(name))]
            job.update(state="queued", argv=argv, requeued_at=time.time())  # a sweep: the same command continues it
            for key in ("pid", "pid_start", "started_at", "returncode"):
                job.pop(key, None)
            self.write_job(job)

    def queue_position(self, name: str) -> int | None:
        queued = sorted(self.jobs(), key=lambda j: j["queued_at"])
        names = [j["name"] for j in queued if j.get("state") == "queued"]
        return names.index(name) + 1 if name in names else None
