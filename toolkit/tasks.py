"""The task registry: every task is declared once, next to its recipe, and the rest of the toolkit asks here.

A recipe module (``recipes/<name>.py``, installed as ``toolkit.recipes``) ends with ``register(TaskSpec(...))``.
The built-in recipes are found by
importing every module of the ``toolkit.recipes`` package; another package adds its tasks through the ``toolkit.tasks``
entry-point group (each entry point a module that registers on import), and a notebook calls ``register``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from .errors import ToolkitError


@dataclass(frozen=True)
class InputBounds:
    """What one request may ask of a loaded model, in `toolkit predict`, the apps, the studio and `toolkit serve`:
    bounded so that no input holds a CPU, or grows the server's memory, for long (docs/security.md).

    ``max_chars``: characters per input (a text, or a question with its context); ``max_inputs``: inputs per request
    (`toolkit predict` reads longer input in parts of this many). None: no bound (evaluation scores whole files)."""

    max_chars: Optional[int] = 100_000  # a model reads its first max_length tokens: far more text only costs time
    max_inputs: int = 256


@dataclass(frozen=True)
class ServeShape:
    """How `toolkit serve`'s JSON API (toolkit/serving.py) reads a task's requests and writes its answers: the
    Hugging Face Inference API shapes of the task, which ``huggingface_hub.InferenceClient`` sends and reads."""

    read: Callable  # (the body's "inputs") -> (a list of predictor inputs, whether one input was sent); ToolkitError
    write: Callable  # (the predictor's answers, whether one input was sent, "parameters") -> the JSON answer
    example: str  # a request body, as JSON text (the API's docs show it)
    describe: str = ""  # what /predict takes and answers, for the OpenAPI page
    options: Callable = lambda parameters: {}  # ("parameters") -> the predictor's keyword options; ToolkitError
    read_bytes: Optional[Callable] = None  # (a raw, non-JSON body) -> [one input]: a task that takes file bytes
    # (predictor, inputs, options) -> answers, for a predictor not called with a list of inputs (it then checks them)
    call: Optional[Callable] = None
    client_call: Optional[str] = None  # its huggingface_hub.InferenceClient call, e.g. 'text_classification("...")'
    max_body_bytes: int = 0  # the largest body it takes (0: from its InputBounds)


@dataclass(frozen=True)
class TaskSpec:
    """What the toolkit needs to know about one task."""

    name: str
    description: str  # one line, for listings
    build: Callable  # (cfg) -> engine.Task: the model, data and steps to train
    predictor: Callable  # (checkpoint folder, cfg, **kwargs) -> a callable predictor
    app: Union[str, Callable, None] = None  # a module with build_demo(run_dir), or build_demo itself
    evaluate_run: Optional[Callable] = None  # (predictor, cfg, data, split) -> metrics of a finished run
    # (cfg, splits=None) -> [toolkit.checks.Finding]: what in its data will cost the model (loads the splits if None)
    check_data: Optional[Callable] = None
    # () -> toolkit.label_issues.LabelIssueSpec: how `toolkit label-issues` reads, folds and predicts its rows
    label_issues: Optional[Callable] = None
    aliases: tuple = ()
    example_config: Optional[str] = None  # a shipped config, relative to the repository root
    metrics: tuple = ("loss",)  # what the task reports on validation (the first is its default for best/)
    lower_is_better: tuple = ("loss",)  # of those, the ones where lower wins
    config: type = None  # its config dataclass: toolkit.config.Config (or TextConfig) with its own keys and sections
    usage: str = 'predict("...")'  # the call shown in the model card, after `predict = toolkit.load(RUN)`
    pipeline_tag: Optional[str] = None  # the Hugging Face task tag of the model card
    stock_usage: Optional[str] = None  # how to load best/ ({folder}) without toolkit, shown first in the model card
    # (checkpoint folder, onnx file path, cfg, quantize) -> "module:Class" of the predictor that runs the file
    export: Optional[Callable] = None
    rank: int = 100  # where listings (the studio's task menu, `toolkit tasks`) put it: lower first
    input_bounds: InputBounds = InputBounds()  # what one prediction request may hold
    serve: Optional[ServeShape] = None  # its JSON API shapes (toolkit/serving.py)

    def __post_init__(self):
        # Checked by shape, not by importing toolkit.config (which looks tasks up: no import cycle).
        fields = {f.name for f in dataclasses.fields(self.config)} if dataclasses.is_dataclass(self.config) else set()
        if not isinstance(self.config, type) or not {"task", "data"} <= fields:
            raise ToolkitError(
                f"task '{self.name}': give config=, a dataclass subclassing toolkit.config.Config "
                f"(Config itself for a task without keys of its own)."
            )

    @property
    def roles(self) -> dict:
        """Its data roles: {data key: DataRole} of the columns it reads (``setting(role=...)`` in its data class)."""
        data = typing.get_type_hints(self.config)["data"]
        return {f.name: f.metadata["role"] for f in dataclasses.fields(data) if f.metadata.get("role")}

    def build_app(self, run_dir, **options):
        """The task's Gradio app for a run; ``options`` (e.g. backend="torch") go to its build_demo."""
        if self.app is None:
            raise ToolkitError(f"'{self.name}' runs have no app yet.")
        build = importlib.import_module(self.app).build_demo if isinstance(self.app, str) else self.app
        return build(run_dir, **options)


_TASKS: dict[str, TaskSpec] = {}
_ALIASES: dict[str, str] = {}
_discovered = False


def register(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add a task (or, with ``replace``, redefine one): it can then be trained, evaluated, loaded and served."""
    for name in (spec.name, *spec.aliases):
        owner = _ALIASES.get(name)
        if owner is not None and owner != spec.name and not replace:
            raise ToolkitError(f"task name '{name}' is taken by task '{owner}'.")
        if owner == spec.name and _TASKS[owner] is not spec and not replace:
            raise ToolkitError(f"task '{name}' is already registered. Pass replace=True to redefine it.")
    _TASKS[spec.name] = spec
    for name in (spec.name, *spec.aliases):
        _ALIASES[name] = spec.name
    return spec


def _discover() -> None:
    """Import the built-in recipes and the modules named by ``toolkit.tasks`` entry points, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    from . import recipes

    for module in pkgutil.iter_modules(recipes.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"toolkit.recipes.{module.name}")

    from importlib.metadata import entry_points  # about 30 ms: only once tasks are looked up

    for entry in entry_points(group="toolkit.tasks"):
        entry.load()


def get_task(name: str) -> TaskSpec:
    if name not in _ALIASES:
        _discover()
    if name not in _ALIASES:
        raise ToolkitError(f"unknown task '{name}'. Known tasks: {', '.join(sorted(_ALIASES))}.")
    return _TASKS[_ALIASES[name]]


def all_tasks() -> list[TaskSpec]:
    _discover()
    return sorted(_TASKS.values(), key=lambda spec: (spec.rank, spec.name))


@dataclass(frozen=True)
class Goal:
    """The validation metric that picks best/, and which way it wins: chosen once (choose_goal) and used by training,
    sweeps and export."""

    metric: str
    maximize: bool

    def beats(self, value: float, best: Optional[float], loss: Optional[float] = None, best_loss=None) -> bool:
        """Whether ``value`` improves on ``best``; a tie goes to the lower validation loss (common for accuracy on a
        few hundred validation images)."""
        if best is None:
            return True
        if value == best and self.metric != "loss" and loss is not None and best_loss is not None:
            return loss < best_loss
        return value > best if self.maximize else value < best


def choose_goal(spec: TaskSpec, cfg) -> Goal:
    """cfg.metric, else the first metric the task declares; higher wins unless the task declares the metric
    lower-is-better (cfg.greater_is_better overrides). A metric the task does not report is a config error."""
    metric = cfg.metric or spec.metrics[0]
    if metric not in spec.metrics:
        raise ToolkitError(
            f"metric '{metric}' is not a validation metric of task '{spec.name}'. Choose one of: "
            f"{', '.join(spec.metrics)}."
        )
    maximize = cfg.greater_is_better if cfg.greater_is_better is not None else metric not in spec.lower_is_better
    return Goal(metric, maximize)


def describe(spec: TaskSpec) -> dict[str, Any]:
    """A task as plain data (for listings and the studio)."""
    return {
        "name": spec.name,
        "aliases": list(spec.aliases),
        "description": spec.description,
        "example_config": spec.example_config,
        "metrics": list(spec.metrics),
        "lower_is_better": list(spec.lower_is_better),
        "has_app": spec.app is not None,
        "can_evaluate": spec.evaluate_run is not None,
    }
