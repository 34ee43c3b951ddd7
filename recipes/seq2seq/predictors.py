"""The seq2seq predictor (translation, summarization) on the run's weights; its ONNX twin is in onnx.py."""

from __future__ import annotations

from pathlib import Path

import torch

from toolkit.models import from_pretrained_quietly
from toolkit.predictor import Predictor
from toolkit.recipes.seq2seq import TARGET_TOKENIZER, generation_kwargs, set_language_codes


class TextGenerator(Predictor):
    """Sequence-to-sequence generation (translation, summarization) with the run's decoding settings.

    An answer is ``{"output": text, "truncated": whether the input was cut to the model's maximum input length}``.
    Keyword arguments override decoding settings per call.
    """

    default_batch_size = 16
    task_verb = "translate or summarize"

    def load(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        set_language_codes(
            self.cfg, self.tokenizer
        )  # the source's code token; the saved model starts with the target's
        target = self.folder / TARGET_TOKENIZER
        self.target_tokenizer = AutoTokenizer.from_pretrained(target) if target.is_dir() else self.tokenizer
        self.model = load_seq2seq(self.folder, **self.attention()).eval().to(self.device)
        self.prefix = self.cfg.data.source_prefix or ""
        self.max_length = self.cfg.max_length
        self.generation = generation_kwargs(self.cfg)

    def predict_batch(self, texts: list[str], **generation) -> list[dict]:
        return self.generate(texts, **generation)

    @torch.inference_mode()
    def generate(self, texts: list[str], **generation) -> list[dict]:
        inputs = [self.prefix + t for t in texts]
        full = self.tokenizer(inputs, truncation=False)["input_ids"]
        batch = self.tokenizer(
            inputs, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        ).to(self.device)
        with self.computing():
            out = self.model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                **{**self.generation, **generation},
            )
        outputs = self.target_tokenizer.batch_decode(out, skip_special_tokens=True)
        return [{"output": o.strip(), "truncated": len(ids) > self.max_length} for o, ids in zip(outputs, full)]


def load_seq2seq(folder: Path, **options):
    """The checkpoint's encoder-decoder: a transformers model, or one with the run's unmerged LoRA."""
    from transformers import AutoModelForSeq2SeqLM

    if (folder / "adapter_config.json").is_file():
        from peft import AutoPeftModelForSeq2SeqLM

        return AutoPeftModelForSeq2SeqLM.from_pretrained(folder, **options)
    return from_pretrained_quietly(AutoModelForSeq2SeqLM, str(folder), **options)
