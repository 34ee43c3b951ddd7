"""What the predictors of exported checkpoints (`toolkit export`) share: an ONNX Runtime session on the CPUs this
process may use, and the checkpoint's `tokenizers` tokenizer. No torch, no transformers, so `toolkit predict`
answers in a fraction of the time."""

from __future__ import annotations

import json
from pathlib import Path

from . import hardware
from .errors import ToolkitError
from .predictor import EXPORT_DIR, read_export


def open_session(folder: Path, file: str | None = None, spin: bool = True):
    """An ONNX Runtime session on a checkpoint's export (its main file, or ``file`` of it), using the CPUs this
    process may use."""
    import onnxruntime

    export = read_export(folder)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    # ONNX Runtime sizes its pool from every core of the host, cgroup quota or not: the CPUs this process may use.
    options.intra_op_num_threads = hardware.torch_threads()
    options.inter_op_num_threads = 1
    if not spin:  # its idle threads would busy-wait beside torch's between runs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(folder / EXPORT_DIR / (file or export["file"])), options, providers=["CPUExecutionProvider"]
    )


def fast_tokenizer(folder: Path, max_length: int, pad: bool = True):
    """(the checkpoint's ``tokenizers.Tokenizer``, truncating to the run's input length and padding each batch;
    that length). Raises when the tokenizer has no padding token."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    settings = _read_json(folder / "tokenizer_config.json")
    limit = settings.get("model_max_length") or max_length
    max_length = min(max_length, limit if limit < 1e9 else max_length)
    tokenizer.enable_truncation(max_length)
    if pad:
        pad_token = settings.get("pad_token") or "[PAD]"
        tokenizer.enable_padding(pad_id=pad_token_id(folder, tokenizer), pad_token=pad_token)
    return tokenizer, max_length


def pad_token_id(folder: Path, tokenizer) -> int:
    """The id of the checkpoint's padding token (tokenizer_config.json's, else [PAD])."""
    pad_token = _read_json(folder / "tokenizer_config.json").get("pad_token") or "[PAD]"
    pad_id = tokenizer.token_to_id(pad_token if isinstance(pad_token, str) else pad_token.get("content", ""))
    if pad_id is None:
        raise ToolkitError(f"{folder}: the tokenizer has no padding token '{pad_token}'. Use --backend torch.")
    return pad_id


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
