"""What translation and summarization share: seq2seq data, model, generate-and-score evaluation."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from toolkit import checks
from toolkit.config import DataConfig, TextConfig, at_least, between, section, setting
from toolkit.data import (
    EVAL_FIX,
    LENGTH,
    drop_empty_text,
    encode,
    first_rows,
    is_streaming,
    lengths,
    load_splits,
    load_table,
    require_columns,
)
from toolkit.errors import ToolkitError
from toolkit.hub import hub_guard
from toolkit.models import (
    apply_lora,
    attention_backend,
    from_pretrained_quietly,
    load_tokenizer,
    lora_merge_finalizer,
    resolve_model_source,
    save_model,
    save_tokenizer,
    tokenizer_fingerprint,
    without_gradients,
)

if TYPE_CHECKING:
    from toolkit.engine import Task

# torch and transformers are imported where they are used: the settings below are read without them.


@dataclass
class GenerationConfig:
    """Decoding for evaluation, `toolkit predict` and the apps."""

    num_beams: int = setting(4, "beam size (1: greedy)", at_least(1))
    max_new_tokens: int = setting(64, "longest output", at_least(1))
    length_penalty: float = setting(1.0, "beam-search length penalty", between(-10, 10))
    no_repeat_ngram_size: int = setting(0, "block repeated n-grams of this size (0: off)", at_least(0))


@dataclass
class WarmStartConfig:
    """An encoder-decoder built from encoder checkpoints (transformers' `EncoderDecoderModel`, Rothe et al. 2020).
    Setting `warm_start.encoder` builds it; `model` is then not used."""

    encoder: Optional[str] = setting(
        None, "encoder checkpoint (the packaged MiniLM offline)", shown="unset", model_source=True
    )
    decoder: Optional[str] = setting(
        None,
        "decoder checkpoint too (bert2bert, shared vocabulary), or unset for a new decoder of the encoder's width",
        shown="unset",
        model_source=True,
    )
    decoder_layers: int = setting(3, "the new decoder's layers", at_least(1))
    decoder_heads: int = setting(12, "the new decoder's attention heads", at_least(1))
    decoder_intermediate_size: int = setting(1536, "the new decoder's feed-forward width", at_least(1))
    target_tokenizer: str = setting(
        "encoder",
        "`encoder` (the encoder's tokenizer), `train` (a cased byte-level BPE vocabulary trained on the "
        'training targets: decoding gives back exactly the text it encoded, accents, "T-shirt" and "l\'eau" '
        "included; MiniLM's uncased vocabulary would strip umlauts), or a tokenizer folder",
    )
    target_vocab_size: int = setting(8000, "vocabulary size for `target_tokenizer: train`", at_least(300))
    pretrained: bool = setting(
        True, "`false` builds the same architecture from random weights: the from-scratch baseline"
    )
    encoder_lr_scale: float = setting(
        1.0, "the pretrained encoder learns at `lr` times this, the new decoder at `lr`", at_least(0)
    )


@dataclass
class Seq2SeqData(DataConfig):
    """What sequence-to-sequence tasks read besides their columns."""

    source_prefix: Optional[str] = setting(
        None, 'prepended to inputs, e.g. T5\'s `"translate English to German: "`', shown="unset"
    )
    source_lang_code: Optional[str] = setting(
        None,
        "multilingual models with language codes (mBART, NLLB), e.g. `en_XX`: the tokenizer tags the source "
        "with it. An unknown code names the close ones",
        shown="unset",
    )
    target_lang_code: Optional[str] = setting(
        None, "... the target's code, e.g. `de_DE`; generation starts with it", shown="unset"
    )


@dataclass
class Seq2SeqConfig(TextConfig):
    """The keys of the sequence-to-sequence tasks: any AutoModelForSeq2SeqLM, or an encoder-decoder warm-started from
    encoder checkpoints."""

    data: Seq2SeqData = section(Seq2SeqData)
    max_target_length: int = setting(128, "target tokens", at_least(2))
    generation: GenerationConfig = section(GenerationConfig)
    warm_start: WarmStartConfig = section(WarmStartConfig)

    def base_model(self):
        return self.warm_start.encoder or self.model

    def search_space(self) -> dict:
        """Decoding settings, scored on validation as they are decoded."""
        return {
            "generation.num_beams": {"choices": sorted({1, 4, self.generation.num_beams})},
            "generation.length_penalty": {"low": 0.6, "high": 1.4},
            "generation.no_repeat_ngram_size": {"choices": [0, 3]},
        }


TARGET_TOKENIZER = "target_tokenizer"  # subfolder, when targets use their own vocabulary


def load_seq2seq_model(cfg: Seq2SeqConfig):
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    source = resolve_model_source(cfg.model)
    with hub_guard(source):
        config = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        if not getattr(config, "is_encoder_decoder", False):
            raise ToolkitError(
                f"model '{cfg.model}' ({config.model_type}) is not a sequence-to-sequence model. "
                "Use an encoder-decoder such as T5, BART, Marian or mBART."
            )
        return AutoModelForSeq2SeqLM.from_pretrained(
            source,
            trust_remote_code=cfg.trust_remote_code,
            attn_implementation=attention_backend(cfg.attn_implementation),
        )


def train_target_tokenizer(texts, vocab_size: int):
    """A cased byte-level BPE tokenizer (GPT-2's scheme) trained on the target texts. Decoding gives back exactly
    the text that was encoded, after Unicode NFC: accents, "l'eau" and "T-shirt" included, and no unknown token
    (BERT's pre-tokenizer split punctuation off and decoded "T - shirt")."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )


def target_tokenizer_for(cfg: Seq2SeqConfig, targets: list[str], source_tokenizer):
    from transformers import AutoTokenizer

    choice = cfg.warm_start.target_tokenizer
    if choice == "encoder":
        return source_tokenizer
    if choice == "train":
        saved = Path(cfg.output_dir) / "last" / TARGET_TOKENIZER
        if cfg.resume and saved.is_dir():
            return AutoTokenizer.from_pretrained(saved)  # the vocabulary the checkpoint was trained with
        return train_target_tokenizer(targets, cfg.warm_start.target_vocab_size)
    if not Path(choice).is_dir():
        raise ToolkitError(f"warm_start.target_tokenizer '{choice}' is not 'encoder', 'train' or a tokenizer folder.")
    return AutoTokenizer.from_pretrained(choice)


def column_texts(table, column: str):
    """A column's texts as an iterator in Arrow batches (a tokenizer trains from it without a list of them all);
    a stream's first 100,000."""
    if is_streaming(table):
        return (row[column] for row in table.take(100_000))
    return (text for batch in table.select_columns([column]).iter(batch_size=10_000) for text in batch[column])


def build_encoder_decoder(cfg: Seq2SeqConfig, targets):
    """Source tokenizer, target tokenizer and an EncoderDecoderModel warm-started from encoder checkpoints."""
    from transformers import AutoConfig, AutoModel, BertConfig, BertLMHeadModel, EncoderDecoderModel

    ws = cfg.warm_start
    encoder_source = resolve_model_source(ws.encoder)
    tokenizer = load_tokenizer(ws.encoder, cfg.trust_remote_code)
    target_tokenizer = target_tokenizer_for(cfg, targets, tokenizer)
    with hub_guard(encoder_source):
        encoder_config = AutoConfig.from_pretrained(encoder_source)
        encoder = (
            from_pretrained_quietly(AutoModel, encoder_source, add_pooling_layer=False)
            if ws.pretrained
            else AutoModel.from_config(encoder_config, add_pooling_layer=False)
        )
    if ws.decoder:
        decoder_source = resolve_model_source(ws.decoder)
        with hub_guard(decoder_source):
            decoder_config = AutoConfig.from_pretrained(decoder_source, is_decoder=True, add_cross_attention=True)
            decoder = (
                BertLMHeadModel.from_pretrained(decoder_source, config=decoder_config)
                if ws.pretrained
                else BertLMHeadModel(decoder_config)
            )
        if decoder.config.vocab_size != len(target_tokenizer):
            raise ToolkitError(
                f"warm_start.decoder '{ws.decoder}' has a vocabulary of {decoder.config.vocab_size}, "
                f"the target tokenizer {len(target_tokenizer)}: use target_tokenizer=encoder with a warm decoder."
            )
    else:
        decoder = BertLMHeadModel(
            BertConfig(
                vocab_size=len(target_tokenizer),
                hidden_size=encoder_config.hidden_size,
                num_hidden_layers=ws.decoder_layers,
                num_attention_heads=ws.decoder_heads,
                intermediate_size=ws.decoder_intermediate_size,
                max_position_embeddings=512,
                is_decoder=True,
                add_cross_attention=True,
                pad_token_id=target_tokenizer.pad_token_id,
            )
        )
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    attention = attention_backend(cfg.attn_implementation)
    if attention is not None:  # the parts were built with transformers' default (SDPA); eager is faster on the CPU
        model.set_attn_implementation(attention)
    for settings in (model.config, model.generation_config):
        settings.decoder_start_token_id = target_tokenizer.cls_token_id
        settings.eos_token_id = target_tokenizer.sep_token_id
        settings.pad_token_id = target_tokenizer.pad_token_id
    return tokenizer, target_tokenizer, model


LANG_CODE = re.compile(r"^[a-z]{2,3}_[A-Z][A-Za-z]{1,3}$")  # en_XX (mBART), eng_Latn (NLLB)


def set_language_codes(cfg: Seq2SeqConfig, tokenizer, model=None) -> None:
    """Multilingual models (mBART, NLLB) mark each text's language with a code token. The tokenizer adds them;
    generation must begin with the target's code: forced as the first token where targets begin with it
    (mBART-50, NLLB), or as the decoder's start token where targets end with it (mBART-cc25)."""
    src, tgt = cfg.data.source_lang_code, cfg.data.target_lang_code
    if not src and not tgt:
        return
    if not (src and tgt):
        raise ToolkitError("set both data.source_lang_code and data.target_lang_code (e.g. en_XX and de_DE for mBART).")
    if not hasattr(tokenizer, "src_lang"):
        raise ToolkitError(
            f"data.source_lang_code/target_lang_code need a multilingual tokenizer with language codes "
            f"(mBART, NLLB); {type(tokenizer).__name__} of '{cfg.model}' has none: drop those two keys."
        )
    for key, code in (("source_lang_code", src), ("target_lang_code", tgt)):
        if tokenizer.convert_tokens_to_ids(code) in (None, tokenizer.unk_token_id):
            codes = sorted(t for t in tokenizer.get_vocab() if LANG_CODE.match(t))
            close = difflib.get_close_matches(code, codes, n=5) or codes[:10]
            raise ToolkitError(
                f"data.{key} '{code}' is not a language code of this tokenizer; it has {len(codes)} "
                f"codes, such as {', '.join(close)}."
            )
    tokenizer.src_lang, tokenizer.tgt_lang = src, tgt
    if model is None:
        return
    target_id = tokenizer.convert_tokens_to_ids(tgt)
    if tokenizer(text_target="x")["input_ids"][0] == target_id:
        model.generation_config.forced_bos_token_id = target_id
    else:
        model.config.decoder_start_token_id = model.generation_config.decoder_start_token_id = target_id


def encode_batch(cfg: Seq2SeqConfig, source: str, target: str, tokenizer, target_tokenizer, decoder_start):
    """A batch of pairs -> source ids, target ids and lengths (a ``datasets`` batched map function)."""
    prefix = cfg.data.source_prefix or ""
    drop_start = decoder_start is not None and decoder_start == target_tokenizer.cls_token_id

    def encode_pairs(batch: dict) -> dict:
        enc = tokenizer([prefix + s for s in batch[source]], truncation=True, max_length=cfg.max_length)
        labels = target_tokenizer(text_target=batch[target], truncation=True, max_length=cfg.max_target_length)
        labels = labels["input_ids"]
        if drop_start:
            # BERT-style targets begin with [CLS], which is already the decoder's start token.
            labels = [ids[1:] if ids and ids[0] == decoder_start else ids for ids in labels]
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": labels,
            LENGTH: [len(a) + len(b) for a, b in zip(enc["input_ids"], labels)],
        }

    return encode_pairs


def generation_kwargs(cfg: Seq2SeqConfig) -> dict:
    g = cfg.generation
    kwargs = {"num_beams": g.num_beams, "max_new_tokens": g.max_new_tokens, "length_penalty": g.length_penalty}
    if g.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = g.no_repeat_ngram_size
    return kwargs


def data_checks(columns: Callable, generates: Callable = lambda cfg: True) -> Callable:
    """A seq2seq task's ``check_data``: ``columns(cfg)`` names its (source, target) columns; ``generates(cfg)``:
    whether the model writes its targets (so max_target_length cuts them)."""

    def check_data(cfg: Seq2SeqConfig, splits: dict | None = None) -> list:
        source, target = columns(cfg)
        if splits is None:
            splits = load_splits(cfg, [source, target], [source, target])
        tokenizer = load_tokenizer(cfg.base_model(), cfg.trust_remote_code)
        return check_pairs(cfg, splits, source, target, tokenizer, tokenizer if generates(cfg) else None)

    return check_data


def check_pairs(cfg: Seq2SeqConfig, splits: dict, source: str, target: str, tokenizer, target_tokenizer) -> list:
    """Duplicate pairs and sources with two targets, sources shared with train, truncated sources and targets
    (targets only with a ``target_tokenizer``), very short ones (``toolkit check``; training runs it on the splits
    it loaded)."""

    def column(name: str):
        return lambda table: [str(v) for v in table[name]]

    return [
        *checks.duplicates(splits, lambda row: str(row[source]), lambda row: str(row[target])),
        *checks.leakage(splits, lambda row: str(row[source]), f"{source} texts"),
        *checks.truncation(splits, column(source), tokenizer, cfg.max_length, f"{source} texts"),
        *(
            checks.truncation(splits, column(target), target_tokenizer, cfg.max_target_length, f"{target} texts")
            if target_tokenizer is not None
            else []
        ),
        *checks.short(splits, column(source), f"{source} texts"),
        *checks.short(splits, column(target), f"{target} texts"),
    ]


def build_seq2seq_task(
    cfg: Seq2SeqConfig, source: str, target: str, score: Callable, extend_train: Callable | None = None
) -> Task:
    """A Task for ``source`` -> ``target`` text; ``score(hypotheses, references)`` gives the metrics.
    ``extend_train(table)``, if given, returns the training table with the recipe's extra pairs."""
    from transformers import DataCollatorForSeq2Seq

    from toolkit.engine import Task

    splits = load_splits(cfg, [source, target], [source, target])
    if extend_train is not None:
        splits["train"] = extend_train(splits["train"])
    if cfg.warm_start.encoder:
        tokenizer, target_tokenizer, model = build_encoder_decoder(cfg, column_texts(splits["train"], target))
    else:
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        target_tokenizer, model = tokenizer, load_seq2seq_model(cfg)
    set_language_codes(cfg, tokenizer, model)
    checks.run_checks(cfg, splits, lambda cfg, s: check_pairs(cfg, s, source, target, tokenizer, target_tokenizer))
    if cfg.peft.enabled:
        model = apply_lora(model, cfg.peft, task_type="SEQ_2_SEQ_LM")
    key = {
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "target_tokenizer": tokenizer_fingerprint(target_tokenizer),
        "max_length": cfg.max_length,
        "max_target_length": cfg.max_target_length,
        "source": source,
        "target": target,
        "prefix": cfg.data.source_prefix or "",
        "languages": [cfg.data.source_lang_code, cfg.data.target_lang_code],
        "decoder_start": model.config.decoder_start_token_id,
    }
    encode_pairs = encode_batch(cfg, source, target, tokenizer, target_tokenizer, model.config.decoder_start_token_id)
    features = {s: encode(t, encode_pairs, key, f"data.{s}") for s, t in splits.items()}
    for split in ("validation", "test"):
        if split in features:
            # Scores compare with the real references (not with targets decoded back from truncated, possibly
            # lower-cased tokens); evaluate() finds them on its loader's dataset.
            features[split].references = [t.strip() for t in splits[split][target]]

    def save(unwrapped, folder: Path, state_dict=None, merge_lora: bool = False) -> None:
        save_model(unwrapped, tokenizer, folder, state_dict, merge_lora)
        if target_tokenizer is not tokenizer:
            save_tokenizer(target_tokenizer, folder / TARGET_TOKENIZER)

    return Task(
        model=model,
        train_set=features["train"],
        eval_set=features.get("validation"),
        test_set=features.get("test"),
        finalize=lora_merge_finalizer(cfg, save),
        collate=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_loss=lambda m, batch: m(**batch).loss,
        loss_weight=lambda batch: int((batch["labels"] != -100).sum()),  # the loss is a mean over target tokens
        evaluate=lambda m, loader, accelerator: evaluate(m, loader, accelerator, target_tokenizer, cfg, score),
        save=save,
        train_lengths=lengths(features["train"]),
        info=pair_info(splits, source, target),
        lr_scale=encoder_lr_scale(cfg),
    )


def pair_info(splits: dict, source: str, target: str) -> dict:
    """A text-to-text Task's info: its two columns, and the first source texts (of validation, else of train) that
    the app offers as examples."""
    examples = first_rows(splits.get("validation", splits["train"]), source)
    return {"source": source, "target": target, "examples": examples}


def encoder_lr_scale(cfg: Seq2SeqConfig):
    """A warm-started encoder learns at lr x warm_start.encoder_lr_scale; the new decoder (cross-attention
    included) at lr."""
    scale = cfg.warm_start.encoder_lr_scale
    if not cfg.warm_start.encoder or scale == 1.0:
        return None
    return lambda name: (
        scale if name.startswith(("encoder.", "base_model.model.encoder.")) else 1.0
    )  # LoRA: peft's prefix


@without_gradients
def evaluate(model, loader, accelerator, tokenizer, cfg: Seq2SeqConfig, score: Callable) -> dict:
    """Generate with the configured decoding settings, gather from every process, score against references."""
    import torch

    pad = tokenizer.pad_token_id
    hypotheses, references, losses = [], [], []
    generator = accelerator.unwrap_model(model)
    # A sequential loader gathered in step order gives back the dataset's order, so raw references line up.
    raw = getattr(loader.dataset, "references", None)
    for batch in loader:
        losses.append(
            accelerator.gather_for_metrics(model(**batch).loss.detach().float().repeat(len(batch["labels"]))).cpu()
        )
        out = generator.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **generation_kwargs(cfg)
        )
        out = accelerator.pad_across_processes(out, dim=1, pad_index=pad)
        labels = accelerator.pad_across_processes(batch["labels"], dim=1, pad_index=-100)
        out, labels = accelerator.gather_for_metrics((out, labels))
        labels = labels.masked_fill(labels == -100, pad)
        hypotheses += tokenizer.batch_decode(out, skip_special_tokens=True)
        if raw is None:
            references += tokenizer.batch_decode(labels, skip_special_tokens=True)
    if raw is not None:
        references = raw
    return {
        "loss": float(torch.cat(losses).mean()),
        **score([h.strip() for h in hypotheses], [r.strip() for r in references]),
    }


def evaluate_run(
    predictor, cfg: Seq2SeqConfig, data: str, split: str, source: str, target: str, score: Callable
) -> dict:
    """Score a finished run's generator on a data file, with the run's columns and decoding settings."""
    table = load_table(data, split)
    where = f"'{data}'"
    require_columns(table, [source, target], where, EVAL_FIX)
    table = drop_empty_text(table, [source, target], where)
    answers = predictor(list(table[source]))
    return score([a["output"] for a in answers], [t.strip() for t in table[target]])
