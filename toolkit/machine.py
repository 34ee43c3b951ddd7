"""The machine a run trains on: the precision it computes in (``precision: auto`` chosen from the hardware,
toolkit/hardware.py), the evaluation precision, and torch's threads, decided once per run (toolkit/plan.py)."""

from __future__ import annotations

import logging
import os

import torch

from . import hardware, precision
from .config import Config

log = logging.getLogger(__name__)


def cpu_only() -> bool:
    """No accelerator here: tell accelerate, so that a multi-process launch becomes gloo DDP on the CPU."""
    xpu = getattr(torch, "xpu", None)
    return not torch.cuda.is_available() and not (xpu is not None and xpu.is_available())


def fit_machine(cfg: Config, local_processes: int = 1) -> dict:
    """Precision and threads for this machine (``precision: auto`` chosen from the hardware, see toolkit/hardware.py);
    sets torch's intra-op threads and logs the choice as the run's first line. Returns what the run records."""
    machine = hardware.detect(torch)
    choice = hardware.choose_precision(cfg.precision, machine)
    evaluation = precision.choose_eval_precision(cfg.eval_precision, choice.name, machine)
    threads = hardware.torch_threads(local_processes)
    torch.set_num_threads(threads)
    draws = dropout_draws(cfg.dropout_draws)
    why = f"auto: {choice.reason}" if cfg.precision == "auto" else choice.reason
    log.info(
        "precision %s (%s); evaluation in %s (%s); %d torch threads; %s dropout draws; %s",
        choice.name,
        why,
        evaluation.name,
        evaluation.reason,
        threads,
        draws,
        hardware.describe(machine),
    )
    return {
        "precision": choice.as_dict(),
        "eval_precision": evaluation.as_dict(),
        "threads": threads,
        "dropout_draws": draws,
        "hardware": hardware.describe(machine),
        "mixed_precision": choice.precision,
    }


def dropout_draws(choice: str) -> str:
    """``dropout_draws: auto``: packed random numbers (toolkit/dropout.py) on the CPU, where each value's own draw is
    slow; torch's own where a GPU draws them in parallel."""
    if choice != "auto":
        return choice
    return "packed" if cpu_only() else "torch"


def local_process_count(accelerator_or_state) -> int:
    """Training processes on this machine (torchrun/accelerate set LOCAL_WORLD_SIZE), which share its CPUs."""
    return int(os.environ.get("LOCAL_WORLD_SIZE") or accelerator_or_state.num_processes)
