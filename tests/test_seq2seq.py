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

    # The reloaded run generates through the predictor, `toolkit eval` and `toolkit predict` alike.
    generate = toolkit.load(run.dir)
    assert generate("red cat one two sun") == {"output": "red cat one two sun", "truncated": False}
    long = " ".join(["tree"] * 40)
    assert generate(long)["truncated"] is True
    assert toolkit.evaluate(run.dir)["bleu"] == pytest.approx(run.metrics["test"]["bleu"], abs=0.5)
    done = run_cli("predict", str(run.dir), "blue dog seven", "moon house")
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [(x["input"], x["output"]) for x in lines] == [("blue dog seven", "blue dog seven"), ("moon house", "moon house")]
    done = run_cli("eval", str(run.dir), "--data", str(copy_data / "validation.jsonl"))
    assert json.loads(done.stdout.strip().splitlines()[-1])["bleu"] == pytest.approx(run.metrics["validation"]["bleu"], abs=0.5)


def test_translation_needs_language_fields_and_a_seq2seq_model(tiny_t5, tiny_bert, copy_data, tmp_path):
    with pytest.raises(toolkit.ToolkitError, match="data.source_lang and data.target_lang"):
        toolkit.train(config(tiny_t5, copy_data, tmp_path), data={"source_lang": None})
    with pytest.raises(toolkit.ToolkitError, match="column 'fr' is missing"):
        toolkit.train(config(tiny_t5, copy_data, tmp_path), data={"target_lang": "fr"})
    with pytest.raises(toolkit.ToolkitError, match="is not a sequence-to-sequence model"):
        toolkit.train(config(tiny_t5, copy_data, tmp_path, model=str(tiny_bert)))
    assert not (tmp_path / "run").exists()


def tiny_family(kind: str, vocab_size: int):
    """Tiny random configs of three seq2seq families sharing the test tokenizer (<pad>=0, </s>=1)."""
    from transformers import BartConfig, BartForConditionalGeneration, MarianConfig, MarianMTModel

    small = dict(vocab_size=vocab_size, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                 pad_token_id=0, eos_token_id=1)
    if kind == "bart":
        return BartForConditionalGeneration(BartConfig(**small, bos_token_id=1, decoder_start_token_id=1, forced_eos_token_id=1))
    return MarianMTModel(MarianConfig(**small, decoder_start_token_id=0, decoder_vocab_size=vocab_size))


@pytest.mark.parametrize("kind", ["t5", "bart", "marian"])
def test_each_family_trains_saves_reloads_and_generates_the_same(kind, tiny_t5, copy_data, tmp_path):
    import shutil

    import torch
    from transformers import AutoTokenizer

    folder = tiny_t5
    if kind != "t5":
        folder = tmp_path / kind
        shutil.copytree(tiny_t5, folder)
        torch.manual_seed(0)
        tiny_family(kind, len(AutoTokenizer.from_pretrained(tiny_t5))).save_pretrained(folder)
    run = toolkit.train(config(tiny_t5, copy_data, tmp_path, model=str(folder), epochs=1, max_steps=20, eval_every=10,
                               data={"train": str(copy_data / "train.jsonl"), "source_lang": "en", "target_lang": "de"}))
    assert run.metrics["steps"] == 20 and (run.dir / "best/model.safetensors").is_file()
    generate = toolkit.load(run.dir)
    texts = ["red cat one", "two moon house tree"]
    model = run.model.eval()
    with torch.no_grad():
        batch = generate.tokenizer(texts, padding=True, return_tensors="pt")
        expected = generate.tokenizer.batch_decode(model.generate(**batch, num_beams=1, max_new_tokens=12), skip_special_tokens=True)
    assert [a["output"] for a in generate(texts)] == [e.strip() for e in expected]


@pytest.mark.parametrize("decoder", ["bert2bert", "new decoder, trained target vocabulary"])
def test_warm_started_encoder_decoder_trains_saves_reloads_and_generates(decoder, tiny_bert, text_data, tmp_path):
    import pandas as pd
    import torch

    rows = pd.read_csv(text_data["train"])["text"].tolist()
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"en": t, "de": t.capitalize() + " ÄÖü"}) + "\n" for t in rows))
    warm = {"encoder": str(tiny_bert), "decoder_heads": 2, "decoder_layers": 1, "decoder_intermediate_size": 64}
    warm.update({"decoder": str(tiny_bert)} if decoder == "bert2bert" else {"target_tokenizer": "train", "target_vocab_size": 300})
    run = toolkit.train({"task": "translation", "output_dir": str(tmp_path / "run"), "trackers": [], "seed": 0,
                         "data": {"train": str(data), "source_lang": "en", "target_lang": "de"}, "warm_start": warm,
                         "max_steps": 20, "eval_every": 10, "batch_size": 16, "lr": 1e-3, "max_length": 32,
                         "generation": {"num_beams": 2, "max_new_tokens": 10}})
    assert run.metrics["steps"] == 20
    kept = (run.dir / "best/target_tokenizer").is_dir()
    assert kept == (decoder != "bert2bert")
    generate = toolkit.load(run.dir)
    if kept:  # the trained target vocabulary is cased and keeps umlauts
        assert generate.target_tokenizer.tokenize("Ä") == ["Ä"]
    texts = ["the film was good", "boring plot"]
    model = run.model.eval()
    with torch.no_grad():
        batch = generate.tokenizer(texts, padding=True, return_tensors="pt")
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=2, max_new_tokens=10)
    expected = [t.strip() for t in generate.target_tokenizer.batch_decode(out, skip_special_tokens=True)]
    assert [a["output"] for a in generate(texts)] == expected
