"""Summarization: any AutoModelForSeq2SeqLM; data.text_column in, data.summary_column out."""

from __future__ import annotations

from toolkit.config import Config
from toolkit.engine import Task
from toolkit.metrics import summarization_metrics
from toolkit import seq2seq


def build_task(cfg: Config) -> Task:
    return seq2seq.build_seq2seq_task(cfg, cfg.data.text_column, cfg.data.summary_column, summarization_metrics,
                                      metric="rougeL", metric_names=("rouge1", "rouge2", "rougeL", "rougeLsum", "loss"))


def evaluate_run(predictor, cfg: Config, data: str, split: str) -> dict:
    return seq2seq.evaluate_run(predictor, cfg, data, split, cfg.data.text_column, cfg.data.summary_column,
                                summarization_metrics)
