"""Translation: any AutoModelForSeq2SeqLM, source and target language fields picked by the config."""

from __future__ import annotations

from toolkit.config import Config
from toolkit.engine import Task
from toolkit.errors import ToolkitError
from toolkit.metrics import translation_metrics
from toolkit import seq2seq


def columns(cfg: Config) -> tuple[str, str]:
    if not cfg.data.source_lang or not cfg.data.target_lang:
        raise ToolkitError("translation needs data.source_lang and data.target_lang: the fields of the source and "
                           "target text (e.g. data.source_lang=en data.target_lang=de).")
    return cfg.data.source_lang, cfg.data.target_lang


def build_task(cfg: Config) -> Task:
    source, target = columns(cfg)
    return seq2seq.build_seq2seq_task(cfg, source, target, translation_metrics, metric="bleu",
                                      metric_names=("bleu", "chrf", "loss"))


def evaluate_run(predictor, cfg: Config, data: str, split: str) -> dict:
    return seq2seq.evaluate_run(predictor, cfg, data, split, *columns(cfg), translation_metrics)
