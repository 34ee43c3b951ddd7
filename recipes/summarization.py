"""Summarization: data.text_column in, data.summary_column out. Extractive (extractive.enabled: an encoder scores
the document's sentences) or abstractive (any AutoModelForSeq2SeqLM, or a warm-started encoder-decoder)."""

from __future__ import annotations

from toolkit.config import Config
from toolkit.engine import Task
from toolkit.metrics import split_sentences, summarization_metrics
from toolkit.tasks import TaskSpec, register
from toolkit import extractive, seq2seq

METRIC_NAMES = ("rouge1", "rouge2", "rougeL", "rougeLsum", "loss")


def build_task(cfg: Config) -> Task:
    text, summary = cfg.data.text_column, cfg.data.summary_column
    if cfg.extractive.enabled:
        return extractive.build_extractive_task(cfg, text, summary, summarization_metrics, "rougeL", METRIC_NAMES)
    extend = (lambda table: with_oracle_sentences(table, text, summary, cfg.seed)) if cfg.data.oracle_sentences else None
    return seq2seq.build_seq2seq_task(cfg, text, summary, summarization_metrics, metric="rougeL",
                                      metric_names=METRIC_NAMES, extend_train=extend)


def oracle_sentence(document: str, summary: str, scorer) -> str:
    """The document's sentence closest to its summary (ROUGE-L F1): the extractive oracle's label."""
    sentences = split_sentences(document) or [document]
    return max(sentences, key=lambda s: scorer.score(summary, s)["rougeL"].fmeasure)


def with_oracle_sentences(table, text: str, summary: str, seed: int):
    """Each training document once more, its target now the sentence of it closest to its summary (extractive
    oracle labels, as in BertSum). A warm-started decoder learns to find and copy the salient sentence from
    these far sooner than from a few thousand abstractive targets alone."""
    from datasets import Dataset, concatenate_datasets
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    base = table.select_columns([text, summary])
    oracles = [oracle_sentence(d, s, scorer) for d, s in zip(base[text], base[summary])]
    extra = Dataset.from_dict({text: base[text], summary: oracles}, features=base.features)
    return concatenate_datasets([base, extra]).shuffle(seed=seed)


def evaluate_run(predictor, cfg: Config, data: str, split: str) -> dict:
    return seq2seq.evaluate_run(predictor, cfg, data, split, cfg.data.text_column, cfg.data.summary_column,
                                summarization_metrics)


def load_predictor(folder, cfg: Config, **kwargs):
    from toolkit.predict import ExtractiveSummarizer, TextGenerator

    if (folder / extractive.HEAD_CONFIG).is_file():
        return ExtractiveSummarizer(folder, cfg=cfg, **kwargs)
    return TextGenerator(folder, cfg=cfg, **kwargs)


register(TaskSpec(
    name="summarization",
    description="Summarization: extractive (an encoder scores the document's sentences) or abstractive (sequence-to-sequence).",
    build=build_task, predictor=load_predictor, evaluate_run=evaluate_run, app="apps.summarization",
    example_config="recipes/configs/summarization_scitldr.yaml", metrics=("rougeL", *[m for m in METRIC_NAMES if m != "rougeL"]),
    usage='predict("The full text of a paper abstract ...")', pipeline_tag="summarization",
    base_model=lambda cfg: (cfg.warm_start.encoder if not cfg.extractive.enabled else None) or cfg.model,
    sections=("peft", "generation", "warm_start", "extractive"),
))
