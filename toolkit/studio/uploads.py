"""Uploads into the studio: each content once, in a folder named by its hash; a zip of class folders extracted with
every member checked to stay inside it; sizes bounded."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

from ..errors import ToolkitError
from .paths import inside, safe_name


class Uploads:
    def __init__(self, folder: Path, max_upload_mb: float):
        self.folder, self.max_upload_mb = folder, max_upload_mb
        # The Train form saves its uploads at every check of the form: each file is hashed once, not at each check.
        self.digests: dict[tuple, str] = {}

    def save(self, source: str | Path, filename: str | None = None) -> Path:
        """Copy an uploaded file into the upload folder under a safe name (a zip of class folders is extracted).

        Each content gets its own folder, named by its hash: the same file uploaded again is not copied again, and
        a file a queued or training run reads is never replaced or deleted."""
        source = Path(source)
        size = source.stat().st_size
        if size > self.max_upload_mb * 2**20:
            raise ToolkitError(
                f"'{filename or source.name}' is {size / 2**20:.1f} MB; uploads are limited to "
                f"{self.max_upload_mb:g} MB. Give a path on the studio's machine instead."
            )
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or source.name).name).lstrip("._") or "upload"
        folder = self.folder / self.digest(source)[:16]
        target = folder / safe_name(stem[:64], "file name")
        if source.suffix.lower() == ".zip" or target.suffix.lower() == ".zip":
            return self._extract(source, target.with_suffix(""))
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
            shutil.copyfile(source, tmp)
            tmp.replace(target)  # never a half-copied file under the final name
        return target

    def digest(self, source: Path) -> str:
        """The SHA-256 of a file's content, computed again only when the file has changed."""
        found = source.stat()
        key = (str(source.resolve()), found.st_size, found.st_mtime_ns)
        if key not in self.digests:
            digest = hashlib.sha256()
            with open(source, "rb") as fh:
                for block in iter(lambda: fh.read(2**20), b""):
                    digest.update(block)
            self.digests[key] = digest.hexdigest()
        return self.digests[key]

    def _extract(self, archive: Path, target: Path) -> Path:
        """A zip of class folders, extracted once, with every member checked to stay inside ``target``."""
        if not target.is_dir():
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.mkdir(parents=True)
            try:
                total = 0
                with zipfile.ZipFile(archive) as zipped:
                    for member in zipped.infolist():
                        total += member.file_size
                        if total > 4 * self.max_upload_mb * 2**20:
                            raise ToolkitError(
                                f"'{archive.name}' unpacks to more than {4 * self.max_upload_mb:g} MB: refused."
                            )
                        try:
                            inside(tmp, tmp / member.filename)
                        except ToolkitError:
                            raise ToolkitError(
                                f"'{archive.name}' holds '{member.filename}', a path outside the "
                                f"archive's folder: refused."
                            ) from None
                    zipped.extractall(tmp)
                tmp.rename(target)
            except (ToolkitError, zipfile.BadZipFile, OSError) as err:
                shutil.rmtree(tmp, ignore_errors=True)
                try:
                    target.parent.rmdir()  # the content's folder, when nothing else was ever stored in it
                except OSError:
                    pass
                if isinstance(err, ToolkitError):
                    raise
                if not target.is_dir():
                    raise ToolkitError(f"'{archive.name}' is not a readable zip archive ({err}).") from err
        # A zip of one folder holding the class folders: use that folder.
        entries = [p for p in target.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        return entries[0] if len(entries) == 1 and entries[0].is_dir() and any(entries[0].iterdir()) else target


def upload_cache_file(path: str) -> str:
    """A file the client uploaded: it lies in Gradio's upload cache, never elsewhere on this machine (a raw API
    request could otherwise name any server file)."""
    cache = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()
    resolved = Path(path).resolve()
    if cache not in resolved.parents:
        raise ToolkitError("only files uploaded to the studio can be used here.")
    return str(resolved)
