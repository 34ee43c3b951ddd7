"""The studio's names and folders: run and file names that cannot leave the root, where jobs, logs and uploads
live, and how paths and sizes are shown."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError

STUDIO_DIR = ".studio"

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

TRIAL = re.compile(r"trial-[0-9]{3,6}")  # a sweep's trial folder: runs it as '<sweep>/trial-NNN'


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


def read_json_or_none(source: str | Path):
    """The JSON value of a file (Path) or a line (str); None when it is not JSON."""
    try:
        return json.loads(source.read_text() if isinstance(source, Path) else source)
    except (OSError, ValueError):
        return None


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
