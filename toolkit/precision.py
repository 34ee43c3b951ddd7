"""How a model computes when it is evaluated or answers: one rule for the engine's evaluations, `toolkit eval`, the
predictors and serving, so that the metrics a run records are what its saved model gives on the same machine.

The rule (``eval_precision: auto``): evaluate in the run's training precision where this machine's ``precision:
auto`` would train in it too (bf16 on a CPU with native bf16, bf16 or fp16 on a GPU), else in fp32. So a machine
evaluates at the speed it trains at, and a bf16 run on a CPU that only emulates bf16 is scored in fp32.

torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

from . import hardware
from .errors import ToolkitError


def name_of(precision: str) -> str:
    """fp32, bf16 or fp16 from any spelling the config or the command line takes (accelerate says "no" for fp32)."""
    if precision not in hardware.PRECISION_NAMES:
        raise ToolkitError(f"unknown precision '{precision}': use one of fp32, bf16, fp16.")
    return hardware.PRECISION_NAMES[precision]


def choose_eval_precision(requested: str, trained: str, machine: hardware.Machine) -> hardware.PrecisionChoice:
    """The precision evaluation computes in. ``requested``: the config's eval_precision (auto, no, bf16, fp16);
    ``trained``: the precision the run trained in (fp32, bf16, fp16)."""
    if requested != "auto":
        return hardware.PrecisionChoice(name_of(requested), "set in the config", requested)
    trained = name_of(trained)
    if trained == "fp32":
        return hardware.PrecisionChoice("fp32", "the run trained in fp32")
    here = hardware.choose_precision("auto", machine)
    if here.name == trained:
        return hardware.PrecisionChoice(trained, f"the run's precision, which this machine computes ({here.reason})")
    return hardware.PrecisionChoice(
        "fp32", f"the run trained in {trained}, which this machine does not compute at full speed ({here.reason})"
    )


def for_run(cfg, run_dir: Optional[Path], machine: Optional[hardware.Machine] = None) -> hardware.PrecisionChoice:
    """The evaluation precision of a run's predictors on this machine: its config's eval_precision, resolved against
    the precision it trained in (results.json's record, else what its config gives on this machine)."""
    machine = machine or hardware.detect(sys.modules.get("torch"))
    trained = recorded(run_dir, "precision") if run_dir is not None else None
    if trained is None:
        trained = hardware.choose_precision(cfg.precision, machine).name
    return choose_eval_precision(cfg.eval_precision, trained, machine)


def recorded(run_dir: Path, key: str = "eval_precision") -> Optional[str]:
    """The precision results.json records under ``key`` (eval_precision: what the run's metrics were computed in;
    precision: what it trained in), or None for a run without one."""
    try:
        return json.loads((Path(run_dir) / "results.json").read_text())[key]["chosen"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def computing(module, precision: str, device_type: str):
    """The context a model's evaluation runs in: autocast to ``precision`` (nothing for fp32), with ``module``'s
    outputs back in fp32, as accelerate's training wrapper gives them, so what follows a forward pass (softmax, argmax,
    losses) computes the same on every side."""
    if name_of(precision) == "fp32":
        return contextlib.nullcontext()
    return _autocast_with_fp32_outputs(module, name_of(precision), device_type)


@contextlib.contextmanager
def _autocast_with_fp32_outputs(module, precision: str, device_type: str):
    import torch
    from accelerate.utils import convert_to_fp32

    handle = module.register_forward_hook(lambda _module, _args, output: convert_to_fp32(output))
    try:
        with torch.autocast(device_type, dtype=getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[precision])):
            yield
    finally:
        handle.remove()


@contextlib.contextmanager
def without_training_wrapper(module):
    """accelerate's prepare() replaces the model's forward with one under the training precision's autocast, keeping
    the plain one as ``_original_forward``: inside this context the model computes with the plain one."""
    wrapped, plain = module.__dict__.get("forward"), module.__dict__.get("_original_forward")
    if wrapped is None or plain is None:
        yield
        return
    module.forward = plain
    try:
        yield
    finally:
        module.forward = wrapped
