"""The text classifier's predictors: the run's weights (torch) and its ONNX export (ONNX Runtime and `tokenizers`,
no torch or transformers), with the same answers: ``{"label": best label, "scores": {label: probability}}``.

torch and transformers are imported only where the weights are used, so that the export's predictor never loads
them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.export import export_logits
from toolkit.models import from_pretrained_quietly
from toolkit.onnx_backend import fast_tokenizer, open_session
from toolkit.predictor import Predictor, read_export


class TextClassifier(Predictor):
    """Text classification with the run's weights."""

    task_verb = "classify"

    def load(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = load_classifier(self.folder, **self.attention()).eval().to(self.device)
        labels_file = self.folder / "labels.json"
        config = self.model.config
        self.labels = (
            json.loads(labels_file.read_text())
            if labels_file.is_file()
            else [config.id2label[i] for i in range(config.num_labels)]
        )
        limit = getattr(self.tokenizer, "model_max_length", None) or self.cfg.max_length
        self.max_length = min(self.cfg.max_length, limit)

    def predict_batch(self, texts: list[str]) -> list[dict]:
        answers = []
        for probs in self.probabilities(texts):
            scores = {label: float(p) for label, p in zip(self.labels, probs)}
            answers.append({"label": max(scores, key=scores.get), "scores": scores})
        return answers

    def probabilities(self, texts: list[str]):
        import torch

        batch = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode(), self.computing():
            return self.model(**batch).logits.float().softmax(-1).cpu()


class OnnxTextClassifier(TextClassifier):
    """The same classifier from the checkpoint's ONNX export."""

    uses_torch = False
    # Inputs are sorted by length first; batches of 16 pad even less than 32 and were 3-7 % faster here (1,066
    # rt-polarity sentences, fp32 and int8 exports, 2 Zen 3 cores; benchmarks/predict_speed.py).
    default_batch_size = 16

    def load(self) -> None:
        self.session = open_session(self.folder)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.quantized = read_export(self.folder).get("quantized")
        self.tokenizer, self.max_length = fast_tokenizer(self.folder, self.cfg.max_length)
        self.labels = json.loads((self.folder / "labels.json").read_text())

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


def load_classifier(folder: Path, attn_implementation: str | None = None):
    """The checkpoint's sequence classifier: a transformers model, or a base model with the run's unmerged LoRA."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if (folder / "adapter_config.json").is_file():
        # Unmerged LoRA: rebuild the base with the run's labels, then add the adapters.
        from peft import PeftModel

        base_path = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        base = AutoModelForSequenceClassification.from_pretrained(
            base_path, config=AutoConfig.from_pretrained(folder), **options
        )
        return PeftModel.from_pretrained(base, folder)
    return from_pretrained_quietly(AutoModelForSequenceClassification, str(folder), **options)


def export_text_classifier(folder: Path, path: Path, cfg, quantize: bool) -> str:
    """A transformers sequence classifier (a merged or unmerged LoRA too) as ONNX: token ids in, logits out, with
    batch and sequence length dynamic. Returns the predictor that answers with it."""
    from transformers import AutoTokenizer

    # Eager attention: its matrix products export as plain MatMuls, which ONNX Runtime runs faster than the exported
    # SDPA and int8 quantizes too (1,066 rt-polarity sentences, 2 Zen 3 cores: int8 233 against 178 sentences/s).
    model = load_classifier(folder, attn_implementation="eager").eval()
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    export_logits(model, AutoTokenizer.from_pretrained(folder), path, quantize)
    return f"{__name__}:OnnxTextClassifier"
