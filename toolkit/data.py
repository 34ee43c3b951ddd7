"""Loading tabular text data from files, saved ``datasets`` folders or the hub, with clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from . import splits
from .errors import ToolkitError
from .hub import hub_guard

log = logging.getLogger(__name__)

_READERS = {
    ".csv": lambda p: pd.read_csv(p, encoding="utf-8", keep_default_na=False),
    ".tsv": lambda p: pd.read_csv(p, sep="\t", encoding="utf-8", keep_default_na=False),
    ".json": lambda p: _read_json(p),
    ".jsonl": lambda p: pd.read_json(p, lines=True, encoding="utf-8"),
    ".parquet": lambda p: pd.read_parquet(p),
}


def _read_json(path: Path) -> pd.DataFrame:
    # A .json file may hold JSON Lines (as the hub's datasets often do) or one array of records.
    first = path.read_text(encoding="utf-8").lstrip()[:1]
    return pd.read_json(path, lines=first != "[", encoding="utf-8")


def load_table(source: str, split: str = "train"):
    """Load one split as a ``datasets.Dataset``.

    ``source`` is a CSV/TSV/JSON/JSONL/Parquet file, a folder written by ``save_to_disk``,
    or a hub dataset id (optionally ``id:split`` to pick a split other than ``split``).
    """
    import datasets

    path = Path(source)
    if path.is_file():
        return datasets.Dataset.from_pandas(_read_file(path), preserve_index=False)
    if path.is_dir():
        return _load_saved_folder(path, split)
    if path.suffix.lower() in _READERS or source.startswith((".", "/")):
        raise ToolkitError(
            f"data file '{source}' does not exist. Check the path (relative paths start at the current folder)."
        )
    return _load_hub_dataset(source, split)


def _read_file(path: Path) -> pd.DataFrame:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ToolkitError(
            f"data file '{path}' has an unsupported type '{path.suffix}'. Use .csv, .tsv, .json, .jsonl or .parquet."
        )
    if path.stat().st_size == 0:
        raise ToolkitError(f"data file '{path}' is empty. Point the config at a file with a header and rows.")
    if path.suffix.lower() != ".parquet":
        with open(path, "rb") as fh:
            head = fh.read(8192)
        if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ToolkitError(
                f"data file '{path}' is not a text file (it holds binary data), so it cannot be read as "
                f"{path.suffix}. Export the data as CSV/JSONL text, or give a .parquet file."
            )
    try:
        frame = reader(path)
    except UnicodeDecodeError as err:
        raise ToolkitError(
            f"data file '{path}' is not UTF-8 text "
            f"(byte {err.object[err.start : err.start + 1]!r} at offset {err.start}). "
            f"Re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}`."
        ) from err
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as err:
        raise ToolkitError(
            f"data file '{path}' could not be read as {path.suffix}: {err}. Fix or re-export the file."
        ) from err
    if len(frame) == 0:
        raise ToolkitError(f"data file '{path}' has no rows. Point the config at a file with data.")
    return frame


def _load_saved_folder(path: Path, split: str):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise ToolkitError(
            f"folder '{path}' is not a saved dataset (no dataset_info.json/state.json from save_to_disk). "
            "Give a data file or a folder written by Dataset.save_to_disk."
        ) from err
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ToolkitError(f"saved dataset '{path}' has no split '{split}'; it has: {', '.join(loaded)}.")
        loaded = loaded[split]
    if len(loaded) == 0:
        raise ToolkitError(f"saved dataset '{path}' (split '{split}') has no rows.")
    return loaded


def _load_hub_dataset(source: str, split: str):
    import datasets

    repo_id, _, chosen = source.partition(":")
    with hub_guard(repo_id, repo_type="dataset"):
        return datasets.load_dataset(repo_id, split=chosen or split)


CONFIG_FIX = "Set the right name in the config (e.g. data.text_column=...)."
EVAL_FIX = "A finished run reads the columns it was trained with ({columns}): rename the file's columns to those."


def require_columns(ds, columns: list[str], where: str, fix=CONFIG_FIX) -> None:
    """Stop with a clear message when a configured column is not in the data; ``fix`` says what to do about it
    (training: the config, see :func:`role_fix`; evaluating a finished run: the file, see EVAL_FIX), as a text or
    a function of the missing column."""
    import difflib

    for col in columns:
        if col not in ds.column_names:
            close = difflib.get_close_matches(col, ds.column_names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            advice = fix(col) if callable(fix) else fix.format(columns=", ".join(columns))
            raise ToolkitError(
                f"column '{col}' is missing from {where} (columns: {', '.join(ds.column_names)}).{hint} {advice}"
            )


def role_fix(cfg):
    """What to set when a configured column is missing: the data key whose value it is, and the role it plays."""
    from .tasks import get_task

    roles = get_task(cfg.task).roles

    def fix(column: str) -> str:
        for key, role in roles.items():
            if getattr(cfg.data, key, None) == column:
                return f"It is the {role.name} column: set data.{key} to the name it has in your data."
        return CONFIG_FIX

    return fix


def guess_columns(roles: dict, columns: list[str], table=None, configured: dict | None = None) -> dict[str, str | None]:
    """A column for each data role ({data key: DataRole}): the configured name when the data has it, else the first
    of the role's usual names, else by content (a pandas ``table``): for a label, the column with the fewest
    distinct values; for text, the longest strings. Each column serves one role; None where nothing fits."""
    configured, chosen = configured or {}, {}
    lower = {c.lower(): c for c in columns}
    for key, role in roles.items():
        taken = set(chosen.values())
        names = [configured.get(key), *role.guesses]
        found = next(
            (
                lower[n.lower()]
                for n in names
                if isinstance(n, str) and n.lower() in lower and lower[n.lower()] not in taken
            ),
            None,
        )
        chosen[key] = found
    for key, role in roles.items():
        if chosen[key] is None and table is not None:
            chosen[key] = guess_by_content(role.kind, table, [c for c in columns if c not in set(chosen.values())])
    return chosen


def guess_by_content(kind: str, table, free: list[str]) -> str | None:
    if not free:
        return None
    if kind == "label":
        return min(free, key=lambda c: table[c].astype(str).nunique())
    if kind == "text":
        texts = [c for c in free if table[c].dtype == object]
        return max(texts, key=lambda c: table[c].astype(str).str.len().mean()) if texts else None
    return free[0]


def load_splits(
    cfg, required: list[str], text_columns: list[str], label_column: str | None = None, missing_labels: str = "skip"
) -> dict:
    """The configured text splits (see :func:`toolkit.splits.load_splits`), each checked the same way.

    ``required`` columns must exist; rows where any of ``text_columns`` is empty are skipped (and counted), and so
    are rows whose ``label_column`` is missing (``missing_labels="error"`` refuses them instead).
    """

    def load_split(split: str, source: str, where: str):
        table = load_table(source, split)
        require_columns(table, required, where, role_fix(cfg))
        table = drop_empty_text(table, text_columns, where)
        if label_column:
            table = drop_missing_labels(table, label_column, where, missing_labels)
        return table

    return splits.load_splits(cfg, load_split, "a CSV/JSON/JSONL/Parquet file, a saved dataset folder or a hub id")


def drop_empty_text(table, columns: list[str], where: str):
    columns_values = [table[c] for c in columns]
    keep = [i for i, values in enumerate(zip(*columns_values)) if all(isinstance(v, str) and v.strip() for v in values)]
    if len(keep) < len(table):
        log.warning("%s: skipped %d rows with empty or missing %s", where, len(table) - len(keep), " or ".join(columns))
        if not keep:
            raise ToolkitError(f"{where}: every row has empty {' or '.join(columns)}. Check the column settings.")
        table = table.select(keep)
    return table


# Label cells that mean "no label": never a class of their own. ("none" and "NA" stay: they can be real classes.)
MISSING_LABEL_TEXT = {"", "nan", "null", "n/a", "<na>"}


def is_missing_label(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return value != value  # NaN
    return isinstance(value, str) and value.strip().lower() in MISSING_LABEL_TEXT


def drop_missing_labels(table, column: str, where: str, policy: str = "skip"):
    """Rows with an empty, NaN or null label: skipped with a count (policy "skip") or refused (policy "error")."""
    values = table[column]
    missing = [i for i, v in enumerate(values) if is_missing_label(v)]
    if not missing:
        return table
    if policy == "error":
        raise ToolkitError(
            f"{where}: {len(missing)} of {len(values)} rows have no {column} (empty, NaN or null). "
            f"Fill them in or delete them, or set data.missing_labels=skip to train without them."
        )
    if len(missing) == len(values):
        raise ToolkitError(f"{where}: every row's {column} is empty, NaN or null. Check data.label_column.")
    log.warning("%s: skipped %d rows with no %s (empty, NaN or null)", where, len(missing), column)
    import datasets

    dropped = set(missing)
    table = table.select([i for i in range(len(values)) if i not in dropped])
    remaining = table[column]
    if all(isinstance(v, float) and v.is_integer() for v in remaining):
        # A JSON column of integers with nulls arrives as floats: 1.0 would otherwise become the class "1.0".
        table = table.cast_column(column, datasets.Value("int64"))
    return table
