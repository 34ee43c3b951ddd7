"""Translation: any AutoModelForSeq2SeqLM, source and target language fields picked by the config."""

from __future__ import annotations

from toolkit.config import Config
from toolkit.engine import Task
from toolkit.errors import ToolkitError
from toolkit.metrics import translation_metrics
from toolkit.tasks import TaskSpec, register
from toolkit import seq2seq

METRICS = ("bleu", "chrf", "loss")  # validation metrics; the first picks best/


def columns(cfg: Config) -> tuple[str, str]:
    if not cfg.data.source_lang or not cfg.data.target_lang:
        raise ToolkitError("translation needs data.source_lang and data.target_lang: the fields of the source and "
                           "target text (e.g. data.source_lang=en data.target_lang=de).")
    return cfg.data.source_lang, cfg.data.target_lang


def build_task(cfg: Config) -> Task:
    source, target = columns(cfg)
    return seq2seq.build_seq2seq_task(cfg, source, target, translation_metrics, metric=METRICS[0],
                                      metric_names=METRICS)


def evaluate_run(predictor, cfg: Config, data: str, split: str) -> dict:
    return seq2seq.evaluate_run(predictor, cfg, data, split, *columns(cfg), translation_metrics)


def load_predictor(folder, cfg: Config, **kwargs):
    from toolkit.predict import TextGenerator

    return TextGenerator(folder, cfg=cfg, **kwargs)


register(TaskSpec(
    name="translation",
    description="Translation: any sequence-to-sequence model, or an encoder-decoder warm-started from a pretrained encoder.",
    build=build_task, predictor=load_predictor, evaluate_run=evaluate_run, app="apps.translation",
    example_config="recipes/configs/translation_multi30k_en_de.yaml", metrics=METRICS,
    usage='predict("A man is riding a bicycle down the street.")', pipeline_tag="translation",
    base_model=lambda cfg: cfg.warm_start.encoder or cfg.model, sections=("peft", "generation", "warm_start"),
))
