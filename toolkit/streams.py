"""Training on a stream (``data.streaming: true``): data read as training goes, never held whole, resumed exactly.

datasets' own shuffle buffer is not saved with its state ("examples from shuffle buffers are lost when resuming"),
so a resumed run would see other examples than an uninterrupted one. :class:`ShuffledStream` keeps its own buffer
and saves it, its random state and the source's position (``IterableDataset.state_dict()``) with each checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import ToolkitError
from .read_errors import column_mismatch, decode_error, not_utf8, other_columns, quiet_readers, unreadable


class ShuffledStream(torch.utils.data.IterableDataset):
    """Examples of a ``datasets.IterableDataset`` through a shuffle buffer, epoch after epoch without end (training
    stops at max_steps). Each epoch reshuffles the source's shards and seeds the buffer anew."""

    def __init__(self, source, buffer_size: int, seed: int):
        self.source, self.buffer_size, self.seed = source, buffer_size, seed
        self.epoch = 0
        self.buffer: list = []
        self.rng = np.random.default_rng([seed, 0])
        self.restored = False

    def __iter__(self):
        while True:
            if not self.restored:
                self.source.set_epoch(self.epoch)
                self.buffer, self.rng = [], np.random.default_rng([self.seed, self.epoch])
            self.restored = False
            yield from self.one_epoch()
            self.epoch += 1

    def one_epoch(self):
        # Between two examples handed out, the buffer and the source's position always agree: the example that
        # replaces the one handed out is in the buffer before it leaves, so a state saved then loses nothing.
        buffer, rng = self.buffer, self.rng
        for example in readable(self.source):
            if len(buffer) < self.buffer_size:
                buffer.append(example)
                continue
            i = int(rng.integers(len(buffer)))
            out, buffer[i] = buffer[i], example
            yield out
        while buffer:
            i = int(rng.integers(len(buffer)))
            out, buffer[i] = buffer[i], buffer[-1]
            buffer.pop()
            yield out

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "source": self.source.state_dict(),
            "buffer": self.buffer,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.source.set_epoch(self.epoch)
        self.source.load_state_dict(state["source"])
        self.buffer = state["buffer"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.restored = True


RESUME_AFTER_FIX = (
    "Fix or re-export the data, then resume the run with `toolkit train --resume RUN` (it continues from its last "
    "checkpoint)."
)


def readable(source, then: str = RESUME_AFTER_FIX):
    """The source's examples; a reading error met mid-stream (a malformed row, a byte that is not UTF-8, a column
    whose type changes) becomes one clear error naming the file, and ``then`` what to do, instead of a traceback
    from inside datasets."""
    iterator = iter(source)
    while True:
        with quiet_readers() as named:  # datasets' reader names the shard it fails on; its error does not
            try:
                example = next(iterator)
            except StopIteration:
                return
            except ToolkitError:
                raise
            except Exception as err:  # noqa: BLE001 - whatever the reader raised, said once with the fix
                raise ToolkitError(
                    f"the training stream could not be read past this point: {stream_problem(err, named)} {then}"
                ) from err
        yield example


def stream_problem(err: Exception, named: list) -> str:
    """What a reading error met mid-stream is about, as a sentence naming the file the reader named, if any."""
    mismatch = column_mismatch(err)
    if named and decode_error(err) is not None:
        return str(not_utf8(named, given=None))
    if mismatch is not None:
        return str(other_columns(mismatch, named))
    if named:
        return str(unreadable(named[-1], named[-1].suffix, err))
    return f"{last_line(err)}."


def is_stream(dataset) -> bool:
    import datasets

    return isinstance(dataset, (datasets.IterableDataset, ShuffledStream))


def shard_for_this_process(source, buffer_size: int, seed: int, rank: int, world_size: int) -> ShuffledStream:
    """This process's part of the stream (datasets' ``split_dataset_by_node``: whole shards when they divide evenly,
    else every world_size-th example), shuffled with a seed of its own."""
    from datasets.distributed import split_dataset_by_node

    if world_size > 1:
        source = split_dataset_by_node(source, rank=rank, world_size=world_size)
    return ShuffledStream(source, buffer_size, seed + rank)


def last_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[-1]
