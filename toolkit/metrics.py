"""Task metrics from predictions, on scikit-learn."""

from __future__ import annotations

import re

import numpy as np


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows: true)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=ids).tolist(),
        "count": int(len(labels)),
    }


def translation_metrics(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus sacreBLEU and chrF (0-100) with sacrebleu's default tokenisation, one reference each."""
    import sacrebleu

    return {
        "bleu": float(sacrebleu.corpus_bleu(hypotheses, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(hypotheses, [references]).score),
        "count": len(hypotheses),
    }


def summarization_metrics(hypotheses: list[str], references: list[str]) -> dict:
    """Mean ROUGE-1/2/L/Lsum F1 (0-100, Porter stemming) and mean output length in words."""
    from rouge_score import rouge_scorer

    kinds = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for hyp, ref in zip(hypotheses, references):
        # rougeLsum splits on newlines: one sentence per line (nltk's punkt would need a download).
        scores = scorer.score(_sentence_lines(ref), _sentence_lines(hyp))
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    n = max(len(hypotheses), 1)
    return {
        **{k: 100 * v / n for k, v in totals.items()},
        "gen_len": sum(len(h.split()) for h in hypotheses) / n,
        "count": len(hypotheses),
    }


# A period after these is not a sentence end (scientific text is full of them).
_ABBREVIATIONS = {
    "e.g",
    "i.e",
    "et al",
    "al",
    "etc",
    "fig",
    "figs",
    "eq",
    "eqs",
    "vs",
    "cf",
    "approx",
    "resp",
    "sec",
    "dr",
    "mr",
    "mrs",
    "ms",
    "prof",
    "st",
    "jr",
    "inc",
    "ltd",
    "co",
    "u.s",
    "ph.d",
    "ref",
    "refs",
}
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences at . ! or ? followed by space, except after common abbreviations (e.g., et al., Fig.) and
    before a lower-case word (nltk's punkt would need a download)."""
    text = " ".join(text.split())
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        before, after = text[start : match.start()], text[match.end() : match.end() + 1]
        last_word = before.rsplit(" ", 1)[-1].rstrip(".!?").lstrip("([{\"'").lower()
        if last_word in _ABBREVIATIONS or after.islower():
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return sentences


def _sentence_lines(text: str) -> str:
    return "\n".join(split_sentences(text))
