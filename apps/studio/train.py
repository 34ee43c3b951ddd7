"""The studio's Train tab: a task, a shipped or uploaded config, data (uploaded, a path or a hub id) with one column
picker per data role of the config's task, the hyperparameters, and the `toolkit train` command a Start queues; or a
sweep of the same config (trials, budget): `toolkit sweep`, each trial a run under the sweep's folder."""

from __future__ import annotations

import typing
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from toolkit import config as configlib
from toolkit.errors import ToolkitError
from toolkit.studio import FORM_KEYS, command_text, display_path, preview_data, shipped_configs
from toolkit.tasks import all_tasks, get_task

from .context import StudioContext, upload_cache_file

FORM_EVENTS = "train-form"
ONE_RUN, SWEEP = "one run", "a sweep"  # the Train form's checks and Start: one queue, in the order they were sent


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


def task_roles(task_name) -> dict:
    return get_task(task_name).roles if task_name else {}


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


def build(ctx: StudioContext, demo: gr.Blocks) -> SimpleNamespace:
    """The tab's components and listeners; ``start`` is connected by :func:`connect_start` once the Live tab exists."""
    studio, max_upload_mb = ctx.studio, ctx.max_upload_mb
    tasks = [spec.name for spec in all_tasks()]
    role_slots = max([len(spec.roles) for spec in all_tasks()] + [1])
    with gr.Tab("Train", id="train"):
        with gr.Row():
            task = gr.Dropdown(tasks, value=tasks[0], label="Task", elem_id="task")
            config = gr.Dropdown(label="Start from a shipped config", elem_id="config")
            config_upload = gr.File(
                label="... or upload a YAML config",
                file_types=[".yaml", ".yml"],
                height=90,
                elem_id="config-upload",
            )
        with gr.Row():
            data_upload = gr.File(
                label=f"Training data: CSV, JSONL or Parquet, or a zip of class folders (up to {max_upload_mb:g} MB)",
                height=90,
                elem_id="data-upload",
            )
            data_path = gr.Textbox(label="... or a path or hub id (empty: the config's data)", elem_id="data-path")
        preview_note = gr.Markdown(elem_id="data-preview")
        preview = gr.Dataframe(label="First rows", interactive=False, visible=False)
        with gr.Row():
            # One column picker per data role of the chosen task (text and label; source and target; ...).
            role_pickers = [
                gr.Dropdown(label=f"Column {i + 1}", allow_custom_value=True, visible=False, elem_id=f"role-{i}")
                for i in range(role_slots)
            ]
            counts = gr.Dataframe(label="Label counts", interactive=False, visible=False, elem_id="label-counts")
        gr.Markdown("### Hyperparameters")
        with gr.Row():
            fields = [form_component(key, None) for key in FORM_KEYS]
        with gr.Row():
            mode = gr.Radio(
                [ONE_RUN, SWEEP],
                value=ONE_RUN,
                label="Train",
                info="A sweep searches learning rate, epochs, batch size and the task's own settings around these",
                elem_id="mode",
            )
            trials = gr.Number(8, precision=0, minimum=1, label="Trials", visible=False, elem_id="trials")
            budget = gr.Textbox("30m", label="Budget (wall time: 90s, 30m, 2h)", visible=False, elem_id="budget")
        name = gr.Textbox(label="Run name (a folder under the runs folder)", elem_id="run-name")
        command = gr.Code(
            label="Command: the same run from a terminal",
            language="shell",
            interactive=False,
            lines=2,
            max_lines=6,
            wrap_lines=True,
            show_line_numbers=False,
            elem_id="command",
        )
        message = gr.Markdown(elem_id="train-message")
        start = gr.Button("Start", variant="primary", elem_id="start")

    # ----- Train -----
    def pick_task(task_name):
        configs = list(shipped_configs(task_name)) if task_name else []
        return gr.Dropdown(choices=configs, value=configs[0] if configs else None)

    def config_source(config_name, uploaded) -> str | None:
        if uploaded:
            return str(studio.uploads.save(upload_cache_file(uploaded), Path(uploaded).name))
        return str(shipped_configs()[config_name]) if config_name else None

    def fill_fields(config_name, uploaded):
        """The config's values, and only the fields its task has (no max_length for images)."""
        try:
            path = config_source(config_name, uploaded)
            values, cls = default_fields(path), config_class_of(path)
        except ToolkitError as err:
            gr.Warning(str(err))
            return [gr.update() for _ in FORM_KEYS]
        return [
            gr.update(value=v, visible=cls is None or configlib.has_key(cls, key)) for key, v in zip(FORM_KEYS, values)
        ]

    def form_task(task_name, config_name, config_file) -> str | None:
        """The task the form trains: the chosen config's, else the Task menu's."""
        try:
            cls = config_class_of(config_source(config_name, config_file))
        except (ToolkitError, OSError):
            cls = None
        found = next((spec.name for spec in all_tasks() if spec.config is cls), None) if cls else None
        return found or task_name

    def show_preview(task_name, config_name, config_file, uploaded, path):
        source = (
            str(studio.uploads.save(upload_cache_file(uploaded), Path(uploaded).name))
            if uploaded
            else (path or "").strip()
        )
        roles = task_roles(form_task(task_name, config_name, config_file))
        keys = list(roles.items())
        hidden = (
            gr.update(visible=False),
            *(role_picker(keys, i) for i in range(role_slots)),
            gr.update(visible=False),
        )
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
        data = (
            str(studio.uploads.save(upload_cache_file(uploaded), Path(uploaded).name))
            if uploaded
            else (path or "").strip()
        )
        extra = []
        if data:
            # New training data: the config's own validation and test files belong to other data.
            extra = [
                f"data.train={display_path(data) if Path(data).exists() else data}",
                "data.validation=null",
                "data.test=null",
            ]
            for key, column in zip(task_roles(task_name), columns):
                if column:
                    extra.append(f"data.{key}={column}")
        return [*extra, *(o for o in found if o)]

    def sweep_settings(how, trial_count, time_budget) -> dict:
        """{} for one run; the trials and budget of a sweep."""
        if how != SWEEP:
            return {}
        return {"trials": int(trial_count) if trial_count else 0, "budget": (time_budget or "").strip() or None}

    def check(task_name, config_name, config_file, uploaded, path, run_name, how, trial_count, time_budget, *values):
        """The command a Start would run, checked as `toolkit train` (or `toolkit sweep`) checks it; nothing starts."""
        if not (run_name or "").strip():
            return "", "Name the run to see its command."
        try:
            config_path = config_source(config_name, config_file)
            if not config_path:
                raise ToolkitError("pick a shipped config or upload one.")
            task_name = form_task(task_name, config_name, config_file)
            overrides = overrides_of(task_name, config_path, uploaded, path, *values)
            sweep = sweep_settings(how, trial_count, time_budget)
            if sweep:
                argv = studio.queue.sweep_command(config_path, overrides, run_name, **sweep)
            else:
                argv = studio.queue.train_command(config_path, overrides, run_name)
        except (ToolkitError, OSError) as err:
            return "", f"⚠️ {err}"
        return command_text(argv), "Ready: Start queues this command."

    def start_run(*form):
        shown, note = check(*form)
        if not shown:
            return shown, note, gr.update()
        task_name, config_name, config_file, uploaded, path, run_name, how, trial_count, time_budget, *values = form
        try:
            config_path = config_source(config_name, config_file)
            task_name = form_task(task_name, config_name, config_file)
            job = studio.queue.submit(
                config_path,
                overrides_of(task_name, config_path, uploaded, path, *values),
                run_name,
                **sweep_settings(how, trial_count, time_budget),
            )
        except ToolkitError as err:
            return shown, f"⚠️ {err}", gr.update()
        state = studio.catalog.status(job["name"])
        return (
            shown,
            f"**{job['name']}**: {state}. Watch it on the Live tab.",
            gr.Dropdown(choices=ctx.run_names(), value=job["name"]),
        )

    def show_sweep_settings(how):
        return gr.update(visible=how == SWEEP), gr.update(visible=how == SWEEP)

    mode.change(show_sweep_settings, mode, [trials, budget], api_visibility="private")
    task.change(pick_task, task, config, api_visibility="private")
    demo.load(pick_task, task, config, api_visibility="private")
    for trigger in (config.change, config_upload.change):
        trigger(fill_fields, [config, config_upload], fields, api_visibility="private")
    preview_inputs = [task, config, config_upload, data_upload, data_path]
    preview_outputs = [preview_note, preview, *role_pickers, counts]
    gr.on(
        [data_upload.change, data_path.submit, config.change, config_upload.change, demo.load],
        show_preview,
        preview_inputs,
        preview_outputs,
        api_visibility="private",
    )
    form = [task, config, config_upload, data_upload, data_path, name, mode, trials, budget, *role_pickers, *fields]
    # One listener, one check at a time, the latest form last: a slower check of an older form (a config's ten
    # fields fill at once) never overwrites the command of the current one.
    gr.on(
        [c.change for c in (name, mode, trials, budget, *fields, *role_pickers)],
        check,
        form,
        [command, message],
        api_visibility="private",
        trigger_mode="always_last",
        concurrency_limit=1,
        concurrency_id=FORM_EVENTS,
        show_progress="hidden",
    )
    return SimpleNamespace(start=start, form=form, command=command, message=message, start_run=start_run)


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
