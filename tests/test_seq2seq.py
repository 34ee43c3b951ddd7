"""Sequence-to-sequence recipes on a tiny random T5: learning a copy task end to end, and bad input."""

import json
import random

import pytest

import toolkit
from conftest import run_cli, write_config

WORDS = "red green blue cat dog bird one two three four five six seven eight nine ten house tree sun moon".split()


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny_t5")
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=32)
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(vocab), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=4,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def copy_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("copy")
    rng = random.Random(0)
    for split, n in (("train", 2000), ("validation", 64), ("test", 64)):
        with open(folder / f"{split}.jsonl", "w") as fh:
            for _ in range(n):
                text = " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))
                fh.write(json.dumps({"en": text, "de": text}) + "\n")
    return folder


def config(tiny_t5, copy_data, tmp_path, **extra):
    return {"task": "translation", "model": str(tiny_t5), "output_dir": str(tmp_path / "run"), "trackers": [],
            "data": {"train": str(copy_data / "train.jsonl"), "validation": str(copy_data / "validation.jsonl"),
                     "test": str(copy_data / "test.jsonl"), "source_lang": "en", "target_lang": "de"},
            "epochs": 25, "batch_size": 32, "lr": 3e-3, "warmup_ratio": 0.05, "max_length": 16, "max_target_length": 16,
            "generation": {"num_beams": 1, "max_new_tokens": 12}, "seed": 0, **extra}


@pytest.mark.slow
def test_tiny_t5_learns_to_copy_bleu_above_90(tiny_t5, copy_data, tmp_path):
    run = toolkit.train(config(tiny_t5, copy_data, tmp_path))
    assert run.metrics["metric"] == "bleu"
    assert run.metrics["test"]["bleu"] > 90, run.metrics["test"]
    assert run.metrics["train_seconds"] < 60


def test_translation_needs_language_fields_and_a_seq2seq_model(tiny_t5, tiny_bert, copy_data, tmp_path):
    with pytest.raises(toolkit.ToolkitError, match="data.source_lang and data.target_lang"):
        toolkit.train(config(tiny_t5, copy_data, tmp_path), data={"source_lang": None})
    with pytest.raises(toolkit.ToolkitError, match="column 'fr' is missing"):
        toolkit.train(config(tiny_t5, copy_data, tmp_path), data={"target_lang": "fr"})
    with pytest.raises(toolkit.ToolkitError, match="is not a sequence-to-sequence model"):
        toolkit.train(config(tiny_t5, copy_data, tmp_path, model=str(tiny_bert)))
    assert not (tmp_path / "run").exists()
