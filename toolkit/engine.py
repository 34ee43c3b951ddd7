"""The one training loop every task shares, on Accelerate.

A recipe builds a :class:`Task` (model, data, how a batch becomes a loss, how predictions become
metrics, how a checkpoint is written); :func:`fit` does the rest: precision, accumulation,
clipping, schedule, evaluation, best/last checkpoints, early stopping, logging and resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from . import checkpoint as ckpt
from . import dropout, hardware, interrupt, precision, timing, tracking
from . import run as runlib
from .batching import (
    Indexed,
    MicroBatches,
    ShuffledLengthGroups,
    micro_batch_count,
    split_by_length,
    without_length,
)
from .config import Config, config_to_dict
from .errors import ToolkitError, TrainingStopped
from .machine import cpu_only
from .streams import ShuffledStream, is_stream, shard_for_this_process

if TYPE_CHECKING:
    from .plan import Plan

log = logging.getLogger(__name__)


@dataclass
class Task:
    """What a recipe hands the engine."""

    model: torch.nn.Module
    train_set: Sequence
    eval_set: Optional[Sequence]
    collate: Callable
    compute_loss: Callable  # (model, batch) -> scalar loss
    evaluate: Callable  # (model, loader, accelerator) -> metrics dict
    save: Callable  # (unwrapped model, folder, state_dict) -> None; save_pretrained layout
    train_lengths: Optional[Sequence[int]] = None  # for length-sorted micro-batches and length-grouped batches
    loss_weight: Optional[Callable] = None  # (batch) -> what its loss is a mean over; default: its examples
    test_set: Optional[Sequence] = None
    info: dict = field(default_factory=dict)  # written to results.json (e.g. labels)
    finalize: Optional[Callable] = None  # (unwrapped model, best folder) -> None, e.g. merge LoRA
    lr_scale: Optional[Callable] = None  # (parameter name) -> learning-rate multiplier, e.g. a lower one for a backbone
    train_mode: Optional[Callable] = (
        None  # (model, epoch) -> None, instead of model.train(): freeze or unfreeze by epoch
    )
    report: Optional[Callable] = None  # (results, run dir) -> None on the main process: extra artefacts, e.g. plots
    find_unused_parameters: bool = False  # DDP: some parameters get no gradient in some steps (frozen stages)
    # Several optimizers (a GAN's generator and discriminator): build them, and run one training step with them.
    optimizers: Optional[Callable] = None  # (model, cfg) -> list of optimizers; default: one AdamW over everything
    train_step: Optional[Callable] = (
        None  # (model, batch, optimizers, accelerator) -> {"loss": tensor, ...}; does its own backward/step
    )
    evaluate_first: bool = (
        False  # evaluate and checkpoint the starting weights (best/ can then never be worse than them)
    )
    heavy_loading: bool = False  # items are decoded and augmented as they load (images): DataLoader workers pay off


def make_accelerator(
    cfg: Config, run_dir: Optional[Path], find_unused_parameters: bool = False, mixed_precision: Optional[str] = None
):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    # A notebook may train twice with other precision settings; accelerate's singletons would refuse.
    AcceleratorState._reset_state()
    GradientState._reset_state()

    return Accelerator(
        cpu=cpu_only(),
        mixed_precision=mixed_precision or (cfg.precision if cfg.precision != "auto" else "no"),
        gradient_accumulation_steps=cfg.grad_accum,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)) if run_dir else None,
        # Step the schedule once per optimizer step: total steps are counted on the sharded loader.
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)]
        if find_unused_parameters
        else None,
    )


def fsdp_wrap_outside_embeddings(accelerator, model: torch.nn.Module) -> None:
    """Under FSDP2, accelerate shards each of the model's no-split modules and then the input embedding on its own.
    When a no-split module holds that embedding (BERT's BertEmbeddings), the second shard fails on torch 2.11
    ("value was None"). Wrap only the no-split modules that do not hold it; the embedding gets its own unit."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    names = list(getattr(model, "_no_split_modules", None) or [])
    if plugin is None or getattr(plugin, "fsdp_version", 1) != 2 or plugin.transformer_cls_names_to_wrap or not names:
        return
    try:
        embed = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # vision models have no input embedding
        return
    holders = {type(m).__name__ for m in model.modules() if m is not embed and any(sub is embed for sub in m.modules())}
    if holders & set(names):
        plugin.transformer_cls_names_to_wrap = [name for name in names if name not in holders]


def loader_workers(task: Task, cfg: Config) -> int:
    """cfg.num_workers, or when unset, from the CPUs this process may use and whether the task's items are heavy."""
    return cfg.num_workers if cfg.num_workers is not None else hardware.loader_workers(task.heavy_loading)


def train_loader(
    task: Task, cfg: Config, generator: torch.Generator, workers_generator: torch.Generator, pieces: int = 1
) -> DataLoader:
    if is_stream(task.train_set):
        return stream_loader(task, cfg)
    if cfg.group_by_length and task.train_lengths is not None:
        sampler = ShuffledLengthGroups(task.train_lengths, cfg.batch_size, generator)
    else:
        sampler = RandomSampler(task.train_set, generator=generator)
    dataset, collate = task.train_set, without_length(task.collate)
    if pieces > 1:
        dataset, collate = Indexed(task.train_set), split_by_length(task, pieces)
    # Own generators: a DataLoader otherwise draws its base seed from the global RNG on every iter(),
    # which would shift dropout masks after a resume.
    workers = loader_workers(task, cfg)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=collate,
        generator=workers_generator,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def stream_loader(task: Task, cfg: Config) -> DataLoader:
    """A stream's loader: this process's shard through a saved shuffle buffer (toolkit/streams.py). Not prepared
    by accelerate, which would shard it once more: its batches are moved to the device in the loop."""
    from accelerate import PartialState

    if not cfg.max_steps:
        raise ToolkitError(
            "data.streaming needs max_steps: a stream has no known length, so training runs a number of optimizer "
            "steps. Set max_steps=N (and eval_every=M)."
        )
    if cfg.group_by_length or cfg.micro_batches:
        log.info(
            "data.streaming: batches come as the stream gives them (group_by_length and micro_batches apply to "
            "tables only)"
        )
    stream = task.train_set
    if not isinstance(stream, ShuffledStream):
        state = PartialState(cpu=cpu_only())
        stream = shard_for_this_process(
            stream, cfg.data.shuffle_buffer, cfg.seed, state.process_index, state.num_processes
        )
    # Tokenized in this process as it goes: a worker would prefetch batches past the state a checkpoint saves.
    # Its own generator: iter() would otherwise draw a seed from the global RNG, shifting dropout after a resume.
    return DataLoader(
        stream,
        batch_size=cfg.batch_size,
        collate_fn=without_length(task.collate),
        num_workers=0,
        generator=torch.Generator(),
    )


def eval_loader(dataset, cfg: Config, collate, workers: int = 0) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=cfg.eval_batch_size or 2 * cfg.batch_size,
        sampler=SequentialSampler(dataset),
        collate_fn=without_length(collate),
        generator=torch.Generator(),
        num_workers=workers,
    )


def build_optimizer(model: torch.nn.Module, cfg: Config, lr_scale: Optional[Callable] = None):
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            # No weight decay on biases and norms, as in BERT's recipe.
            decay = cfg.weight_decay if param.ndim >= 2 else 0.0
            lr = cfg.lr * (lr_scale(name) if lr_scale else 1.0)
            groups.setdefault((decay, lr), {"params": [], "weight_decay": decay, "lr": lr})["params"].append(param)
    groups = list(groups.values())
    # The fused kernel: on 2 CPU cores it cut MiniLM's optimizer step from 75 ms to 17 ms.
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)


def build_scheduler(optimizer, cfg: Config, total_steps: int, elapsed: Optional[Callable[[], float]] = None):
    """Linear warm-up, then linear decay to 0, half a cosine, or constant (the schedules of transformers' get_scheduler,
    without importing transformers, which costs seconds for image tasks).

    With max_train_minutes and ``elapsed`` (training seconds so far), the decay follows whichever is further along,
    the steps or the time budget: a run stopped by its budget has still annealed its learning rate (budgeted
    training, Li et al. 2020), instead of stopping at a high one with noisy weights."""
    warmup = int(cfg.warmup_ratio * total_steps)
    budget = 60 * cfg.max_train_minutes if cfg.max_train_minutes and elapsed is not None else None

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if budget:
            progress = max(progress, min(1.0, elapsed() / budget))
        if cfg.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if cfg.scheduler == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def count_steps(cfg: Config, batches_per_epoch: int) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))


def default_train_step(task: Task, cfg: Config) -> Callable:
    """One batch of ``task.compute_loss``: backward, and, at the end of an accumulation, clip and step. A batch in
    micro-batches runs each piece's forward and backward with its share of the loss: the gradient is the batch's."""
    weight = task.loss_weight or _batch_size

    def train_step(model, batch, optimizers, accelerator) -> dict:
        pieces = batch if isinstance(batch, MicroBatches) else [batch]
        weights = [weight(piece) for piece in pieces]
        total = sum(weights)
        with accelerator.accumulate(model):
            loss = 0.0
            for i, (piece, share) in enumerate(zip(pieces, weights)):
                last = i == len(pieces) - 1
                # Gradients are averaged across processes once, after the last piece.
                with (
                    accelerator.no_sync(model)
                    if not last and accelerator.num_processes > 1
                    else contextlib.nullcontext()
                ):
                    piece_loss = task.compute_loss(model, piece) * (share / total)
                    accelerator.backward(piece_loss)
                loss = loss + piece_loss.detach()
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad()
        return {"loss": loss}

    return train_step


@dataclass
class Training:
    """What the phases of one :func:`fit` share."""

    plan: Plan  # the config, task, goal, machine and run folder, decided before training
    task: Task
    accelerator: object
    model: torch.nn.Module
    loader: DataLoader
    evaluation: Optional[DataLoader]
    optimizers: list
    generator: torch.Generator  # the training order's; reseeded every epoch
    total_steps: int
    counters: dict  # step, epoch, batch_in_epoch, best metric and step, patience, clock: saved in every checkpoint
    train_step: Callable
    workers_generator: torch.Generator  # seeds the DataLoader workers' RNG (augmentation); reseeded every epoch
    schedulers: list = field(default_factory=list)
    restored: bool = False
    last_eval_step: int = -1
    running: dict = field(default_factory=dict)  # loss sums since the last log line
    running_n: int = 0
    tic: float = 0.0  # the training clock's last reading (evaluations do not count)
    progress: object = None
    budget_told: bool = False  # the time budget's reach has been logged
    # (step, training clock) after this process's first step, from which the budget's step rate is measured
    rate_from: Optional[tuple] = None
    streaming: bool = False  # the training data is a stream: no epochs, its position saved in last/
    trackers: object = field(default_factory=tracking.NoTrackers)  # MLflow, W&B...: fed the metrics.jsonl records

    @property
    def cfg(self) -> Config:
        return self.plan.cfg

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir

    @property
    def machine(self) -> dict:
        return self.plan.machine

    @property
    def eval_interval(self):
        """cfg.eval_every; for a stream, which has no epochs, "epoch" means every tenth of the steps."""
        if self.streaming and self.cfg.eval_every == "epoch":
            return max(1, self.total_steps // 10)
        return self.cfg.eval_every

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def fit(plan: Plan, task: Task, trackers=None) -> runlib.Run:
    """Train ``task`` as ``plan`` decided, into its run folder (held by the caller's ``plan.claimed()``);
    ``trackers``: tracking.open_trackers' (started before the model and data loaded), which this ends."""
    t = setup(plan, task)
    restore(t)
    if t.main:
        runlib.start_run_dir(t.run_dir, t.cfg)
        runlib.append_metrics(t.run_dir, {"step": t.counters["step"], "split": "setup", **_machine_record(t.machine)})
    t.trackers = trackers or tracking.open_trackers(t.cfg.trackers, t.cfg.task, t.main)
    t.trackers.start(t.run_dir, _tracker_params(t))
    try:
        loop(t)
        run = finish(t)
    except TrainingStopped:
        t.trackers.close("stopped")  # resumable: the tracker's run continues with the resume
        raise
    except BaseException:
        t.trackers.close("failed")
        raise
    pruned = interrupt.finish_requested() and os.environ.get("TOOLKIT_SWEEP_TRIAL") is not None
    t.trackers.close("pruned" if pruned else "finished", run.metrics, t.counters["step"])
    return run


def setup(plan: Plan, task: Task) -> Training:
    """The accelerator, and the model, loaders, optimizers and schedules prepared for its devices and processes."""
    from accelerate.utils import set_seed

    cfg = plan.cfg
    accelerator = make_accelerator(cfg, plan.run_dir, task.find_unused_parameters, plan.machine["mixed_precision"])
    set_seed(cfg.seed)
    generator, workers_generator = torch.Generator(), torch.Generator().manual_seed(cfg.seed)
    loader = train_loader(
        task, cfg, generator, workers_generator, micro_batch_count(task, cfg, accelerator.device.type)
    )
    evaluation = (
        eval_loader(task.eval_set, cfg, task.collate, loader_workers(task, cfg)) if task.eval_set is not None else None
    )
    optimizers = (
        task.optimizers(task.model, cfg) if task.optimizers else [build_optimizer(task.model, cfg, task.lr_scale)]
    )
    if plan.machine["dropout_draws"] == "packed":
        dropout.install(task.model)
    fsdp_wrap_outside_embeddings(accelerator, task.model)
    streaming = is_stream(loader.dataset)
    if streaming:
        model, *optimizers = accelerator.prepare(task.model, *optimizers)
    else:
        model, loader, *optimizers = accelerator.prepare(task.model, loader, *optimizers)
    if evaluation is not None:
        evaluation = accelerator.prepare(evaluation)
    counters = {
        "step": 0,
        "epoch": 0,
        "batch_in_epoch": 0,
        "best_metric": None,
        "best_step": None,
        "stale_evals": 0,
        "train_seconds": 0.0,
        "train_samples": 0,
    }
    t = Training(
        plan,
        task,
        accelerator,
        model,
        loader,
        evaluation,
        optimizers,
        generator,
        cfg.max_steps if streaming else count_steps(cfg, len(loader)),
        counters,
        task.train_step or default_train_step(task, cfg),
        workers_generator,
        streaming=streaming,
    )
    t.schedulers = [
        accelerator.prepare(build_scheduler(o, cfg, t.total_steps, elapsed=lambda: t.counters["train_seconds"]))
        for o in optimizers
    ]
    return t


def restore(t: Training) -> None:
    """With resume=true, continue exactly from last/: weights, optimizers, schedules, counters and RNG states."""
    if not t.cfg.resume:
        return
    last = ckpt.find_checkpoint(t.run_dir, "last", intact=True)
    if last is None:
        log.warning("resume=true but %s has no last/ checkpoint yet: starting from the beginning", t.run_dir)
        return
    state, t.counters = ckpt.load_training_state(last)
    ckpt.load_weights(t.accelerator.unwrap_model(t.model), last)
    for optimizer, saved in zip(t.optimizers, ckpt.as_list(state["optimizer"])):
        optimizer.load_state_dict(saved)
    for scheduler, saved in zip(t.schedulers, ckpt.as_list(state["scheduler"])):
        scheduler.load_state_dict(saved)
    ckpt.set_rng_state(state["rng"])
    if t.streaming:
        states = ckpt.load_stream_state(last, t.accelerator.process_index, t.accelerator.num_processes)
        t.loader.dataset.load_state_dict(states)
    if t.main:
        runlib.truncate_metrics(t.run_dir, t.counters["step"])
    t.restored, t.last_eval_step = True, t.counters["step"]
    log.info(
        "resumed %s at step %d (epoch %d, batch %d)",
        t.run_dir,
        t.counters["step"],
        t.counters["epoch"],
        t.counters["batch_in_epoch"],
    )


def loop(t: Training) -> None:
    """The training loop: batches and optimizer steps until the step count, the time budget or early stopping
    ends it."""
    from accelerate import skip_first_batches
    from tqdm.auto import tqdm

    t.progress = tqdm(
        total=t.total_steps,
        initial=t.counters["step"],
        disable=not t.accelerator.is_local_main_process,
        desc=f"train {t.run_dir.name}",
        dynamic_ncols=True,
    )
    if t.task.evaluate_first and not t.restored:
        evaluate_and_checkpoint(t)
        t.last_eval_step = 0
    stop = t.counters["step"] >= t.total_steps
    t.tic = time.perf_counter()
    try:
        while not stop:
            train_mode(t)
            t.generator.manual_seed(t.cfg.seed + t.counters["epoch"])  # the same order on every rank and after a resume
            t.workers_generator.manual_seed(t.cfg.seed + t.counters["epoch"])  # and the same workers' augmentations
            skip = 0 if t.streaming else t.counters["batch_in_epoch"]
            for batch in batches(t, skip_first_batches(t.loader, skip) if skip else t.loader):
                losses = t.train_step(t.model, batch, t.optimizers, t.accelerator)
                count_batch(t, batch, losses)
                if t.accelerator.sync_gradients:  # an optimizer step ended (not just one accumulated batch)
                    stop = after_optimizer_step(t)
                    if stop:
                        break
    finally:
        t.progress.close()  # also when a step fails: an error line then starts on a line of its own


def batches(t: Training, loader):
    """The loader's batches; a stream's, which accelerate did not prepare, moved to the device here."""
    if not t.streaming:
        yield from loader
        return
    from accelerate.utils import send_to_device

    for batch in loader:
        yield send_to_device(batch, t.accelerator.device)


def count_batch(t: Training, batch, losses: dict) -> None:
    values = {k: v.detach().float().item() for k, v in losses.items()}
    if not all(math.isfinite(v) for v in values.values()):
        # Stop before anything is saved: last/ and best/ still hold the last good weights.
        raise ToolkitError(
            f"training diverged at step {t.counters['step'] + 1}: loss is {values}. Nothing after "
            f"the last checkpoint was saved ({t.run_dir}/last). Lower lr, or check the data."
        )
    t.counters["batch_in_epoch"] += 1
    t.counters["train_samples"] += _batch_size(batch) * t.accelerator.num_processes
    for key, value in values.items():
        t.running[key] = t.running.get(key, 0.0) + value
    t.running_n += 1


def after_optimizer_step(t: Training) -> bool:
    """Schedule, count, log, then evaluate or save when due; True when training should stop."""
    cfg, counters = t.cfg, t.counters
    for scheduler in t.schedulers:
        scheduler.step()
    counters["step"] += 1
    step = counters["step"]
    timing.mark_once("first_step_at")  # seconds from the process's start to its first optimizer step
    t.progress.update(1)
    tick_clock(t)
    if cfg.max_train_minutes is not None and not t.budget_told:
        tell_budget(t)
    if step % cfg.log_every == 0 or step == t.total_steps:
        log_training(t)
    end_of_epoch = not t.streaming and counters["batch_in_epoch"] >= len(t.loader)
    if end_of_epoch:
        counters.update(epoch=counters["epoch"] + 1, batch_in_epoch=0)
    stop = False
    interval = t.eval_interval
    due = (interval == "epoch" and end_of_epoch) or (isinstance(interval, int) and step % interval == 0)
    if due or step >= t.total_steps:
        stop = evaluate_and_checkpoint(t)
        t.last_eval_step = step
    elif cfg.save_every and step % cfg.save_every == 0:
        save(t, "last", with_state=True)
    out_of_time = cfg.max_train_minutes is not None and counters["train_seconds"] >= 60 * cfg.max_train_minutes
    # Then the run finishes normally, stop or not; a sweep's pruner asks for that too (interrupt.request_finish).
    ends_here = stop or step >= t.total_steps or out_of_time or interrupt.finish_requested()
    if interrupt.stop_requested() and t.accelerator.num_processes == 1 and not ends_here:
        if not due:  # an evaluation has just saved last/ otherwise
            save(t, "last", with_state=True)
        raise TrainingStopped(t.run_dir, step)
    t.tic = time.perf_counter()
    return ends_here


def tell_budget(t: Training, min_steps: int = 5, min_seconds: float = 2.0, min_share: float = 0.05) -> None:
    """Once the step rate is measured (``min_steps`` steps, and ``min_seconds`` or ``min_share`` of the budget,
    whichever is longer, after this process's first step), log how many of the planned steps the time budget buys
    here, and warn when it is under a quarter of them."""
    step, clock = t.counters["step"], t.counters["train_seconds"]
    if t.rate_from is None:
        # The first step pays for kernel selection and warm-up (a QA run's first 5 steps measured 0.64 steps/s
        # where the run averaged 1.08); after a resume the clock also holds the earlier processes' time.
        t.rate_from = (step, clock)
        return
    budget = 60 * t.cfg.max_train_minutes
    steps, seconds = step - t.rate_from[0], clock - t.rate_from[1]
    if steps < min_steps or seconds < max(min_seconds, min_share * budget):
        return
    t.budget_told = True
    rate = steps / seconds
    reach = min(t.total_steps, step + int(rate * max(0.0, budget - clock)))
    t.counters["budget"] = {
        "steps_per_second": round(rate, 3),
        "budget_minutes": t.cfg.max_train_minutes,
        "steps_in_budget": reach,
        "planned_steps": t.total_steps,
    }
    message = (
        f"this machine does {rate:.2f} steps/s ({t.machine['precision']['chosen']}); the budget of "
        f"{t.cfg.max_train_minutes:g} min covers {reach} of {t.total_steps} steps"
    )
    if reach < t.total_steps / 4:
        log.warning(
            "%s: under a quarter of the plan. Expect a weaker model than the planned steps would give; raise "
            "max_train_minutes, or lower epochs/max_steps so that the schedule fits the budget.",
            message,
        )
    else:
        log.info(message)


def log_training(t: Training) -> None:
    """The mean losses since the last log line (over every process) and the learning rate."""
    accelerator = t.accelerator
    means = {
        k: accelerator.reduce(torch.tensor(v / t.running_n, device=accelerator.device), "mean").item()
        for k, v in t.running.items()
    }
    lr = max(t.schedulers[0].get_last_lr())  # the head's when groups differ
    t.progress.set_postfix(**{k: f"{v:.4f}" for k, v in means.items()}, lr=f"{lr:.2e}")
    step = t.counters["step"]
    if t.main:
        record = {
            "step": step,
            "epoch": t.counters["epoch"],
            "split": "train",
            **means,
            "lr": lr,
            "total_steps": t.total_steps,
            "train_seconds": round(t.counters["train_seconds"], 3),
            "samples": t.counters["train_samples"],
        }
        record_metrics(t, record)
    t.running, t.running_n = {}, 0


def record_metrics(t: Training, record: dict) -> None:
    """One metrics.jsonl record, and the same to the run's trackers (main process only)."""
    runlib.append_metrics(t.run_dir, record)
    t.trackers.log(record)


def tick_clock(t: Training) -> None:
    """Add the training time since the last reading (evaluation and checkpoints do not count)."""
    t.counters["train_seconds"] += time.perf_counter() - t.tic
    if t.cfg.max_train_minutes is not None and t.accelerator.num_processes > 1:
        # Every rank takes rank 0's clock: the budget's learning rate and its stop must be the same on all.
        from accelerate.utils import broadcast

        clock = torch.tensor([t.counters["train_seconds"]], dtype=torch.float64, device=t.accelerator.device)
        t.counters["train_seconds"] = broadcast(clock, from_process=0).item()


def train_mode(t: Training) -> None:
    t.model.train()
    if t.task.train_mode is not None:
        t.task.train_mode(t.accelerator.unwrap_model(t.model), t.counters["epoch"])


def evaluate_and_checkpoint(t: Training) -> bool:
    """Evaluate, keep best/ and last/; return True when early stopping says stop."""
    counters, metric = t.counters, t.plan.goal.metric
    t.model.eval()
    with timing.phase("evaluations"), evaluating(t.accelerator, t.model, t.machine):
        metrics = t.task.evaluate(t.model, t.evaluation, t.accelerator) if t.evaluation is not None else {}
    value = metrics.get(metric)
    better = value is None or t.plan.goal.beats(
        value, counters["best_metric"], metrics.get("loss"), counters.get("best_loss")
    )
    if better:
        counters.update(
            best_metric=value,
            best_loss=metrics.get("loss"),
            best_step=counters["step"],
            stale_evals=0,
            best_validation=json.loads(json.dumps(metrics, default=float)) if metrics else None,
        )
    else:
        counters["stale_evals"] += 1
    if t.main:
        record = {"step": counters["step"], "epoch": counters["epoch"], "split": "validation", **_scalars(metrics)}
        record_metrics(t, record)
    if better:
        save(t, "best", with_state=False)
    save(t, "last", with_state=True)
    train_mode(t)
    return t.cfg.patience is not None and counters["stale_evals"] >= t.cfg.patience


def evaluating(accelerator, model, machine: dict):
    """The context every evaluation runs in: the plain model (without accelerate's training autocast) computing in
    the run's evaluation precision, as `toolkit eval`, the predictors and serving compute (toolkit/precision.py)."""
    module = accelerator.unwrap_model(model)
    stack = contextlib.ExitStack()
    stack.enter_context(precision.without_training_wrapper(module))
    stack.enter_context(precision.computing(module, machine["eval_precision"]["chosen"], accelerator.device.type))
    return stack


def save(t: Training, name: str, with_state: bool) -> None:
    """Write best/ or last/ atomically (never half-written); last/ also holds the state to resume from."""
    with timing.phase("checkpoints"):
        _save(t, name, with_state)


def _save(t: Training, name: str, with_state: bool) -> None:
    accelerator = t.accelerator
    accelerator.wait_for_everyone()
    # Every rank joins: under FSDP/ZeRO-3 this gathers the sharded weights.
    state_dict = accelerator.get_state_dict(t.model)
    if not all(torch.isfinite(v).all() for v in state_dict.values() if v.is_floating_point()):  # every rank: all stop
        # A finite loss can still leave NaN/inf weights after its update: never overwrite a good checkpoint with them.
        raise ToolkitError(
            f"training diverged at step {t.counters['step']}: the weights hold NaN or inf. The checkpoints "
            f"in {t.run_dir} are from before it. Lower lr, or check the data."
        )
    streams = stream_states(t) if with_state and t.streaming else None
    if t.main:

        def write(tmp: Path) -> None:
            t.task.save(accelerator.unwrap_model(t.model), tmp, state_dict)
            if with_state:
                ckpt.save_training_state(tmp, t.optimizers, t.schedulers, t.counters)
            else:
                (tmp / ckpt.STATE_JSON).write_text(json.dumps(t.counters, indent=2))
            if streams is not None:
                ckpt.save_stream_states(tmp, streams)

        ckpt.write_atomically(t.run_dir / name, write)
    accelerator.wait_for_everyone()


def stream_states(t: Training) -> list:
    """Every process's position in its shard of the stream (its buffer included), in process order."""
    state = t.loader.dataset.state_dict()
    if t.accelerator.num_processes == 1:
        return [state]
    from accelerate.utils import gather_object

    return gather_object([state])


def finish(t: Training) -> runlib.Run:
    """A last evaluation if the loop ended between two, then the best checkpoint's results and model card."""
    check_ranks_agree(t.accelerator, t.model)
    if t.last_eval_step != t.counters["step"]:
        evaluate_and_checkpoint(t)
    results = _final_results(t)
    t.accelerator.end_training()
    # The model handed back computes as the stock reload of best/ does: accelerate's training autocast taken off.
    return runlib.Run(
        dir=t.run_dir, metrics=results, model=t.accelerator.unwrap_model(t.model, keep_fp32_wrapper=False)
    )


def check_ranks_agree(accelerator, model) -> None:
    """Several processes must end with the same weights; a custom training step that forgot to average
    gradients would otherwise be saved from rank 0 as if nothing were wrong."""
    if accelerator.num_processes == 1:
        return
    checksum = torch.stack([p.detach().float().sum() for p in accelerator.unwrap_model(model).parameters()]).sum()
    sums = accelerator.gather(checksum.reshape(1).to(accelerator.device))
    if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-6, atol=0):
        raise ToolkitError(
            f"the {accelerator.num_processes} processes ended training with different weights "
            f"(checksums {sums.tolist()}): gradients were not averaged across them."
        )


def _final_results(t: Training) -> dict:
    """Reload best/, run its finalizer (e.g. merge LoRA), score validation and test, write results and card."""
    task, cfg, model, accelerator, run_dir, counters = t.task, t.cfg, t.model, t.accelerator, t.run_dir, t.counters
    machine = t.machine
    best = run_dir / "best"
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    with timing.phase("reload_best"):
        ckpt.load_weights(unwrapped, best)
    model.eval()
    results = {
        **task.info,
        "metric": t.plan.goal.metric,
        "best_step": counters["best_step"],
        "steps": counters["step"],
        **_machine_record(machine),
        **({"budget": counters["budget"]} if counters.get("budget") else {}),
        "train_seconds": round(counters["train_seconds"], 2),
        "train_samples": counters["train_samples"],
        "train_samples_per_second": round(counters["train_samples"] / max(counters["train_seconds"], 1e-9), 2),
    }
    for split, dataset in (("validation", task.eval_set), ("test", task.test_set)):
        if split == "validation" and counters.get("best_validation") is not None:
            # best/ was scored on this same validation set when it was saved: the same weights give the same
            # metrics, so the pass is not repeated (on the sentiment benchmark, 5 s of a 46 s run).
            results[split] = counters["best_validation"]
        elif dataset is not None:
            with timing.phase(f"final_{split}"), evaluating(accelerator, model, machine):
                loader = eval_loader(dataset, cfg, task.collate, loader_workers(task, cfg))
                results[split] = task.evaluate(model, accelerator.prepare(loader), accelerator)
    results["timings"] = {**timing.totals(), "training": results["train_seconds"]}
    if accelerator.is_main_process:
        if task.finalize is not None:
            task.finalize(unwrapped, best)
        if task.report is not None:
            task.report(results, run_dir)
        runlib.write_results(run_dir, results)
        runlib.append_metrics(
            run_dir,
            {
                "step": counters["step"],
                "split": "final",
                **{f"{s}/{k}": v for s in ("validation", "test") for k, v in _scalars(results.get(s, {})).items()},
            },
        )
        runlib.write_model_card(run_dir, cfg, results, runlib.command_line(), t.plan.spec)
    accelerator.wait_for_everyone()
    return results


def _batch_size(batch) -> int:
    if isinstance(batch, MicroBatches):
        return sum(_batch_size(piece) for piece in batch)
    first = next(iter(batch.values())) if isinstance(batch, Mapping) else batch[0]
    return len(first)


def _machine_record(machine: dict) -> dict:
    """What a run records of its machine: the precision chosen and why, the threads, dropout's draws, the hardware."""
    return {k: machine[k] for k in ("precision", "eval_precision", "threads", "dropout_draws", "hardware")}


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _tracker_params(t: Training) -> dict:
    """What a tracker records of the run as parameters: its resolved config and its machine."""
    values = {k: v for k, v in config_to_dict(t.cfg).items() if k not in tracking.STEERING}
    return tracking.flat_params({**values, "machine": _machine_record(t.machine)})
