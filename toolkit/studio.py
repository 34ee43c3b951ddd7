"""The studio's state, without any web code: the run folders under one root, and a queue of training jobs, each
run as a child ``toolkit train`` process (a crash in training cannot take the studio down, and a studio run is a
CLI run).

Everything lives on disk, so a page reload, a second browser or a studio restart sees the same runs:
  <root>/<run>/              run folders, written by `toolkit train`
  <root>/.studio/jobs/       one JSON file per job: its command, when it was queued, its process
  <root>/.studio/logs/       each job's output (the Live tab's log tail)
  <root>/.studio/uploads/    uploaded data and configs
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

from . import run as runlib
from .errors import ToolkitError

STUDIO_DIR = ".studio"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_UPLOAD_MB = 200
# Fields offered as form inputs on the Train tab (the rest stay as the config file sets them).
FORM_KEYS = ("epochs", "max_steps", "batch_size", "lr", "max_length", "warmup_ratio", "precision", "seed",
             "eval_every", "peft.enabled")


def safe_name(name: str, what: str = "run name") -> str:
    """A run or file name that cannot leave its folder: letters, digits, '.', '_' and '-', not starting with a dot."""
    name = (name or "").strip()
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise ToolkitError(f"{what} {name!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', starting "
                           f"with a letter or digit (no '/', no '..').")
    return name


def inside(folder: Path, path: Path) -> Path:
    """``path`` resolved, refused unless it lies in ``folder`` (no '..', no absolute path, no symlink out)."""
    folder, resolved = folder.resolve(), path.resolve()
    if resolved != folder and folder not in resolved.parents:
        raise ToolkitError(f"'{path}' is outside {folder}: refused.")
    return resolved


def shipped_configs(task: str | None = None) -> dict[str, Path]:
    """The configs in recipes/configs (of one task, if given), by file name."""
    from .config import read_yaml
    from .tasks import get_task

    out = {}
    from . import recipes

    for path in sorted((Path(recipes.__file__).parent / "configs").glob("*.yaml")):
        if task is None or get_task(str(read_yaml(path).get("task"))).name == get_task(task).name:
            out[path.name] = path
    return out


def display_path(path: str | Path) -> str:
    """A path as the user would type it from the studio's working folder."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command_text(argv: list[str]) -> str:
    return shlex.join(argv)


class Studio:
    """The runs under ``root`` and the training queue: at most ``max_running`` jobs train at once (the rest wait)."""

    def __init__(self, root: str | Path, max_running: int = 1, max_upload_mb: float = MAX_UPLOAD_MB,
                 allow_remote_code: bool = False):
        self.root = Path(root).resolve()
        self.allow_remote_code = allow_remote_code  # --allow-remote-code: jobs may run a model folder's own Python
        self.max_upload_mb = max_upload_mb
        self.jobs_dir = self.root / STUDIO_DIR / "jobs"
        self.logs_dir = self.root / STUDIO_DIR / "logs"
        self.uploads = self.root / STUDIO_DIR / "uploads"
        for folder in (self.jobs_dir, self.logs_dir, self.uploads):
            folder.mkdir(parents=True, exist_ok=True)
        self.max_running = max_running
        self.children: dict[str, subprocess.Popen] = {}
        self.lock = threading.RLock()

    # ----- paths -----
    def run_dir(self, name: str) -> Path:
        return inside(self.root, self.root / safe_name(name))

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{safe_name(name)}.log"

    def job_path(self, name: str) -> Path:
        return self.jobs_dir / f"{safe_name(name)}.json"

    def read_job(self, name: str) -> dict:
        """The job file of run ``name``; {} when there is none or it is not a job (a stray or damaged file)."""
        path = self.job_path(name)
        try:
            job = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {}
        ok = isinstance(job, dict) and job.get("name") == name and isinstance(job.get("argv"), list)
        return job if ok and isinstance(job.get("queued_at"), (int, float)) else {}

    def jobs(self) -> list[dict]:
        found = (self.read_job(p.stem) for p in self.jobs_dir.glob("*.json") if NAME.fullmatch(p.stem))
        return [job for job in found if job]

    def write_job(self, job: dict) -> None:
        path = self.job_path(job["name"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job, indent=1))
        tmp.replace(path)

    # ----- starting, stopping, resuming -----
    def train_command(self, config: str | Path, overrides: list[str], name: str) -> list[str]:
        """The `toolkit train` line of a new run (checked as `toolkit train` would check it); raises ToolkitError."""
        from .config import load_config

        run_dir = self.run_dir(name)
        argv = ["toolkit", "train", display_path(config), *overrides, f"output_dir={display_path(run_dir)}"]
        cfg = load_config(config, argv[3:])
        from .tasks import get_task

        get_task(cfg.task)
        self.check_no_remote_code(cfg)
        return argv

    def check_no_remote_code(self, cfg) -> None:
        """Anyone who reaches the studio can start jobs: unless it was started with --allow-remote-code, a job may not
        run Python from a model folder (trust_remote_code) nor load a model from the uploads folder."""
        if self.allow_remote_code:
            return
        if cfg.trust_remote_code:
            raise ToolkitError("trust_remote_code: true is refused in the studio: it runs Python from the model folder "
                               "in the training process, for anyone who can reach the studio. Start the studio with "
                               "--allow-remote-code to permit it, or train from a terminal.")
        from .config import model_sources

        for key, value in model_sources(cfg).items():
            if isinstance(value, str) and value and (Path(value).expanduser().resolve() == self.uploads
                          or self.uploads in Path(value).expanduser().resolve().parents):
                raise ToolkitError(f"{key} points into the studio's uploads ({value}): models are not loaded from "
                                   f"uploads. Start the studio with --allow-remote-code to permit it.")

    def submit(self, config: str | Path, overrides: list[str], name: str) -> dict:
        """Queue a new run; it starts when a training slot is free."""
        with self.lock:
            argv = self.train_command(config, overrides, name)
            if self.run_dir(name).exists() or self.status(name) in ("queued", "starting", "training"):
                raise ToolkitError(f"a run named '{name}' already exists under {self.root}: choose another name.")
            return self._queue(name, argv)

    def resume(self, name: str) -> dict:
        """Queue the exact continuation of a stopped or interrupted run from its last/ checkpoint."""
        with self.lock:
            status = self.status(name)
            if status not in ("stopped", "interrupted"):
                raise ToolkitError(f"run '{name}' is {status}: only a stopped or interrupted run can be resumed.")
            self.check_no_remote_code(runlib.read_run_config(self.run_dir(name)))
            return self._queue(name, ["toolkit", "train", "--resume", display_path(self.run_dir(name))])

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
        log = open(self.log_path(job["name"]), "ab")
        log.write(f"$ {command_text(job['argv'])}\n".encode())
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"}
        # No shell: the arguments go to the child as they are. A new session: the child outlives a studio restart.
        child = subprocess.Popen([sys.executable, "-m", "toolkit", *job["argv"][1:]], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        self.children[job["name"]] = child
        job.update(state="started", pid=child.pid, pid_start=process_start(child.pid), started_at=time.time(),
                   returncode=None, stop_requested=False)
        self.write_job(job)

    def stop(self, name: str) -> str:
        """Stop a run: a queued one leaves the queue; a training one saves last/ after its current step and exits."""
        with self.lock:
            job, status = self.read_job(name), self.status(name)
            if status == "queued":
                self.job_path(name).unlink(missing_ok=True)
                return "removed from the queue"
            if status not in ("starting", "training"):
                raise ToolkitError(f"run '{name}' is not training (it is {status}).")
            if job.get("stop_requested"):
                return "already stopping: last/ is saved after the current step"  # a second signal would not wait
            holder = runlib.lock_holder(self.run_dir(name)) if status == "training" else None
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
        """Record the exit of children that ended, then start what waits."""
        with self.lock:
            for name, child in list(self.children.items()):
                code = child.poll()
                if code is not None:
                    del self.children[name]
                    job = self.read_job(name)
                    if job:
                        job.update(state="ended", returncode=code, ended_at=time.time())
                        self.write_job(job)
            self.schedule()

    def delete(self, name: str, confirm: str) -> None:
        """Delete a run folder (and its job and log), only when ``confirm`` repeats its name and it is not training."""
        with self.lock:
            run_dir = self.run_dir(name)
            if confirm != name:
                raise ToolkitError(f"type the run's name ('{name}') to confirm deleting it.")
            status = self.status(name)
            if status in ("starting", "training"):
                raise ToolkitError(f"run '{name}' is training: stop it first.")
            if not run_dir.exists() and not self.job_path(name).exists() and not self.log_path(name).exists():
                raise ToolkitError(f"there is no run named '{name}' in {self.root}: nothing was deleted.")
            if run_dir.exists():
                entries = {p.name for p in run_dir.iterdir()}
                # A run killed before its marker leaves its lock (and maybe more run files): still a run folder.
                leftover = runlib.LOCK in entries and entries <= runlib.RUN_ENTRIES
                if not (run_dir / runlib.MARKER).is_file() and not leftover:
                    raise ToolkitError(f"'{run_dir}' is not a toolkit run folder: the studio deletes only run folders.")
                shutil.rmtree(run_dir)
            self.job_path(name).unlink(missing_ok=True)
            self.log_path(name).unlink(missing_ok=True)

    # ----- reading state -----
    def names(self) -> list[str]:
        found = {p.name for p in self.root.iterdir() if p.is_dir() and (p / runlib.MARKER).is_file()}
        found |= {p.stem for p in self.jobs_dir.glob("*.json")}
        return sorted(n for n in found if NAME.fullmatch(n))

    def status(self, name: str) -> str:
        """queued, starting, training, finished, stopped, interrupted (died: resumable), failed, or unknown."""
        from .checkpoint import find_checkpoint

        run_dir, job = self.run_dir(name), self.read_job(name)
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
        results = read_json_or_none(run_dir / runlib.RESULTS_FILE) if run_dir.is_dir() else None
        finished = isinstance(results, dict) and "steps" in results
        if finished:
            return "finished"
        code = job.get("returncode")
        if isinstance(code, int) and code > 0 and code != 130:
            return "failed"  # an error (bad data, divergence): resuming would fail the same way; the log says why
        if run_dir.is_dir() and find_checkpoint(run_dir, "last") is not None:
            return "stopped" if job.get("stop_requested") else "interrupted"
        if job or run_dir.is_dir():
            return "failed"
        return "unknown"

    def queue_position(self, name: str) -> int | None:
        queued = sorted(self.jobs(), key=lambda j: j["queued_at"])
        names = [j["name"] for j in queued if j.get("state") == "queued"]
        return names.index(name) + 1 if name in names else None

    def metrics(self, name: str) -> list[dict]:
        path = self.run_dir(name) / runlib.METRICS_LOG
        records = []
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue  # a line being written
        return records

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_path(name)
        if not path.is_file():
            return ""
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 20_000))
            text = fh.read().decode("utf-8", "replace").replace("\r", "\n")
        return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])

    def live(self, name: str, records: list[dict] | None = None) -> dict:
        """Progress of one run: status, step/total, samples/s, ETA, queue position, the latest metrics, the precision
        chosen and why, log tail
        (``records``: its metrics.jsonl, when the caller has read it already)."""
        status = self.status(name)
        records = self.metrics(name) if records is None else records
        train = [r for r in records if r.get("split") == "train"]
        last = train[-1] if train else {}
        step, total = last.get("step", 0), last.get("total_steps")
        seconds, samples = last.get("train_seconds"), last.get("samples")
        speed = samples / seconds if seconds and samples else None
        eta = seconds / step * (total - step) if seconds and step and total else None
        validation = [r for r in records if r.get("split") == "validation"]
        setups = [r for r in records if r.get("split") == "setup"]
        machine = {k: setups[-1].get(k) for k in ("precision", "threads", "hardware")} if setups else {}
        return {"name": name, "status": status, "step": step, "total_steps": total, **machine,
                "samples_per_second": round(speed, 1) if speed else None, "eta_seconds": round(eta) if eta is not None else None,
                "queue_position": self.queue_position(name), "last_train": last,
                "last_validation": validation[-1] if validation else {}, "log": self.log_tail(name)}

    def damaged_files(self, name: str) -> list[str]:
        """The files of run ``name`` that exist but cannot be read: its job file, config, results or metrics log."""
        run_dir, damaged = self.run_dir(name), []
        if self.job_path(name).is_file() and not self.read_job(name):
            damaged.append("job file")
        if (run_dir / runlib.CONFIG_FILE).is_file():
            try:
                runlib.read_run_config(run_dir)
            except ToolkitError:
                damaged.append(runlib.CONFIG_FILE)
        if (run_dir / runlib.RESULTS_FILE).is_file() and not isinstance(read_json_or_none(run_dir / runlib.RESULTS_FILE), dict):
            damaged.append(runlib.RESULTS_FILE)
        if self.bad_metric_lines(name):
            damaged.append(runlib.METRICS_LOG)
        return damaged

    def bad_metric_lines(self, name: str) -> int:
        """Unreadable lines of metrics.jsonl; the last line of a training run is being written, not damaged."""
        path = self.run_dir(name) / runlib.METRICS_LOG
        if not path.is_file():
            return 0
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
        if lines and runlib.lock_holder(self.run_dir(name)) is not None:
            lines = lines[:-1]
        return sum(1 for line in lines if line.strip() and not isinstance(read_json_or_none(line), dict))

    def summary(self, name: str) -> dict:
        """One row of the Runs table; a run with damaged files is listed with what could be read and names them."""
        run_dir, job = self.run_dir(name), self.read_job(name)
        status, damaged = self.status(name), self.damaged_files(name)
        row = {"name": name, "task": "", "base model": "", "status": f"{status} (damaged: {', '.join(damaged)})" if damaged
               else status, "best metric": "", "steps": None, "duration": "", "date": "", "size": ""}
        if (run_dir / runlib.CONFIG_FILE).is_file() and runlib.CONFIG_FILE not in damaged:
            try:
                cfg = runlib.read_run_config(run_dir)
                from .tasks import get_task

                row.update({"task": cfg.task, "base model": get_task(cfg.task).base_model(cfg) or ""})
            except ToolkitError:
                pass
        results = read_json_or_none(run_dir / runlib.RESULTS_FILE) if (run_dir / runlib.RESULTS_FILE).is_file() else {}
        results = results if isinstance(results, dict) else {}
        metric = results.get("metric")
        best = (results.get("validation") or {}).get(metric)
        if isinstance(best, (int, float)):
            row["best metric"] = f"{metric} {best:.4f}"
        records = self.metrics(name)
        steps = [r.get("step", 0) for r in records]
        row["steps"] = results.get("steps") or (max(steps) if steps else None)
        seconds = results.get("train_seconds") or next((r.get("train_seconds") for r in reversed(records)
                                                        if r.get("train_seconds")), None)
        row["duration"] = format_seconds(seconds) if seconds else ""
        started = job.get("queued_at") or (run_dir.stat().st_mtime if run_dir.is_dir() else None)
        row["date"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else ""
        row["size"] = format_size(folder_size(run_dir)) if run_dir.is_dir() else ""
        return row

    def runs(self) -> list[dict]:
        rows = []
        for name in self.names():
            try:
                rows.append(self.summary(name))
            except (OSError, ValueError) as err:  # one damaged run folder must not hide the others
                rows.append({"name": name, "status": f"unreadable: {err}"})
        return rows

    def finished(self) -> list[str]:
        return [name for name in self.names() if self.status(name) == "finished"]

    def model_card(self, name: str) -> str:
        path = self.run_dir(name) / "README.md"
        return path.read_text(encoding="utf-8") if path.is_file() else f"Run '{name}' has no model card yet."

    def best_zip(self, name: str, folder: Path) -> Path:
        """The run's best/ as a zip in ``folder``."""
        best = self.run_dir(name) / "best"
        if not best.is_dir():
            raise ToolkitError(f"run '{name}' has no best/ checkpoint yet.")
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{name}-best.zip"
        tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(best.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    archive.write(path, Path(name) / path.relative_to(best))
        tmp.replace(out)
        return out

    # ----- uploads -----
    def save_upload(self, source: str | Path, filename: str | None = None) -> Path:
        """Copy an uploaded file into the upload folder under a safe name (a zip of class folders is extracted).

        Each content gets its own folder, named by its hash: the same file uploaded again is not copied again, and
        a file a queued or training run reads is never replaced or deleted."""
        import hashlib

        source = Path(source)
        size = source.stat().st_size
        if size > self.max_upload_mb * 2**20:
            raise ToolkitError(f"'{filename or source.name}' is {size / 2**20:.1f} MB; uploads are limited to "
                               f"{self.max_upload_mb:g} MB. Give a path on the studio's machine instead.")
        digest = hashlib.sha256()
        with open(source, "rb") as fh:
            for block in iter(lambda: fh.read(2**20), b""):
                digest.update(block)
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or source.name).name).lstrip("._") or "upload"
        folder = self.uploads / digest.hexdigest()[:16]
        target = folder / safe_name(stem[:64], "file name")
        if source.suffix.lower() == ".zip" or target.suffix.lower() == ".zip":
            return self._extract(source, target.with_suffix(""))
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
            shutil.copyfile(source, tmp)
            tmp.replace(target)  # never a half-copied file under the final name
        return target

    def _extract(self, archive: Path, target: Path) -> Path:
        """A zip of class folders, extracted once, with every member checked to stay inside ``target``."""
        if not target.is_dir():
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.mkdir(parents=True)
            try:
                total = 0
                with zipfile.ZipFile(archive) as zipped:
                    for member in zipped.infolist():
                        total += member.file_size
                        if total > 4 * self.max_upload_mb * 2**20:
                            raise ToolkitError(f"'{archive.name}' unpacks to more than {4 * self.max_upload_mb:g} MB: "
                                               f"refused.")
                        try:
                            inside(tmp, tmp / member.filename)
                        except ToolkitError:
                            raise ToolkitError(f"'{archive.name}' holds '{member.filename}', a path outside the "
                                               f"archive's folder: refused.") from None
                    zipped.extractall(tmp)
                tmp.rename(target)
            except (ToolkitError, zipfile.BadZipFile, OSError) as err:
                shutil.rmtree(tmp, ignore_errors=True)
                try:
                    target.parent.rmdir()  # the content's folder, when nothing else was ever stored in it
                except OSError:
                    pass
                if isinstance(err, ToolkitError):
                    raise
                if not target.is_dir():
                    raise ToolkitError(f"'{archive.name}' is not a readable zip archive ({err}).") from err
        # A zip of one folder holding the class folders: use that folder.
        entries = [p for p in target.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        return entries[0] if len(entries) == 1 and entries[0].is_dir() and any(entries[0].iterdir()) else target


def read_json_or_none(source: str | Path):
    """The JSON value of a file (Path) or a line (str); None when it is not JSON."""
    try:
        return json.loads(source.read_text() if isinstance(source, Path) else source)
    except (OSError, ValueError):
        return None


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


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def format_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def preview_data(source: str, roles: dict | None = None, configured: dict | None = None, rows: int = 5) -> dict:
    """What the Train tab shows of a data file or image folder: columns, the first rows, a column for each of the
    task's data ``roles`` ({data key: DataRole}, guessed: the ``configured`` names first), and the label counts.
    A hub id is not fetched here (the run loads it)."""
    from .data import guess_columns

    path = Path(source).expanduser()
    if path.is_dir() and not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
        counts = {}
        for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            counts[folder.name] = sum(1 for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not any(counts.values()):
            raise ToolkitError(f"'{source}' holds no class folders of images (e.g. ants/*.jpg, bees/*.jpg).")
        return {"kind": "images", "columns": ["image", "label"], "rows": [], "roles": {}, "label_counts": counts}
    if not path.is_file():
        return {"kind": "hub", "columns": [], "rows": [], "roles": {}, "label_counts": {},
                "note": f"'{source}' is not a file here: the run loads it as a hub dataset (this needs internet)."}
    from .data import _read_file

    table = _read_file(path)
    if table.empty:
        raise ToolkitError(f"data file '{source}' has no rows.")
    columns = [str(c) for c in table.columns]
    table.columns = columns
    roles = roles or {}
    chosen = guess_columns(roles, columns, table, configured)
    label = next((chosen[k] for k, role in roles.items() if role.kind == "label" and chosen.get(k)), None)
    counts = {str(k): int(v) for k, v in table[label].value_counts().items()} if label else {}
    head = table.head(rows).astype(str).map(lambda v: v if len(v) <= 200 else v[:200] + "…")
    return {"kind": "table", "columns": columns, "rows": head.values.tolist(), "roles": chosen,
            "label_column": label, "label_counts": counts, "count": len(table)}
