"""Sequence-to-sequence recipes on a tiny random T5: learning a copy task end to end, and bad input."""

import json

import pytest
from conftest import SLOWDOWN, check_run_folder, require_shared, run_cli
from conftest import seq2seq_config as config

import toolkit


@pytest.mark.slow
def test_tiny_t5_learns_to_copy_bleu_above_90(copy_run, copy_data):
    run = copy_run
    assert run.metrics["metric"] == "bleu"
    assert run.metrics["test"]["bleu"] > 90, run.metrics["test"]
    assert run.metrics["train_seconds"] < 60 * SLOWDOWN
    assert check_run_folder(run.dir)["pipeline_tag"] == "translation"

    # The reloaded run generates through the predictor, `toolkit eval` and `toolkit predict` alike.
    generate = toolkit.load(run.dir)
    assert generate("red cat one two sun") == {"output": "red cat one two sun", "truncated": False}
    long = " ".join(["tree"] * 40)
    assert generate(long)["truncated"] is True
    assert toolkit.evaluate(run.dir)["bleu"] == pytest.approx(run.metrics["test"]["bleu"], abs=0.5)
    done = run_cli("predict", str(run.dir), "blue dog seven", "moon house")
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [(x["input"], x["output"]) for x in lines] == [
        ("blue dog seven", "blue dog seven"),
        ("moon house", "moon house"),
    ]
    done = run_cli("eval", str(run.dir), "--data", str(copy_data / "validation.jsonl"))
    assert json.loads(done.stdout.strip().splitlines()[-1])["bleu"] == pytest.approx(
        run.metrics["validation"]["bleu"], abs=0.5
    )


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

    small = dict(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
    )
    if kind == "bart":
        return BartForConditionalGeneration(
            BartConfig(**small, bos_token_id=1, decoder_start_token_id=1, forced_eos_token_id=1)
        )
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
    run = toolkit.train(
        config(
            tiny_t5,
            copy_data,
            tmp_path,
            model=str(folder),
            epochs=1,
            max_steps=20,
            eval_every=10,
            data={"train": str(copy_data / "train.jsonl"), "source_lang": "en", "target_lang": "de"},
        )
    )
    assert run.metrics["steps"] == 20 and (run.dir / "best/model.safetensors").is_file()
    generate = toolkit.load(run.dir)
    texts = ["red cat one", "two moon house tree"]
    model = run.model.eval()
    with torch.no_grad():
        batch = generate.tokenizer(texts, padding=True, return_tensors="pt")
        expected = generate.tokenizer.batch_decode(
            model.generate(**batch, num_beams=1, max_new_tokens=12), skip_special_tokens=True
        )
    assert [a["output"] for a in generate(texts)] == [e.strip() for e in expected]


def family_run(kind: str, tiny_t5, tiny_bert, copy_data, tmp_path):
    """A 20-step run of one model family on the copy task: T5, BART, Marian, or an encoder-decoder warm-started from
    a BERT encoder with a new decoder and a trained target vocabulary (the shipped translation configs' kind)."""
    import shutil

    import torch
    from transformers import AutoTokenizer

    extra = {}
    if kind == "warm-started":
        extra = {"warm_start": {"encoder": str(tiny_bert), "decoder_heads": 2, "decoder_layers": 2,
                 "decoder_intermediate_size": 64, "target_tokenizer": "train", "target_vocab_size": 300}}  # fmt: skip
    elif kind != "t5":
        folder = tmp_path / kind
        shutil.copytree(tiny_t5, folder)
        torch.manual_seed(0)
        tiny_family(kind, len(AutoTokenizer.from_pretrained(tiny_t5))).save_pretrained(folder)
        extra = {"model": str(folder)}
    data = {"train": str(copy_data / "train.jsonl"), "source_lang": "en", "target_lang": "de"}
    settings = config(tiny_t5, copy_data, tmp_path, epochs=1, max_steps=20, eval_every=10, data=data, **extra)
    if kind == "warm-started":
        del settings["model"]
    return toolkit.train(settings)


@pytest.mark.parametrize("kind", ["t5", "bart", "marian", "warm-started"])
def test_onnx_export_generates_what_torch_generates(kind, tiny_t5, tiny_bert, copy_data, tmp_path):
    from toolkit.export import export_run
    from toolkit.recipes.seq2seq.onnx import OnnxTextGenerator

    run = family_run(kind, tiny_t5, tiny_bert, copy_data, tmp_path)
    if kind == "warm-started":  # the shipped configs' kind, through the CLI
        with pytest.raises(toolkit.ToolkitError, match="Export without --quantize"):
            export_run(run.dir, quantize=True)
        done = run_cli("export", str(run.dir))
        assert done.returncode == 0, done.stderr
    else:
        export_run(run.dir)
    # The export computes in fp32, whatever the run trained in (bf16 where the CPU computes it natively).
    onnx, torch_weights = toolkit.load(run.dir), toolkit.load(run.dir, backend="torch", precision="fp32")
    assert isinstance(onnx, OnnxTextGenerator) and not isinstance(torch_weights, OnnxTextGenerator)
    # Barely trained: the answers are long runs of arbitrary words, where any difference in a step's scores shows.
    texts = ["red cat one", "two moon house tree", "sun", "blue dog seven red cat one two", "moon moon"]
    for settings in ({"num_beams": 1}, {"num_beams": 3}, {"num_beams": 2, "no_repeat_ngram_size": 2}):
        assert onnx(texts, **settings) == torch_weights(texts, **settings), settings
    assert onnx(texts[0]) == torch_weights(texts[0])  # one text, the run's own decoding settings
    if kind == "t5":  # an export written when this predictor lived in toolkit/onnx_seq2seq.py still loads
        record = run.dir / "best/onnx/export.json"
        record.write_text(
            json.dumps({**json.loads(record.read_text()), "predictor": "toolkit.onnx_seq2seq:OnnxTextGenerator"})
        )
        assert isinstance(toolkit.load(run.dir), OnnxTextGenerator) and toolkit.load(run.dir)(texts) == onnx(texts)


@pytest.mark.parametrize("decoder", ["bert2bert", "new decoder, trained target vocabulary"])
def test_warm_started_encoder_decoder_trains_saves_reloads_and_generates(decoder, tiny_bert, text_data, tmp_path):
    import pandas as pd
    import torch

    rows = pd.read_csv(text_data["train"])["text"].tolist()
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"en": t, "de": t.capitalize() + " ÄÖü"}) + "\n" for t in rows))
    warm = {"encoder": str(tiny_bert), "decoder_heads": 2, "decoder_layers": 1, "decoder_intermediate_size": 64}
    warm.update(
        {"decoder": str(tiny_bert)}
        if decoder == "bert2bert"
        else {"target_tokenizer": "train", "target_vocab_size": 300}
    )
    run = toolkit.train(
        {
            "task": "translation",
            "output_dir": str(tmp_path / "run"),
            "trackers": [],
            "seed": 0,
            "data": {"train": str(data), "source_lang": "en", "target_lang": "de"},
            "warm_start": warm,
            "max_steps": 20,
            "eval_every": 10,
            "batch_size": 16,
            "lr": 1e-3,
            "max_length": 32,
            "generation": {"num_beams": 2, "max_new_tokens": 10},
        }
    )
    assert run.metrics["steps"] == 20
    kept = (run.dir / "best/target_tokenizer").is_dir()
    assert kept == (decoder != "bert2bert")
    generate = toolkit.load(run.dir)
    if kept:  # the trained target vocabulary is cased, keeps umlauts, and decodes to exactly what it encoded
        target = generate.target_tokenizer
        for text in ("Ä", "Ein T-Shirt, l'eau.", "Ün  ÄÖü"):
            assert target.decode(target(text)["input_ids"], skip_special_tokens=True) == text
        assert target.unk_token_id not in target("Zoë's naïve café ½ 東京")["input_ids"]
    texts = ["the film was good", "boring plot"]
    model = run.model.eval()
    with torch.no_grad():
        batch = generate.tokenizer(texts, padding=True, return_tensors="pt")
        out = model.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=2, max_new_tokens=10
        )
    expected = [t.strip() for t in generate.target_tokenizer.batch_decode(out, skip_special_tokens=True)]
    assert [a["output"] for a in generate(texts)] == expected


def test_warm_started_encoder_learns_at_its_own_rate(tiny_bert, text_data, tmp_path):
    import pandas as pd

    from toolkit.api import resolve_config
    from toolkit.engine import build_optimizer
    from toolkit.tasks import get_task

    rows = pd.read_csv(text_data["train"])["text"].tolist()[:64]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"en": t, "de": t.capitalize()}) + "\n" for t in rows))
    cfg = resolve_config(
        {
            "task": "translation",
            "output_dir": str(tmp_path / "run"),
            "lr": 1e-3,
            "max_length": 32,
            "data": {"train": str(data), "source_lang": "en", "target_lang": "de"},
            "warm_start": {
                "encoder": str(tiny_bert),
                "decoder_heads": 2,
                "decoder_layers": 1,
                "decoder_intermediate_size": 64,
                "target_tokenizer": "train",
                "target_vocab_size": 300,
                "encoder_lr_scale": 0.1,
            },
        }
    )
    task = get_task("translation").build(cfg)
    rate = {
        id(p): group["lr"]
        for group in build_optimizer(task.model, cfg, task.lr_scale).param_groups
        for p in group["params"]
    }
    names = [name for name, _ in task.model.named_parameters()]
    assert any(n.startswith("encoder.") for n in names) and any("crossattention" in n for n in names)
    for name, param in task.model.named_parameters():
        assert rate[id(param)] == pytest.approx(1e-4 if name.startswith("encoder.") else 1e-3), name


@pytest.mark.parametrize("merge", [True, False])
def test_lora_on_a_seq2seq_model_trains_saves_and_reloads(merge, tiny_t5, copy_data, tmp_path):
    """LoRA adapters (peft) on T5: only adapters train; best/ holds merged weights or the adapters alone,
    and the reloaded model generates what the trained one does."""
    import torch

    values = config(
        tiny_t5,
        copy_data,
        tmp_path,
        epochs=6,
        lr=1e-2,
        peft={"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q", "v"], "merge": merge},
    )
    run = toolkit.train(values)
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in run.model.parameters())
    assert trainable < 0.2 * total
    best = run.dir / "best"
    assert (best / "adapter_config.json").is_file() is not merge
    generate = toolkit.load(run.dir)
    inputs = ["red cat one two", "blue dog seven", "moon house tree"]
    trained = run.model.merge_and_unload() if merge else run.model
    trained.eval()
    ids = generate.tokenizer(inputs, return_tensors="pt", padding=True)
    with torch.inference_mode():
        expected = generate.tokenizer.batch_decode(
            trained.generate(**ids, num_beams=1, max_new_tokens=12), skip_special_tokens=True
        )
    assert [a["output"] for a in generate(inputs)] == [e.strip() for e in expected]
    losses = [
        json.loads(line)["loss"]
        for line in (run.dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    assert losses[-1] < 0.8 * losses[0]  # the adapters learn (a random tiny base gives no BLEU to speak of)


def tiny_mbart(folder, style: str):
    """A tiny random mBART with a tokenizer over the test words plus mBART's language codes: 'mbart-50' targets
    begin with their code, 'mbart-cc25' targets end with it."""
    import torch
    from conftest import WORDS
    from transformers import MBart50Tokenizer, MBartConfig, MBartForConditionalGeneration, MBartTokenizer

    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *((f"\u2581{w}", -1.0) for w in WORDS)]
    cls = MBart50Tokenizer if style == "mbart-50" else MBartTokenizer
    tokenizer = cls(vocab=vocab, src_lang="en_XX", tgt_lang="ro_RO")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    MBartForConditionalGeneration(
        MBartConfig(
            vocab_size=len(tokenizer),
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=2,
        )
    ).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("style", ["mbart-50", "mbart-cc25"])
def test_mbart_language_codes_mark_source_and_target_and_start_generation(style, tiny_t5, copy_data, tmp_path):
    import torch

    folder = tiny_mbart(tmp_path / style, style)
    codes = {"source_lang_code": "en_XX", "target_lang_code": "de_DE"}
    run = toolkit.train(
        config(
            tiny_t5,
            copy_data,
            tmp_path,
            model=str(folder),
            epochs=4,
            eval_every=250,
            lr=5e-3,
            data={"train": str(copy_data / "train.jsonl"), "source_lang": "en", "target_lang": "de", **codes},
        )
    )
    generate = toolkit.load(run.dir)
    tokenizer = generate.tokenizer
    de = tokenizer.convert_tokens_to_ids("de_DE")
    # The source carries its code (the tokenizer saved with the model said ro_RO), the labels the target's.
    assert "en_XX" in tokenizer.convert_ids_to_tokens(tokenizer("red cat")["input_ids"])
    assert de in tokenizer(text_target="red cat")["input_ids"]
    texts = ["red cat one", "two moon house tree"]
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        out = generate.model.generate(**batch, num_beams=1, max_new_tokens=12)
    # Generation starts with the target's code: forced after </s> (mBART-50), or as the decoder's start (cc25).
    assert out[:, 1 if style == "mbart-50" else 0].tolist() == [de, de]
    expected = [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
    assert [a["output"] for a in generate(texts)] == expected
    losses = [
        json.loads(line)["loss"]
        for line in (run.dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    assert losses[-1] < 0.8 * losses[0]


def test_unknown_language_code_names_close_ones(tiny_t5, copy_data, tmp_path):
    folder = tiny_mbart(tmp_path / "mbart", "mbart-50")
    bad = {
        "train": str(copy_data / "train.jsonl"),
        "source_lang": "en",
        "target_lang": "de",
        "source_lang_code": "en_XX",
        "target_lang_code": "de_DX",
    }
    with pytest.raises(toolkit.ToolkitError, match="de_DX.*de_DE"):
        toolkit.train(config(tiny_t5, copy_data, tmp_path, model=str(folder), data=bad))
    with pytest.raises(toolkit.ToolkitError, match="multilingual tokenizer"):
        toolkit.train(config(tiny_t5, copy_data, tmp_path, data={**bad, "target_lang_code": "de_DE"}))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("language", ["de", "fr"])
def test_trained_target_vocabulary_is_lossless_on_every_multi30k_target(language):
    """Encode then decode gives back every training target of Multi30k exactly (after NFC): hyphens and
    apostrophes keep their spacing ("T-shirt", "l'eau"), accents stay, nothing becomes [UNK]."""
    import unicodedata

    from toolkit.recipes.seq2seq import train_target_tokenizer

    path = require_shared("translation", "multi30k", "train.jsonl")
    targets = [json.loads(line)[language] for line in path.read_text(encoding="utf-8").splitlines()]
    tokenizer = train_target_tokenizer(targets, 8000)
    ids = tokenizer(targets)["input_ids"]
    decoded = tokenizer.batch_decode(ids, skip_special_tokens=True)
    wrong = [(t, d) for t, d in zip(targets, decoded) if d != unicodedata.normalize("NFC", t)]
    assert len(targets) == 29000 and wrong == [], f"{len(wrong)} of {len(targets)} targets changed, e.g. {wrong[:3]}"
    assert not any(tokenizer.unk_token_id in row for row in ids)
