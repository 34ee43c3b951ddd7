"""Loading tabular text data from files, saved ``datasets`` folders or the hub, with clear errors."""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import splits
from .cache import cache_dir, cache_file, fingerprint, replace_atomically
from .errors import ToolkitError
from .hardware import usable_cpus
from .hub import hub_guard
from .read_errors import check_first_records, check_same_columns, quiet_readers, unreadable
from .tasks import get_task

log = logging.getLogger(__name__)

# Each file type's `datasets` builder: the file becomes a memory-mapped Arrow table in datasets' cache, read once
# and reused while the file is unchanged. Empty CSV cells are null; "NA", "none" and the like stay text.
_BUILDERS = {
    ".csv": ("csv", {"keep_default_na": False, "na_values": [""], "encoding": "utf-8"}),
    ".tsv": ("csv", {"sep": "\t", "keep_default_na": False, "na_values": [""], "encoding": "utf-8"}),
    ".json": ("json", {}),  # JSON Lines (as the hub's datasets often are) or one array of records
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
FILE_TYPES = ".csv, .tsv, .json, .jsonl or .parquet"
# Rows per record batch of the Arrow files toolkit has written (datasets' default: 1,000). Opening a mapped file
# touches each batch's header, and the kernel maps the pages around it (64 KB): at 10 million rows, 1,000-row
# batches made 630 MB of the tokenized file resident; 10,000-row batches, a tenth of that. A batched map writes
# each of its batches as one record batch, so its batch size is this too.
WRITER_BATCH = 10_000


def load_table(source: str, split: str = "train", streaming: bool = False):
    """Load one split as a ``datasets.Dataset`` (memory-mapped Arrow), or with ``streaming`` an
    ``IterableDataset`` that reads as it goes.

    ``source`` is a CSV/TSV/JSON/JSONL/Parquet file, a folder of such files (read as one table, shard by shard),
    a folder written by ``save_to_disk``, or a hub dataset id (optionally ``id:split`` to pick a split other than
    ``split``).
    """
    path = Path(source)
    if path.is_file():
        return _load_files(path, [path], streaming)
    if path.is_dir():
        shards = data_shards(path, split)
        if shards and not (path / "dataset_dict.json").exists() and not (path / "state.json").exists():
            return _load_files(path, shards, streaming)
        return _load_saved_folder(path, split, streaming)
    if path.suffix.lower() in _BUILDERS or source.startswith((".", "/")):
        raise ToolkitError(
            f"data file '{source}' does not exist. Check the path (relative paths start at the current folder)."
        )
    return _load_hub_dataset(source, split, streaming)


def data_shards(folder: Path, split: str | None = None) -> list[Path]:
    """The data files of a folder of shards (train-00000.parquet, ...), all of one type, in name order. When
    file names name splits (train, validation/valid/dev/val, test: datasets' keywords), only ``split``'s."""
    from datasets.data_files import SPLIT_KEYWORDS

    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in _BUILDERS)
    keywords = {str(name): words for name, words in SPLIT_KEYWORDS.items()}

    def names(f: Path, words: list[str]) -> bool:
        return bool(set(re.split(r"[-._ 0-9]+", f.stem.lower())) & set(words))

    if split is not None and any(names(f, w) for f in files for w in keywords.values()):
        files = [f for f in files if names(f, keywords.get(split, [split]))]
        if not files:
            raise ToolkitError(f"folder '{folder}' names its files by split, and none is for split '{split}'.")
    types = {f.suffix.lower() for f in files}
    if len(types) > 1:
        raise ToolkitError(
            f"folder '{folder}' mixes data file types ({', '.join(sorted(types))}). Keep one type of shard per folder."
        )
    return files


def _load_files(source: Path, files: list[Path], streaming: bool):
    import datasets

    for path in files:
        check_data_file(path)
    check_same_columns(source, files)
    suffix = files[0].suffix.lower()
    builder, options = _BUILDERS[suffix]
    try:
        with quiet_readers() as named, progress_bars(sum(f.stat().st_size for f in files) >= LARGE_FILE):
            batches = {} if streaming else {"writer_batch_size": WRITER_BATCH}
            table = datasets.load_dataset(
                builder, data_files=[str(f) for f in files], split="train", streaming=streaming, **options, **batches
            )
    except Exception as err:  # noqa: BLE001 - datasets wraps the reader's error; name the file and the cause
        raise unreadable(source, suffix, err, [*named, *files]) from err
    if streaming:
        stream = with_features(table, source, files)
        check_first_records(source, files, list(stream.features))
        return stream
    if len(table) == 0:
        raise ToolkitError(f"data file '{source}' has no rows. Point the config at a file with data.")
    return table


def with_features(stream, source, files: Sequence[Path] = ()):
    """A stream whose columns are known (read from its first rows when the source does not declare them);
    ``files``: the source's files, where a reading error is looked for."""
    if stream.features is not None:
        return stream
    try:
        with quiet_readers() as named:
            return stream._resolve_features()
    except StopIteration as err:
        raise ToolkitError(f"data '{source}' has no rows. Point the config at data.") from err
    except Exception as err:  # noqa: BLE001 - the reader's error, with the file named
        raise unreadable(Path(str(source)), Path(str(source)).suffix, err, [*named, *files]) from err


def preview_frame(path: Path, rows: int = 10_000):
    """The first ``rows`` rows of a data file as a pandas frame (the studio's preview and column guesses), with
    the same checks and errors as training's reader."""
    import pandas as pd

    check_data_file(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            frame = next(pq.ParquetFile(path).iter_batches(batch_size=rows)).to_pandas()
        elif suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            frame = pd.read_csv(path, sep=sep, nrows=rows, encoding="utf-8", keep_default_na=False, na_values=[""])
        else:
            first = path.read_text(encoding="utf-8").lstrip()[:1]
            frame = pd.read_json(path, lines=first != "[", encoding="utf-8", nrows=rows if first != "[" else None)
    except UnicodeDecodeError as err:
        raise unreadable(path, suffix, err) from err
    except (ValueError, StopIteration, OSError, pd.errors.ParserError) as err:
        raise unreadable(path, suffix, err) from err
    if len(frame) == 0:
        raise ToolkitError(f"data file '{path}' has no rows. Point the config at a file with data.")
    return frame


def count_rows_in_file(path: Path) -> int:
    """Rows in a data file without parsing it: Parquet's metadata, else lines (less a CSV/TSV header line)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"
    return lines - (suffix in (".csv", ".tsv"))


LARGE_FILE = 10 * 2**20  # bytes; datasets' own progress bars are shown for files and tables at least this large
LARGE_TABLE = 50_000  # rows


@contextlib.contextmanager
def progress_bars(shown: bool):
    """datasets' progress bars (converting, tokenizing) only where they say something: on small data they would
    flash by, and in a notebook each is a widget above the training bar."""
    import datasets

    hide = not shown and datasets.is_progress_bar_enabled()
    if hide:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hide:
            datasets.enable_progress_bars()


def check_data_file(path: Path) -> None:
    """What can be told before reading: the type, an empty file, binary content in a text format."""
    if path.suffix.lower() not in _BUILDERS:
        raise ToolkitError(f"data file '{path}' has an unsupported type '{path.suffix}'. Use {FILE_TYPES}.")
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


def _load_saved_folder(path: Path, split: str, streaming: bool = False):
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
    return loaded.to_iterable_dataset(num_shards=max(1, len(loaded.cache_files))) if streaming else loaded


def _load_hub_dataset(source: str, split: str, streaming: bool = False):
    import datasets

    repo_id, _, chosen = source.partition(":")
    with hub_guard(repo_id, repo_type="dataset"):
        table = datasets.load_dataset(repo_id, split=chosen or split, streaming=streaming)
    return with_features(table, source) if streaming else table


CONFIG_FIX = "Set the right name in the config (e.g. data.text_column=...)."
EVAL_FIX = "A finished run reads the columns it was trained with ({columns}): rename the file's columns to those."


def require_columns(ds, columns: list[str], where: str, fix=CONFIG_FIX) -> None:
    """Stop with a clear message when a configured column is not in the data; ``fix`` says what to do about it
    (training: the config, see :func:`role_fix`; evaluating a finished run: the file, see EVAL_FIX), as a text or
    a function of the missing column."""
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
    """The configured text splits (see :func:`toolkit.splits.load_splits`), each checked the same way; with
    data.streaming, train is a stream (see :func:`stream_splits`).

    ``required`` columns must exist; rows where any of ``text_columns`` is empty are skipped (and counted), and so
    are rows whose ``label_column`` is missing (``missing_labels="error"`` refuses them instead).
    """

    def clean(table, where: str):
        require_columns(table, required, where, role_fix(cfg))
        table = drop_empty_text(table, text_columns, where)
        if label_column:
            table = drop_missing_labels(table, label_column, where, missing_labels)
        return table

    def load_split(split: str, source: str, where: str):
        return clean(load_table(source, split), where)

    if getattr(cfg.data, "streaming", False):
        return stream_splits(cfg, load_split, clean)
    return splits.load_splits(cfg, load_split, "a CSV/JSON/JSONL/Parquet file, a saved dataset folder or a hub id")


STREAM_HOLDOUT = 1_000  # rows of a stream that validate when no data.validation is given (data.max_eval_rows wins)


def stream_splits(cfg, load_split, clean) -> dict:
    """Train as a stream (read as training goes); validation and test as tables. Without data.validation, the
    stream's first rows validate and training reads the rest; data.max_train_rows takes the stream's first rows."""
    import datasets

    if not cfg.data.train:
        raise ToolkitError("no training data: set data.train to a data file, a folder of shards or a hub id.")
    where = f"data.train ('{cfg.data.train}', streamed)"
    train = clean(load_table(cfg.data.train, "train", streaming=True), where)
    out = {"train": train}
    limits = {"validation": cfg.data.max_eval_rows, "test": cfg.data.max_test_rows}
    for split in ("validation", "test"):
        source = getattr(cfg.data, split)
        if source:
            out[split] = splits.sample(load_split(split, source, f"data.{split} ('{source}')"), limits[split], cfg.seed)
    if "validation" not in out and cfg.data.holdout > 0:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Each process reads its own part of the stream: the first rows of one part cannot be left out of all.
            raise ToolkitError(
                "data.streaming on several processes needs data.validation (a file or folder of its own): a "
                "stream's first rows cannot be held out of every process's part. Or set data.holdout=0."
            )
        count = cfg.data.max_eval_rows or STREAM_HOLDOUT
        from .streams import readable

        held = list(readable(train.take(count), "Fix or re-export the data."))
        out["validation"] = datasets.Dataset.from_list(held, features=train.features)
        out["train"] = train.skip(count)
        log.info("no data.validation: the stream's first %d rows validate; training reads the rest", count)
    if cfg.data.max_train_rows:
        out["train"] = out["train"].take(cfg.data.max_train_rows)
    return out


def drop_empty_text(table, columns: list[str], where: str):
    """Rows where any of ``columns`` is empty, blank, null or not text: skipped, with a count in the log."""
    import pyarrow.compute as pc

    def keep(batch):
        ok = None
        for column in columns:
            good = text_present(batch.column(column))
            ok = good if ok is None else pc.and_(ok, good)
        return ok

    described = " or ".join(columns)
    return keep_rows(
        table,
        keep,
        ("text", *columns),
        where,
        f"empty or missing {described}",
        f"every row has empty {described}. Check the column settings",
    )


# Label cells that mean "no label": never a class of their own. ("none" and "NA" stay: they can be real classes.)
MISSING_LABEL_TEXT = {"", "nan", "null", "n/a", "<na>"}


def drop_missing_labels(table, column: str, where: str, policy: str = "skip"):
    """Rows with an empty, NaN or null label: skipped with a count (policy "skip") or refused (policy "error")."""
    import pyarrow.compute as pc

    if policy == "error" and is_streaming(table):

        def refuse_missing(batch):
            present = label_present(batch.column(column))
            if not pc.all(present).as_py():
                raise ToolkitError(
                    f"{where}: a row has no {column} (empty, NaN or null). Fill it in or delete it, or set "
                    "data.missing_labels=skip to train without such rows."
                )
            return present

        return keep_rows(
            table, refuse_missing, ("label", column), where, "no label", f"every row's {column} is missing"
        )
    if policy == "error":
        missing = count_rows(table, lambda batch: pc.invert(label_present(batch.column(column))))
        if missing:
            raise ToolkitError(
                f"{where}: {missing} of {len(table)} rows have no {column} (empty, NaN or null). "
                f"Fill them in or delete them, or set data.missing_labels=skip to train without them."
            )
        return table
    table = keep_rows(
        table,
        lambda batch: label_present(batch.column(column)),
        ("label", column),
        where,
        f"no {column} (empty, NaN or null)",
        f"every row's {column} is empty, NaN or null. Check data.label_column",
    )
    return integral_floats_as_integers(table, column)


def integral_floats_as_integers(table, column: str):
    """A JSON column of integers with nulls arrives as floats: 1.0 would otherwise become the class "1.0"."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    feature = table.features.get(column) if table.features else None
    if not isinstance(feature, datasets.Value) or not pa.types.is_floating(feature.pa_type) or is_streaming(table):
        return table
    whole = count_rows(table, lambda batch: pc.equal(batch.column(column), pc.floor(batch.column(column))))
    return table.cast_column(column, datasets.Value("int64")) if whole == len(table) else table


def text_present(values):
    """True where a cell holds text with something other than whitespace."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return pa.array([False] * len(values))  # numbers or lists are not text
    return pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0), False)


def label_present(values):
    """False where a label cell is null, NaN, or text that means "no label"."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = pc.is_null(values, nan_is_null=pa.types.is_floating(values.type))
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        blank = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(values)), value_set=pa.array(sorted(MISSING_LABEL_TEXT)))
        missing = pc.or_(missing, pc.fill_null(blank, True))
    return pc.invert(missing)


def is_streaming(table) -> bool:
    import datasets

    return isinstance(table, datasets.IterableDataset)


SCAN_ROWS = 100_000  # rows per Arrow batch when a column is scanned: bounded memory at any table size


def count_rows(table, predicate) -> int:
    """Rows where ``predicate(arrow batch)`` is true, scanned in batches."""
    import pyarrow.compute as pc

    return sum(pc.sum(pc.fill_null(predicate(batch), False)).as_py() or 0 for batch in scan(table))


def scan(table):
    """The table in Arrow batches. A table that is whole cache files (as loaded) is read from them with plain
    reads, not through its memory map: pages of a mapped file count as the process's resident memory once
    touched, and a scan touches every page (1.3 GB at 10 million rows)."""
    import pyarrow as pa

    files = [f["filename"] for f in table.cache_files]
    if table._indices is None and files and sum(file_rows(f) for f in files) == len(table):
        for path in files:
            with pa.OSFile(path) as source:
                yield from pa.ipc.open_stream(source)
        return
    yield from table.with_format("arrow").iter(batch_size=SCAN_ROWS)


def file_rows(path: str) -> int:
    """Rows in an Arrow stream file, from its batches' headers."""
    import pyarrow as pa

    with pa.memory_map(path) as source:  # only the headers are read
        return sum(batch.num_rows for batch in pa.ipc.open_stream(source))


def keep_rows(table, keep, key: tuple, where: str, skipped: str, none_left: str):
    """The rows where ``keep(arrow batch)`` is true. A table is scanned once in Arrow batches and, when rows go,
    selected through an index file in the cache; what the scan found is kept in the cache too (keyed by the
    table's fingerprint and ``key``), so that the next run on the same data does not scan again. A stream is
    filtered as it is read."""
    import numpy as np

    if is_streaming(table):
        log.info("%s: rows with %s will be skipped as they stream", where, skipped)
        import pyarrow as pa

        # Rows as Python batches: two Arrow-format filters in a row trip datasets ("===MASK===" twice).
        return table.filter(lambda batch: keep(pa.table(batch)).to_numpy(zero_copy_only=False), batched=True)
    name = fingerprint(table._fingerprint, "keep_rows", key, CACHE_VERSION, toolkit_version())
    found, rows = cache_dir() / f"{name}.json", cache_dir() / f"{name}.npy"
    if found.is_file() and (json.loads(found.read_text())["kept"] == len(table) or rows.is_file()):
        kept = json.loads(found.read_text())["kept"]
        selection = None if kept == len(table) else np.load(rows, mmap_mode="r")
    else:
        masks = [keep(batch).to_numpy(zero_copy_only=False) for batch in scan(table)]
        mask = np.concatenate(masks) if masks else np.zeros(0, dtype=bool)
        kept = int(mask.sum())
        selection = None if kept in (len(table), 0) else np.flatnonzero(mask)
        # Written whole or not at all: other processes (DDP ranks, other machines on shared storage) may read them.
        if selection is not None:
            buffer = io.BytesIO()
            np.save(buffer, selection)
            replace_atomically(rows, buffer.getvalue())
        replace_atomically(found, json.dumps({"rows": len(table), "kept": kept}).encode())
    if kept == len(table):
        return table
    if kept == 0:
        raise ToolkitError(f"{where}: {none_left}.")
    log.warning("%s: skipped %d rows with %s", where, len(table) - kept, skipped)
    return table.select(selection, indices_cache_file_name=str(cache_file(name)), new_fingerprint=name)


def encode(table, function, key: dict, where: str, what: str = "tokenized"):
    """``function`` (a batch of rows -> a batch of features, rows may be dropped) over ``table``: a batched
    ``map``, cached on disk under a name made of the table's fingerprint and ``key`` (everything that changes
    the features: tokenizer, lengths, columns, labels, task settings), run in several processes on large tables.
    The same data and settings next time read the cached, memory-mapped features instead (the log says which).
    A stream is encoded as it is read."""
    if is_streaming(table):
        return table.map(function, batched=True, remove_columns=list(table.column_names or []))
    version = toolkit_version()
    name = fingerprint(table._fingerprint, key, getattr(function, "__qualname__", ""), CACHE_VERSION, version)
    path = cache_file(name)
    cached = any(cache_dir().glob(f"{name}*.arrow"))
    tic = time.perf_counter()
    with progress_bars(len(table) >= LARGE_TABLE):
        out = table.map(
            function,
            batched=True,
            remove_columns=table.column_names,
            cache_file_name=str(path),
            new_fingerprint=name,
            batch_size=WRITER_BATCH,  # a batched map writes each batch as one record batch of the cache file
            writer_batch_size=WRITER_BATCH,
            num_proc=map_processes(len(table)) if not cached else None,
            desc=f"{what} {where}",
        )
    if cached:
        log.info("%s: %d %s rows read from the cache (%s); nothing to redo", where, len(out), what, name)
    else:
        log.info(
            "%s: %s %d rows in %.1f s, cached for the next run (%s)",
            where,
            what,
            len(out),
            time.perf_counter() - tic,
            name,
        )
    return out


def toolkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # about 30 ms: not at start-up

    try:
        return version("toolkit")
    except PackageNotFoundError:
        return ""


CACHE_VERSION = 1  # bumped when an encoding function's output changes for the same inputs


def map_processes(rows: int) -> int | None:
    """Processes for a ``map``: one per usable CPU on large tables (below 50,000 rows starting them costs more than
    they save), none (this process) otherwise."""
    cpus = usable_cpus()
    return cpus if rows >= 50_000 and cpus > 1 else None


LENGTH = "length"  # the column of each example's length: length-grouped batches, shortest-first evaluation


def lengths(table):
    """The length column as a numpy array of int32 (no Python list of every example; 40 MB at 10 million rows)."""
    import numpy as np

    if is_streaming(table):
        return None  # a stream's batches are neither length-grouped nor split by length
    if table._indices is None:
        chunks = table.data.column(LENGTH).chunks
    else:
        chunks = [b.column(LENGTH) for b in table.select_columns([LENGTH]).with_format("arrow").iter(SCAN_ROWS)]
    return np.concatenate([c.to_numpy().astype(np.int32) for c in chunks]) if chunks else np.zeros(0, np.int32)


def by_length(table):
    """The table shortest first (batches of similar lengths pad little; metrics do not depend on the order)."""
    if table is None:
        return None

    name = fingerprint(table._fingerprint, "by_length")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Specifying null_placement", FutureWarning)  # datasets' call, not ours
        return table.sort(LENGTH, indices_cache_file_name=str(cache_file(name)), new_fingerprint=name)


def first_rows(table, column: str, count: int = 5) -> list:
    """The first ``count`` values of a column, without reading the rest of it."""
    if is_streaming(table):
        return [row[column] for row in table.take(count)]
    return list(table.select(range(min(count, len(table))))[column])
