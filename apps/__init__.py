"""Gradio apps, one per task, each built from a finished run directory by ``build_demo(run_dir)``."""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

from toolkit.api import load
from toolkit.apps.guard import guarded
from toolkit.errors import ToolkitError
from toolkit.run import read_results, read_run_config
from toolkit.tasks import get_task

# gradio and pandas are imported where they are used: the command line imports this package to set Gradio's cache
# folder before gradio is first imported (private_gradio_cache).


def metrics_markdown(results: dict, names: list[str]) -> str:
    """The run's validation and test scores of ``names``, as Markdown lines."""
    lines = []
    for split in ("validation", "test"):
        scores = results.get(split) or {}
        shown = [f"{name} {scores[name]:.3f}" for name in names if isinstance(scores.get(name), (int, float))]
        if shown:
            lines.append(f"**{split}** ({scores.get('count', '?')} examples): " + ", ".join(shown))
    return "\n\n".join(lines) or "No metrics recorded for this run."


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A cell a spreadsheet would run as a formula (=HYPERLINK(...), =cmd|...) gets a leading apostrophe, as OWASP
    recommends for CSV exports; other values pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_download(table, folder: Path, name: str) -> str:
    """``table`` as a CSV download in ``folder`` (the app's own temporary folder, removed when the app exits),
    with formula cells escaped; downloads older than an hour are removed first."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        if time.time() - old.stat().st_mtime > 3600:
            old.unlink(missing_ok=True)
    out = folder / f"{Path(name).stem}-{uuid.uuid4().hex[:8]}.csv"
    table.map(spreadsheet_safe).to_csv(out, index=False)
    return str(out)


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


def build_app(run_dir: str | Path, backend: str = "auto"):
    """The ``gr.Blocks`` app for a run, picked by the run's task; ``backend`` as in toolkit.load."""
    options = {"backend": backend} if backend != "auto" else {}  # an app from outside the package may not take it
    return get_task(read_run_config(run_dir).task).build_app(run_dir, **options)


def open_run(run_dir: str | Path, backend: str = "auto", predictor=None) -> tuple:
    """What an app shows of a run: its folder (a Path), config, results, and predictor: ``predictor`` when one is
    already loaded (the studio's cache), else the run's, loaded with ``backend`` as in toolkit.load."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    results = read_results(run_dir)
    return run_dir, cfg, results, predictor if predictor is not None else load(run_dir, backend=backend)


def within_bounds(predictor, items: list) -> list[bool]:
    """Which of a batch's inputs the task's bound lets through. A batched app answers the others and leaves these
    out (as an empty one), rather than failing the requests batched with them; its page says why first
    (:func:`check_input`)."""
    oversize = getattr(predictor, "oversize", lambda item: None)  # a task's own predictor may have no bounds
    return [oversize(item) is None for item in items]


def answer_texts(predictor, texts: list[str]) -> dict[int, dict]:
    """A queued batch's answers by position, in one call of the predictor: an empty text, or one over the task's
    bound (an API call: the page checks first), gets none."""
    fits = within_bounds(predictor, texts)
    wanted = [i for i, t in enumerate(texts) if t and t.strip() and fits[i]]
    return dict(zip(wanted, predictor([texts[i] for i in wanted]))) if wanted else {}


def bind_batched(check, predict, inputs, outputs, button, box, api_name: str, max_batch_size: int) -> None:
    """``button`` (the API's ``api_name``) and Enter in ``box`` run ``check`` at once, then ``predict`` in the queue,
    which hands it up to ``max_batch_size`` waiting requests together."""
    for trigger, api in ((button.click, {"api_name": api_name}), (box.submit, {"api_visibility": "private"})):
        trigger(check, inputs=inputs, api_visibility="private", concurrency_limit=None).success(
            predict, inputs=inputs, outputs=outputs, batch=True, max_batch_size=max_batch_size, **api
        )


def check_input(predictor, item) -> None:
    """Before a request is queued: one over the task's bound is refused with the reason (as `toolkit predict`)."""
    import gradio as gr

    message = getattr(predictor, "oversize", lambda item: None)(item)
    if message:
        raise gr.Error(message.replace("input 1 has", "The input has"), title="Input too long", print_exception=False)


def require_text(predictor, empty: str = "Type some text first."):
    """The check before a text is queued: an empty one stops with a notice (``empty``) rather than an error, one over
    the task's bound with the reason."""
    import gradio as gr

    def check(text: str) -> None:
        if not (text and text.strip()):
            gr.Warning(empty, title="Empty input")
            raise gr.Error(visible=False, print_exception=False)  # ends the chain: the prediction is not called
        check_input(predictor, text)

    return check


MAX_CSV_ROWS = 10_000  # an app's CSV upload; `toolkit predict` takes larger files


def read_upload(file, text_column: str):
    """The uploaded CSV's text column as ``text``, or a gr.Error naming the problem."""
    import gradio as gr
    import pandas as pd

    path = getattr(file, "name", file)
    try:
        table = pd.read_csv(
            path, encoding="utf-8", keep_default_na=False, skip_blank_lines=False, index_col=False
        )  # a row with an unquoted comma is an error, not a silent index
    except UnicodeDecodeError:
        raise gr.Error("The file is not UTF-8 text. Re-save it as UTF-8 CSV.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        hint = " Put text that holds commas in double quotes." if "Expected" in str(err) else ""
        raise gr.Error(f"Could not read the file as CSV: {str(err).strip()}.{hint}") from None
    wanted = list(dict.fromkeys([text_column, "text"]))
    column = next((c for c in wanted if c in table.columns), None)
    if column is None:
        raise gr.Error(
            f"No {' or '.join(repr(c) for c in wanted)} column; the file has: {', '.join(map(str, table.columns))}."
        )
    if len(table) > MAX_CSV_ROWS:
        raise gr.Error(
            f"The file has {len(table):,} rows; the limit is {MAX_CSV_ROWS:,}. Use `toolkit predict` for large files."
        )
    table = table[[column]].rename(columns={column: "text"}).reset_index(drop=True)
    table["text"] = table["text"].astype(str)
    if not (table["text"].str.strip() != "").any():
        raise gr.Error("Every row's text is empty.")
    return table


def answer_upload(predictor, file, text_column: str):
    """An uploaded CSV (see :func:`read_upload`) and the answers of its non-empty rows by row number. Every row
    stays, in order, so that the output lines up: an empty one is marked in a ``note`` column, not dropped."""
    import gradio as gr

    if file is None:
        raise gr.Error("Upload a CSV file with a text column first.")
    table = read_upload(file, text_column)
    filled = [i for i, t in enumerate(table["text"]) if t.strip()]
    answers = dict(zip(filled, predictor([table["text"][i] for i in filled])))
    table["note"] = ["" if i in answers else "skipped: empty text" for i in range(len(table))]
    return table, answers


def csv_controls(handler, api_name: str, columns: list[str], button: str, what: str) -> None:
    """A CSV tab's upload box, its button (``api_name`` in the API), the table ``handler`` fills and a download of it,
    shown once it has a file (the API still returns a plain path). ``what``: what the rows hold, e.g. "predictions"."""
    import gradio as gr
    import pandas as pd

    upload = gr.File(label="CSV file", file_types=[".csv"], elem_id="csv-upload")
    run_csv = gr.Button(button, variant="primary", elem_id=api_name.replace("_", "-"))
    table = gr.Dataframe(value=pd.DataFrame(columns=columns), label=what.capitalize(), interactive=False)
    download = gr.File(label=f"Download {what}", visible=False)
    run_csv.click(handler, inputs=upload, outputs=[table, download], api_name=api_name).success(
        lambda: gr.File(visible=True), outputs=download, api_visibility="private", queue=False
    )


def user_errors(function):
    """An app's handler whose ToolkitError (bad input, an input over the bound) reaches the page as its message,
    without a traceback in the server's log."""
    import gradio as gr

    @functools.wraps(function)
    def handler(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ToolkitError as err:
            raise gr.Error(str(err), print_exception=False) from None

    return handler


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
    apps/guard.py. ``serve_options``: a toolkit.serving.ServeOptions (batching, bounds, the API's login)."""
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
