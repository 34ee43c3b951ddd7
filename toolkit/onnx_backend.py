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
        import onnxruntime
        from tokenizers import Tokenizer

        export = read_export(self.folder)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        # ONNX Runtime sizes its pool from every core of the host, cgroup quota or not: the CPUs this process may use.
        options.intra_op_num_threads = hardware.torch_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.folder / EXPORT_DIR / export["file"]), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.quantized = export.get("quantized")
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        settings = _read_json(self.folder / "tokenizer_config.json")
        limit = settings.get("model_max_length") or self.cfg.max_length
        self.max_length = min(self.cfg.max_length, limit if limit < 1e9 else self.cfg.max_length)
        self.tokenizer.enable_truncation(self.max_length)
        pad = settings.get("pad_token") or "[PAD]"
        pad_id = self.tokenizer.token_to_id(pad)
        if pad_id is None:
            raise ToolkitError(f"{self.folder}: the tokenizer has no padding token '{pad}'. Use --backend torch.")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)
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


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
