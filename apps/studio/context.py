"""What the studio's tabs share: its state, the loaded predictors, and the rules for client input."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from toolkit.studio import Studio

log = logging.getLogger(__name__)

POLL_SECONDS = 1  # the Live tab's refresh, and the queue's
RUN_COLUMNS = ["name", "task", "base model", "status", "best metric", "steps", "duration", "date", "size"]


class PredictorCache:
    """Loaded predictors by run, least recently used first out: at most ``limit`` stay in memory."""

    def __init__(self, limit: int = 3):
        self.limit, self.loaded, self.lock = limit, OrderedDict(), threading.Lock()

    def get(self, run_dir: Path):
        from toolkit.api import load

        key = (str(run_dir), (run_dir / "best").stat().st_mtime_ns)
        with self.lock:
            if key in self.loaded:
                self.loaded.move_to_end(key)
                return self.loaded[key]
        predictor = load(run_dir)
        with self.lock:
            self.loaded[key] = predictor
            while len(self.loaded) > self.limit:
                self.loaded.popitem(last=False)
        return predictor


@dataclass
class StudioContext:
    """What the tabs share: the studio's state, the loaded predictors, the downloads folder."""

    studio: Studio
    cache: PredictorCache
    downloads: Path
    max_upload_mb: float

    def run_names(self, status: tuple | None = None) -> list[str]:
        catalog = self.studio.catalog
        return [n for n in catalog.names() if status is None or catalog.status(n) in status]

    def runs_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.studio.catalog.runs(), columns=RUN_COLUMNS)


def refusal(message: str) -> gr.Error:
    """A refused call: the message for the client, one log line for the terminal (no traceback: nothing broke)."""
    log.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)
