"""Atomic checkpoints: write to a temp folder, then rename, so a kill never corrupts the last good one."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

TRAINING_STATE = "training_state.pt"
STATE_JSON = "state.json"


def write_atomically(folder: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then swap ``tmp`` into ``folder``.

    If the process dies between the two renames, ``.<name>.old`` still holds the previous
    checkpoint and :func:`find_checkpoint` falls back to it.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(run_dir: Path, name: str) -> Path | None:
    """The checkpoint folder ``name`` (best/last), or its previous copy if a swap was interrupted."""
    for candidate in (run_dir / name, run_dir / f".{name}.old"):
        if (candidate / STATE_JSON).is_file() or (candidate / "config.json").is_file():
            return candidate
    return None


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def save_training_state(folder: Path, optimizers: list, schedulers: list, counters: dict) -> None:
    """Optimizers, schedulers, RNG (tensors, loaded back with weights_only=True) and loop counters (JSON)."""
    torch.save(
        {"optimizer": [o.state_dict() for o in optimizers], "scheduler": [s.state_dict() for s in schedulers], "rng": rng_state()},
        folder / TRAINING_STATE,
    )
    (folder / STATE_JSON).write_text(json.dumps(counters, indent=2))


def as_list(saved) -> list:
    """Training states hold a list of optimizer/scheduler states; checkpoints from before held one."""
    return saved if isinstance(saved, list) else [saved]


def load_training_state(folder: Path) -> tuple[dict, dict]:
    state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=True)
    counters = json.loads((folder / STATE_JSON).read_text())
    return state, counters


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load safetensors weights written by ``save_pretrained`` (single file, sharded, or a peft adapter)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
        return
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    state = {}
    for name in files:
        state.update(load_file(folder / name))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied weights (shared embeddings, LM heads) are saved once: a missing key that shares storage with a
    # loaded one is fine; anything else missing is a real mismatch.
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {params[k].data_ptr() for k in state if k in params}
    ignorable = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_missing", None) or []]  # e.g. sinusoids
    really_missing = [k for k in missing if not any(p.search(k) for p in ignorable)
                      and (k not in params or params[k].data_ptr() not in loaded)]
    if really_missing or unexpected:
        raise RuntimeError(f"checkpoint {folder} does not match the model: missing {really_missing[:5]}, unexpected {unexpected[:5]}")
