"""toolkit's cache of what it derives from data (tokenized tables, row selections, decode checks, label sets), and
the small file helpers it writes them with. No heavy imports: toolkit.data, toolkit.splits, the image family's data
module and the sweeps all use it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then move it into place in one step."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def cache_dir() -> Path:
    """Where toolkit keeps what it derives from data (tokenized tables, row selections): beside datasets' own
    cache (HF_DATASETS_CACHE), so that one setting moves both."""
    import datasets

    folder = Path(datasets.config.HF_DATASETS_CACHE) / "toolkit"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_file(name: str) -> Path:
    return cache_dir() / f"{name}.arrow"


def fingerprint(*parts) -> str:
    """A stable name for a table derived from others: a hash of their fingerprints and of the settings."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
