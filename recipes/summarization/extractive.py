"""Extractive summarization: a pretrained encoder fine-tuned to score a document's sentences (BertSumExt,
Liu & Lapata 2019, "Text Summarization with Pretrained Encoders"); the summary is the best sentences,
in document order, under a length budget.

The document is encoded once, each sentence wrapped in [CLS] ... [SEP]; a sentence's vector is the mean of its
tokens (the pooling the packaged sentence-transformers MiniLM was trained with), plus its position; a small
inter-sentence transformer and a linear layer give one score per sentence. Training labels are greedy ROUGE
oracles, and the loss ranks a document's sentences against each other (softmax over them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from toolkit import checks
from toolkit.checkpoint import load_weights
from toolkit.data import LENGTH, encode, lengths, load_splits
from toolkit.errors import ToolkitError
from toolkit.hub import hub_guard
from toolkit.models import load_tokenizer, resolve_model_source, save_tokenizer, tokenizer_fingerprint
from toolkit.predictor import Predictor
from toolkit.recipes.seq2seq import check_pairs, pair_info
from toolkit.recipes.summarization.metrics import split_sentences

HEAD_CONFIG = "extractive.json"  # in a checkpoint: the scoring head's settings; its presence marks an extractive model


def rouge_scorer():
    from rouge_score import rouge_scorer as rs

    return rs.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def greedy_oracle(sentences: list[str], summary: str, max_sentences: int = 3, scorer=None) -> list[int]:
    """Indices (in document order) of the sentences picked greedily to maximise ROUGE-1 + ROUGE-2 + ROUGE-L F1
    against ``summary``; a sentence is added only while it raises the score (BertSum's oracle labels)."""
    scorer = scorer or rouge_scorer()

    def score(indices: list[int]) -> float:
        scores = scorer.score(summary, " ".join(sentences[i] for i in sorted(indices)))
        return sum(s.fmeasure for s in scores.values())

    chosen, best = [], 0.0
    for _ in range(min(max_sentences, len(sentences))):
        value, index = max((score(chosen + [i]), i) for i in range(len(sentences)) if i not in chosen)
        if value <= best:
            break
        chosen.append(index)
        best = value
    return sorted(chosen)


def trigrams(sentence: str) -> set[tuple[str, str, str]]:
    words = re.findall(r"\w+", sentence.lower())
    return set(zip(words, words[1:], words[2:]))


def select_sentences(
    sentences: list[str],
    scores: list[float],
    max_sentences: int = 1,
    max_words: int | None = None,
    block_trigrams: bool = True,
) -> list[int]:
    """Indices, in document order, of the best-scoring sentences: at most ``max_sentences`` of them and
    ``max_words`` words in all, skipping any that repeats a trigram of one already picked (trigram blocking,
    Paulus et al. 2018). When no sentence fits the word budget, the best one alone (the caller cuts it)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    chosen, seen, words = [], set(), 0
    for i in order:
        if len(chosen) >= max_sentences:
            break
        grams, length = trigrams(sentences[i]), len(sentences[i].split())
        if (block_trigrams and grams & seen) or (max_words is not None and words + length > max_words):
            continue
        chosen.append(i)
        seen |= grams
        words += length
    return sorted(chosen) if chosen else order[:1]


def join_summary(sentences: list[str], chosen: list[int], max_words: int | None = None) -> str:
    words = " ".join(sentences[i] for i in chosen).split()
    return " ".join(words[:max_words] if max_words is not None else words)


class SentenceScorer(nn.Module):
    """A pretrained encoder, mean-pooled per sentence, a sentence-position embedding, a small inter-sentence
    transformer, and a linear scorer: one logit per sentence."""

    def __init__(self, encoder: nn.Module, head_layers: int = 2, max_sentences: int = 64):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.position = nn.Embedding(max_sentences, hidden)
        nn.init.normal_(self.position.weight, std=0.02)
        heads = next(h for h in (hidden // 64, 8, 6, 4, 3, 2, 1) if h and hidden % h == 0)
        layer = nn.TransformerEncoderLayer(
            hidden, nhead=heads, dim_feedforward=2 * hidden, dropout=0.1, batch_first=True, norm_first=True
        )
        self.context = nn.TransformerEncoder(layer, head_layers, enable_nested_tensor=False) if head_layers else None
        self.score = nn.Linear(hidden, 1)

    def forward(self, input_ids, attention_mask, sentence_ids, labels=None):
        tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        count = int(sentence_ids.max()) + 1
        onehot = (sentence_ids.unsqueeze(-1) == torch.arange(count, device=tokens.device)).to(tokens.dtype)  # B,T,S
        sizes = onehot.sum(1)  # B,S
        vectors = (onehot.transpose(1, 2) @ tokens) / sizes.clamp(min=1).unsqueeze(-1)
        present = sizes > 0
        positions = torch.arange(count, device=tokens.device).clamp(max=self.position.num_embeddings - 1)
        vectors = vectors + self.position(positions).to(vectors.dtype)
        if self.context is not None:
            vectors = self.context(vectors, src_key_padding_mask=~present)
        logits = self.score(vectors).squeeze(-1).float().masked_fill(~present, -1e4)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = ranking_loss(logits, labels)
        return out


def ranking_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the softmax over a document's sentences and its oracle sentences (shared equally);
    documents without an oracle sentence count for nothing."""
    totals = labels.sum(1, keepdim=True)
    target = labels / totals.clamp(min=1e-9)
    per_doc = -(target * logits.log_softmax(-1)).sum(1)
    weight = (totals.squeeze(1) > 0).float()
    return (per_doc * weight).sum() / weight.sum().clamp(min=1)


def encode_document(sentences: list[str], tokenizer, max_length: int) -> tuple[dict, int, bool]:
    """Token ids of [CLS] s1 [SEP] [CLS] s2 [SEP] ..., cut to ``max_length``; returns the features, how many
    sentences fit (a sentence cut part-way still counts; ones that do not start within the limit are dropped),
    and whether anything was cut."""
    pieces = tokenizer(sentences, add_special_tokens=False)["input_ids"] if sentences else []
    ids, sentence_ids, cut = [], [], False
    for i, piece in enumerate(pieces):
        room = max_length - len(ids)
        if room < 3:
            cut = True
            break
        cut = cut or len(piece) > room - 2
        piece = [tokenizer.cls_token_id, *piece[: room - 2], tokenizer.sep_token_id]
        ids += piece
        sentence_ids += [i] * len(piece)
    kept = sentence_ids[-1] + 1 if sentence_ids else 0
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "sentence_ids": sentence_ids}, kept, cut


def collate(tokenizer, multiple: int = 8):
    """Pad a list of encoded documents: ids with the pad token, sentence ids with -1, labels with 0; lengths
    rounded up to a ``multiple`` (what GPU kernels like)."""

    def pad(features: list[dict]) -> dict:
        length = -(-max(len(f["input_ids"]) for f in features) // multiple) * multiple
        count = max(max(f["sentence_ids"]) + 1 for f in features)
        batch = {
            "input_ids": torch.tensor(
                [f["input_ids"] + [tokenizer.pad_token_id] * (length - len(f["input_ids"])) for f in features]
            ),
            "attention_mask": torch.tensor(
                [f["attention_mask"] + [0] * (length - len(f["input_ids"])) for f in features]
            ),
            "sentence_ids": torch.tensor([f["sentence_ids"] + [-1] * (length - len(f["input_ids"])) for f in features]),
        }
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] + [0.0] * (count - len(f["labels"])) for f in features])
        return batch

    return pad


def encode_batch(text: str, summary: str, tokenizer, cfg, scorer):
    """A batch of documents -> sentence-marked token ids, oracle labels, lengths, and the sentences and reference
    kept for generate-free evaluation (a ``datasets`` batched map function)."""
    ext = cfg.extractive

    def encode_documents(batch: dict) -> dict:
        out = {
            k: [] for k in ("input_ids", "attention_mask", "sentence_ids", "labels", LENGTH, "sentences", "reference")
        }
        for document, reference in zip(batch[text], batch[summary]):
            sentences = split_sentences(document) or [document.strip()]
            features, kept, _ = encode_document(sentences, tokenizer, cfg.max_length)
            oracle = greedy_oracle(sentences[:kept], reference, ext.oracle_sentences, scorer)
            for name, value in features.items():
                out[name].append(value)
            out["labels"].append([1.0 if i in oracle else 0.0 for i in range(kept)])
            out[LENGTH].append(len(features["input_ids"]))
            out["sentences"].append(sentences[:kept])
            out["reference"].append(reference.strip())
        return out

    return encode_documents


def no_pooler(config) -> dict:
    """BERT-style models take add_pooling_layer (the pooler is unused here); DistilBERT, DeBERTa and ELECTRA have
    none."""
    return {"add_pooling_layer": False} if config.model_type in ("bert", "roberta", "xlm-roberta", "camembert") else {}


def build_extractive_task(cfg, text: str, summary: str, score):
    from transformers import AutoConfig, AutoModel

    from toolkit.engine import Task

    if cfg.peft.enabled:
        raise ToolkitError(
            "extractive summarization fine-tunes the whole encoder: set peft.enabled=false "
            "(LoRA is for the abstractive models)."
        )
    ext = cfg.extractive
    if ext.max_sentences < 1 or (ext.max_words is not None and ext.max_words < 1):
        raise ToolkitError(
            "extractive.max_sentences and extractive.max_words must be at least 1 (leave max_words "
            "unset for no word limit)."
        )
    splits = load_splits(cfg, [text, summary], [text, summary])
    source = resolve_model_source(cfg.model)
    with hub_guard(source):
        config = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    if config.is_encoder_decoder:
        raise ToolkitError(
            f"model '{cfg.model}' is an encoder-decoder; extractive summarization needs an encoder "
            "such as BERT or MiniLM. Set extractive.enabled=false to fine-tune it abstractively."
        )
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ToolkitError(
            f"the tokenizer of '{cfg.model}' has no [CLS]/[SEP]-style tokens to mark sentences; "
            "use a BERT-family encoder (BERT, MiniLM, RoBERTa, DistilBERT)."
        )
    checks.run_checks(cfg, splits, lambda cfg, s: check_pairs(cfg, s, text, summary, tokenizer, None))
    with hub_guard(source):
        # No dropout on attention probabilities: over a whole document's tokens (up to 512) sampling that mask cost
        # more than the attention itself on the CPU, and without it SDPA takes its fused kernel.
        encoder = AutoModel.from_pretrained(
            source,
            trust_remote_code=cfg.trust_remote_code,
            **no_pooler(config),
            attention_probs_dropout_prob=0.0,
            attn_implementation="sdpa" if cfg.attn_implementation == "auto" else cfg.attn_implementation,
        )
    cfg.max_length = min(cfg.max_length, getattr(config, "max_position_embeddings", cfg.max_length))
    model = SentenceScorer(encoder, cfg.extractive.head_layers, cfg.extractive.max_position)
    key = {
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": cfg.max_length,
        "text": text,
        "summary": summary,
        "oracle_sentences": ext.oracle_sentences,
    }
    documents = encode_batch(text, summary, tokenizer, cfg, rouge_scorer())
    features = {s: encode(t, documents, key, f"data.{s}", "encoded") for s, t in splits.items()}
    features["train"] = features["train"].remove_columns(["sentences", "reference"])
    for split in ("validation", "test"):
        if split in features:  # evaluate() reads them from its loader's dataset
            features[split].sentences = features[split]["sentences"]
            features[split].references = features[split]["reference"]

    def save(unwrapped, folder: Path, state_dict=None, merge_lora: bool = False) -> None:
        save_scorer(unwrapped, tokenizer, folder, state_dict, cfg.extractive)

    return Task(
        model=model,
        train_set=features["train"],
        eval_set=features.get("validation"),
        test_set=features.get("test"),
        collate=collate(tokenizer),
        compute_loss=lambda m, batch: m(**batch)["loss"],
        evaluate=lambda m, loader, accelerator: evaluate(m, loader, accelerator, cfg.extractive, score),
        save=save,
        train_lengths=lengths(features["train"]),
        info=pair_info(splits, text, summary),
    )


@torch.no_grad()
def evaluate(model, loader, accelerator, ext, score) -> dict:
    """Score every sentence, gather from every process, pick summaries with the run's budget, compute ROUGE."""
    losses, rows = [], []
    for batch in loader:
        out = model(**batch)
        losses.append(accelerator.gather_for_metrics(out["loss"].detach().float().repeat(len(batch["labels"]))).cpu())
        logits = accelerator.pad_across_processes(out["logits"], dim=1, pad_index=-1e4)
        rows += list(accelerator.gather_for_metrics(logits).cpu())
    docs = loader.dataset
    hypotheses = []
    for sentences, logits in zip(docs.sentences, rows):
        scores = logits[: len(sentences)].tolist()
        chosen = select_sentences(sentences, scores, ext.max_sentences, ext.max_words, ext.block_trigrams)
        hypotheses.append(join_summary(sentences, chosen, ext.max_words))
    return {"loss": float(torch.cat(losses).mean()), **score(hypotheses, docs.references)}


def save_scorer(model: SentenceScorer, tokenizer, folder: Path, state_dict: dict | None, ext) -> None:
    """model.safetensors (encoder and head), the encoder's config.json, the head's settings, the tokenizer."""
    state_dict = state_dict if state_dict is not None else model.state_dict()
    save_file(
        {k: v.detach().contiguous() for k, v in state_dict.items()},
        Path(folder) / "model.safetensors",
        metadata={"format": "pt"},
    )
    model.encoder.config.save_pretrained(folder)
    (Path(folder) / HEAD_CONFIG).write_text(
        json.dumps({"head_layers": ext.head_layers, "max_position": ext.max_position}, indent=2)
    )
    save_tokenizer(tokenizer, folder)


def load_scorer(folder: Path) -> SentenceScorer:
    """Rebuild a saved sentence scorer from its own folder (no download)."""
    from transformers import AutoConfig, AutoModel

    head = json.loads((folder / HEAD_CONFIG).read_text())
    config = AutoConfig.from_pretrained(folder)
    encoder = AutoModel.from_config(config, **no_pooler(config))
    model = SentenceScorer(encoder, head["head_layers"], head["max_position"])
    load_weights(model, folder)
    return model.eval()


class ExtractiveSummarizer(Predictor):
    """An extractive run's sentence scorer. An answer is ``{"output": the picked sentences in document order,
    "truncated": whether the document was cut to the model's input length}``. Keyword arguments
    ``max_sentences``/``max_words`` override the run's budget per call. :meth:`explain` adds every sentence with
    its score and whether it was picked."""

    default_batch_size = 16
    task_verb = "summarize"

    def load(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = load_scorer(self.folder).to(self.device)
        self.max_length = min(self.cfg.max_length, self.model.encoder.config.max_position_embeddings)
        self.settings = self.cfg.extractive

    def predict_batch(self, texts: list[str], **budget) -> list[dict]:
        return [{"output": a["output"], "truncated": a["truncated"]} for a in self.explain_batch(texts, **budget)]

    def explain(self, text: str, **budget) -> dict:
        """The answer for one text, plus ``sentences``: each with its ``text``, ``score`` (softmax over the
        document's scored sentences) and ``picked``; sentences past the input limit have no score."""
        return self.explain_many([text], **budget)[0]

    def explain_many(self, texts: list[str], **budget) -> list[dict]:
        self.check(texts)
        self.check_bounds(texts)
        return self.in_batches(texts, lambda chunk: self.explain_batch(chunk, **budget))

    def explain_batch(
        self, texts: list[str], max_sentences: int | None = None, max_words: int | None = None
    ) -> list[dict]:

        max_sentences = max_sentences if max_sentences is not None else self.settings.max_sentences
        max_words = max_words if max_words is not None else self.settings.max_words
        if max_sentences < 1 or (max_words is not None and max_words < 1):
            raise ToolkitError("max_sentences and max_words must be at least 1 (max_words=None: no word limit).")
        answers = []
        for sentences, kept, cut, probs in self.score(texts):
            chosen = select_sentences(sentences[:kept], probs, max_sentences, max_words, self.settings.block_trigrams)
            answers.append(
                {
                    "output": join_summary(sentences, chosen, max_words),
                    "truncated": cut,
                    "sentences": [
                        {"text": s, "score": probs[i] if i < kept else None, "picked": i in chosen}
                        for i, s in enumerate(sentences)
                    ],
                }
            )
        return answers

    @torch.inference_mode()
    def score(self, texts: list[str]) -> list[tuple[list[str], int, bool, list[float]]]:
        """Per text: its sentences, how many the model saw, whether the text was cut, and their scores."""
        docs = [split_sentences(t) or [t.strip()] for t in texts]
        encoded = [encode_document(sentences, self.tokenizer, self.max_length) for sentences in docs]
        batch = {k: v.to(self.device) for k, v in collate(self.tokenizer)([f for f, _, _ in encoded]).items()}
        with self.computing():
            logits = self.model(**batch)["logits"].float().cpu()
        return [
            (sentences, kept, cut, row[:kept].softmax(-1).tolist())
            for sentences, (_, kept, cut), row in zip(docs, encoded, logits)
        ]
