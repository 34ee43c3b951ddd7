"""The studio's catalog: the runs under the root, each one's status, metrics, log, card and best/ as a zip, read
from the run folders (and the queue's job files), so that a page reload, a second browser or a restart sees the same."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

from .. import run as runlib
from .. import sweeps as sweeplib
from ..config import build_config
from ..errors import ToolkitError
from ..tasks import get_task
from .paths import (
    NAME,
    TRIAL,
    StudioPaths,
    display_path,
    folder_size,
    format_seconds,
    format_size,
    read_json_or_none,
    trial_parts,
)


class Catalog:
    """What the Runs, Live, Try and Evaluate tabs read about runs; ``queue``: the studio's JobQueue, which owns each
    run's status (the catalog reads it; the queue never reads the catalog)."""

    def __init__(self, paths: StudioPaths, lock, queue):
        self.paths, self.lock, self.queue = paths, lock, queue

    def delete(self, name: str, confirm: str) -> None:
        """Delete a run folder (and its job and log), only when ``confirm`` repeats its name and it is not training."""
        with self.lock:
            run_dir = self.paths.run_dir(name)
            parts = trial_parts(name)
            if parts:
                raise ToolkitError(
                    f"'{name}' is a trial of the sweep '{parts[0]}': its study counts on it. Delete the whole sweep, "
                    f"or promote the trial to a run of its own first."
                )
            if confirm != name:
                raise ToolkitError(f"type the run's name ('{name}') to confirm deleting it.")
            status = self.status(name)
            if status in ("starting", "training"):
                raise ToolkitError(f"run '{name}' is training: stop it first.")
            if (
                not run_dir.exists()
                and not self.paths.job_path(name).exists()
                and not self.paths.log_path(name).exists()
            ):
                raise ToolkitError(f"there is no run named '{name}' in {self.paths.root}: nothing was deleted.")
            if run_dir.exists():
                entries = {p.name for p in run_dir.iterdir()}
                # A run killed before its marker leaves its lock (and maybe more run files): still a run folder.
                leftover = runlib.LOCK in entries and entries <= runlib.RUN_ENTRIES
                if not (run_dir / runlib.MARKER).is_file() and not leftover and not self.is_sweep(name):
                    raise ToolkitError(f"'{run_dir}' is not a toolkit run folder: the studio deletes only run folders.")
                shutil.rmtree(run_dir)
            self.paths.job_path(name).unlink(missing_ok=True)
            self.paths.log_path(name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        """Runs, sweeps, and each sweep's trials as '<sweep>/trial-NNN' (listed after their sweep)."""
        found = set()
        for folder in self.paths.root.iterdir():
            if folder.is_dir() and (folder / runlib.MARKER).is_file():
                found.add(folder.name)
            elif folder.is_dir() and (folder / sweeplib.MARKER).is_file():
                found.add(folder.name)
                found |= {f"{folder.name}/{t.name}" for t in self.trial_folders(folder)}
        found |= {p.stem for p in self.paths.jobs_dir.glob("*.json")}
        found = (n for n in found if NAME.fullmatch(n) or trial_parts(n))
        return sorted(found, key=lambda n: n.split("/"))

    @staticmethod
    def trial_folders(sweep_dir: Path) -> list[Path]:
        return sorted(p for p in sweep_dir.iterdir() if TRIAL.fullmatch(p.name) and (p / runlib.MARKER).is_file())

    def is_sweep(self, name: str) -> bool:
        return self.queue.is_sweep(name)

    def status(self, name: str) -> str:
        """The run's status, as the queue, which owns it, tells (JobQueue.status)."""
        return self.queue.status(name)

    def metrics(self, name: str) -> list[dict]:
        path = self.paths.run_dir(name) / runlib.METRICS_LOG
        records = []
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue  # a line being written
        return records

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.paths.log_path(name)
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
        return {
            "name": name,
            "status": status,
            "step": step,
            "total_steps": total,
            **machine,
            "samples_per_second": round(speed, 1) if speed else None,
            "eta_seconds": round(eta) if eta is not None else None,
            "queue_position": self.queue.queue_position(name),
            "last_train": last,
            "last_validation": validation[-1] if validation else {},
            "log": self.log_tail(name),
            **({"sweep": self.sweep_progress(name)} if self.is_sweep(name) else {}),
        }

    def sweep_progress(self, name: str) -> dict:
        """A sweep's trials so far, how many are done of how many, the best complete one, the time spent of its
        budget, and its base config."""
        state = sweeplib.read_state(self.paths.run_dir(name)) or {}
        identity = state.get("identity") or {}
        trials, metric = self.sweep_trials(name), identity.get("metric")
        scored = [r for r in trials if r.get("state") == "complete" and isinstance(r.get(metric), (int, float))]
        pick = max if identity.get("maximize", True) else min
        return {
            "trials": trials,
            "done": sum(r.get("state") in ("complete", "pruned") for r in trials),
            "of": state.get("trials"),
            "metric": metric,
            "best": pick(scored, key=lambda r: r[metric]) if scored else None,
            "spent_seconds": state.get("spent_seconds"),
            "budget_seconds": state.get("budget_seconds"),
            "base": identity.get("base") or {},
        }

    def damaged_files(self, name: str) -> list[str]:
        """The files of run ``name`` that exist but cannot be read: its job file, config, results or metrics log."""
        run_dir, damaged = self.paths.run_dir(name), []
        if not trial_parts(name) and self.paths.job_path(name).is_file() and not self.queue.read_job(name):
            damaged.append("job file")
        if (run_dir / runlib.CONFIG_FILE).is_file():
            try:
                runlib.read_run_config(run_dir)
            except ToolkitError:
                damaged.append(runlib.CONFIG_FILE)
        if (run_dir / runlib.RESULTS_FILE).is_file() and not isinstance(
            read_json_or_none(run_dir / runlib.RESULTS_FILE), dict
        ):
            damaged.append(runlib.RESULTS_FILE)
        if self.bad_metric_lines(name):
            damaged.append(runlib.METRICS_LOG)
        return damaged

    def bad_metric_lines(self, name: str) -> int:
        """Unreadable lines of metrics.jsonl; the last line of a training run is being written, not damaged."""
        path = self.paths.run_dir(name) / runlib.METRICS_LOG
        if not path.is_file():
            return 0
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
        if lines and runlib.lock_holder(self.paths.run_dir(name)) is not None:
            lines = lines[:-1]
        return sum(1 for line in lines if line.strip() and not isinstance(read_json_or_none(line), dict))

    def sweep_trials(self, name: str) -> list[dict]:
        """A sweep's trials: the rows of its trials.json (settings, metric, state; the running one included), each
        trial folder not listed there yet by its run status, and the running trials' step."""
        sweep_dir = self.paths.run_dir(name)
        rows = read_json_or_none(sweep_dir / "trials.json") if sweep_dir.is_dir() else None
        rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
        listed = {r.get("folder") for r in rows}
        folders = self.trial_folders(sweep_dir) if sweep_dir.is_dir() else []
        for folder in folders:
            if folder.name not in listed:
                rows.append({"trial": int(folder.name.split("-")[1]), "state": self.status(f"{name}/{folder.name}")})
                rows[-1]["folder"] = folder.name
        sweeping = self.status(name) in ("starting", "training")
        for row in rows:
            if row.get("state") in ("running", "training") and isinstance(row.get("folder"), str):
                # Running while its sweep runs; else stopped with it (the sweep's next start resumes or reruns it).
                row["state"] = "running" if sweeping else "interrupted"
                live = self.live(f"{name}/{row['folder']}")
                row["steps"] = f"{live['step']}/{live['total_steps']}" if live.get("total_steps") else live["step"]
        return sorted(rows, key=lambda r: r.get("trial", 0))

    def sweep_summary(self, name: str, row: dict) -> dict:
        """The Runs table's row of a sweep: its task, best trial, trials done, time spent."""
        progress = self.sweep_progress(name)
        row["status"] += f" · {progress['done']}/{progress['of'] or '?'} trials"
        base = progress["base"]
        if isinstance(base.get("task"), str):
            with contextlib.suppress(ToolkitError):
                spec = get_task(base["task"])
                row.update(task=spec.name, **{"base model": build_config(base, ranges=False).base_model() or ""})
        best, metric = progress["best"], progress["metric"]
        if best is not None:
            row["best metric"] = f"{metric} {best[metric]:.4f} (trial {best['trial']})"
        spent = progress["spent_seconds"]
        row["duration"] = format_seconds(spent) if isinstance(spent, (int, float)) and spent else ""
        return row

    def promote(self, name: str, new_name: str) -> Path:
        """Copy sweep ``name``'s best trial to a run of its own, ``new_name``."""
        with self.lock:
            if not self.is_sweep(name):
                raise ToolkitError(f"'{name}' is not a sweep: only a sweep's best trial can be promoted.")
            dest = self.paths.run_dir(new_name)
            if dest.exists() or self.status(new_name) != "unknown":
                raise ToolkitError(f"a run named '{new_name}' already exists under {self.paths.root}: choose another.")
            return sweeplib.promote(self.paths.run_dir(name), dest)

    def summary(self, name: str) -> dict:
        """One row of the Runs table; a run with damaged files is listed with what could be read and names them."""
        run_dir = self.paths.run_dir(name)
        status, damaged = self.status(name), self.damaged_files(name)
        row = {
            "name": name,
            "task": "",
            "base model": "",
            "status": f"{status} (damaged: {', '.join(damaged)})" if damaged else status,
            "best metric": "",
            "steps": None,
            "duration": "",
            "date": self.date_of(name),
            "size": self.size_of(name),
        }
        if self.is_sweep(name):
            return self.sweep_summary(name, row)
        if (run_dir / runlib.CONFIG_FILE).is_file() and runlib.CONFIG_FILE not in damaged:
            try:
                cfg = runlib.read_run_config(run_dir)

                row.update({"task": cfg.task, "base model": cfg.base_model() or ""})
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
        seconds = results.get("train_seconds") or next(
            (r.get("train_seconds") for r in reversed(records) if r.get("train_seconds")), None
        )
        row["duration"] = format_seconds(seconds) if seconds else ""
        return row

    def date_of(self, name: str) -> str:
        run_dir, job = self.paths.run_dir(name), self.queue.read_job(name)
        started = job.get("queued_at") or (run_dir.stat().st_mtime if run_dir.is_dir() else None)
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else ""

    def size_of(self, name: str) -> str:
        run_dir = self.paths.run_dir(name)
        return format_size(folder_size(run_dir)) if run_dir.is_dir() else ""

    def runs(self) -> list[dict]:
        rows, trial_states = [], {}  # each sweep's trial states, read once for all its trials
        for name in self.names():
            try:
                row = self.summary(name)
                parts = trial_parts(name)
                if parts:  # a pruned trial finished early: say so beside its status
                    if parts[0] not in trial_states:
                        trial_states[parts[0]] = {r.get("folder"): r.get("state") for r in self.sweep_trials(parts[0])}
                    row["status"] += " (pruned)" if trial_states[parts[0]].get(parts[1]) == "pruned" else ""
                rows.append(row)
            except (OSError, ValueError) as err:  # one damaged run folder must not hide the others
                rows.append({"name": name, "status": f"unreadable: {err}"})
        return rows

    def finished(self) -> list[str]:
        return [name for name in self.names() if self.status(name) == "finished"]

    def model_card(self, name: str) -> str:
        """The run's model card, after how to serve it (the command, curl, InferenceClient) once it is finished."""
        run_dir = self.paths.run_dir(name)
        path = run_dir / "README.md"
        if not path.is_file():
            return f"Run '{name}' has no model card yet."
        return self.serving_usage(name) + self.tracked(name) + "\n" + path.read_text(encoding="utf-8")

    def tracked(self, name: str) -> str:
        from ..labelstudio import projects_of
        from ..tracking import where_tracked

        lines = where_tracked(self.paths.run_dir(name)) + projects_of(self.paths.run_dir(name))
        return "\n**Tracked in**\n\n" + "\n".join(lines) + "\n" if lines else ""

    def push(self, name: str, repo_id: str, private: bool = False) -> str:
        """Upload a finished run's best/ to the Hub (toolkit push); the commit's URL. ToolkitError when it cannot."""
        from ..push import push

        if self.status(name) != "finished":
            raise ToolkitError(f"run '{name}' is not finished: push it once it has trained.")
        return push(self.paths.run_dir(name), repo_id.strip(), private=private)

    def serving_usage(self, name: str) -> str:
        from ..serving import usage

        if self.status(name) != "finished":
            return ""
        try:
            spec = get_task(runlib.read_run_config(self.paths.run_dir(name)).task)
        except (ToolkitError, OSError, ValueError):
            return ""
        return usage(display_path(self.paths.run_dir(name)), spec)

    def best_zip(self, name: str, folder: Path) -> Path:
        """The run's best/ as a zip in ``folder``."""
        best = self.paths.run_dir(name) / "best"
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
