"""Label issues: the training rows whose label is most likely wrong, most suspect first.

Out-of-sample probabilities come from k folds: the task's own model is trained on k-1 folds (through the engine,
within a time budget) and predicts the fold it did not see; or, with ``method="probe"``, a logistic regression on
the frozen encoder's features does the same in seconds. cleanlab's confident learning ranks the rows by those
probabilities (its label quality scores) and flags the ones it estimates are wrong (``find_label_issues``).

A task declares what is its own in ``TaskSpec.label_issues`` (a :class:`LabelIssueSpec`): how it reads the rows and
their labels, writes a fold as a data file, and turns its predictor's answers (or its frozen features) into
probabilities. Token-level tasks give one label and one probability row per token; their issues are tokens.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .errors import ToolkitError

log = logging.getLogger(__name__)

METHODS = ("finetune", "probe")
DEFAULT_MINUTES = 8.0  # the fine-tuned folds' training budget in all (2,000 short texts train 2 epochs in it)


@dataclass
class LabelRows:
    """A task's training rows as label issues see them."""

    table: object  # whatever the task's ``write`` and ``probabilities`` take
    labels: list  # per row a label id; token-level: per row a list of label ids, one per token
    names: list[str]  # label names, in id order
    shown: list[str]  # per row, what the CSV shows of its input
    numbers: list[int]  # per row, its 0-based row in the data.train file (rows the task skips are left out)
    tokens: Optional[list[list[str]]] = None  # token-level: the words


@dataclass
class LabelIssueSpec:
    """What a task brings to ``toolkit label-issues``."""

    rows: Callable  # (cfg) -> LabelRows of data.train, as the task reads it
    probabilities: Callable  # (predictor, rows, indices, names) -> per row [C] (token-level: per row [T, C])
    # (rows: LabelRows, indices, folder: Path) -> the data.train value of those rows; default: a numbered
    # ``datasets`` table's rows as Parquet
    write: Callable = lambda rows, indices, folder: fold_file(rows.table, indices, folder)
    features: Optional[Callable] = None  # (cfg, rows) -> per row [D] (token-level: [T, D]) of the frozen encoder
    token_level: bool = False
    # (cfg, changes {row or (row, token): new label}, out: Path) -> the corrected copy of data.train written there
    correct: Optional[Callable] = None
    fold_overrides: list[str] = field(default_factory=list)  # each fold's training settings (the user's win)


def find_label_issues(
    config, overrides: list[str] | None = None, method: str = "finetune", folds: int = 5, minutes: float | None = None
):
    """A pandas DataFrame of data.train's rows (tokens, for token-level tasks) ranked by cleanlab's label quality,
    most suspect first: ``row`` (0-based row of data.train), [``token``, ``word``,] ``label``, ``suggested``,
    ``score`` (0-1, low is suspect), ``issue`` (cleanlab estimates the label is wrong) and the input shown."""
    from .config import load_config
    from .tasks import get_task

    if method not in METHODS:
        raise ToolkitError(f"unknown method '{method}': use one of {', '.join(METHODS)}.")
    if folds < 2:
        raise ToolkitError(f"folds={folds}: out-of-sample probabilities need at least 2 folds (5 is usual).")
    cfg = load_config(config, overrides)
    spec = get_task(cfg.task)
    li = spec.label_issues() if spec.label_issues is not None else None
    if li is None:
        raise ToolkitError(f"task '{spec.name}' has no label issues: they need labels a classifier predicts.")
    if method == "probe" and li.features is None:
        raise ToolkitError(f"task '{spec.name}' has no frozen-feature probe: use --method finetune.")
    tic = time.perf_counter()
    rows = li.rows(cfg)
    if len(rows.labels) < folds * 2:
        raise ToolkitError(f"data.train has {len(rows.labels)} rows: too few for {folds} folds.")
    splits = fold_indices(rows, folds, cfg.seed, li.token_level)
    if method == "probe":
        probs = probe_probabilities(cfg, li, rows, splits)
    else:
        probs = finetuned_probabilities(config, overrides, li, rows, splits, minutes)
    ranked = rank(rows, probs, li.token_level)
    log.info("label issues: %d rows ranked in %.0f s (%s, %d folds)", len(rows.labels), time.perf_counter() - tic,
             method, folds)  # fmt: skip
    return ranked


def fold_indices(rows: LabelRows, folds: int, seed: int, token_level: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held out) row indices of each fold; classes spread evenly where each has enough rows."""
    from sklearn.model_selection import KFold, StratifiedKFold

    index = np.arange(len(rows.labels))
    counts = np.bincount(np.asarray(rows.labels)) if not token_level else None
    if counts is not None and counts[counts > 0].min() >= folds:
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(index, rows.labels))
    return list(KFold(folds, shuffle=True, random_state=seed).split(index))


def finetuned_probabilities(config, overrides, li: LabelIssueSpec, rows: LabelRows, splits, minutes):
    """Each fold's held-out rows, predicted by the task's own model trained on the other folds."""
    from . import api

    budget = (minutes if minutes is not None else DEFAULT_MINUTES) / len(splits)
    probs: list = [None] * len(rows.labels)
    with tempfile.TemporaryDirectory(prefix="toolkit-label-issues-") as tmp:
        for k, (train, held) in enumerate(splits):
            folder = Path(tmp) / f"fold{k}"
            folder.mkdir()
            data = li.write(rows, train, folder)
            fold = [
                *li.fold_overrides, *(overrides or []),  # the user's settings win over the task's for folds
                f"data.train={data}", "data.validation=null", "data.test=null", "data.holdout=0", "data.checks=off",
                "data.max_train_rows=null", "trackers=[]", "resume=false", f"max_train_minutes={budget:.3f}",
                f"output_dir={folder / 'run'}",
            ]  # fmt: skip
            log.info("label issues: fold %d of %d (%d rows train, %d predicted)", k + 1, len(splits), len(train),
                     len(held))  # fmt: skip
            run = api.train(config, fold)
            predictor = api.load(run.dir, backend="torch")
            for i, p in zip(held, li.probabilities(predictor, rows, held, rows.names)):
                probs[i] = np.asarray(p, dtype=np.float64)
    return probs


def probe_probabilities(cfg, li: LabelIssueSpec, rows: LabelRows, splits) -> list:
    """A logistic regression on frozen features, per fold (token-level: one example per token)."""
    from sklearn.linear_model import LogisticRegression

    features = li.features(cfg, rows)
    probs: list = [None] * len(rows.labels)
    classes = len(rows.names)
    for train, held in splits:
        x, y = stack(features, rows.labels, train, li.token_level)
        model = LogisticRegression(max_iter=2000, C=0.3).fit(x, y)
        for i in held:
            x_i = np.atleast_2d(features[i])
            p = np.zeros((len(x_i), classes))
            p[:, model.classes_] = model.predict_proba(x_i)
            probs[i] = p if li.token_level else p[0]
    return probs


def stack(features, labels, indices, token_level: bool):
    if not token_level:
        return np.stack([features[i] for i in indices]), np.asarray([labels[i] for i in indices])
    return (
        np.concatenate([np.atleast_2d(features[i]) for i in indices]),
        np.concatenate([np.asarray(labels[i]) for i in indices]),
    )


def rank(rows: LabelRows, probs: list, token_level: bool):
    """cleanlab's label quality scores and issue flags, as a table ranked most suspect first."""
    import pandas as pd

    if token_level:
        return rank_tokens(rows, probs)
    from cleanlab.filter import find_label_issues as flag
    from cleanlab.rank import get_label_quality_scores

    labels, matrix = np.asarray(rows.labels), renormalized(np.stack(probs))
    scores = get_label_quality_scores(labels, matrix)
    issues = flag(labels, matrix) if len(set(labels.tolist())) > 1 else np.zeros(len(labels), bool)
    table = pd.DataFrame(
        {
            "row": rows.numbers,
            "label": [rows.names[i] for i in labels],
            "suggested": [rows.names[i] for i in matrix.argmax(1)],
            "score": scores.round(6),
            "issue": issues,
            "input": rows.shown,
        }
    )
    return table.sort_values(["score", "row"], kind="stable").reset_index(drop=True)


def rank_tokens(rows: LabelRows, probs: list):
    import pandas as pd
    from cleanlab.token_classification.filter import find_label_issues as flag
    from cleanlab.token_classification.rank import get_label_quality_scores

    labels = [list(map(int, row)) for row in rows.labels]
    matrices = [renormalized(np.atleast_2d(p)) for p in probs]
    _, token_scores = get_label_quality_scores(labels, matrices)
    flagged = set(map(tuple, flag(labels, matrices)))
    records = []
    for r, (row_labels, matrix, scores) in enumerate(zip(labels, matrices, token_scores)):
        for t, label in enumerate(row_labels):
            records.append(
                {
                    "row": rows.numbers[r], "token": t, "word": rows.tokens[r][t], "label": rows.names[label],
                    "suggested": rows.names[int(matrix[t].argmax())], "score": round(float(scores[t]), 6),
                    "issue": (r, t) in flagged, "input": rows.shown[r],
                }
            )  # fmt: skip
    table = pd.DataFrame.from_records(records)
    return table.sort_values(["score", "row", "token"], kind="stable").reset_index(drop=True)


ROW_COLUMN = "__toolkit_row__"  # a table's own row numbers, kept through the rows a task skips


def numbered(table):
    """The table with its 0-based row numbers in a column of their own."""
    return table.add_column(ROW_COLUMN, list(range(len(table))))


def fold_file(table, indices, folder: Path) -> str:
    """Those rows of a numbered table as a Parquet file (types kept), for a fold's data.train."""
    path = folder / "train.parquet"
    table.select(indices).remove_columns([ROW_COLUMN]).to_parquet(str(path))
    return str(path)


def in_order(probs: np.ndarray, labels: list[str], names: list[str]) -> np.ndarray:
    """A predictor's probabilities (columns in its ``labels`` order) in ``names`` order: a class that a fold's
    training never saw gets 0."""
    out = np.zeros((len(probs), len(names)))
    index = {name: i for i, name in enumerate(names)}
    for j, label in enumerate(labels):
        if label in index:
            out[:, index[label]] = probs[:, j]
    return out


def renormalized(matrix: np.ndarray) -> np.ndarray:
    """Probabilities clipped away from 0 and summing to 1 per row (cleanlab's checks are strict)."""
    matrix = np.clip(np.asarray(matrix, dtype=np.float64), 1e-9, None)
    return matrix / matrix.sum(axis=-1, keepdims=True)


TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def read_frame(path: Path):
    """A whole data file as pandas reads it, rows in the file's order (those a task's loader numbers)."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False, na_values=[""])
    first = path.read_text(encoding="utf-8").lstrip()[:1]
    return pd.read_json(path, lines=first != "[", dtype=False)


def write_frame(frame, path: Path) -> Path:
    """The frame in the format its name says, written whole or not at all."""
    partial = path.with_name(path.name + ".partial")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(partial, index=False)
    elif suffix in (".csv", ".tsv"):
        frame.to_csv(partial, sep="\t" if suffix == ".tsv" else ",", index=False)
    else:
        frame.to_json(partial, orient="records", lines=suffix == ".jsonl", force_ascii=False)
    partial.replace(path)
    return path


def copy_with(column_of: Callable) -> Callable:
    """A LabelIssueSpec ``correct`` for a table task: ``column_of(cfg)`` names the column that holds the labels."""
    return lambda cfg, changes, out: corrected_copy(cfg.data.train, column_of(cfg), changes, out)


def corrected_copy(source: str, column: str, changes: dict, out: Path) -> Path:
    """A copy of the data file ``source`` with ``column`` set to each change's label at its row ({row: label}, or
    {(row, token): tag} for a column of tag lists). The original is never written."""
    path = Path(source)
    if not path.is_file() or path.suffix.lower() not in TABLE_SUFFIXES:
        raise ToolkitError(f"'{source}' is not a CSV, TSV, JSON, JSONL or Parquet file: a corrected copy needs one.")
    out = Path(out)
    if out.resolve() == path.resolve():
        raise ToolkitError(f"the corrected copy must not overwrite '{source}': give another file name.")
    frame = read_frame(path)
    values = frame[column].tolist()
    for key, label in changes.items():
        if isinstance(key, tuple):
            row, token = key
            tags = list(values[row])
            if not all(isinstance(t, str) for t in tags):
                raise ToolkitError(f"'{source}' stores its tags as class ids: correct them in their source instead.")
            tags[token] = label
            values[row] = tags
        else:
            values[key] = type(values[key])(label) if isinstance(values[key], (int, float)) else label
    frame[column] = values
    return write_frame(frame, out)
