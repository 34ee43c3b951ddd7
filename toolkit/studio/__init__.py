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

import threading
from pathlib import Path

from .paths import StudioPaths

MAX_UPLOAD_MB = 200


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
