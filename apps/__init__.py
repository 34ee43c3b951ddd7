"""Gradio apps, one per task, each built from a finished run directory by ``build_demo(run_dir)``."""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path

from toolkit.api import load
from toolkit.errors import ToolkitError
from toolkit.run import read_results, read_run_config
from toolkit.tasks import get_task

# gradio and pandas are imported where they are used: an app's module may set Gradio's cache folder
# (toolkit.web.private_gradio_cache) before gradio is first imported.


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
