"""The predictor base class and :func:`load_predictor`, without importing torch: a run exported to ONNX answers
through ONNX Runtime alone, which starts in a fraction of the time torch and transformers take to import."""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from pathlib import Path
from typing import Callable, Union

from . import precision
from .checkpoint import find_checkpoint
from .errors import ToolkitError
from .precision import name_of as precision_name
from .tasks import InputBounds, get_task

EXPORT_DIR = "onnx"  # inside a checkpoint folder: best/onnx/, written by `toolkit export`
EXPORT_INFO = "export.json"
BACKENDS = ("auto", "onnx", "torch")


def choose_device(device: str | None = None):
    """The given device, else the GPU when there is one (a torch.device)."""
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


class Predictor:
    """What every predictor shares: one constructor ``(folder, cfg=None, batch_size=None, device=None,
    precision=None)`` (the checkpoint folder and the run's config), the device, the precision its model computes in,
    input checks, and batches of similar length.

    A subclass loads its model in :meth:`load` and answers one batch in :meth:`predict_batch`, calling its model
    inside :meth:`computing`; calling the predictor with one input gives one answer, with a list gives a list of
    answers in input order.
    """

    default_batch_size = 32
    cpu_batch_size: int | None = None  # where it differs on a CPU (padding there costs compute, not idle lanes)
    uses_torch = True  # False for a backend that runs without torch (ONNX Runtime): it is then never imported
    task_verb = "predict"  # in the message for an empty input: "give some text to <verb>"
    sort_by_length = True  # batches of similar length (least padding); False: in input order, as training evaluated
    reads_windows = False  # True: a long input is read whole, in windows of max_length tokens (else it is cut)

    def __init__(
        self,
        folder: Union[str, Path],
        cfg=None,
        batch_size: int | None = None,
        device: str | None = None,
        precision: str | None = None,
    ):
        self.folder = Path(folder)
        self.cfg = cfg if cfg is not None else run_config_of(self.folder)
        self.device = choose_device(device) if self.uses_torch else device or "cpu"
        on_cpu = str(self.device).startswith("cpu") and self.cpu_batch_size
        self.batch_size = batch_size or (self.cpu_batch_size if on_cpu else self.default_batch_size)
        self.precision = self.choose_precision(precision)
        self.bounds = self.task().input_bounds
        self.load()

    def task(self):
        return get_task(self.cfg.task)

    def choose_precision(self, requested: str | None) -> str:
        """fp32, bf16 or fp16: ``requested``, else the run's evaluation precision on this machine, as its training
        evaluated (toolkit/precision.py). An ONNX export computes in the precision it was written in."""
        from .run import CONFIG_FILE

        if not self.uses_torch:
            return "fp32"
        if requested:
            return precision.name_of(requested)
        run_dir = self.folder.parent if (self.folder.parent / CONFIG_FILE).is_file() else None
        return precision.for_run(self.cfg, run_dir).name

    def attention(self) -> dict:
        """The attention implementation the run trained and evaluated with (eager on the CPU for `auto`), for a
        transformers model's from_pretrained: another one computes other roundings, which bf16 makes visible."""
        from .models import attention_backend

        chosen = attention_backend(self.cfg.attn_implementation)
        return {"attn_implementation": chosen} if chosen else {}

    def computing(self, module=None):
        """The context each forward pass runs in: the predictor's precision on its device (``module``: the model
        called, default ``self.model``)."""
        return precision.computing(module if module is not None else self.model, self.precision, self.device.type)

    def load(self) -> None:
        raise NotImplementedError

    def predict_batch(self, inputs: list, **options) -> list:
        raise NotImplementedError

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, str)

    def check(self, inputs: list) -> None:
        check_texts(inputs, self.task_verb)

    def input_size(self, item) -> int | None:
        """An input's size in characters, for the task's bound (None: not text, checked its own way)."""
        return len(item) if isinstance(item, str) else None

    def oversize(self, item, number: int = 1) -> str | None:
        """Why input ``number`` is over the task's max_chars (toolkit.tasks.InputBounds), or None when it is not."""
        limit = self.bounds.max_chars if self.bounds else None
        size = self.input_size(item) if limit is not None else None
        if size is None or size <= limit:
            return None
        length = getattr(self.cfg, "max_length", None)
        reads = f" (the model reads only its first {length} tokens)" if length and not self.reads_windows else ""
        return (
            f"input {number} has {size:,} characters, over the {limit:,} that a {self.cfg.task} model takes per "
            f"input: split it into parts, or cut it{reads}."
        )

    def check_bounds(self, inputs: list) -> None:
        """Each input within the task's bound: a longer one is refused before anything is read."""
        for i, item in enumerate(inputs):
            message = self.oversize(item, i + 1)
            if message:
                raise ToolkitError(message)

    @contextlib.contextmanager
    def unbounded(self):
        """Within: no input bound (evaluation scores a whole data file, long rows included)."""
        bounds, self.bounds = self.bounds, None
        try:
            yield self
        finally:
            self.bounds = bounds

    def __call__(self, inputs, **options):
        if self.is_single(inputs):
            return self([inputs], **options)[0]
        inputs = list(inputs) if isinstance(inputs, tuple) else inputs
        self.check(inputs)
        self.check_bounds(inputs)
        return self.in_batches(inputs, lambda chunk: self.predict_batch(chunk, **options))

    def length_of(self, item) -> int:
        """What batches are sorted by (see :meth:`in_batches`): an input's length."""
        return len(item)

    def in_batches(self, inputs: list, answer: Callable[[list], list], by_length: bool = True) -> list:
        """``answer`` over batches of ``batch_size``; by length, text is sorted first so that each batch pads little.
        Answers come back in input order."""
        by_length = by_length and self.sort_by_length
        order = list(range(len(inputs)))
        if by_length:
            order.sort(key=lambda i: self.length_of(inputs[i]))
        answers: list = [None] * len(inputs)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, result in zip(chunk, answer([inputs[i] for i in chunk])):
                answers[i] = result
        return answers


def bounds_of(predictor):
    """A predictor's input bounds; a task's own predictor class that does not subclass Predictor gets the defaults."""
    return getattr(predictor, "bounds", None) or InputBounds()


def logits_in_parts(logits: Callable, feed: dict, rows: int):
    """``logits(feed)`` over at most ``rows`` rows (windows of long texts) at a time, concatenated: a long input's
    many windows then take one batch's memory, not all of theirs at once. ``logits`` may return a tuple of arrays."""
    import numpy as np

    total = len(next(iter(feed.values())))
    parts = [logits({k: v[start : start + rows] for k, v in feed.items()}) for start in range(0, total, rows)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*parts))
    return np.concatenate(parts)


def check_texts(texts, what: str = "classify") -> None:
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise ToolkitError("predict takes a string or a list of strings.")
    for i, text in enumerate(texts):
        if not text.strip():
            raise ToolkitError(f"input {i + 1} is empty: give some text to {what}.")
        bad = next((ch for ch in text if "\ud800" <= ch <= "\udfff"), None)
        if bad is not None:  # bytes that were not UTF-8, kept by Python as lone surrogates
            position = text.index(bad)
            raise ToolkitError(
                f"input {i + 1} is not valid UTF-8 text (a byte 0x{ord(bad) & 0xFF:02X} at character "
                f"{position + 1}): save or type it as UTF-8."
            )


def run_config_of(folder: Path):
    """The config of the run a checkpoint folder belongs to (best/ or last/ inside a run folder)."""
    from .run import CONFIG_FILE, read_run_config

    if not (folder.parent / CONFIG_FILE).is_file():
        raise ToolkitError(
            f"'{folder}' is not a checkpoint inside a run folder: pass the run's config as cfg=, "
            f"or load the run with toolkit.load(RUN)."
        )
    return read_run_config(folder.parent)


def load_predictor(run_dir: Union[str, Path], checkpoint: str = "best", backend: str = "auto", **kwargs):
    """The predictor for a run directory (or a checkpoint folder inside one).

    ``backend``: "auto" uses the checkpoint's ONNX export when it has one (`toolkit export`), else torch;
    "onnx" requires the export; "torch" always loads the original weights. ``precision=`` bf16 or fp16 (given, not
    chosen by the run) takes the torch weights: an export computes in fp32.
    """
    from .run import PUSHED_CONFIG, read_run_config

    if backend not in BACKENDS:
        raise ToolkitError(f"unknown backend '{backend}': use one of {', '.join(BACKENDS)}.")
    run_dir = pushed_or_local(run_dir)
    if (run_dir / PUSHED_CONFIG).is_file():  # a checkpoint pushed to the Hub (toolkit push), with its run's config
        cfg, folder = read_run_config(run_dir, PUSHED_CONFIG), run_dir
    else:
        if (run_dir / "config.json").is_file() and not (run_dir / "config.yaml").is_file():
            run_dir, checkpoint = run_dir.parent, run_dir.name  # given best/ or last/ directly
        cfg = read_run_config(run_dir)
        folder = find_checkpoint(run_dir, checkpoint, intact=True)
    if folder is None:
        raise ToolkitError(
            f"run '{run_dir}' has no {checkpoint}/ checkpoint yet. Train it first (or resume it) with `toolkit train`."
        )
    lower = kwargs.get("precision") and precision_name(kwargs["precision"]) != "fp32"
    if lower and backend == "onnx":
        raise ToolkitError(
            f"an ONNX export computes in fp32 (or int8), not {kwargs['precision']}: use --backend torch for it."
        )
    export = read_export(folder) if backend != "torch" and not lower else None  # bf16/fp16: the torch weights
    if backend == "onnx" and export is None:
        raise ToolkitError(
            f"{folder} has no ONNX export. Write one with `toolkit export {run_dir}`, or use --backend torch."
        )
    if export is not None and backend != "torch":
        return export_predictor(export["predictor"], folder, cfg)(folder, cfg, **kwargs)
    from .models import no_transformers_bars

    with no_transformers_bars():
        return get_task(cfg.task).predictor(folder, cfg, **kwargs)


def pushed_or_local(source: Union[str, Path]) -> Path:
    """A local folder as it is; a Hub repository id that `toolkit push` wrote, downloaded (or from the Hub's cache
    with HF_HUB_OFFLINE=1)."""
    path = Path(source)
    if path.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)):
        return path
    from huggingface_hub import snapshot_download

    from .hub import hub_guard

    with hub_guard(str(source)):
        return Path(snapshot_download(str(source)))


def export_predictor(recorded: str, folder: Path, cfg):
    """The predictor class an export record names ("module:Class"). An export written before its task's code moved
    names a module that no longer holds the class: the class of that name in the task's own package answers."""
    module, _, name = recorded.partition(":")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):  # the module itself is gone, not a library it needs
            found = None
        else:
            raise _missing_library(folder, err) from err
    except ImportError as err:
        raise _missing_library(folder, err) from err
    if found is None:
        task_package = importlib.import_module(get_task(cfg.task).build.__module__)
        found = getattr(task_package, name, None)
    if found is None:
        raise ToolkitError(
            f"the ONNX export in {folder} names a predictor ({recorded}) that this version of toolkit does not have. "
            f"Write the export again with `toolkit export {folder.parent}`, or use --backend torch."
        )
    return found


def names_on_demand(package: str, where: dict[str, str]):
    """A task package's module ``__getattr__`` that imports each of ``where``'s names (name -> module) when first
    asked, so that declaring the task loads no torch: the export loader finds a moved predictor class by its name
    in the task's package (:func:`export_predictor`)."""

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def _missing_library(folder: Path, err: ImportError) -> ToolkitError:
    return ToolkitError(
        f"{folder} holds an ONNX export, but {err.name} is not installed: pip install 'toolkit[onnx]', or use "
        f"--backend torch."
    )


def read_export(folder: Path) -> dict | None:
    """The checkpoint's ONNX export record ({"predictor": "module:Class", "file", "quantized", ...}), or None."""
    info = Path(folder) / EXPORT_DIR / EXPORT_INFO
    if not info.is_file():
        return None
    try:
        record = json.loads(info.read_text())
        if (Path(folder) / EXPORT_DIR / record["file"]).is_file() and ":" in record["predictor"]:
            return record
    except (ValueError, KeyError, TypeError):
        pass
    raise ToolkitError(
        f"the ONNX export in {Path(folder) / EXPORT_DIR} is incomplete or damaged. Write it again with "
        f"`toolkit export`, or delete that folder to use the torch weights."
    )
