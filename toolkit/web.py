"""What every web server of the toolkit does before it serves: its own Gradio cache, memory that stays flat under
load, and, for `toolkit serve RUN`, the run's app (the task's ``TaskSpec.app``) with the JSON API on one port."""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from .api import load
from .guard import guarded
from .run import read_run_config
from .tasks import get_task


def app_temp_folder(prefix: str, parent: str | None = None) -> Path:
    """A temporary folder for one app's files, deleted when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def private_gradio_cache() -> Path:
    """Give this server its own Gradio cache (uploads, outputs), removed at exit. Gradio reads GRADIO_TEMP_DIR when
    it is imported and leaves files there after shutdown (an empty upload part even with delete_cache), so call
    this before importing gradio. An existing GRADIO_TEMP_DIR becomes the parent folder."""
    parent = os.environ.get("GRADIO_TEMP_DIR") or None
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = app_temp_folder("toolkit-gradio-", parent)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def steady_memory(trim_every: float = 30.0) -> bool:
    """Keep a long-running server's resident memory from creeping up (glibc only; elsewhere nothing changes).

    glibc gives each thread that allocates its own malloc arena, up to 8 per core, and keeps what is freed in it:
    Gradio runs each request in one of many worker threads, so a server under load grew by half its size over 10
    minutes (benchmarks/serve_soak.py) without holding more objects. Two arenas, and freed memory handed back to the
    system every ``trim_every`` seconds, keep it flat. Call before the server's threads start."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both exist on glibc only)
    except (OSError, AttributeError):
        return False
    m_arena_max = -8  # glibc's malloc.h
    libc.mallopt(m_arena_max, 2)

    def trim() -> None:
        while True:
            time.sleep(trim_every)
            libc.malloc_trim(0)

    threading.Thread(target=trim, name="malloc-trim", daemon=True).start()
    return True


def launch(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    backend: str = "auto",
    allowed_hosts: list[str] | tuple[str, ...] = (),
    allowed_origins: list[str] | tuple[str, ...] = (),
    trusted_proxies: list[str] | tuple[str, ...] = (),
    serve_options=None,
    **kwargs,
):
    """Serve a run's app and its JSON API (toolkit/serving.py) on one port, one loaded model behind both; it answers
    only for ``host`` (and ``allowed_hosts``), and only its own pages (and ``allowed_origins``') change state: see
    toolkit/guard.py. ``serve_options``: a toolkit.serving.ServeOptions (batching, bounds, the API's login)."""
    from toolkit.serving import JsonApi, ServeOptions  # the JSON API's web stack, only when serving

    steady_memory()
    spec = get_task(read_run_config(run_dir).task)
    predictor = load(run_dir, backend=backend)
    demo = spec.build_app(run_dir, predictor=predictor)
    if share:  # the public link arrives through Gradio's tunnel, named under gradio.live, over https
        allowed_hosts, allowed_origins = [*allowed_hosts, ".gradio.live"], [*allowed_origins, "https://*.gradio.live"]
    guard = guarded(host, allowed_hosts, allowed_origins, trusted_proxies)
    if spec.serve is not None:
        options = serve_options or ServeOptions(auth=kwargs.get("auth"))
        guard["app_kwargs"]["routes"] = JsonApi(predictor, options).routes()  # before Gradio's own routes
    demo.launch(server_name=host, server_port=port, share=share, max_file_size="20mb", **guard, **kwargs)
    return demo  # with prevent_thread_lock=True it serves in the background until demo.close()
