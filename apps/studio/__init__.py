"""The studio: one web app to train, watch, compare, try and evaluate runs of every task.

Run: ``toolkit studio [--runs DIR]``. State lives in the run folders (toolkit/studio/), so a reload, a second
browser or a restart shows the same runs; training runs as child ``toolkit train`` processes, one at a time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import gradio as gr

from toolkit.guard import guarded
from toolkit.studio import MAX_UPLOAD_MB, Studio
from toolkit.studio.paths import display_path
from toolkit.web import app_temp_folder, steady_memory

from . import api, labels, live, train, trying
from . import runs as runs_tab
from .context import POLL_SECONDS, PredictorCache, StudioContext


def build_studio(
    runs: str | Path = "runs",
    max_loaded: int = 3,
    max_running: int = 1,
    max_upload_mb: float = MAX_UPLOAD_MB,
    allow_remote_code: bool = False,
) -> gr.Blocks:
    """The studio app: one builder per tab (train.py, live.py, runs.py, trying.py) and the API (api.py)."""
    studio = Studio(runs, max_running=max_running, max_upload_mb=max_upload_mb, allow_remote_code=allow_remote_code)
    downloads = app_temp_folder("toolkit-studio-", str(studio.paths.uploads.parent))
    ctx = StudioContext(studio, PredictorCache(max_loaded), downloads, max_upload_mb)
    with api.ApiBlocks(title="toolkit studio") as demo:  # raw API calls get refusals, not {"error": null}
        gr.Markdown(
            f"# toolkit studio\nRuns in `{display_path(studio.root)}` · one run trains at a time; "
            f"the others wait in a queue."
        )
        training = train.build(ctx, demo)  # each builder makes its own tab
        watching = live.build(ctx, demo)
        runs_tab.build(ctx, demo)
        trying.build(ctx, demo)  # the Try and Evaluate tabs
        labels.build(ctx, demo)
        train.connect_start(training, watching.run)
        api.build(ctx)
    demo.queue(default_concurrency_limit=4)
    threading.Thread(target=keep_scheduling, args=(studio,), daemon=True).start()
    demo.studio = studio
    return demo


def keep_scheduling(studio: Studio) -> None:
    """Start queued runs as slots free up, even with no browser open."""
    while True:
        try:
            studio.queue.poll()
        except Exception:  # noqa: BLE001  (a bad job file must not stop the queue; the tabs show it)
            pass
        time.sleep(POLL_SECONDS)


def launch(
    runs: str | Path = "runs",
    host: str = "127.0.0.1",
    port: int = 7860,
    auth=None,
    max_upload_mb: float = MAX_UPLOAD_MB,
    max_loaded: int = 3,
    allowed_hosts: list[str] | tuple[str, ...] = (),
    allow_remote_code: bool = False,
    max_running: int = 1,
    allowed_origins: list[str] | tuple[str, ...] = (),
    trusted_proxies: list[str] | tuple[str, ...] = (),
    **kwargs,
):
    """Serve the studio; it answers only for ``host`` (and ``allowed_hosts``), and only its own pages (and
    ``allowed_origins``') change state: see toolkit/guard.py."""
    steady_memory()
    demo = build_studio(
        runs, max_loaded=max_loaded, max_running=max_running, max_upload_mb=max_upload_mb,
        allow_remote_code=allow_remote_code,
    )  # fmt: skip
    return demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        max_file_size=int(max_upload_mb * 2**20),
        **guarded(host, allowed_hosts, allowed_origins, trusted_proxies),
        **kwargs,
    )


if __name__ == "__main__":
    import sys

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs")
