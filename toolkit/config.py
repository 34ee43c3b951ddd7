"""Typed run configuration: dataclasses, YAML files, dotted ``key=value`` overrides.

Every value passes through :func:`build_config`, so a typo or a wrong type in a file
or on the command line gets the same error naming the key and what would be valid.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import yaml

from .errors import ToolkitError
from .tasks import all_tasks, get_task

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


# ----- declaring keys -----
def at_least(low: float) -> tuple[str, Callable]:
    return f"at least {low}", lambda v: v >= low


def above(low: float) -> tuple[str, Callable]:
    return f"above {low}", lambda v: v > low


def between(low: float, high: float, high_open: bool = False) -> tuple[str, Callable]:
    if high_open:
        return f"from {low} up to (not including) {high}", lambda v: low <= v < high
    return f"from {low} to {high}", lambda v: low <= v <= high


def setting(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    check: tuple | None = None,
    *,
    factory: Callable | None = None,
    shown: str | None = None,
    role: "DataRole | None" = None,
    model_source: bool = False,
):
    """A config key: its default, what it means (the configuration reference is generated from it), the values
    allowed for a number (``at_least(1)``, ``between(0, 1)``: checked when a config loads), and, for a data
    column, the role it plays. ``shown``: the default as the reference prints it, when the value alone misleads.
    ``model_source``: the key names weights to load (the studio refuses those from its uploads)."""
    metadata = {"doc": doc, "check": check, "shown": shown, "role": role, "model_source": model_source}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type, doc: str = ""):
    """A nested section (``peft:``, ``generation:``...) of its own dataclass; ``doc`` defaults to its docstring."""
    return field(default_factory=cls, metadata={"doc": doc or (cls.__doc__ or "").strip(), "section": True})


@dataclass(frozen=True)
class DataRole:
    """What a data column means to a task: the studio offers one column picker per role, errors and the data
    preview name it. ``kind``: text, label, image or name (a field name, not a column of its own), ``guesses``:
    column names tried, in order, when the configured one is not in the data."""

    name: str
    kind: str
    guesses: tuple = ()
    required: bool = True


# ----- every task -----
@dataclass
class DataConfig:
    """Where the data is. A task's own data class adds the columns it reads (its data roles)."""

    train: Optional[str] = setting(
        None,
        "CSV, TSV, JSON, JSONL, Parquet, a folder of such shards, a `save_to_disk` folder, or a hub dataset id "
        "(`id` or `id:split`); image tasks also take the sources listed on their page",
        shown="unset",
    )
    validation: Optional[str] = setting(
        None, "the same kinds of source; unset: `holdout` of train validates", shown="unset"
    )
    test: Optional[str] = setting(
        None, "the same kinds of source; scored at the end of training and by `toolkit eval`", shown="unset"
    )
    holdout: float = setting(
        0.1,
        "without `data.validation`, this fraction of train validates; `0`: none, `best/` is the final weights",
        between(0, 1, True),
    )
    max_train_rows: Optional[int] = setting(None, "a seeded sample of N training rows", at_least(1), shown="all")
    max_eval_rows: Optional[int] = setting(
        None, "a seeded sample of N validation rows (evaluated at every evaluation)", at_least(1), shown="all"
    )
    max_test_rows: Optional[int] = setting(None, "a seeded sample of N test rows", at_least(1), shown="all")
    streaming: bool = setting(
        False,
        "read train as a stream, for data larger than memory or disk: shuffled through a buffer, trained for "
        "`max_steps` (no epochs; `eval_every: epoch` means every tenth of the steps), resumed exactly; without "
        "`data.validation` its first `max_eval_rows` (1,000) rows validate",
    )
    shuffle_buffer: int = setting(10_000, "examples in a stream's shuffle buffer", at_least(1))
    checks: Literal["warn", "error", "off"] = setting(
        "warn",
        "the data checks run before training (duplicates, leakage, labels, imbalance, truncation, ...; "
        "`toolkit check`): `warn` prints each with its fix, `error` refuses data that fails one, `off` skips them",
    )


@dataclass
class PeftConfig:
    """LoRA through peft; `enabled: false` trains the whole model."""

    enabled: bool = setting(False, "LoRA through peft; false trains the whole model")
    r: int = setting(8, "LoRA rank", at_least(1))
    alpha: int = setting(16, "LoRA scaling", above(0))
    dropout: float = setting(0.1, "LoRA dropout", between(0, 1, True))
    target_modules: Optional[list[str]] = setting(
        None, "modules that get adapters (unset: peft's default for the architecture)", shown="model default"
    )
    merge: bool = setting(True, "fold the adapters into the saved `best/` model at the end")


@dataclass
class Config:
    """The keys of every task. A task's config class (`TaskSpec.config`) subclasses it with its own keys and
    sections, and a narrower `data` class with its columns."""

    task: str = setting("", "the task, by name or alias (`toolkit tasks` lists them)", shown="required")
    model: str = setting(
        DEFAULT_TEXT_MODEL,
        "hub id or local folder of the pretrained model (a task may take other "
        "kinds: see its page); this id resolves to the PyPI-packaged copy when installed",
        model_source=True,
    )
    data: DataConfig = section(DataConfig)
    epochs: float = setting(3.0, "passes over the training data (fractions allowed)", above(0))
    max_steps: Optional[int] = setting(None, "optimizer steps; wins over `epochs` when set", at_least(1), shown="unset")
    max_train_minutes: Optional[float] = setting(
        None,
        "stop training after this much training time; the learning rate then decays over the budget, not only "
        "the steps, so a run stopped by time has annealed. After its first steps the run logs the step rate it "
        "measured and how many of the planned steps the budget covers (results.json `budget`), with a warning when "
        "that is under a quarter",
        above(0),
        shown="unset",
    )
    license: Optional[str] = setting(None, "the model card's license", shown="the base model's, where known")
    batch_size: int = setting(32, "training batch per process", at_least(1))
    eval_batch_size: Optional[int] = setting(None, "evaluation batch", at_least(1), shown="2 x `batch_size`")
    grad_accum: int = setting(1, "gradient accumulation steps", at_least(1))
    lr: float = setting(5e-5, "peak learning rate; AdamW (fused)", at_least(0))
    weight_decay: float = setting(0.01, "AdamW weight decay", at_least(0))
    warmup_ratio: float = setting(0.06, "fraction of the steps spent warming up", between(0, 1))
    scheduler: Literal["linear", "cosine", "constant"] = setting("linear", "the learning rate after warm-up")
    max_grad_norm: Optional[float] = setting(1.0, "gradient clipping; `null`: none", at_least(0))
    group_by_length: bool = setting(
        True,
        "length-grouped batches, shuffled in groups of 4 (the least padding). false: "
        "random batches; on the CPU each runs as `micro_batches` length-sorted pieces "
        "with the whole batch's gradient",
    )
    micro_batches: Optional[int] = setting(
        None,
        "pieces per random batch (`group_by_length: false`), sorted by "
        "length; unset: batch_size / 8 on the CPU, 1 on a GPU",
        at_least(1),
        shown="unset",
    )
    precision: Literal["auto", "no", "fp16", "bf16"] = setting(
        "auto",
        "`auto`: bf16 where the GPU or the CPU computes it natively (AMX, AVX512-BF16, Arm BF16), fp16 with "
        "loss scaling on GPUs without bf16, else fp32; where the CPU's flags cannot be read (macOS, Windows) or on "
        "Apple MPS, a few timed steps each way decide, cached in `~/.cache/toolkit/precision.json`. Or `no` (fp32), "
        "`fp16`, `bf16`: an explicit value always wins. The run records the choice and why (first log line, "
        "results.json, model card, studio). The environment variable `TOOLKIT_PRECISION` (no, bf16, fp16) sets "
        "what `auto` means on a machine",
    )
    eval_precision: Literal["auto", "no", "fp16", "bf16"] = setting(
        "auto",
        "what evaluation computes in: validation, `best/`'s choice, test, and later `toolkit eval`, predictions and "
        "serving. `auto`: the training precision where the machine's `precision: auto` trains in it too (native "
        "bf16 CPUs, GPUs), else fp32. results.json records it; `toolkit eval` uses it unless `--precision` says "
        "otherwise",
    )
    dropout_draws: Literal["auto", "packed", "torch"] = setting(
        "auto",
        "how dropout draws its random numbers: `packed` cuts each 64-bit draw into four 16-bit ones (the same "
        "masks for a quarter of the draws; a MiniLM step 19% faster on a 2-core CPU), `torch` is torch's own; "
        "`auto`: packed on the CPU, torch's own on a GPU (its kernels draw in parallel)",
    )
    seed: int = setting(
        42, "random seed: model initialisation, data order, row samples, the holdout split", between(0, 2**32 - 1)
    )
    eval_every: Union[int, Literal["epoch"]] = setting(
        "epoch", "evaluate every N optimizer steps, or once per epoch; the final step is always evaluated", at_least(1)
    )
    save_every: Optional[int] = setting(
        None, "extra `last/` checkpoints every N steps, for resume", at_least(1), shown="unset"
    )
    metric: Optional[str] = setting(
        None, "the validation metric that picks `best/` (the task's page lists them)", shown="the task's first metric"
    )
    greater_is_better: Optional[bool] = setting(
        None, "whether a higher `metric` wins", shown="from the task's metrics (lower wins for loss)"
    )
    patience: Optional[int] = setting(
        None, "early stopping: evaluations without improvement", at_least(1), shown="unset"
    )
    log_every: int = setting(10, "log training loss and learning rate every N steps", at_least(1))
    trackers: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] = setting(
        doc="where the run logs its config, metrics and artifacts besides metrics.jsonl, through Accelerate's "
        "trackers; each one's settings come from its environment variables (docs/tracking.md). A resumed run "
        "continues the same tracker run; a tracker that fails is dropped with a warning and training goes on",
        factory=lambda: ["tensorboard"],
    )
    output_dir: Optional[str] = setting(
        None,
        "the run folder; when that already holds a run, `runs/<config name>-<date>-<time>`",
        shown="`runs/<config name>`",
    )
    resume: bool = setting(False, "continue the run in `output_dir` from its `last/` checkpoint")
    overwrite: bool = setting(False, "replace `output_dir`, only if it holds a toolkit run (a `.toolkit-run` marker)")
    num_workers: Optional[int] = setting(
        None,
        "DataLoader worker processes. Unset: none for tokenized text; for images decoded per item, up to 4 "
        "leaving one CPU for the model, none on 2 CPUs or fewer. CPUs are the ones this process may use (affinity, "
        "cgroup quota), which also set torch's threads (OMP_NUM_THREADS wins)",
        at_least(0),
        shown="unset",
    )
    trust_remote_code: bool = setting(False, "run the model repository's own Python code; never on unless you ask")
    # "auto": eager attention on the CPU (its SDPA backward was 20-35% slower for short texts here), else SDPA.
    attn_implementation: str = setting(
        "auto",
        "transformers attention: `auto` is eager on the CPU (faster for short "
        "texts there), SDPA on a GPU; or a transformers name (`sdpa`, `eager`)",
    )

    def base_model(self) -> Optional[str]:
        """The pretrained model this run starts from (the model card's base_model), or None for one from scratch."""
        return self.model

    def eval_split(self) -> str:
        """The split `toolkit eval` scores when none is named: test if the run has one, else validation."""
        return "test" if self.data.test else "validation"

    def search_space(self) -> dict:
        """What a sweep searches for this task beyond the shared keys (learning rate, epochs, batch size, warm-up,
        decay, LoRA rank): {config key: {low, high[, log, step]} or {choices: [...]}, or None to leave a shared key
        out}."""
        return {}

    def __reduce__(self):
        # A task's config class may be defined where another process cannot import it by name: rebuild from values.
        return build_config, (config_to_dict(self), False)


@dataclass
class TextConfig(Config):
    """Keys of the tasks that fine-tune a transformers text model."""

    max_length: int = setting(128, "input tokens; dynamic padding up to it", at_least(2))
    peft: PeftConfig = section(PeftConfig)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, task: str = "") -> Any:
    """Check ``value`` against the annotation ``tp``; convert only lossless cases (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key, task)
            except ToolkitError:
                continue
    elif origin is Literal:
        # YAML 1.1 reads a bare no or off (precision: no, data.checks=off) as false
        for word in ("no", "off"):
            if value is False and word in typing.get_args(tp):
                return word
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
    elif origin is list:
        if isinstance(value, str):  # CLI: a,b,c
            value = [v for v in value.split(",") if v]
        if isinstance(value, list):
            (item_tp,) = typing.get_args(tp)
            return [_coerce(v, item_tp, f"{key}[{i}]", task) for i, v in enumerate(value)]
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 3e-5 (no dot) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, prefix=f"{key}.", task=task)
    raise ToolkitError(f"config key '{key}' has value {value!r} ({type(value).__name__}); expected {_type_name(tp)}.")


def _build(cls: type, values: dict, prefix: str = "", task: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ToolkitError(
                f"unknown config key '{prefix}{key}'.{_key_hint(str(key), names, prefix, task)} "
                f"Valid keys here: {', '.join(prefix + n for n in names)}."
            )
        kwargs[key] = _coerce(value, hints[key], prefix + key, task)
    return cls(**kwargs)


def _key_hint(key: str, names: list[str], prefix: str, task: str) -> str:
    """Close keys, or the tasks whose key it is (``gan.latent_dim`` in a translation config)."""
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    if close:
        return f" Did you mean {', '.join(prefix + c for c in close)}?"
    if not task:
        return ""

    owners = [spec.name for spec in all_tasks() if has_key(spec.config, f"{prefix}{key}")]
    return f" It is a key of task {' and '.join(owners)}, not of '{task}'." if owners else ""


def has_key(cls: type, dotted: str) -> bool:
    for part in dotted.split("."):
        found = {f.name: f for f in dataclasses.fields(cls)}.get(part)
        if found is None:
            return False
        cls = typing.get_type_hints(cls)[part]
    return True


def config_class(task: str) -> type:
    """The config dataclass of ``task`` (a name or an alias): :class:`Config` with the task's own keys."""
    return get_task(task).config


def _parse_scalar(text: str) -> Any:
    """A CLI value is read as YAML, so ``lr=3e-5``, ``peft.enabled=true`` and ``x=null`` work."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``dotted.key=value`` strings to a nested dict (a copy)."""
    out = copy.deepcopy(values)
    for item in overrides:
        if "=" not in item:
            raise ToolkitError(f"override '{item}' is not of the form key=value (e.g. lr=3e-5).")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ToolkitError(f"override '{item}': '{part}' is not a section.")
        node[parts[-1]] = _parse_scalar(raw)
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"config file '{path}' does not exist. Shipped configs live in recipes/configs/.")
    try:
        text = path.read_text(encoding="utf-8")
        if "\x00" in text:
            raise ToolkitError(
                f"config file '{path}' is not a text file (it holds binary data). Give a YAML config "
                f"(see recipes/configs/)."
            )
        values = yaml.safe_load(text) or {}
    except UnicodeDecodeError as err:
        raise ToolkitError(
            f"config file '{path}' is not a text file (not UTF-8). Give a YAML config (see recipes/configs/)."
        ) from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ToolkitError(
            f"config file '{path}' is not valid YAML{where}: {problem}. Fix that line "
            f"(indent with spaces, 'key: value')."
        ) from err
    if not isinstance(values, dict):
        raise ToolkitError(f"config file '{path}' must hold a mapping of keys to values.")
    return values


def build_config(values: dict, ranges: bool = True) -> Config:
    """Validate plain values (from YAML and overrides) into the config class of their ``task``; ``ranges=False``
    skips the range checks and drops sections no key of the task has (a finished run's saved config, which an older
    version may have written)."""
    task = values.get("task")
    if not isinstance(task, str) or not task:
        known = ", ".join(spec.name for spec in all_tasks())
        raise ToolkitError(f"the config does not say which task it trains: add `task: NAME` (one of: {known}).")
    cls = config_class(task)
    if not ranges:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names or not isinstance(v, dict)}
    cfg = _build(cls, values, task=task)
    if ranges:
        check_ranges(cfg)
    return cfg


def check_ranges(cfg: Any, prefix: str = "") -> None:
    """Every number against the values its key allows (``setting(check=...)``), sections included."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{key}.")
            continue
        check = f.metadata.get("check")
        if check and isinstance(value, (int, float)) and not isinstance(value, bool):
            allowed, ok = check
            if not (math.isfinite(value) and ok(value)):
                raise ToolkitError(f"config key '{key}' is {value!r}; it must be {allowed}.")


def load_config(
    source: str | Path | dict | Config, overrides: list[str] | None = None, settings: dict | None = None
) -> Config:
    """Load a config from a YAML path, a dict or a Config, then apply ``key=value`` overrides and keyword
    ``settings`` (nested dicts, or ``__`` for dots: ``data__train="x.csv"``), and check it once."""
    if isinstance(source, Config):
        values = config_to_dict(source)
    elif isinstance(source, dict):
        values = source
    else:
        values = read_yaml(source)
    values = apply_overrides(values, overrides or [])
    for key, value in (settings or {}).items():
        _merge(values, key.replace("__", ".").split("."), value)
    return build_config(values)


def _merge(values: dict, path: list[str], value: Any) -> None:
    node = values
    for part in path[:-1]:
        node = node.setdefault(part, {})
    if isinstance(value, dict) and isinstance(node.get(path[-1]), dict):
        for key, inner in value.items():
            _merge(node[path[-1]], [key], inner)
    else:
        node[path[-1]] = value


def model_sources(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of the keys that name weights to load (``setting(model_source=True)``), sections included."""
    found = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            found.update(model_sources(value, f"{prefix}{f.name}."))
        elif f.metadata.get("model_source"):
            found[prefix + f.name] = value
    return found


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
