"""Train/validation/test splits for every task, text or images: one loader, one seeded sampling scheme, one
label-name rule.

A split's table is anything with ``len()`` and ``select(indices)``: a ``datasets.Dataset`` or an ``ImageSet``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Callable

import numpy as np

from .cache import cache_dir, fingerprint, replace_atomically
from .errors import ToolkitError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def load_splits(cfg, load_split: Callable, train_hint: str) -> dict:
    """The configured splits, each loaded by ``load_split(split, source, where)`` (which checks and cleans it),
    trimmed to data.max_*_rows by a seeded sample; without data.validation, data.holdout of train validates
    (as AutoTrain does), so that best/ can still be picked.

    ``train_hint`` completes "set data.train to ..." when no training data is configured.
    """
    if not cfg.data.train:
        raise ToolkitError(f"no training data: set data.train to {train_hint}.")
    limits = {"train": cfg.data.max_train_rows, "validation": cfg.data.max_eval_rows, "test": cfg.data.max_test_rows}
    splits = {}
    for split in SPLITS:
        source = getattr(cfg.data, split)
        if source:
            table = load_split(split, source, f"data.{split} ('{source}')")
            splits[split] = sample(table, limits[split], cfg.seed)
    if "validation" not in splits and cfg.data.holdout > 0:
        splits["train"], splits["validation"] = hold_out(splits["train"], cfg.data.holdout, cfg.seed)
        log.info("no data.validation: holding out %d training rows for validation", len(splits["validation"]))
    return splits


def sample(table, limit: int | None, seed: int):
    """At most ``limit`` rows, drawn by a seeded permutation (the one ``datasets.Dataset.shuffle(seed)`` uses)."""
    if not limit or len(table) <= limit:
        return table
    return table.select(np.random.default_rng(seed).permutation(len(table))[:limit])


def hold_out(table, fraction: float, seed: int) -> tuple:
    """(rest, held out): ``fraction`` of the rows, rounded up, by a seeded permutation (as
    ``datasets.Dataset.train_test_split(test_size=fraction, seed=seed)`` draws them)."""
    order = np.random.default_rng(seed).permutation(len(table))
    held = min(len(order) - 1, math.ceil(fraction * len(order)))
    if held < 1:
        raise ToolkitError(
            f"data.holdout={fraction} of {len(table)} training rows leaves nothing to train on or to "
            f"validate with. Give data.validation, or more training rows."
        )
    return table.select(order[held:]), table.select(order[:held])


def label_names(values) -> list[str]:
    """Sorted label names; integer labels, and labels that are all digits, sort as numbers (2 before 10)."""
    unique = set(values)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in unique):
        return [str(v) for v in sorted(unique)]
    names = {str(v) for v in unique}
    return sorted(names, key=lambda n: (int(n), n)) if all(n.isdigit() for n in names) else sorted(names)


def encode_labels(values: list, names: list[str], where: str) -> list[int]:
    """Label ids in ``names``' order; a label that training never saw is an error naming it."""
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(v) for v in values} - set(index))
    if unknown:
        raise ToolkitError(
            f"{where} has labels that training never saw: {', '.join(unknown[:10])}. "
            f"Training labels: {', '.join(names)}. "
            "Fix those rows, or add examples of them to the training data."
        )
    return [index[str(v)] for v in values]


def label_key(value) -> str:
    """A label as the name of its class: 1.0 (an integer column with nulls, read as floats) is class "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table_label_names(table, column: str) -> list[str]:
    """The sorted class names of a table's label column, read from Arrow (no list of every row's label); of a
    stream, the labels of its first rows."""
    import datasets

    if isinstance(table, datasets.IterableDataset):
        from .streams import readable

        values = list({row[column] for row in readable(table.take(STREAM_LABEL_ROWS), "Fix or re-export the data.")})
    else:
        values = unique_values(table, column)
    if all(isinstance(v, float) and v.is_integer() for v in values):
        values = [int(v) for v in values]
    return label_names(values)


STREAM_LABEL_ROWS = 10_000  # a stream's first rows, whose labels name the classes


def check_labels(table, column: str, names: list[str], where: str) -> None:
    """A label that training never saw is an error naming it (checked on the column's distinct values; a stream's
    rows are checked as they are tokenized)."""
    import datasets

    if isinstance(table, datasets.IterableDataset):
        return
    encode_labels([label_key(v) for v in unique_values(table, column)], names, where)


def cached_unique(table, column: str) -> list:
    """``table.unique(column)``, kept in the cache under the table's fingerprint: reading the column through the
    memory map makes its pages resident (120 MB of labels at 10 million rows), and the next run needs only the
    answer."""
    path = cache_dir() / f"{fingerprint(table._fingerprint, 'unique', column)}.json"
    try:
        return json.loads(path.read_text())["values"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    values = table.unique(column)
    try:
        replace_atomically(path, json.dumps({"column": column, "values": values}).encode())
    except (TypeError, ValueError, OSError):
        pass  # values JSON cannot hold (or a read-only cache): asked again next time
    return values


UNIQUE_BATCH_ROWS = 100_000  # rows per Arrow batch when a column's distinct values are scanned


def unique_values(table, column: str) -> list:
    """A column's distinct values. (datasets' ``unique`` first writes a flattened copy of a table with a row
    selection, which at millions of rows is a copy of the data.)"""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table._indices is None:
        return cached_unique(table, column)
    found = [
        pc.unique(batch.column(0))
        for batch in table.select_columns([column]).with_format("arrow").iter(UNIQUE_BATCH_ROWS)
    ]
    return pc.unique(pa.chunked_array(found)).to_pylist() if found else []
