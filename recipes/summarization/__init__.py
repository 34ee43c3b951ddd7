"""Summarization: data.text_column in, data.summary_column out. Extractive (extractive.enabled: an encoder scores
the document's sentences) or abstractive (any AutoModelForSeq2SeqLM, or a warm-started encoder-decoder)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from toolkit.config import DataRole, at_least, section, setting
from toolkit.data import encode
from toolkit.errors import ToolkitError
from toolkit.predictor import names_on_demand
from toolkit.recipes import seq2seq
from toolkit.recipes.seq2seq import Seq2SeqConfig, Seq2SeqData
from toolkit.recipes.summarization.metrics import split_sentences, summarization_metrics
from toolkit.shapes import GENERATION_PARAMETERS, check_parameters, generated, generation_options, texts_of
from toolkit.tasks import ServeShape, TaskSpec, register

HEAD_CONFIG = "extractive.json"  # recipes/summarization/extractive.py's: in a checkpoint, it marks an extractive model

# torch and transformers load with extractive.py and the seq2seq predictors, imported where they are used: declaring
# the task never loads them.


@dataclass
class SummarizationData(Seq2SeqData):
    """The document and summary columns of a summarization table."""

    text_column: str = setting(
        "text",
        "the document",
        role=DataRole("document", "text", ("document", "text", "article", "source", "abstract", "body", "content")),
    )
    summary_column: str = setting(
        "summary",
        "its reference summary",
        role=DataRole("summary", "text", ("summary", "highlights", "target", "tldr", "headline", "title")),
    )
    oracle_sentences: bool = setting(
        False, "abstractive: also train on (document, its sentence closest to the summary by ROUGE-L)"
    )


@dataclass
class ExtractiveConfig:
    """Summarization by picking the document's own sentences (BertSumExt, Liu & Lapata 2019): `model` is an encoder
    (the packaged MiniLM offline), fine-tuned to score sentences against greedy ROUGE oracle labels."""

    enabled: bool = setting(False, "score and pick the document's own sentences (`model` is an encoder)")
    max_sentences: int = setting(1, "the budget: at most this many sentences", at_least(1))
    max_words: Optional[int] = setting(
        None,
        "... and at most this many words; a sentence that does not fit is "
        "skipped; if none fits, the best one is cut to the word limit",
        at_least(1),
        shown="unset",
    )
    block_trigrams: bool = setting(
        True, "skip a sentence that repeats a trigram of one already picked (Paulus et al. 2018)"
    )
    oracle_sentences: int = setting(
        3, "the greedy ROUGE oracle labels at most this many sentences per document", at_least(1)
    )
    head_layers: int = setting(
        2, "inter-sentence transformer layers over the sentence vectors (0: a linear scorer)", at_least(0)
    )
    max_position: int = setting(
        64, "sentence positions with their own embedding; later sentences share the last one", at_least(1)
    )


@dataclass
class SummarizationConfig(Seq2SeqConfig):
    """Summarization: extractive (an encoder scores the document's sentences) or abstractive (sequence-to-sequence)."""

    data: SummarizationData = section(SummarizationData)
    extractive: ExtractiveConfig = section(ExtractiveConfig)

    def base_model(self):
        return self.model if self.extractive.enabled else super().base_model()

    def search_space(self) -> dict:
        return {} if self.extractive.enabled else super().search_space()  # beams: abstractive only


METRICS = ("rougeL", "rouge1", "rouge2", "rougeLsum", "loss")  # validation metrics; the first picks best/


def build_task(cfg: SummarizationConfig):
    from . import extractive

    text, summary = cfg.data.text_column, cfg.data.summary_column
    if cfg.extractive.enabled:
        return extractive.build_extractive_task(cfg, text, summary, summarization_metrics)
    if cfg.data.oracle_sentences and cfg.data.streaming:
        raise ToolkitError(
            "data.oracle_sentences adds a second, shuffled copy of the training documents, which a stream cannot "
            "hold: set data.oracle_sentences=false with data.streaming=true."
        )
    extend = (
        (lambda table: with_oracle_sentences(table, text, summary, cfg.seed)) if cfg.data.oracle_sentences else None
    )
    return seq2seq.build_seq2seq_task(cfg, text, summary, summarization_metrics, extend_train=extend)


def oracle_sentence(document: str, summary: str, scorer) -> str:
    """The document's sentence closest to its summary (ROUGE-L F1): the extractive oracle's label."""
    sentences = split_sentences(document) or [document]
    return max(sentences, key=lambda s: scorer.score(summary, s)["rougeL"].fmeasure)


def with_oracle_sentences(table, text: str, summary: str, seed: int):
    """Each training document once more, its target now the sentence of it closest to its summary (extractive
    oracle labels, as in BertSum). A warm-started decoder learns to find and copy the salient sentence from
    these far sooner than from a few thousand abstractive targets alone."""
    from datasets import concatenate_datasets
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    base = table.select_columns([text, summary])

    def oracle_pairs(batch: dict) -> dict:
        return {
            text: batch[text],
            summary: [oracle_sentence(d, s, scorer) for d, s in zip(batch[text], batch[summary])],
        }

    extra = encode(base, oracle_pairs, {"text": text, "summary": summary}, "data.train", "oracle sentences for")
    return concatenate_datasets([base, extra.cast(base.features)]).shuffle(seed=seed)


def evaluate_run(predictor, cfg: SummarizationConfig, data: str, split: str) -> dict:
    return seq2seq.evaluate_run(
        predictor, cfg, data, split, cfg.data.text_column, cfg.data.summary_column, summarization_metrics
    )


def load_predictor(folder, cfg: SummarizationConfig, **kwargs):
    from toolkit.recipes.seq2seq.predictors import TextGenerator

    from .extractive import ExtractiveSummarizer

    if (folder / HEAD_CONFIG).is_file():
        return ExtractiveSummarizer(folder, cfg=cfg, **kwargs)
    return TextGenerator(folder, cfg=cfg, **kwargs)


def export_onnx(folder, path, cfg: SummarizationConfig, quantize: bool) -> str:
    """`toolkit export`: an abstractive run's encoder and decoder steps as ONNX (recipes/seq2seq/onnx.py)."""
    from toolkit.recipes.seq2seq.onnx import export_seq2seq

    if (folder / HEAD_CONFIG).is_file():
        raise ToolkitError(
            "`toolkit export` exports abstractive summarizers; this run is extractive (it scores sentences). "
            "Serve it with its torch weights: toolkit serve RUN."
        )
    return export_seq2seq(folder, path, cfg, quantize)


EXTRACTIVE_PARAMETERS = {
    "max_sentences": "the most sentences in a summary (extractive runs)",
    "max_words": "the most words in a summary (extractive runs)",
}


def serve_options(parameters: dict) -> dict:
    """An extractive run's sentence and word budget, or an abstractive run's generation options: whichever was
    given (the predictor refuses the other kind)."""
    budget = {k: parameters[k] for k in EXTRACTIVE_PARAMETERS if parameters.get(k) is not None}
    if budget:
        check_parameters(parameters, EXTRACTIVE_PARAMETERS)
        for key, value in budget.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ToolkitError(f"{key} must be a whole number of 1 or more, not {value!r}.")
        return budget
    return generation_options(parameters, GENERATION_PARAMETERS)


SERVE = ServeShape(
    read=texts_of,
    write=generated("summary_text"),
    options=serve_options,
    example='{"inputs": "The full text of a paper abstract ..."}',
    describe="inputs: a text or a list of texts. Answers [{summary_text}], one per text.",
    client_call='summarization("The full text of a paper abstract ...")',
)


register(
    TaskSpec(
        rank=30,
        name="summarization",
        description="Summarization: extractive (an encoder scores the document's sentences) or abstractive "
        "(sequence-to-sequence).",
        build=build_task,
        predictor=load_predictor,
        evaluate_run=evaluate_run,
        check_data=seq2seq.data_checks(
            lambda cfg: (cfg.data.text_column, cfg.data.summary_column), lambda cfg: not cfg.extractive.enabled
        ),
        app="toolkit.apps.summarization",
        example_config="recipes/configs/summarization_scitldr.yaml",
        metrics=METRICS,
        usage='predict("The full text of a paper abstract ...")',
        pipeline_tag="summarization",
        serve=SERVE,
        export=export_onnx,
        config=SummarizationConfig,
    )
)

# An export written before this task's code moved names its predictor by an old module: found here by name.
__getattr__ = names_on_demand(__name__, {"OnnxTextGenerator": "toolkit.recipes.seq2seq.onnx"})
