"""Experiment trackers: TensorBoard, MLflow, Weights & Biases and trackio.

A run logs to its trackers what it writes to metrics.jsonl (the same records: `train/<key>` and `validation/<key>`
at their step), its resolved config and machine as parameters, its final metrics, and its model card, results and
plots as artifacts.

Every tracker call runs in a worker process of the run's own (``python -m toolkit.tracking``), fed the records
through a pipe: training never waits on a tracker's network nor shares its CPU time with their imports, and a
tracker that fails (a server down, a missing login) is dropped with one warning while the run goes on. Each
tracker's run id and the last record it holds are kept in the run folder (``trackers.json``): a resumed run, after
a ``kill -9`` too, continues the same tracker run, first catching up from metrics.jsonl, so its history has no gap
and no duplicate.

Settings come from each tracker's own environment variables (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``,
``WANDB_PROJECT``, ``WANDB_MODE``, ``WANDB_DIR``, ``TRACKIO_DIR``...). A sweep groups its trials: it sets
``TOOLKIT_TRACKING_GROUP`` (a W&B and trackio group) and ``TOOLKIT_MLFLOW_PARENT_RUN`` (the MLflow parent run).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "mlflow", "wandb", "trackio")
STATE_FILE = "trackers.json"
GROUP_ENV = "TOOLKIT_TRACKING_GROUP"
MLFLOW_PARENT_ENV = "TOOLKIT_MLFLOW_PARENT_RUN"
QUEUE_LIMIT = 10_000  # records waiting for a slow tracker; past it they are dropped (metrics.jsonl keeps them)
CLOSE_SECONDS = 60.0  # how long the end of a run waits for its trackers to take what is queued
PROBE_SECONDS = 3.0
# The most a worker goes on once its run has ended or died: a tracker that hangs (a server that accepts and never
# answers) must not leave a process behind for ever.
WORKER_EXIT_SECONDS = float(os.environ.get("TOOLKIT_TRACKERS_EXIT_SECONDS", 600))
# Artifacts a finished run hands its trackers, where it has them.
ARTIFACTS = ("README.md", "results.json", "config.yaml", "confusion_matrix.png", "samples", "examples")
# Config keys that steer a run rather than define it: a resume changes them, and MLflow refuses a changed parameter.
STEERING = ("resume", "overwrite")


class TrackerUnavailable(Exception):
    """A tracker that cannot start here (its server does not answer): the run goes on without it."""


def installed() -> list[str]:
    """The trackers whose library is installed here (what the studio offers)."""
    return [name for name in TRACKERS if importlib.util.find_spec(name) is not None]


def missing(names: list[str]) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def project_name(task: str) -> str:
    """The experiment/project a run logs to when the environment names none."""
    return f"toolkit-{task}"


def tracked_values(record: dict) -> dict:
    """What a metrics.jsonl record becomes in a tracker: its numbers, named by split."""
    split = record.get("split")
    if split not in ("train", "validation"):
        return {}
    skip = {"step", "epoch", "split", "total_steps", "train_seconds", "samples"}
    return {
        f"{split}/{key}": value
        for key, value in record.items()
        if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def record_key(record: dict) -> list:
    """A record's place in the history: its step, then train before validation (both log at the same step)."""
    return [int(record.get("step", 0)), 0 if record.get("split") == "train" else 1]


def read_state(run_dir: Path) -> dict:
    path = Path(run_dir) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_state(run_dir: Path, state: dict) -> None:
    path = Path(run_dir) / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def flat_params(values: dict, prefix: str = "") -> dict:
    """Nested config and machine values as flat ``a.b`` parameters of plain types."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[prefix + key] = value if value is not None else "null"
        else:
            out[prefix + key] = json.dumps(value, default=str)
    return out


# ----- one class per tracker: how it starts (a new run or the saved one), logs, keeps files and ends -----
# Each calls its library directly. Accelerate's tracker classes wrap the same calls, but importing them imports
# torch: 3.1 s of CPU in the worker for every run, more than MLflow, W&B and trackio together (docs/benchmarks.md).
class Tracker:
    name = ""
    # Whether a value is kept once log() returns. W&B and trackio hand values to a writer of their own, which a
    # kill -9 can stop before it writes them: their resume asks them what they hold instead (held_through).
    durable = True

    def __init__(self, run_dir: Path, task: str, saved: dict):
        self.run_dir, self.task, self.saved = run_dir, task, dict(saved)

    @staticmethod
    def prepare(task: str) -> None:
        """What can be done before the run folder exists, while the model and data load (a server's answer, a
        store's set-up, a service's start): the less the tracker's start leaves to the training's first steps."""

    def start(self) -> dict:
        """Start (or continue) the tracker's run; return what the run folder keeps of it (ids, url)."""
        raise NotImplementedError

    def params(self, values: dict) -> None:
        """Record the run's config and machine (a new tracker run only)."""

    def log(self, values: dict, step: int) -> None:
        raise NotImplementedError

    def held_through(self) -> Optional[list]:
        """A resumed run's last record held by the tracker itself, where it can tell: [step, 0 train/1 validation]."""
        return None

    def artifacts(self, paths: list[Path]) -> None:
        """Keep these files and folders of the run folder with the tracker's run (where it keeps files)."""

    def end(self, state: str) -> None:
        """state: finished, pruned (a sweep stopped it early; it still finished), stopped (resumable), failed."""


class TensorBoard(Tracker):
    name = "tensorboard"

    def start(self) -> dict:
        from tensorboard.summary import Writer  # TensorBoard's own writer: no torch, no TensorFlow

        self.writer = Writer(str(self.run_dir / "tensorboard"))
        return {"dir": str(self.run_dir / "tensorboard")}

    def log(self, values: dict, step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step=step)
        self.writer.flush()

    def end(self, state: str) -> None:
        self.writer.close()


class MLflow(Tracker):
    name = "mlflow"

    @staticmethod
    def prepare(task: str) -> None:
        import mlflow

        probe(mlflow.get_tracking_uri())
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or project_name(task))  # a new store: its tables

    def start(self) -> dict:
        import mlflow

        uri = mlflow.get_tracking_uri()
        tags = {"toolkit.run_dir": str(self.run_dir.absolute()), "toolkit.task": self.task}
        parent = os.environ.get(MLFLOW_PARENT_ENV)
        if parent:
            tags["mlflow.parentRunId"] = parent  # how MLflow nests a run under another, across processes
        if self.saved.get("run_id"):
            run = mlflow.start_run(run_id=self.saved["run_id"], tags=tags)
        else:
            experiment = mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or project_name(self.task))
            run = mlflow.start_run(experiment_id=experiment.experiment_id, run_name=self.run_dir.name, tags=tags)
        info = run.info
        return {
            "run_id": info.run_id,
            "experiment_id": info.experiment_id,
            "tracking_uri": uri,
            "url": mlflow_url(uri, info.experiment_id, info.run_id),
        }

    def params(self, values: dict) -> None:
        import mlflow

        items = [(k, str(v)[:6000]) for k, v in values.items()]  # MLflow keeps up to 6,000 characters
        for i in range(0, len(items), 100):  # at most 100 parameters per call
            mlflow.log_params(dict(items[i : i + 100]))

    def log(self, values: dict, step: int) -> None:
        import mlflow

        mlflow.log_metrics(values, step=step)

    def artifacts(self, paths: list[Path]) -> None:
        import mlflow

        for path in paths:
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=path.name)
            else:
                mlflow.log_artifact(str(path))

    def end(self, state: str) -> None:
        import mlflow

        if state == "pruned":
            mlflow.set_tag("toolkit.trial_state", "pruned")
        mlflow.end_run(status={"stopped": "KILLED", "failed": "FAILED"}.get(state, "FINISHED"))


class WandB(Tracker):
    name = "wandb"
    durable = False

    @staticmethod
    def prepare(task: str) -> None:
        import wandb

        wandb.setup()  # W&B's service process, started now rather than when training starts

    def start(self) -> dict:
        import wandb

        folder = Path(os.environ.get("WANDB_DIR") or self.run_dir)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or project_name(self.task),
            id=self.saved.get("id"),  # a new run gets its id from W&B; a resumed one continues it
            resume="allow",
            name=self.run_dir.name,
            group=os.environ.get(GROUP_ENV) or None,
            dir=str(folder),
            tags=[self.task],
        )
        return {"id": self.run.id, "project": self.run.project, "url": self.run.url, "dir": str(folder)}

    def params(self, values: dict) -> None:
        self.run.config.update(values, allow_val_change=True)

    def log(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def held_through(self) -> Optional[list]:
        # A resumed online run starts after the last step the server holds; W&B refuses earlier steps anyway.
        # Offline, W&B starts each process's file afresh: the whole history is written again into the new one.
        start = getattr(self.run, "starting_step", 0) or 0
        return [start - 1, 1] if start > 0 else [-1, -1]

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                self.run.save(str(file), base_path=str(self.run_dir), policy="now")

    def end(self, state: str) -> None:
        if state == "pruned":
            self.run.summary["trial_state"] = "pruned"
        self.run.finish(exit_code=1 if state in ("stopped", "failed") else 0)


class Trackio(Tracker):
    name = "trackio"
    durable = False

    def start(self) -> dict:
        import trackio

        # A new run gets a name of its own: an overwritten run folder must not continue the old run's history.
        name = self.saved.get("name") or f"{self.run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.run = trackio.init(
            project=project_name(self.task),
            name=name,
            resume="allow",
            group=os.environ.get(GROUP_ENV) or None,
            embed=False,
        )
        return {"project": project_name(self.task), "name": name}

    def params(self, values: dict) -> None:
        import trackio

        trackio.config.update(values, allow_val_change=True)

    def log(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def held_through(self) -> Optional[list]:
        """What trackio's local store holds of the run (none for a Space or a server: all is sent again)."""
        if os.environ.get("TRACKIO_SPACE_ID") or os.environ.get("TRACKIO_SERVER_URL"):
            return [-1, -1]
        from trackio.sqlite_storage import SQLiteStorage

        rows = SQLiteStorage.get_logs(project_name(self.task), self.saved["name"])
        keys = [[int(row["step"]), int(any(k.startswith("validation/") for k in row))] for row in rows]
        return max(keys, default=[-1, -1])

    def end(self, state: str) -> None:
        self.run.finish()


KINDS = {kind.name: kind for kind in (TensorBoard, MLflow, WandB, Trackio)}


def probe(uri: str) -> None:
    """An MLflow server that does not answer fails in seconds, not after MLflow's minutes of retries."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_SECONDS) as answer:  # noqa: S310
            answer.read()
    except (urllib.error.URLError, OSError) as err:
        raise TrackerUnavailable(f"the MLflow server at {uri} does not answer ({err})") from err


def mlflow_url(uri: str, experiment_id: str, run_id: str) -> Optional[str]:
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


# ----- the run's trackers: a worker process fed by this one -----
class Trackers:
    """The trackers of one run, in a worker process of their own (``python -m toolkit.tracking``): their imports,
    network and writers never take this process's CPU time or its GIL, and a ``kill -9`` of this process still lets
    them end their run (the worker sees its input close). Started before the run's model and data load, so that
    their imports overlap that; :meth:`start` hands over the run folder once it exists. ``log(record)`` queues a
    metrics.jsonl record and returns at once."""

    def __init__(self, names: list[str], task: str):
        package_root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit.tracking"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # trackers' chatter; their warnings go to stderr
            text=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_LIMIT)
        self.dropped = self.closed = False
        self.writer = threading.Thread(target=self._write, name="toolkit-trackers", daemon=True)
        self.writer.start()
        self._send({"kind": "open", "names": names, "task": task})

    def start(self, run_dir: Path, params: dict) -> None:
        self._send({"kind": "start", "run_dir": str(Path(run_dir).absolute()), "params": params})

    def log(self, record: dict) -> None:
        self._send({"kind": "log", "record": record})

    def close(self, state: str = "finished", results: Optional[dict] = None, step: int = 0) -> None:
        """Hand over the final metrics and artifacts, end each tracker's run, and wait for it (a bounded time).
        Only the first call counts."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(queue.Full):  # a full queue has room again once the worker takes some
            self.queue.put({"kind": "close", "state": state, "results": results, "step": step}, timeout=CLOSE_SECONDS)
        self.writer.join(CLOSE_SECONDS)
        try:
            self.proc.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("trackers: still busy after %.0f s; they finish after this process ends", CLOSE_SECONDS)

    def _send(self, message: dict) -> None:
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            if not self.dropped:
                log.warning(
                    "trackers: %d records wait for slow trackers; later ones go to metrics.jsonl only", QUEUE_LIMIT
                )
            self.dropped = True

    def _write(self) -> None:
        """The writer thread: messages to the worker's input, in order, until close (a pipe that fills while a
        tracker is slow blocks this thread, never training)."""
        try:
            while True:
                message = self.queue.get()
                self.proc.stdin.write(json.dumps(message, default=str) + "\n")
                self.proc.stdin.flush()
                if message["kind"] == "close":
                    break
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            log.warning("trackers: their worker process ended early; the run goes on without them")


class NoTrackers:
    """Where a run has none (other processes than the main one, or ``trackers: []``)."""

    def start(self, run_dir: Path, params: dict) -> None:
        pass

    def log(self, record: dict) -> None:
        pass

    def close(self, state: str = "finished", results: Optional[dict] = None, step: int = 0) -> None:
        pass


def open_trackers(names: list[str], task: str, main: bool = True):
    """The run's trackers (on the main process only): their worker starts now and imports them."""
    if not main or not names:
        return NoTrackers()
    return Trackers(list(dict.fromkeys(names)), task)


class Worker:
    """The worker process's side: each tracker call, a failure dropping that tracker with one warning."""

    def __init__(self, names: list[str], task: str):
        self.names, self.task = names, task
        self.live: list[Tracker] = []
        self.run_dir: Optional[Path] = None
        self.state: dict = {}
        self.done: dict[str, list] = {}  # each tracker's last record logged by this run, or held before it
        for name in names:  # the imports, while the run's model and data load
            try:
                importlib.import_module(name)
                KINDS[name].prepare(task)
            except Exception as err:  # noqa: BLE001 - a tracker that cannot import is dropped, training goes on
                log.warning("tracker %s stopped logging for this run: %s", name, err)
                self.names = [n for n in self.names if n != name]

    def start(self, run_dir: str, params: dict) -> None:
        self.cpu_at_start = worker_cpu_seconds()
        self.run_dir = Path(run_dir)
        wait_for_earlier_worker(self.run_dir)
        self.state = read_state(self.run_dir)
        self.state["worker_pid"] = os.getpid()
        trackers = [KINDS[name](self.run_dir, self.task, self.state.get(name, {})) for name in self.names]
        self.live = [t for t in trackers if self._call(t, self._start, t, params)]
        for record in read_records(self.run_dir):  # a resumed run: what its trackers missed before it stopped
            self.log(record)
        yield_to_training()

    def log(self, record: dict) -> None:
        self.live = [t for t in self.live if self._call(t, self._log, t, record)]

    def close(self, state: str, results: Optional[dict] = None, step: int = 0) -> None:
        for tracker in self.live:
            self._call(tracker, self._end, tracker, {"state": state, "results": results, "step": step})
        if self.run_dir is not None:
            self.state.pop("worker_pid", None)
            # What tracking cost this run's machine: the worker's CPU time (W&B's service included), before the
            # run started training (imports, set-up) and from then on (benchmarks/tracking_overhead.py reads it).
            self.state["worker_cpu_seconds"] = {
                "before_training": round(self.cpu_at_start, 2),
                "during_training": round(worker_cpu_seconds() - self.cpu_at_start, 2),
            }
            write_state(self.run_dir, self.state)

    def _call(self, tracker: Tracker, fn, *args) -> bool:
        try:
            fn(*args)
            return True
        except Exception as err:  # noqa: BLE001 - whatever a tracker raises, training goes on
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            log.warning("tracker %s stopped logging for this run: %s", tracker.name, reason)
            return False

    def _start(self, tracker: Tracker, params: dict) -> None:
        saved = tracker.saved
        kept = tracker.start()
        self.state[tracker.name] = {**saved, **kept, "ended": None}
        write_state(self.run_dir, self.state)
        if not saved:
            tracker.params(params)
            self.done[tracker.name] = [-1, -1]
        elif tracker.durable or saved.get("ended"):  # its values are kept (an ended run flushed its writer)
            self.done[tracker.name] = saved.get("logged_through", [-1, -1])
        else:
            self.done[tracker.name] = tracker.held_through()

    def _log(self, tracker: Tracker, record: dict) -> None:
        values = tracked_values(record)
        if not values or record_key(record) <= self.done[tracker.name]:
            return  # held already: a resumed run's catch-up and its live records overlap
        tracker.log(values, int(record["step"]))
        self.done[tracker.name] = record_key(record)
        if tracker.durable:
            self._mark(tracker, logged_through=record_key(record))

    def _end(self, tracker: Tracker, item: dict) -> None:
        results = item["results"]
        if results:
            final = {
                f"final/{split}/{key}": value
                for split in ("validation", "test")
                for key, value in (results.get(split) or {}).items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)
            }
            if final:
                tracker.log(final, item["step"])
            tracker.artifacts([self.run_dir / name for name in ARTIFACTS if (self.run_dir / name).exists()])
        tracker.end(item["state"])
        self._mark(tracker, logged_through=self.done[tracker.name], ended=item["state"])

    def _mark(self, tracker: Tracker, **values: Any) -> None:
        self.state[tracker.name].update(values)
        write_state(self.run_dir, self.state)


def worker_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and the ones it started (W&B's service)."""
    import psutil

    total = time.process_time()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                total += times.user + times.system
    return total


def wait_for_earlier_worker(run_dir: Path, seconds: float = 30.0) -> None:
    """A run resumed right after a kill -9: the killed run's worker may still be ending its tracker runs; let it."""
    pid = read_state(run_dir).get("worker_pid")
    deadline = time.monotonic() + seconds
    while pid and pid != os.getpid() and process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_records(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    records = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


def yield_to_training() -> None:
    """Once the trackers have started: run the worker and W&B's service only on CPU time the training leaves idle.
    Their threads wake up over a thousand times a second (W&B's service most); at normal priority each wake-up can
    take a core from one of the training's threads, and every thread of a parallel step then waits for that one.
    Linux's SCHED_IDLE never takes a core from a running task. A policy belongs to each thread: every thread of
    this process and of the ones it started is moved (threads started later inherit it); elsewhere, nice 19."""
    import psutil

    moved = False
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            for thread in proc.threads():
                with contextlib.suppress(AttributeError, OSError):
                    os.sched_setscheduler(thread.id, os.SCHED_IDLE, os.sched_param(0))
                    moved = True
    if not moved:
        with contextlib.suppress(AttributeError, OSError):
            os.nice(19)


def serve_worker() -> None:
    """``python -m toolkit.tracking``: the worker's loop over the messages on its input. Its input closing before
    a close message (the run's process was killed) ends the tracker runs as stopped: they can be resumed."""
    import signal

    # Ctrl+C reaches the whole terminal's process group: the run's process decides, and closes us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop reaches the run (it saves last/, then closes us)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    outlive_run_by_at_most(WORKER_EXIT_SECONDS)
    worker, closed = None, False
    for line in sys.stdin:
        message = json.loads(line)
        kind = message["kind"]
        if kind == "open":
            worker = Worker(message["names"], message["task"])
        elif kind == "start":
            worker.start(message["run_dir"], message["params"])
        elif kind == "log" and worker.run_dir is not None:
            worker.log(message["record"])
        elif kind == "close":
            worker.close(message["state"], message.get("results"), message.get("step", 0))
            closed = True
            break
    if worker is not None and worker.run_dir is not None and not closed:
        worker.close("stopped")


def outlive_run_by_at_most(seconds: float) -> None:
    """End this worker ``seconds`` after the run's process has gone, whatever its trackers are doing then (one
    stuck in a call to a server that never answers would otherwise keep it alive for ever)."""
    run_pid = os.getppid()

    def watch() -> None:
        while os.getppid() == run_pid:  # a process whose parent ends is handed to another
            time.sleep(2.0)
        time.sleep(seconds)
        log.warning("trackers: still busy %.0f s after the run ended; their worker ends without them", seconds)
        os._exit(1)

    threading.Thread(target=watch, name="toolkit-trackers-deadline", daemon=True).start()


TITLES = {"tensorboard": "TensorBoard", "mlflow": "MLflow", "wandb": "W&B", "trackio": "trackio"}


def where_tracked(run_dir: Path) -> list[str]:
    """One Markdown line per tracker the run logged to: a link to its page, or the command that opens it (the
    studio's Runs tab)."""
    lines = []
    for name, info in read_state(run_dir).items():
        if name not in TITLES or not isinstance(info, dict):
            continue
        title = TITLES[name]
        if info.get("url"):
            lines.append(f"- {title}: [{info['url']}]({info['url']})")
        elif name == "tensorboard":
            lines.append(f"- {title}: `tensorboard --logdir {info.get('dir', run_dir / 'tensorboard')}`")
        elif name == "mlflow":
            lines.append(
                f"- {title}: run `{info.get('run_id')}`, `mlflow ui --backend-store-uri {info.get('tracking_uri')}`"
            )
        elif name == "wandb":
            lines.append(
                f"- {title}: offline run `{info.get('id')}`, `wandb sync {info.get('dir')}/wandb/offline-run-*`"
            )
        elif name == "trackio":
            lines.append(f"- {title}: run `{info.get('name')}`, `trackio show --project {info.get('project')}`")
    return lines


# ----- sweeps: trials grouped under the sweep -----
def start_sweep(sweep_dir: Path, names: list[str], task: str, space: dict) -> dict:
    """The environment a sweep's trials get: their group (W&B, trackio) and their MLflow parent run, both made
    once per sweep folder (kept in its trackers.json, so a continued sweep keeps them)."""
    state = read_state(sweep_dir)
    group = state.setdefault("group", f"{Path(sweep_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}")
    env = {GROUP_ENV: group}
    if "mlflow" in names:
        try:
            parent = state.get("mlflow", {}).get("run_id") or mlflow_parent_run(sweep_dir, task, group, space)
            state["mlflow"] = {**state.get("mlflow", {}), "run_id": parent}
            env[MLFLOW_PARENT_ENV] = parent
        except Exception as err:  # noqa: BLE001 - the sweep goes on; its trials are then MLflow runs of their own
            log.warning("tracker mlflow: no parent run for the sweep (%s); its trials log as runs of their own", err)
    write_state(sweep_dir, state)
    return env


def mlflow_parent_run(sweep_dir: Path, task: str, group: str, space: dict) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = mlflow.get_tracking_uri()
    probe(uri)
    client = MlflowClient(uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or project_name(task)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(
        experiment_id, run_name=group, tags={"toolkit.sweep_dir": str(Path(sweep_dir).absolute()), "toolkit.task": task}
    )
    for key, value in flat_params({"space": space}).items():
        client.log_param(run.info.run_id, key, str(value)[:6000])
    return run.info.run_id


def end_sweep(sweep_dir: Path, metric: str, best_value: Optional[float], best_trial: Optional[str]) -> None:
    """The MLflow parent run of a finished sweep: the best trial's value and name, then ended."""
    parent = read_state(sweep_dir).get("mlflow", {}).get("run_id")
    if not parent:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        if best_value is not None:
            client.log_metric(parent, f"best/validation/{metric}", best_value)
            client.set_tag(parent, "toolkit.best_trial", best_trial)
        client.set_terminated(parent, "FINISHED")
    except Exception as err:  # noqa: BLE001 - the sweep's results are in its folder whatever the tracker does
        log.warning("tracker mlflow: the sweep's parent run was not updated (%s)", err)


def mark_pruned(run_dir: Path) -> None:
    """Tag a trial that the sweep pruned in its MLflow run. The trial tags itself when the prune reaches it while it
    trains; a short trial may have ended first, and the sweep, which decided, says so here."""
    run_id = read_state(run_dir).get("mlflow", {}).get("run_id")
    if not run_id:
        return
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient().set_tag(run_id, "toolkit.trial_state", "pruned")
    except Exception as err:  # noqa: BLE001 - the study records the state whatever the tracker does
        log.warning("tracker mlflow: trial %s not tagged as pruned (%s)", Path(run_dir).name, err)


if __name__ == "__main__":
    serve_worker()
