"""Predictors that run an exported checkpoint (`toolkit export`) with ONNX Runtime and the `tokenizers` library:
no torch, no transformers, so `toolkit predict` answers in a fraction of the time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import hardware
from .errors import ToolkitError
from .predictor import EXPORT_DIR, Predictor, read_export


class OnnxTextClassifier(Predictor):
    """The ONNX twin of predict.TextClassifier: the same answers ({"label", "scores"}) from the same checkpoint."""

    uses_torch = False
    task_verb = "classify"
    # Inputs are sorted by length first; batches of 16 pad even less than 32 and were 3-7 % faster here (1,066
    # rt-polarity sentences, fp32 and int8 exports, 2 Zen 3 cores; benchmarks/predict_speed.py).
    default_batch_size = 16

    def load(self) -> None:
        self.session = open_session(self.folder)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.quantized = read_export(self.folder).get("quantized")
        self.tokenizer, self.max_length = fast_tokenizer(self.folder, self.cfg.max_length)
        self.labels = json.loads((self.folder / "labels.json").read_text())

    def predict_batch(self, texts: list[str]) -> list[dict]:
        answers = []
        for probs in self.probabilities(texts):
            scores = {label: float(p) for label, p in zip(self.labels, probs)}
            answers.append({"label": max(scores, key=scores.get), "scores": scores})
        return answers

    def probabilities(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in self.input_names}
        logits = self.session.run(None, feed)[0].astype(np.float64)
        exp = np.exp(logits - logits.max(-1, keepdims=True))
        return exp / exp.sum(-1, keepdims=True)


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
