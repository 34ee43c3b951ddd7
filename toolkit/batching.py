"""How training examples become batches: length-grouped batches, and random batches run as length-sorted
micro-batches on the CPU. The engine's loaders use these; a task only declares its examples' lengths."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .data import LENGTH


class ShuffledLengthGroups(torch.utils.data.Sampler):
    """Batches of similar lengths, so that they pad little, in random order.

    As transformers' LengthGroupedSampler (shuffle, then sort by length inside groups of batches), but with groups
    of 4 batches instead of up to 50, and the batches shuffled (the short last one stays last, so that the loader's
    batches are exactly these). On the sentiment benchmark (3 seeds, docs/benchmarks.md) LengthGroupedSampler's
    long groups, all-similar batches, cost 1.2 points of test accuracy against random batches; groups of 4 kept
    most of the padding saved and were 0.6 points from random batches."""

    batches_per_group = 4

    def __init__(self, lengths, batch_size: int, generator: torch.Generator):
        self.lengths, self.batch_size, self.generator = np.asarray(lengths, dtype=np.int32), batch_size, generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        # In numpy, and handed out in chunks: at millions of examples, lists of Python ints would take gigabytes.
        n, size = len(self.lengths), self.batch_size
        mega = size * max(1, min(n // (size * 4), self.batches_per_group))
        indices = torch.randperm(n, generator=self.generator).numpy().astype(np.int32)  # 4 bytes an example
        groups = n // mega
        head = indices[: groups * mega].reshape(groups, mega)
        head = np.take_along_axis(head, np.argsort(-self.lengths[head], axis=1, kind="stable"), axis=1)
        tail = indices[groups * mega :]
        tail = tail[np.argsort(-self.lengths[tail], kind="stable")]
        whole = len(tail) // size * size
        full = np.concatenate([head.reshape(-1, size), tail[:whole].reshape(-1, size)])
        del indices, head  # 4 bytes an example each, held while the epoch runs otherwise
        order = torch.randperm(len(full), generator=self.generator).numpy()
        for start in range(0, len(order), 4096):
            yield from full[order[start : start + 4096]].reshape(-1).tolist()
        yield from tail[whole:].tolist()  # the short last batch stays last


class MicroBatches(list):
    """One training batch as several collated pieces of similar lengths (see :func:`micro_batch_count`)."""


class Indexed(torch.utils.data.Dataset):
    """A dataset whose items carry their index, so that the collate function can look their lengths up."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list:
        # An Arrow table reads a batch of rows at once, much faster than row by row.
        fetch = getattr(self.dataset, "__getitems__", None)
        items = fetch(indices) if fetch is not None else [self.dataset[i] for i in indices]
        return list(zip(indices, items))


def micro_batch_count(task, cfg, accelerator_device: str = "cpu") -> int:
    """How many length-sorted pieces each random training batch (group_by_length: false) runs as: cfg.micro_batches,
    or when unset, pieces of about 8 examples on the CPU and 1 on accelerators, where padding costs little and small
    pieces waste the device. Each piece pads only to its own longest example: on 2,000 rt-polarity sentences 4 pieces
    computed 62 % of the whole batch's padded tokens, and a training step took 0.98 s instead of 1.42 s (length-grouped
    batches: 0.86 s). The optimizer step is the whole batch's, so the batches stay random."""
    if task.train_lengths is None or task.train_step is not None or cfg.group_by_length:
        return 1
    if cfg.micro_batches is not None:
        return min(cfg.micro_batches, cfg.batch_size)
    return max(1, cfg.batch_size // 8) if accelerator_device == "cpu" else 1


def split_by_length(task, pieces: int) -> Callable:
    """A collate function: the batch's examples sorted by length, in ``pieces`` nearly equal pieces, each collated."""
    piece_collate = without_length(task.collate)

    def collate(items: list) -> MicroBatches:
        ordered = [item for _, item in sorted(items, key=lambda pair: task.train_lengths[pair[0]])]
        size = math.ceil(len(ordered) / min(pieces, len(ordered)))
        return MicroBatches(piece_collate(ordered[start : start + size]) for start in range(0, len(ordered), size))

    return collate


def without_length(collate: Callable) -> Callable:
    """``collate`` given examples without their length column."""

    def run(items: list):
        if items and isinstance(items[0], dict) and LENGTH in items[0]:
            items = [{k: v for k, v in item.items() if k != LENGTH} for item in items]
        return collate(items)

    return run
