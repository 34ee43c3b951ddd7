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
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError

STUDIO_DIR = ".studio"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TRIAL = re.compile(r"trial-[0-9]{3,6}")  # a sweep's trial folder: runs it as '<sweep>/trial-NNN'
MAX_UPLOAD_MB = 200
# Fields offered as form inputs on the Train tab (the rest stay as the config file sets them).
FORM_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "max_length",
    "warmup_ratio",
    "precision",
    "seed",
    "eval_every",
    "peft.enabled",
)


def safe_name(name: str, what: str = "run name") -> str:
    """A run or file name that cannot leave its folder: letters, digits, '.', '_' and '-', not starting with a dot."""
    name = (name or "").strip()
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise ToolkitError(
            f"{what} {name!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', starting "
            f"with a letter or digit (no '/', no '..')."
        )
    return name


def trial_parts(name: str) -> tuple[str, str] | None:
    """(sweep, trial) of a trial's name '<sweep>/trial-NNN'; None for any other name."""
    sweep, _, trial = (name or "").partition("/")
    return (sweep, trial) if trial and NAME.fullmatch(sweep) and TRIAL.fullmatch(trial) else None


def inside(folder: Path, path: Path) -> Path:
    """``path`` resolved, refused unless it lies in ``folder`` (no '..', no absolute path, no symlink out)."""
    folder, resolved = folder.resolve(), path.resolve()
    if resolved != folder and folder not in resolved.parents:
        raise ToolkitError(f"'{path}' is outside {folder}: refused.")
    return resolved


def shipped_configs(task: str | None = None) -> dict[str, Path]:
    """The configs in recipes/configs (of one task, if given), by file name."""
    from ..config import read_yaml
    from ..tasks import get_task

    out = {}
    from .. import recipes

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


@dataclass(frozen=True)
class StudioPaths:
    """Where everything of a studio lives under its runs folder."""

    root: Path

    @property
    def jobs_dir(self) -> Path:
        return self.root / STUDIO_DIR / "jobs"

    @property
    def logs_dir(self) -> Path:
        return self.root / STUDIO_DIR / "logs"

    @property
    def uploads(self) -> Path:
        return self.root / STUDIO_DIR / "uploads"

    def run_dir(self, name: str) -> Path:
        """A run's folder: <root>/<name>, or a sweep's trial <root>/<sweep>/trial-NNN."""
        parts = trial_parts(name)
        return inside(self.root, self.root.joinpath(*parts) if parts else self.root / safe_name(name))

    def log_path(self, name: str) -> Path:
        """A job's output; a trial's is in its sweep's logs/ (written by the sweep)."""
        from ..sweeps import LOGS

        parts = trial_parts(name)
        if parts:
            return self.run_dir(parts[0]) / LOGS / f"{parts[1]}.log"
        return self.logs_dir / f"{safe_name(name)}.log"

    def job_path(self, name: str) -> Path:
        return self.jobs_dir / f"{safe_name(name)}.json"


class Studio:
    """A studio over the runs under ``root``: ``queue`` trains (at most ``max_running`` at once, the rest wait),
    ``catalog`` reads the runs, ``uploads`` keeps what users upload."""

    def __init__(
        self,
        root: str | Path,
        max_running: int = 1,
        max_upload_mb: float = MAX_UPLOAD_MB,
        allow_remote_code: bool = False,
    ):
        from .catalog import Catalog
        from .jobs import JobQueue
        from .uploads import Uploads

        self.paths = StudioPaths(Path(root).resolve())
        for folder in (self.paths.jobs_dir, self.paths.logs_dir, self.paths.uploads):
            folder.mkdir(parents=True, exist_ok=True)
        lock = threading.RLock()  # one at a time: queueing, starting, stopping, deleting
        self.queue = JobQueue(self.paths, lock, max_running, allow_remote_code)
        self.catalog = Catalog(self.paths, lock, self.queue)
        self.uploads = Uploads(self.paths.uploads, max_upload_mb)

    @property
    def root(self) -> Path:
        return self.paths.root

    def run_dir(self, name: str) -> Path:
        return self.paths.run_dir(name)


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
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


PREVIEW_ROWS = 10_000  # rows of a data file read for its preview, column guesses and label counts


def preview_data(source: str, roles: dict | None = None, configured: dict | None = None, rows: int = 5) -> dict:
    """What the Train tab shows of a data file or image folder: columns, the first rows, a column for each of the
    task's data ``roles`` ({data key: DataRole}, guessed: the ``configured`` names first), and the label counts.
    A hub id is not fetched here (the run loads it)."""
    from ..data import guess_columns

    path = Path(source).expanduser()
    if path.is_dir() and not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
        counts = {}
        for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            counts[folder.name] = sum(1 for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not any(counts.values()):
            raise ToolkitError(f"'{source}' holds no class folders of images (e.g. ants/*.jpg, bees/*.jpg).")
        return {"kind": "images", "columns": ["image", "label"], "rows": [], "roles": {}, "label_counts": counts}
    if not path.is_file():
        return {
            "kind": "hub",
            "columns": [],
            "rows": [],
            "roles": {},
            "label_counts": {},
            "note": f"'{source}' is not a file here: the run loads it as a hub dataset (this needs internet).",
        }
    from ..data import count_rows_in_file, preview_frame

    table = preview_frame(path, PREVIEW_ROWS)
    if table.empty:
        raise ToolkitError(f"data file '{source}' has no rows.")
    columns = [str(c) for c in table.columns]
    table.columns = columns
    roles = roles or {}
    chosen = guess_columns(roles, columns, table, configured)
    label = next((chosen[k] for k, role in roles.items() if role.kind == "label" and chosen.get(k)), None)
    counts = {str(k): int(v) for k, v in table[label].value_counts().items()} if label else {}
    head = table.head(rows).astype(str).map(lambda v: v if len(v) <= 200 else v[:200] + "…")
    return {
        "kind": "table",
        "columns": columns,
        "rows": head.values.tolist(),
        "roles": chosen,
        "label_column": label,
        "label_counts": counts,
        # Large files: the guesses and label counts come from the first PREVIEW_ROWS rows.
        "count": len(table) if len(table) < PREVIEW_ROWS else count_rows_in_file(path),
        "sampled": len(table) >= PREVIEW_ROWS,
    }
