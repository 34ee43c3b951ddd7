"""The studio's Train tab: a task, a shipped or uploaded config, data (uploaded, a path or a hub id) with one column
picker per data role of the config's task, the hyperparameters, and the `toolkit train` command a Start queues; or a
sweep of the same config (trials, budget): `toolkit sweep`, each trial a run under the sweep's folder.

The form's logic is toolkit.studio.form.TrainForm; this tab only lays out its widgets and binds them to it."""

from __future__ import annotations

import typing
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.studio.form import FORM_KEYS, ONE_RUN, SWEEP, FormValues, TrainForm, field_type, task_roles
from toolkit.studio.paths import display_path, shipped_configs
from toolkit.tasks import all_tasks
from toolkit.tracking import installed

from .context import StudioContext

FORM_EVENTS = "train-form"  # the Train form's checks and Start: one queue, in the order they were sent


def form_component(key: str, value):
    """A form input for one config key: a dropdown for a fixed set of values, a checkbox, a number or a text box."""
    tp = field_type(key)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    label = f"{key}"
    if typing.get_origin(tp) is list:  # trackers: the ones installed here
        choices = installed() if key == "trackers" else list(typing.get_args(typing.get_args(tp)[0]))
        return gr.CheckboxGroup(choices=choices, value=value or [], label=label, elem_id=f"field-{key}")
    if typing.get_origin(tp) is typing.Literal:
        return gr.Dropdown(choices=list(typing.get_args(tp)), value=value, label=label, elem_id=f"field-{key}")
    if tp is bool:
        return gr.Checkbox(value=bool(value), label=label, elem_id=f"field-{key}")
    if tp in (int, float) or (len(args) == 1 and args[0] in (int, float)):
        return gr.Number(value=value, label=label + (" (empty: unset)" if args else ""), elem_id=f"field-{key}")
    return gr.Textbox(value="" if value is None else str(value), label=label, elem_id=f"field-{key}")


def role_picker(roles: list, i: int, columns: list | None = None, value=None):
    """Picker ``i``: the column for the task's i-th role once there is data to pick from, else hidden."""
    if i >= len(roles):
        return gr.Dropdown(visible=False, value=None)
    key, role = roles[i]
    return gr.Dropdown(
        label=f"{role.name.capitalize()} column (data.{key})",
        choices=columns or [],
        value=value,
        visible=columns is not None,
    )


def layout(max_upload_mb: float, role_slots: int) -> SimpleNamespace:
    """The tab's widgets, in page order."""
    tasks = [spec.name for spec in all_tasks()]
    w = SimpleNamespace()
    with gr.Row():
        w.task = gr.Dropdown(tasks, value=tasks[0], label="Task", elem_id="task")
        w.config = gr.Dropdown(label="Start from a shipped config", elem_id="config")
        w.config_upload = gr.File(
            label="... or upload a YAML config", file_types=[".yaml", ".yml"], height=90, elem_id="config-upload"
        )
    with gr.Row():
        w.data_upload = gr.File(
            label=f"Training data: CSV, JSONL or Parquet, or a zip of class folders (up to {max_upload_mb:g} MB)",
            height=90,
            elem_id="data-upload",
        )
        w.data_path = gr.Textbox(label="... or a path or hub id (empty: the config's data)", elem_id="data-path")
    w.preview_note = gr.Markdown(elem_id="data-preview")
    w.preview = gr.Dataframe(label="First rows", interactive=False, visible=False)
    with gr.Row():
        # One column picker per data role of the chosen task (text and label; source and target; ...).
        w.role_pickers = [
            gr.Dropdown(label=f"Column {i + 1}", allow_custom_value=True, visible=False, elem_id=f"role-{i}")
            for i in range(role_slots)
        ]
        w.counts = gr.Dataframe(label="Label counts", interactive=False, visible=False, elem_id="label-counts")
    with gr.Row():
        w.check_data = gr.Button("Check data", size="sm", elem_id="check-data")
    w.findings = gr.Markdown(elem_id="data-findings")
    gr.Markdown("### Hyperparameters")
    with gr.Row():
        w.fields = [form_component(key, None) for key in FORM_KEYS]
    with gr.Row():
        w.mode = gr.Radio(
            [ONE_RUN, SWEEP],
            value=ONE_RUN,
            label="Train",
            info="A sweep searches learning rate, epochs, batch size and the task's own settings around these",
            elem_id="mode",
        )
        w.trials = gr.Number(8, precision=0, minimum=1, label="Trials", visible=False, elem_id="trials")
        w.budget = gr.Textbox("30m", label="Budget (wall time: 90s, 30m, 2h)", visible=False, elem_id="budget")
    w.name = gr.Textbox(label="Run name (a folder under the runs folder)", elem_id="run-name")
    w.command = gr.Code(
        label="Command: the same run from a terminal",
        language="shell",
        interactive=False,
        lines=2,
        max_lines=6,
        wrap_lines=True,
        show_line_numbers=False,
        elem_id="command",
    )
    w.message = gr.Markdown(elem_id="train-message")
    w.start = gr.Button("Start", variant="primary", elem_id="start")
    return w


def form_values(role_slots: int, task, config, config_file, data_file, data_path, name, mode, trials, budget, *rest):
    """The widgets' values (in the order of the tab's ``form`` list) as the form's FormValues."""
    return FormValues(
        task, config, config_file, data_file, data_path, name, mode, trials, budget,
        columns=list(rest[:role_slots]), fields=list(rest[role_slots:]),
    )  # fmt: skip


def preview_outputs(form: TrainForm, values: FormValues, role_slots: int) -> tuple:
    """The data preview's note, first rows, column pickers and label counts for the form's data."""
    try:
        source, roles, found = form.preview(values)
        error = None
    except (ToolkitError, OSError) as err:
        roles, found, error = task_roles(form.task_of(values)), None, err
    keys = list(roles.items())
    hidden = (gr.update(visible=False), *(role_picker(keys, i) for i in range(role_slots)), gr.update(visible=False))
    if error is not None:
        return (f"**Data:** {error}", *hidden)
    if found is None:
        return ("", *hidden)
    count_table = pd.DataFrame(list(found["label_counts"].items()), columns=["label", "count"])
    if found["kind"] == "table":
        cols = found["columns"]
        note = f"**Data:** `{display_path(source)}`, {found['count']:,} rows, columns: {', '.join(cols)}"
        if found.get("sampled"):
            note += " (columns guessed and labels counted from its first 10,000 rows)"
        pickers = [
            role_picker(keys, i, cols, found["roles"].get(keys[i][0]) if i < len(keys) else None)
            for i in range(role_slots)
        ]
        return (
            note,
            gr.Dataframe(pd.DataFrame(found["rows"], columns=cols), visible=True),
            *pickers,
            gr.Dataframe(count_table, visible=bool(found["label_counts"])),
        )
    if found["kind"] == "images":
        note = f"**Data:** `{display_path(source)}`, class folders: {', '.join(found['label_counts'])}"
        return (note, *hidden[:-1], gr.Dataframe(count_table, visible=True))
    return (f"**Data:** {found['note']}", *hidden)


def build(ctx: StudioContext, demo: gr.Blocks) -> SimpleNamespace:
    """The tab's components and listeners; ``start`` is connected by :func:`connect_start` once the Live tab exists."""
    form = TrainForm(ctx.studio)
    role_slots = max([len(spec.roles) for spec in all_tasks()] + [1])
    with gr.Tab("Train", id="train"):
        w = layout(ctx.max_upload_mb, role_slots)

    def values(*widgets) -> FormValues:
        return form_values(role_slots, *widgets)

    def pick_task(task_name):
        configs = list(shipped_configs(task_name)) if task_name else []
        return gr.Dropdown(choices=configs, value=configs[0] if configs else None)

    def fill_fields(config_name, uploaded):
        """The config's values, and only the fields its task has (no max_length for images)."""
        try:
            found = form.fields(FormValues(config=config_name, config_file=uploaded))
        except ToolkitError as err:
            gr.Warning(str(err))
            return [gr.update() for _ in FORM_KEYS]
        return [gr.update(value=value, visible=shown) for value, shown in found]

    def show_preview(task_name, config_name, config_file, uploaded, path):
        filled = FormValues(task_name, config_name, config_file, uploaded, path)
        return preview_outputs(form, filled, role_slots)

    def check(*widgets):
        return form.check(values(*widgets))

    def check_data(*widgets):
        return form.check_data(values(*widgets))

    def start_run(*widgets):
        filled = values(*widgets)
        shown, note = form.check(filled)
        if not shown:
            return shown, note, gr.update()
        try:
            job = form.submit(filled)
        except ToolkitError as err:
            return shown, f"⚠️ {err}", gr.update()
        state = ctx.studio.catalog.status(job["name"])
        return (
            shown,
            f"**{job['name']}**: {state}. Watch it on the Live tab.",
            gr.Dropdown(choices=ctx.run_names(), value=job["name"]),
        )

    def show_sweep_settings(how):
        return gr.update(visible=how == SWEEP), gr.update(visible=how == SWEEP)

    w.mode.change(show_sweep_settings, w.mode, [w.trials, w.budget], api_visibility="private")
    w.task.change(pick_task, w.task, w.config, api_visibility="private")
    demo.load(pick_task, w.task, w.config, api_visibility="private")
    for trigger in (w.config.change, w.config_upload.change):
        trigger(fill_fields, [w.config, w.config_upload], w.fields, api_visibility="private")
    gr.on(
        [w.data_upload.change, w.data_path.submit, w.config.change, w.config_upload.change, demo.load],
        show_preview,
        [w.task, w.config, w.config_upload, w.data_upload, w.data_path],
        [w.preview_note, w.preview, *w.role_pickers, w.counts],
        api_visibility="private",
    )
    inputs = [w.task, w.config, w.config_upload, w.data_upload, w.data_path, w.name, w.mode, w.trials, w.budget]
    inputs += [*w.role_pickers, *w.fields]
    w.check_data.click(check_data, inputs, w.findings, api_visibility="private")
    # One listener, one check at a time, the latest form last: a slower check of an older form (a config's ten
    # fields fill at once) never overwrites the command of the current one.
    gr.on(
        [c.change for c in (w.name, w.mode, w.trials, w.budget, *w.fields, *w.role_pickers)],
        check,
        inputs,
        [w.command, w.message],
        api_visibility="private",
        trigger_mode="always_last",
        concurrency_limit=1,
        concurrency_id=FORM_EVENTS,
        show_progress="hidden",
    )
    return SimpleNamespace(start=w.start, form=inputs, command=w.command, message=w.message, start_run=start_run)


def connect_start(train: SimpleNamespace, live_run) -> None:
    """Start queues the run and shows it on the Live tab."""
    # In the form's queue: a check of the form sent before Start (typing the name) runs before it, never after it,
    # so it cannot overwrite Start's message (on a loaded server it did: "Ready: ..." after the run was queued).
    train.start.click(
        train.start_run,
        train.form,
        [train.command, train.message, live_run],
        api_visibility="private",
        concurrency_limit=1,
        concurrency_id=FORM_EVENTS,
    )
