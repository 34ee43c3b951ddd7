"""The Train form's logic, without widgets: what a filled form means (its task, config, data and overrides), the
command a Start would run, checked as `toolkit train` or `toolkit sweep` checks it, and the Start itself.

The studio's Train tab (apps/studio/train.py) only binds its widgets to a :class:`TrainForm`; the tests fill
:class:`FormValues` directly, without a browser.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as configlib
from ..errors import ToolkitError
from ..tasks import all_tasks, get_task
from . import Studio
from .paths import display_path, shipped_configs
from .preview import preview_data
from .processes import command_text
from .uploads import upload_cache_file

ONE_RUN, SWEEP = "one run", "a sweep"

# Fields offered as form inputs on the Train tab (the rest stay as the config file sets them).
FORM_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "max_length",
    "warmup_ratio",
    "precision",
    "seed",
    "eval_every",
    "peft.enabled",
    "trackers",
)


@dataclass
class FormValues:
    """What the Train form holds: uploads are paths in the web server's upload cache."""

    task: str | None = None  # the Task menu (a chosen config's own task wins)
    config: str | None = None  # a shipped config's name
    config_file: str | None = None  # an uploaded YAML config
    data_file: str | None = None  # uploaded training data
    data_path: str | None = None  # ... or a path or hub id
    name: str = ""  # the run's folder under the runs folder
    mode: str = ONE_RUN
    trials: float | None = 8
    budget: str | None = "30m"
    columns: list = field(default_factory=list)  # one column per data role of the task, in the task's order
    fields: list = field(default_factory=list)  # the values of FORM_KEYS, in order (missing: the config's)


class TrainForm:
    """The Train form of one studio."""

    def __init__(self, studio: Studio):
        self.studio = studio

    def config_source(self, form: FormValues) -> str | None:
        """The config file the form trains from: the uploaded one (kept in the studio's uploads), else the
        shipped one chosen."""
        if form.config_file:
            return str(self.studio.uploads.save(upload_cache_file(form.config_file), Path(form.config_file).name))
        return str(shipped_configs()[form.config]) if form.config else None

    def data_source(self, form: FormValues) -> str:
        """The training data the form names ("" for the config's own): an upload, else a path or hub id."""
        if form.data_file:
            return str(self.studio.uploads.save(upload_cache_file(form.data_file), Path(form.data_file).name))
        return (form.data_path or "").strip()

    def task_of(self, form: FormValues) -> str | None:
        """The task the form trains: the chosen config's, else the Task menu's."""
        try:
            cls = config_class_of(self.config_source(form))
        except (ToolkitError, OSError):
            cls = None
        found = next((spec.name for spec in all_tasks() if spec.config is cls), None) if cls else None
        return found or form.task

    def fields(self, form: FormValues) -> list[tuple]:
        """(value, shown) for each of FORM_KEYS: the config's values, and only the keys its task has."""
        path = self.config_source(form)
        cls = config_class_of(path)
        return [(v, cls is None or configlib.has_key(cls, k)) for k, v in zip(FORM_KEYS, default_fields(path))]

    def configured_columns(self, form: FormValues, roles: dict) -> dict:
        """The column names the chosen config gives the task's roles (the first guesses)."""
        try:
            path = self.config_source(form)
            values = configlib.read_yaml(path) if path else {}
        except ToolkitError:
            return {}
        data = values.get("data") if isinstance(values.get("data"), dict) else {}
        return {key: data[key] for key in roles if isinstance(data.get(key), str)}

    def preview(self, form: FormValues) -> tuple[str, dict, dict | None]:
        """(the data source, the task's roles, toolkit.studio.preview_data's answer or None without data);
        ToolkitError or OSError for data that cannot be read."""
        source, roles = self.data_source(form), task_roles(self.task_of(form))
        if not source:
            return source, roles, None
        return source, roles, preview_data(source, roles, self.configured_columns(form, roles))

    def check_data(self, form: FormValues) -> str:
        """The data checks on the form's data and columns (the config's own data when none is given), as
        Markdown: one bullet per finding with its examples and fix."""
        config_path = self.config_source(form)
        if not config_path:
            return "Pick a shipped config or upload one to check its data."
        from ..api import check

        overrides = [o for o in self.overrides(form, config_path) if o.startswith("data.")]
        try:
            findings = check(config_path, overrides)
        except (ToolkitError, OSError) as err:
            return f"⚠️ {err}"
        if not findings:
            return "**Data checks:** nothing found."
        lines = [f"**Data checks:** {len(findings)} finding(s)"]
        for f in findings:
            examples = "; ".join(f"`{e}`" for e in f.examples[:3])
            lines.append(
                f"- **{f.check}**, {f.where}: {f.count:,} of {f.total:,} {f.what}."
                + (f" E.g. {examples}." if examples else "")
                + f" *Fix:* {f.fix}"
            )
        return "\n".join(lines)

    def overrides(self, form: FormValues, config_path: str) -> list[str]:
        """The ``key=value`` overrides the form adds to its config: new data with its columns, changed fields."""
        base = default_fields(config_path)
        changed = [override(k, v, b) for k, v, b in zip(FORM_KEYS, form.fields, base)]
        data, extra = self.data_source(form), []
        if data:
            # New training data: the config's own validation and test files belong to other data.
            extra = [
                f"data.train={display_path(data) if Path(data).exists() else data}",
                "data.validation=null",
                "data.test=null",
            ]
            for key, column in zip(task_roles(self.task_of(form)), form.columns):
                if column:
                    extra.append(f"data.{key}={column}")
        return [*extra, *(o for o in changed if o)]

    def sweep_settings(self, form: FormValues) -> dict:
        """{} for one run; the trials and budget of a sweep."""
        if form.mode != SWEEP:
            return {}
        return {"trials": int(form.trials) if form.trials else 0, "budget": (form.budget or "").strip() or None}

    def plan(self, form: FormValues) -> tuple[str, list[str], dict]:
        """(config file, overrides, sweep settings) of a named form; ToolkitError naming what is missing."""
        if not (form.name or "").strip():
            raise ToolkitError("name the run to see its command.")
        config_path = self.config_source(form)
        if not config_path:
            raise ToolkitError("pick a shipped config or upload one.")
        return config_path, self.overrides(form, config_path), self.sweep_settings(form)

    def command(self, form: FormValues) -> list[str]:
        """The command a Start would run, checked as `toolkit train` (or `toolkit sweep`) checks it; nothing starts."""
        config_path, overrides, sweep = self.plan(form)
        if sweep:
            return self.studio.queue.sweep_command(config_path, overrides, form.name, **sweep)
        return self.studio.queue.train_command(config_path, overrides, form.name)

    def check(self, form: FormValues) -> tuple[str, str]:
        """(the command's text or "", a message for the user)."""
        if not (form.name or "").strip():
            return "", "Name the run to see its command."
        try:
            return command_text(self.command(form)), "Ready: Start queues this command."
        except (ToolkitError, OSError) as err:
            return "", f"⚠️ {err}"

    def submit(self, form: FormValues) -> dict:
        """Queue the run (or sweep) the form describes; it starts when a training slot is free. ToolkitError."""
        config_path, overrides, sweep = self.plan(form)
        return self.studio.queue.submit(config_path, overrides, form.name, **sweep)


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


def override(key: str, value, base) -> str | None:
    """``key=value`` when the form's value differs from the config's, else None."""
    if isinstance(value, str) and configlib._FLOAT.fullmatch(value.strip()):
        value = float(value)  # a number typed in a text field (eval_every: 320 or "epoch")
    if isinstance(value, float) and value.is_integer() and int in (field_type(key), *typing.get_args(field_type(key))):
        value = int(value)
    if isinstance(value, list):  # the trackers' checkboxes
        return None if value == (base or []) else f"{key}={','.join(value) if value else '[]'}"
    if value == "" or value is None:
        value = None
    if value == base or (value is None and base is None):
        return None
    return f"{key}={'null' if value is None else str(value).lower() if isinstance(value, bool) else value}"


def default_fields(config_path: str | None) -> list:
    """The config's values of FORM_KEYS (None where it has none)."""
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
