"""The studio: one web app to train, watch, compare, try and evaluate runs of every task.

Run: ``toolkit studio [--runs DIR]``. State lives in the run folders (toolkit/studio.py), so a reload, a second
browser or a restart shows the same runs; training runs as child ``toolkit train`` processes, one at a time.
"""

from __future__ import annotations

import logging
import threading
import typing
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import pandas as pd

from toolkit.apps import app_temp_folder
from toolkit import config as configlib
from toolkit.errors import ToolkitError
from toolkit.run import CONFIG_FILE, read_results, read_run_config
from toolkit.studio import FORM_KEYS, MAX_UPLOAD_MB, Studio, command_text, display_path, preview_data, shipped_configs
from toolkit.tasks import all_tasks, get_task

log = logging.getLogger(__name__)

POLL_SECONDS = 1  # the Live tab's refresh, and the queue's
RELAYOUT = "() => { setTimeout(() => window.dispatchEvent(new Event('resize')), 100); }"
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


# ----- the Train form, generated from the config dataclasses -----

def field_type(key: str, cls: type | None = None):
    """The annotation of a dotted config key, in ``cls`` or else the first task config class that has the key."""
    classes = [cls] if cls is not None else [spec.config for spec in all_tasks()]
    for cls in classes:
        if configlib.has_key(cls, key):
            *parts, last = key.split(".")
            for part in parts:
                cls = typing.get_type_hints(cls)[part]
            return typing.get_type_hints(cls)[last]
    raise KeyError(key)


def config_value(values: dict, key: str):
    node = values
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def form_component(key: str, value):
    """A form input for one config key: a dropdown for a fixed set of values, a checkbox, a number or a text box."""
    tp = field_type(key)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    label = f"{key}"
    if typing.get_origin(tp) is typing.Literal:
        return gr.Dropdown(choices=list(typing.get_args(tp)), value=value, label=label, elem_id=f"field-{key}")
    if tp is bool:
        return gr.Checkbox(value=bool(value), label=label, elem_id=f"field-{key}")
    if tp in (int, float) or (len(args) == 1 and args[0] in (int, float)):
        return gr.Number(value=value, label=label + (" (empty: unset)" if args else ""), elem_id=f"field-{key}")
    return gr.Textbox(value="" if value is None else str(value), label=label, elem_id=f"field-{key}")


def override(key: str, value, base) -> str | None:
    """``key=value`` when the form's value differs from the config's, else None."""
    if isinstance(value, str) and configlib._FLOAT.fullmatch(value.strip()):
        value = float(value)  # a number typed in a text field (eval_every: 320 or "epoch")
    if isinstance(value, float) and value.is_integer() and int in (field_type(key), *typing.get_args(field_type(key))):
        value = int(value)
    if value == "" or value is None:
        value = None
    if value == base or (value is None and base is None):
        return None
    return f"{key}={'null' if value is None else str(value).lower() if isinstance(value, bool) else value}"


def default_fields(config_path: str | None) -> list:
    values = configlib.read_yaml(config_path) if config_path else {}
    defaults = configlib.config_to_dict(configlib.build_config(values, ranges=False)) if values else {}
    return [config_value(defaults, key) for key in FORM_KEYS]


def config_class_of(config_path: str | None):
    """The config class of the task a config file names, or None."""
    try:
        task = configlib.read_yaml(config_path).get("task") if config_path else None
        return get_task(task).config if isinstance(task, str) else None
    except ToolkitError:
        return None


# ----- plots -----

def curves(records: list[dict], run: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Losses and validation metrics from metrics.jsonl records, long format (step, value, series), or None."""
    train, valid = [], []
    for r in records:
        if r.get("split") == "train":
            train += [{"step": r["step"], "value": v, "series": f"{run} {k}".strip()} for k, v in r.items()
                      if k.endswith("loss") and isinstance(v, (int, float))]
        elif r.get("split") == "validation":
            for k, v in r.items():
                if k not in ("step", "epoch", "time", "count") and isinstance(v, (int, float)):
                    point = {"step": r["step"], "value": v, "series": f"{run} validation {k}".strip()}
                    (train if k.endswith("loss") else valid).append(point)
    # No points: None, not an empty table (a plot first drawn from an empty table stays blank after later updates).
    return (pd.DataFrame(train) if train else None), (pd.DataFrame(valid) if valid else None)


def figure(points: pd.DataFrame | None, title: str):
    """A line per series, drawn here (matplotlib): every update is a whole new picture, so series that appear
    later (the first validation, a second run) are drawn like the others."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if points is None:
        ax.text(0.5, 0.5, "no points yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    else:
        for name, group in points.groupby("series", sort=False):
            ax.plot(group["step"], group["value"], marker="o" if len(group) < 30 else None, markersize=3, label=name)
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    return fig


def figures(loss, metric) -> tuple:
    return figure(loss, "Loss"), figure(metric, "Validation metrics")


def compare_runs(studio: Studio, chosen_runs) -> tuple:
    """The chosen runs' curves, one series per run and quantity, and their final metrics."""
    losses, metrics, rows = [], [], []
    for run_name in chosen_runs or []:
        loss, metric = curves(studio.metrics(run_name), run_name)
        losses.append(loss)
        metrics.append(metric)
        scores = read_results(studio.run_dir(run_name))
        row = {"run": run_name, "task": read_run_config(studio.run_dir(run_name)).task, "steps": scores.get("steps")}
        for split in ("validation", "test"):
            for key, value in (scores.get(split) or {}).items():
                if isinstance(value, (int, float)) and key != "count":
                    row[f"{split} {key}"] = round(value, 4)
        rows.append(row)
    losses, metrics = [f for f in losses if f is not None], [f for f in metrics if f is not None]
    return (pd.concat(losses, ignore_index=True) if losses else None,
            pd.concat(metrics, ignore_index=True) if metrics else None, pd.DataFrame(rows))


def status_text(live: dict) -> str:
    status = live["status"]
    parts = [f"**{live['name']}**: {status}"]
    if status == "queued":
        parts.append(f"position {live['queue_position']} in the queue: it starts when the run before it ends "
                     f"(one run trains at a time)")
    if live.get("total_steps"):
        parts.append(f"step {live['step']}/{live['total_steps']}")
    if live.get("samples_per_second"):
        parts.append(f"{live['samples_per_second']:.1f} samples/s")
    if live.get("eta_seconds") is not None and status == "training":
        parts.append(f"ETA {live['eta_seconds'] // 60}m{live['eta_seconds'] % 60:02d}s")
    if status in ("stopped", "interrupted"):
        parts.append("resume continues it exactly from last/")
    text = " · ".join(parts)
    precision = live.get("precision")
    if isinstance(precision, dict):
        how = "auto" if precision.get("requested") == "auto" else "set in the config"
        text += f"\n\nPrecision **{precision['chosen']}** ({how}: {precision['reason']}) · {live.get('threads')} threads"
    return text


def build_studio(runs: str | Path = "runs", max_loaded: int = 3, max_running: int = 1,
                 max_upload_mb: float = MAX_UPLOAD_MB, allow_remote_code: bool = False) -> gr.Blocks:
    studio = Studio(runs, max_running=max_running, max_upload_mb=max_upload_mb, allow_remote_code=allow_remote_code)
    cache = PredictorCache(max_loaded)
    downloads = app_temp_folder("toolkit-studio-", str(studio.uploads.parent))
    tasks = [spec.name for spec in all_tasks()]
    role_slots = max([len(spec.roles) for spec in all_tasks()] + [1])

    def run_names(status: tuple | None = None) -> list[str]:
        return [n for n in studio.names() if status is None or studio.status(n) in status]

    def runs_table() -> pd.DataFrame:
        return pd.DataFrame(studio.runs(), columns=RUN_COLUMNS)

    with gr.Blocks(title="toolkit studio") as demo:
        gr.Markdown(f"# toolkit studio\nRuns in `{display_path(studio.root)}` · one run trains at a time; "
                    f"the others wait in a queue.")
        with gr.Tab("Train", id="train"):
            with gr.Row():
                task = gr.Dropdown(tasks, value=tasks[0], label="Task",
                                   elem_id="task")
                config = gr.Dropdown(label="Start from a shipped config", elem_id="config")
                config_upload = gr.File(label="... or upload a YAML config", file_types=[".yaml", ".yml"], height=90,
                                        elem_id="config-upload")
            with gr.Row():
                data_upload = gr.File(label=f"Training data: CSV, JSONL or Parquet, or a zip of class folders "
                                            f"(up to {max_upload_mb:g} MB)", height=90, elem_id="data-upload")
                data_path = gr.Textbox(label="... or a path or hub id (empty: the config's data)", elem_id="data-path")
            preview_note = gr.Markdown(elem_id="data-preview")
            preview = gr.Dataframe(label="First rows", interactive=False, visible=False)
            with gr.Row():
                # One column picker per data role of the chosen task (text and label; source and target; ...).
                role_pickers = [gr.Dropdown(label=f"Column {i + 1}", allow_custom_value=True, visible=False,
                                            elem_id=f"role-{i}") for i in range(role_slots)]
                counts = gr.Dataframe(label="Label counts", interactive=False, visible=False, elem_id="label-counts")
            gr.Markdown("### Hyperparameters")
            with gr.Row():
                fields = [form_component(key, None) for key in FORM_KEYS]
            name = gr.Textbox(label="Run name (a folder under the runs folder)", elem_id="run-name")
            command = gr.Code(label="Command: the same run from a terminal", language="shell", interactive=False,
                              lines=2, max_lines=6, wrap_lines=True, show_line_numbers=False, elem_id="command")
            message = gr.Markdown(elem_id="train-message")
            start = gr.Button("Start", variant="primary", elem_id="start")

        with gr.Tab("Live", id="live"):
            with gr.Row():
                live_run = gr.Dropdown(label="Run", elem_id="live-run")
                stop = gr.Button("Stop", elem_id="stop")
                resume = gr.Button("Resume", elem_id="resume")
            live_status = gr.Markdown(elem_id="live-status")
            timer = gr.Timer(POLL_SECONDS)
            with gr.Row():
                loss_plot = gr.Plot(show_label=False, elem_id="loss-plot")
                metric_plot = gr.Plot(show_label=False, elem_id="metric-plot")

            log_tail = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, elem_id="log")

        with gr.Tab("Runs", id="runs"):
            table = gr.Dataframe(runs_table(), label="Runs", interactive=False, elem_id="runs-table")
            refresh = gr.Button("Refresh", size="sm", elem_id="runs-refresh")
            compare = gr.Dropdown(label="Compare runs", multiselect=True, elem_id="compare")
            with gr.Row():
                compare_loss = gr.Plot(show_label=False, elem_id="compare-loss")
                compare_metric = gr.Plot(show_label=False, elem_id="compare-metric")

            compare_table = gr.Dataframe(label="Final metrics", interactive=False, elem_id="compare-table")
            with gr.Row():
                chosen = gr.Dropdown(label="Run", elem_id="chosen-run")
                download = gr.Button("Download best/ as zip", size="sm")
                confirm = gr.Textbox(label="Type the run's name to delete it", elem_id="delete-confirm")
                delete = gr.Button("Delete run", variant="stop", size="sm", elem_id="delete")
            zip_file = gr.File(label="best/ zip", visible=False)
            delete_message = gr.Markdown()
            card = gr.Markdown(elem_id="model-card")

        with gr.Tab("Try", id="try"):
            try_run = gr.Dropdown(label="A finished run", elem_id="try-run")

            @gr.render(inputs=try_run)
            def try_panel(name):
                if not name:
                    gr.Markdown("Pick a finished run: its app appears here (models load on first use).")
                    return
                run_dir = studio.run_dir(name)
                get_task(read_run_config(run_dir).task).build_app(run_dir, predictor=cache.get(run_dir))

        with gr.Tab("Evaluate", id="evaluate"):
            with gr.Row():
                eval_run = gr.Dropdown(label="A finished run", elem_id="eval-run")
                eval_file = gr.File(label="Data to score (the run's format: CSV/JSONL/Parquet or a zip of class folders)",
                                    height=90, elem_id="eval-file")
            evaluate = gr.Button("Evaluate", variant="primary", elem_id="evaluate")
            eval_metrics = gr.Dataframe(label="Metrics", interactive=False, elem_id="eval-metrics")
            confusion = gr.Dataframe(label="Confusion matrix (rows: true label, columns: predicted)", interactive=False,
                                     visible=False, elem_id="confusion")

        # ----- Train -----
        def pick_task(task_name):
            configs = list(shipped_configs(task_name)) if task_name else []
            return gr.Dropdown(choices=configs, value=configs[0] if configs else None)

        def config_source(config_name, uploaded) -> str | None:
            if uploaded:
                return str(studio.save_upload(upload_cache_file(uploaded), Path(uploaded).name))
            return str(shipped_configs()[config_name]) if config_name else None

        def fill_fields(config_name, uploaded):
            """The config's values, and only the fields its task has (no max_length for images)."""
            try:
                path = config_source(config_name, uploaded)
                values, cls = default_fields(path), config_class_of(path)
            except ToolkitError as err:
                gr.Warning(str(err))
                return [gr.update() for _ in FORM_KEYS]
            return [gr.update(value=v, visible=cls is None or configlib.has_key(cls, key))
                    for key, v in zip(FORM_KEYS, values)]

        def task_roles(task_name) -> dict:
            return get_task(task_name).roles if task_name else {}

        def role_picker(roles: list, i: int, columns: list | None = None, value=None):
            """Picker ``i``: the column for the task's i-th role once there is data to pick from, else hidden."""
            if i >= len(roles):
                return gr.Dropdown(visible=False, value=None)
            key, role = roles[i]
            return gr.Dropdown(label=f"{role.name.capitalize()} column (data.{key})", choices=columns or [],
                               value=value, visible=columns is not None)

        def show_preview(task_name, config_name, config_file, uploaded, path):
            source = str(studio.save_upload(upload_cache_file(uploaded), Path(uploaded).name)) if uploaded else (path or "").strip()
            roles = task_roles(task_name)
            keys = list(roles.items())
            hidden = (gr.update(visible=False), *(role_picker(keys, i) for i in range(role_slots)),
                      gr.update(visible=False))
            if not source:
                return ("", *hidden)
            try:
                found = preview_data(source, roles, configured_columns(config_name, config_file, roles))
            except (ToolkitError, OSError) as err:
                return (f"**Data:** {err}", *hidden)
            count_table = pd.DataFrame(list(found["label_counts"].items()), columns=["label", "count"])
            if found["kind"] == "table":
                cols = found["columns"]
                note = f"**Data:** `{display_path(source)}`, {found['count']:,} rows, columns: {', '.join(cols)}"
                pickers = [role_picker(keys, i, cols, found["roles"].get(keys[i][0]) if i < len(keys) else None)
                           for i in range(role_slots)]
                return (note, gr.Dataframe(pd.DataFrame(found["rows"], columns=cols), visible=True), *pickers,
                        gr.Dataframe(count_table, visible=bool(found["label_counts"])))
            if found["kind"] == "images":
                note = f"**Data:** `{display_path(source)}`, class folders: {', '.join(found['label_counts'])}"
                return (note, *hidden[:-1], gr.Dataframe(count_table, visible=True))
            return (f"**Data:** {found['note']}", *hidden)

        def configured_columns(config_name, config_file, roles: dict) -> dict:
            """The column names the chosen config gives the task's roles (the first guesses)."""
            try:
                path = config_source(config_name, config_file)
                values = configlib.read_yaml(path) if path else {}
            except ToolkitError:
                return {}
            data = values.get("data") if isinstance(values.get("data"), dict) else {}
            return {key: data[key] for key in roles if isinstance(data.get(key), str)}

        def overrides_of(task_name, config_path, uploaded, path, *values):
            columns, values = values[:role_slots], values[role_slots:]
            base = default_fields(config_path)
            found = [override(k, v, b) for k, v, b in zip(FORM_KEYS, values, base)]
            data = str(studio.save_upload(upload_cache_file(uploaded), Path(uploaded).name)) if uploaded else (path or "").strip()
            extra = []
            if data:
                # New training data: the config's own validation and test files belong to other data.
                extra = [f"data.train={display_path(data) if Path(data).exists() else data}", "data.validation=null",
                         "data.test=null"]
                for key, column in zip(task_roles(task_name), columns):
                    if column:
                        extra.append(f"data.{key}={column}")
            return [*extra, *(o for o in found if o)]

        def check(task_name, config_name, config_file, uploaded, path, run_name, *values):
            """The command a Start would run, checked as `toolkit train` checks it (nothing starts)."""
            if not (run_name or "").strip():
                return "", "Name the run to see its command."
            try:
                config_path = config_source(config_name, config_file)
                if not config_path:
                    raise ToolkitError("pick a shipped config or upload one.")
                argv = studio.train_command(config_path, overrides_of(task_name, config_path, uploaded, path, *values),
                                            run_name)
            except (ToolkitError, OSError) as err:
                return "", f"⚠️ {err}"
            return command_text(argv), "Ready: Start queues this command."

        def start_run(task_name, config_name, config_file, uploaded, path, run_name, *values):
            shown, note = check(task_name, config_name, config_file, uploaded, path, run_name, *values)
            if not shown:
                return shown, note, gr.update()
            try:
                config_path = config_source(config_name, config_file)
                job = studio.submit(config_path, overrides_of(task_name, config_path, uploaded, path, *values), run_name)
            except ToolkitError as err:
                return shown, f"⚠️ {err}", gr.update()
            state = studio.status(job["name"])
            return shown, f"**{job['name']}**: {state}. Watch it on the Live tab.", gr.Dropdown(
                choices=run_names(), value=job["name"])

        task.change(pick_task, task, config, api_visibility="private")
        demo.load(pick_task, task, config, api_visibility="private")
        for trigger in (config.change, config_upload.change):
            trigger(fill_fields, [config, config_upload], fields, api_visibility="private")
        preview_inputs = [task, config, config_upload, data_upload, data_path]
        preview_outputs = [preview_note, preview, *role_pickers, counts]
        gr.on([data_upload.change, data_path.submit, task.change, demo.load], show_preview, preview_inputs, preview_outputs,
              api_visibility="private")
        form = [task, config, config_upload, data_upload, data_path, name, *role_pickers, *fields]
        # One listener, one check at a time, the latest form last: a slower check of an older form (a config's ten
        # fields fill at once) never overwrites the command of the current one.
        gr.on([c.change for c in (name, *fields, *role_pickers)], check, form, [command, message],
              api_visibility="private", trigger_mode="always_last", concurrency_limit=1, show_progress="hidden")
        start.click(start_run, form, [command, message, live_run], api_visibility="private")

        # ----- Live -----
        def show_live(run_name):
            studio.poll()
            if not run_name:
                return "Pick a run.", "", *figures(None, None)
            records = studio.metrics(run_name)
            live = studio.live(run_name, records)
            return status_text(live), live["log"], *figures(*curves(records))

        def live_choices(current):
            names = run_names()
            if current not in names:  # the newest training or queued run, else the newest one
                active = [n for n in names if studio.status(n) in ("training", "starting", "queued")]
                current = (active or names or [None])[-1]
            return gr.Dropdown(choices=names, value=current)

        def stop_run(run_name):
            try:
                gr.Info(f"{run_name}: {studio.stop(run_name)}")
            except ToolkitError as err:
                gr.Warning(str(err))

        def resume_run(run_name):
            try:
                job = studio.resume(run_name)
                gr.Info(f"{run_name}: {studio.status(job['name'])}")
            except ToolkitError as err:
                gr.Warning(str(err))

        live_outputs = [live_status, log_tail, loss_plot, metric_plot]
        demo.load(live_choices, live_run, live_run, api_visibility="private").then(
            show_live, live_run, live_outputs, api_visibility="private")
        live_run.change(show_live, live_run, live_outputs, api_visibility="private")
        timer.tick(show_live, live_run, live_outputs, api_visibility="private", show_progress="hidden")
        stop.click(stop_run, live_run, None, api_visibility="private").then(show_live, live_run, live_outputs,
                                                                          api_visibility="private")
        resume.click(resume_run, live_run, None, api_visibility="private").then(show_live, live_run, live_outputs,
                                                                              api_visibility="private")

        # ----- Runs -----
        def refresh_runs(current_compare, current_chosen):
            names = run_names()
            return (runs_table(), gr.Dropdown(choices=names, value=[n for n in current_compare or [] if n in names]),
                    gr.Dropdown(choices=names, value=current_chosen if current_chosen in names else None))

        def show_card(run_name):
            return studio.model_card(run_name) if run_name else ""

        def zip_best(run_name):
            try:
                return gr.File(str(studio.best_zip(run_name, downloads)), visible=True)
            except ToolkitError as err:
                gr.Warning(str(err))
                return gr.File(visible=False)

        def delete_run(run_name, typed):
            try:
                studio.delete(run_name, typed)
            except ToolkitError as err:
                return f"⚠️ {err}", gr.update(), gr.update()
            return f"Deleted **{run_name}**.", runs_table(), ""

        refresh.click(refresh_runs, [compare, chosen], [table, compare, chosen], api_visibility="private")
        demo.load(refresh_runs, [compare, chosen], [table, compare, chosen], api_visibility="private")
        def show_comparison(names):
            loss, metric, table = compare_runs(studio, names)
            return (*figures(loss, metric), table)

        compare.change(show_comparison, compare, [compare_loss, compare_metric, compare_table], api_visibility="private")
        chosen.change(show_card, chosen, card, api_visibility="private")
        download.click(zip_best, chosen, zip_file, api_visibility="private")
        delete.click(delete_run, [chosen, confirm], [delete_message, table, confirm], api_visibility="private").then(
            refresh_runs, [compare, chosen], [table, compare, chosen], api_visibility="private")

        # ----- Try and Evaluate -----
        def finished_choices(current):
            names = run_names(("finished",))
            return gr.Dropdown(choices=names, value=current if current in names else None)

        for dropdown in (try_run, eval_run):
            dropdown.focus(finished_choices, dropdown, dropdown, api_visibility="private")
            demo.load(finished_choices, dropdown, dropdown, api_visibility="private")

        def evaluate_run(run_name, uploaded):
            if not run_name or not uploaded:
                raise refusal("Pick a finished run and upload data to score.")
            try:
                metrics, labels = score(run_name, str(studio.save_upload(upload_cache_file(uploaded), Path(uploaded).name)))
            except ToolkitError as err:
                raise refusal(str(err)) from None
            rows = [{"metric": k, "value": round(v, 4)} for k, v in metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)]
            matrix = metrics.get("confusion_matrix")
            if matrix and labels:
                frame = pd.DataFrame(matrix, columns=labels)
                frame.insert(0, "true label", labels)
                return pd.DataFrame(rows), gr.Dataframe(frame, visible=True)
            return pd.DataFrame(rows), gr.Dataframe(visible=False)

        def score(run_name, data):
            from toolkit.api import evaluate

            run_dir = studio.run_dir(run_name)
            predictor = cache.get(run_dir)
            return evaluate(run_dir, data=data, predictor=predictor), list(getattr(predictor, "labels", []) or [])

        evaluate.click(evaluate_run, [eval_run, eval_file], [eval_metrics, confusion], api_visibility="private")

        # ----- the API (gradio_client): the same actions as the buttons -----
        def api_start(config: str, overrides: list[str], name: str) -> dict:
            """Queue `toolkit train CONFIG OVERRIDES output_dir=RUNS/NAME`."""
            path = shipped_configs().get(config) or config
            try:
                return studio.submit(path, list(overrides or []), name)
            except ToolkitError as err:
                raise refusal(str(err)) from None

        def api_live(name: str) -> dict:
            studio.poll()
            try:
                return studio.live(name)
            except ToolkitError as err:
                raise refusal(str(err)) from None

        def api_action(action: str, name: str, confirm: str = "") -> str:
            """stop, resume or delete (delete needs ``confirm`` = the run's name)."""
            try:
                if action == "stop":
                    return studio.stop(name)
                if action == "resume":
                    return studio.status(studio.resume(name)["name"])
                if action == "delete":
                    studio.delete(name, confirm)
                    return "deleted"
            except ToolkitError as err:
                raise refusal(str(err)) from None
            raise refusal(f"unknown action '{action}': use stop, resume or delete.")

        def api_runs() -> list[dict]:
            studio.poll()
            return studio.runs()

        def api_predict(name: str, text: str) -> list:
            try:
                run_dir = studio.run_dir(name)
                if not (run_dir / CONFIG_FILE).is_file():
                    raise ToolkitError(f"there is no finished run named '{name}' in {display_path(studio.root)}.")
                return cache.get(run_dir)([text])
            except ToolkitError as err:  # refused: one line for the client, no traceback in the terminal
                raise refusal(f"run '{name}': {err}") from None

        def api_upload(file: gr.FileData) -> str:
            try:
                return display_path(studio.save_upload(upload_cache_file(file["path"]), file.get("orig_name")))
            except ToolkitError as err:
                raise refusal(str(err)) from None

        gr.api(api_start, api_name="start")
        gr.api(api_live, api_name="live")
        gr.api(api_action, api_name="action")
        gr.api(api_runs, api_name="runs")
        gr.api(api_predict, api_name="predict")
        gr.api(api_upload, api_name="upload")
    demo.queue(default_concurrency_limit=4)
    threading.Thread(target=keep_scheduling, args=(studio,), daemon=True).start()
    demo.studio = studio
    return demo


def refusal(message: str) -> gr.Error:
    """A refused call: the message for the client, one log line for the terminal (no traceback: nothing broke)."""
    log.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def upload_cache_file(path: str) -> str:
    """A file the client uploaded: it lies in Gradio's upload cache, never elsewhere on this machine (a raw API
    request could otherwise name any server file)."""
    import os
    import tempfile

    cache = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()
    resolved = Path(path).resolve()
    if cache not in resolved.parents:
        raise ToolkitError("only files uploaded to the studio can be used here.")
    return str(resolved)


def keep_scheduling(studio: Studio) -> None:
    """Start queued runs as slots free up, even with no browser open."""
    import time

    while True:
        try:
            studio.poll()
        except Exception:  # noqa: BLE001  (a bad job file must not stop the queue; the tabs show it)
            pass
        time.sleep(POLL_SECONDS)


def launch(runs: str | Path = "runs", host: str = "127.0.0.1", port: int = 7860, auth=None,
           max_upload_mb: float = MAX_UPLOAD_MB, max_loaded: int = 3, allowed_hosts: list[str] | tuple[str, ...] = (),
           allow_remote_code: bool = False, **kwargs):
    """Serve the studio; it answers only for ``host`` (and ``allowed_hosts``), see apps/guard.py."""
    from toolkit.apps.guard import guarded

    demo = build_studio(runs, max_loaded=max_loaded, max_upload_mb=max_upload_mb, allow_remote_code=allow_remote_code)
    return demo.launch(server_name=host, server_port=port, auth=auth, max_file_size=int(max_upload_mb * 2**20),
                       **guarded(host, allowed_hosts), **kwargs)


if __name__ == "__main__":
    import sys

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs")
