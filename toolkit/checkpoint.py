"""Atomic checkpoints: write to a temp folder, then rename, so a kill never corrupts the last good one."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import ToolkitError

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: finding a checkpoint (the ONNX predictor's path) must not import it.

TRAINING_STATE = "training_state.pt"
UMASK = os.umask(0o022)  # read once, at import (before any threads): reading it means setting it
os.umask(UMASK)
STATE_JSON = "state.json"


def write_atomically(folder: Path, write: Callable[[Path], None], again: str | None = None) -> None:
    """Call ``write(tmp)`` then swap ``tmp`` into ``folder``. A refused write raises one ToolkitError naming the
    cause and ``again``, the command that carries on once it is fixed (default: resuming the run).

    If the process dies between the two renames, ``.<name>.old`` still holds the previous
    checkpoint and :func:`find_checkpoint` falls back to it.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        share_like_the_rest(tmp)
    except BaseException as err:
        full = disk_nearly_full(tmp.parent)  # before the cleanup frees what the half-written copy took
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written copy helps nobody; the previous one is untouched
        if is_write_failure(err) or (full and isinstance(err, Exception)):
            cause, fix = write_failure(err)
            kept = f"The previous {folder.name}/ is intact; " if folder.exists() else "Nothing was written; "
            again = again or f"toolkit train --resume {folder.parent}"
            raise ToolkitError(f"could not write {folder}: {cause}. {kept}{fix}, then run `{again}`.") from err
        raise
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


# What libraries say when the OS refused a write: torch.save's zip writer reports a short write as "unexpected pos".
DISK_FULL = (
    "No space left on device",
    "File too large",
    "failed writing file",
    "Disk quota exceeded",
    "unexpected pos",
)


def disk_nearly_full(folder: Path, margin: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


def is_write_failure(err: BaseException) -> bool:
    """The disk or the permissions refused a write: an OSError, or a library's error wrapping one (safetensors and
    torch.save raise their own types with the OS message inside)."""
    return isinstance(err, OSError) or (isinstance(err, Exception) and any(m in str(err) for m in DISK_FULL))


def write_failure(err: BaseException) -> tuple[str, str]:
    """What refused a write, and what the user can do about it."""
    code = getattr(err, "errno", None)
    if code == errno.EROFS:
        return "the file system is read-only", "copy the run folder to a writable place"
    if code in (errno.EACCES, errno.EPERM):
        return "no permission to write there", "make the folder writable, or copy the run folder to a writable place"
    if (
        code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        or any(m in str(err) for m in DISK_FULL)
        or not isinstance(err, OSError)
    ):  # a library's own error gets here only when the disk is full
        return "the disk is full (or a size limit was reached)", "free some space"
    return getattr(err, "strerror", None) or str(err).splitlines()[0], "fix that"


def share_like_the_rest(folder: Path) -> None:
    """Give files written through a private temporary file (transformers saves model.safetensors that way, 0600)
    the permissions every other file of the run gets from the umask (usually 0644)."""
    umask = UMASK
    for path in Path(folder).rglob("*"):
        if path.is_file() and path.stat().st_mode & 0o777 == 0o600:
            path.chmod(0o666 & ~umask)


def find_checkpoint(run_dir: Path, name: str, intact: bool = False) -> Path | None:
    """The checkpoint folder ``name`` (best/last), or its previous copy if a swap was interrupted.

    ``intact``: raise ToolkitError naming the damaged file when neither copy can be read."""
    found = [
        c
        for c in (run_dir / name, run_dir / f".{name}.old")
        if (c / STATE_JSON).is_file() or (c / "config.json").is_file()
    ]
    if not intact or not found:
        return found[0] if found else None
    for candidate in found:
        if not damaged_files(candidate):
            return candidate

    fix = (
        "cannot resume from it; best/ still serves predictions, and overwrite=true trains the run again"
        if name == "last"
        else "use its last/ (`--checkpoint last` in eval, predict and export), or train the run again"
    )
    raise ToolkitError(
        f"checkpoint {name}/ of '{run_dir}' is damaged: {', '.join(damaged_files(found[0]))} "
        f"(truncated or corrupt, e.g. the disk filled up): {fix}."
    )


def damaged_files(folder: Path) -> list[str]:
    """Weight and state files in ``folder`` that cannot be read back (truncated or corrupt), by path."""
    from safetensors import safe_open

    bad = []
    weights = sorted(Path(folder).glob("*.safetensors"))
    if not weights and not list(Path(folder).glob("*.bin")):
        bad.append(f"{Path(folder) / 'model.safetensors'} (missing: the folder holds no weights file)")
    index = Path(folder) / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError):
            shards = set()
            bad.append(str(index))
        bad += [f"{Path(folder) / shard} (missing)" for shard in sorted(shards) if not (Path(folder) / shard).is_file()]
    for path in weights:
        try:
            with safe_open(str(path), "numpy") as fh:
                fh.keys()
        except Exception:  # safetensors raises its own SafetensorError, and OSError on unreadable files
            bad.append(str(path))
    state = Path(folder) / TRAINING_STATE
    if state.is_file():
        try:
            with zipfile.ZipFile(state) as fh:  # torch.save's format; a cut file has no central directory
                fh.namelist()
        except (zipfile.BadZipFile, OSError):
            bad.append(str(state))
    return bad


def rng_state() -> dict:
    import torch

    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def save_training_state(folder: Path, optimizers: list, schedulers: list, counters: dict) -> None:
    """Optimizers, schedulers, RNG (tensors, loaded back with weights_only=True) and loop counters (JSON)."""
    import torch

    torch.save(
        {
            "optimizer": [o.state_dict() for o in optimizers],
            "scheduler": [s.state_dict() for s in schedulers],
            "rng": rng_state(),
        },
        folder / TRAINING_STATE,
    )
    (folder / STATE_JSON).write_text(json.dumps(counters, indent=2))


STREAM_STATE = "stream_state.json"


def save_stream_states(folder: Path, states: list) -> None:
    """Each process's position in the training stream (source position, shuffle buffer, random state)."""
    (folder / STREAM_STATE).write_text(json.dumps(states))


def load_stream_state(folder: Path, process_index: int, processes: int) -> dict:
    path = Path(folder) / STREAM_STATE
    if not path.is_file():
        raise ToolkitError(
            f"{folder} holds no stream position ({STREAM_STATE}): it was not written by a streaming run. Resume it "
            "with data.streaming=false, or start again."
        )
    states = json.loads(path.read_text())
    if len(states) != processes:
        raise ToolkitError(
            f"{folder} was written by {len(states)} process(es), each at its own place in its part of the stream; "
            f"this resume has {processes}. Resume with {len(states)}."
        )
    return states[process_index]


def as_list(saved) -> list:
    """Training states hold a list of optimizer/scheduler states; checkpoints from before held one."""
    return saved if isinstance(saved, list) else [saved]


def load_training_state(folder: Path) -> tuple[dict, dict]:
    import torch

    state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=True)
    counters = json.loads((folder / STATE_JSON).read_text())
    return state, counters


def _load_full_state_dict(model: torch.nn.Module, state: dict) -> tuple[list, list]:
    """``load_state_dict(strict=False)``; a model sharded by FSDP2 (DTensor parameters) gets each rank's shard of
    the full tensors through torch.distributed.checkpoint instead."""
    from torch.distributed.tensor import DTensor

    if not any(isinstance(p, DTensor) for p in model.parameters()):
        return model.load_state_dict(state, strict=False)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    result = set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))
    return result.missing_keys, result.unexpected_keys


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load safetensors weights written by ``save_pretrained`` (single file, sharded, or a peft adapter)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
        return
    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    )
    state = {}
    for name in files:
        state.update(load_file(folder / name))
    missing, unexpected = _load_full_state_dict(model, state)
    # Tied weights (shared embeddings, LM heads) are saved once: a missing key that shares storage with a
    # loaded one is fine; anything else missing is a real mismatch.
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {params[k].data_ptr() for k in state if k in params}
    ignorable = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_missing", None) or []]  # e.g. sinusoids
    really_missing = [
        k
        for k in missing
        if not any(p.search(k) for p in ignorable) and (k not in params or params[k].data_ptr() not in loaded)
    ]
    if really_missing or unexpected:
        raise RuntimeError(
            f"checkpoint {folder} does not match the model: missing {really_missing[:5]}, unexpected {unexpected[:5]}"
        )
