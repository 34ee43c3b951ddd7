"""Summarization's metrics (ROUGE, on rouge-score) and the sentence splitter that they, the extractive model and
its oracle share."""

from __future__ import annotations

import re


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
