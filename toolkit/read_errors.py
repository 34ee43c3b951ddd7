"""Reader errors as one line naming the file and the fix: bytes that are not UTF-8, shards whose columns differ,
files datasets' readers could not read. Shared by loading (toolkit.data) and streaming (toolkit.streams)."""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import logging
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from .errors import ToolkitError


class NamedFiles(logging.Handler):
    """The files datasets' readers name as they fail ("Failed to read file '...' with error ...")."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.files: list[Path] = []

    def emit(self, record: logging.LogRecord) -> None:
        quoted = re.search(r"'([^']+)'", record.getMessage())
        if quoted and Path(quoted.group(1)).is_file():
            self.files.append(Path(quoted.group(1)))


@contextlib.contextmanager
def quiet_readers():
    """datasets' readers log a file they cannot read before raising; the error line toolkit prints says it once.
    Yields the list of the files they named, filled as they fail (a folder's error can then name its shard)."""
    reader_log = logging.getLogger("datasets.packaged_modules")
    named, propagate = NamedFiles(), reader_log.propagate
    reader_log.addHandler(named)
    reader_log.propagate = False
    try:
        yield named.files
    finally:
        reader_log.removeHandler(named)
        reader_log.propagate = propagate


def unreadable(source: Path, suffix: str, err: Exception, files: Sequence[Path] = ()) -> ToolkitError:
    """A reader's error as one line naming the file; ``files``: where to look for a byte that is not UTF-8 (the
    files the reader named first, then a folder's shards)."""
    if decode_error(err) is not None:
        return not_utf8([*files, source], given=source if source.is_file() else None)
    mismatch = column_mismatch(err)
    if mismatch is not None:
        return other_columns(mismatch, files, source)
    if "corresponds to no data" in str(err):  # a header without rows
        return ToolkitError(f"data file '{source}' has no rows. Point the config at a file with data.")
    reason = str(err.__cause__ or err).strip().splitlines()
    return ToolkitError(
        f"data file '{source}' could not be read as {suffix}: {reason[-1] if reason else type(err).__name__}. "
        "Fix or re-export the file."
    )


def decode_error(err: BaseException) -> UnicodeDecodeError | None:
    """The UnicodeDecodeError behind a reader's error (datasets and pandas wrap it), if that is what it is."""
    return cause_of(err, UnicodeDecodeError)


def column_mismatch(err: BaseException):
    """datasets' CastError behind a reader's error, when a file's columns differ from the first rows'."""
    from datasets.table import CastError

    return cause_of(err, CastError)


def cause_of(err: BaseException | None, kind: type):
    """``err`` or the first exception of type ``kind`` in its chain (None: none is)."""
    while err is not None and not isinstance(err, kind):
        err = err.__cause__ or err.__context__
    return err


def other_columns(mismatch, files: Sequence[Path], folder: Path | None = None) -> ToolkitError:
    """A shard whose columns differ from the first rows' (datasets names neither), named when one of ``files``
    starts with those columns (the JSON reader adds the missing ones before it compares)."""
    found, expected = mismatch.table_column_names, mismatch.requested_column_names
    new = set(found) - set(expected)

    def holds(path: Path) -> bool:
        first = set(first_columns(path) or ()) if path.is_file() else set()
        return first == set(found) or (bool(new) and first - set(expected) == new)

    shard = next((f for f in dict.fromkeys(files) if holds(f)), None)
    found = first_columns(shard) if shard else found
    return different_columns(shard, found, expected, "the columns of the first rows", folder)


def different_columns(
    shard: Path | None, found: list[str], expected: list[str], whose: str, folder: Path | None = None
) -> ToolkitError:
    where = f"data file '{shard}'" if shard else "a shard"
    every = f"Every shard of '{folder}'" if folder else "Every shard"
    return ToolkitError(
        f"{where} has the columns {', '.join(found)}; expected {', '.join(expected)}, {whose}. {every} needs the "
        f"same columns: fix that shard or move it out of the folder."
    )


def not_utf8(files: Sequence[Path], given: Path | None) -> ToolkitError:
    """The first of ``files`` that is not UTF-8 text, named with the offset of its first bad byte in that file (the
    decoder's own offset is into the chunk it was given) and a command that re-saves it. ``given``: the file the
    config names, which may be re-saved beside itself; any other is a shard, re-saved under its own name (a copy
    beside it would be read as one more shard)."""
    for path in dict.fromkeys(files):
        found = first_non_utf8(path) if path.is_file() and path.suffix.lower() != ".parquet" else None
        if found is not None:
            offset, byte = found
            return ToolkitError(
                f"data file '{path}' is not UTF-8 text (byte {byte!r} at offset {offset}). Re-save it as UTF-8, "
                f"e.g. `{iconv_command(path, in_place=path != given)}`."
            )
    named = given or (files[0] if files else "the data")
    return ToolkitError(f"data '{named}' is not UTF-8 text. Re-save it as UTF-8 (e.g. with iconv).")


def first_non_utf8(path: Path) -> tuple[int, bytes] | None:
    """The offset of the first byte of ``path`` that is not UTF-8, and that byte (None: all of it is UTF-8)."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            pending = len(decoder.getstate()[0])  # a character cut by the chunk's end, kept for the next
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                return offset - pending + err.start, err.object[err.start : err.start + 1]
            if not chunk:
                return None
            offset += len(chunk)


def iconv_command(path: Path, in_place: bool) -> str:
    """A command that re-saves ``path`` from Latin-1 as UTF-8: beside it, or under its own name (the original kept
    as <name>.latin1, a type no folder of shards reads)."""
    if not in_place:
        return f"iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}"
    original, kept = shlex.quote(str(path)), shlex.quote(f"{path}.latin1")
    return f"mv {original} {kept} && iconv -f latin1 -t utf-8 {kept} > {original}"


def check_same_columns(source: Path, files: list[Path]) -> None:
    """Shards whose files declare their columns (a CSV/TSV header, a Parquet schema) declare the same ones: one that
    differs is named now, not met as a schema error from inside datasets when reading reaches it."""
    if len(files) < 2 or files[0].suffix.lower() not in (".csv", ".tsv", ".parquet"):
        return
    expected = first_columns(files[0])
    for path in files[1:]:
        found = first_columns(path)
        if set(found) != set(expected):
            raise different_columns(path, found, expected, f"the columns of '{files[0].name}'", source)


def check_first_records(source: Path, files: list[Path], columns: list[str]) -> None:
    """A JSON Lines shard whose first record has a key the stream's columns lack would stop training when the
    stream reaches it (datasets fills in the keys a record leaves out, but refuses new ones): named now."""
    if len(files) < 2 or files[0].suffix.lower() not in (".json", ".jsonl"):
        return
    for path in files:
        found = first_columns(path) or []
        if set(found) - set(columns):
            raise different_columns(path, found, columns, "the columns of the first rows", source)


def first_columns(path: Path) -> list[str] | None:
    """The column names a CSV/TSV header or a Parquet schema declares, or a JSON Lines file's first record has
    (None: not known without reading the file)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:  # a bad byte is reported when read
        if suffix in (".csv", ".tsv"):
            return next(csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ","), [])
        first = fh.readline(1 << 20)  # a JSON array's one long line is not read whole: its columns stay unknown
    with contextlib.suppress(ValueError):
        record = json.loads(first)
        return list(record) if isinstance(record, dict) else None
    return None
