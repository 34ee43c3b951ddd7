"""Translation: any AutoModelForSeq2SeqLM, source and target language fields picked by the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from toolkit.config import DataRole, section, setting
from toolkit.errors import ToolkitError
from toolkit.predictor import names_on_demand
from toolkit.recipes import seq2seq
from toolkit.recipes.seq2seq import Seq2SeqConfig, Seq2SeqData
from toolkit.shapes import GENERATION_PARAMETERS, generated, generation_options, texts_of
from toolkit.tasks import ServeShape, TaskSpec, register


@dataclass
class TranslationData(Seq2SeqData):
    """The source and target columns of a translation table."""

    source_lang: Optional[str] = setting(
        None,
        "the column (or JSONL field) of the source text, e.g. `en`",
        shown="unset",
        role=DataRole("source", "text", ("source", "src", "en", "english", "input")),
    )
    target_lang: Optional[str] = setting(
        None,
        "the column of the target text, e.g. `de`",
        shown="unset",
        role=DataRole("target", "text", ("target", "tgt", "de", "german", "fr", "french", "output", "translation")),
    )


@dataclass
class TranslationConfig(Seq2SeqConfig):
    """Translation: any sequence-to-sequence model, or an encoder-decoder warm-started from a pretrained encoder."""

    data: TranslationData = section(TranslationData)


METRICS = ("bleu", "chrf", "loss")  # validation metrics; the first picks best/


def translation_metrics(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus sacreBLEU and chrF (0-100) with sacrebleu's default tokenisation, one reference each."""
    import sacrebleu

    return {
        "bleu": float(sacrebleu.corpus_bleu(hypotheses, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(hypotheses, [references]).score),
        "count": len(hypotheses),
    }


def columns(cfg: TranslationConfig) -> tuple[str, str]:
    if not cfg.data.source_lang or not cfg.data.target_lang:
        raise ToolkitError(
            "translation needs data.source_lang and data.target_lang: the fields of the source and "
            "target text (e.g. data.source_lang=en data.target_lang=de)."
        )
    return cfg.data.source_lang, cfg.data.target_lang


def build_task(cfg: TranslationConfig):
    source, target = columns(cfg)
    return seq2seq.build_seq2seq_task(cfg, source, target, translation_metrics)


def evaluate_run(predictor, cfg: TranslationConfig, data: str, split: str) -> dict:
    return seq2seq.evaluate_run(predictor, cfg, data, split, *columns(cfg), translation_metrics)


def load_predictor(folder, cfg: TranslationConfig, **kwargs):
    from toolkit.recipes.seq2seq.predictors import TextGenerator

    return TextGenerator(folder, cfg=cfg, **kwargs)


def export_onnx(folder, path, cfg: TranslationConfig, quantize: bool) -> str:
    """`toolkit export`: the encoder and the decoder's two steps as ONNX (recipes/seq2seq/onnx.py)."""
    from toolkit.recipes.seq2seq.onnx import export_seq2seq

    return export_seq2seq(folder, path, cfg, quantize)


SERVE = ServeShape(
    read=texts_of,
    write=generated("translation_text"),
    options=lambda parameters: generation_options(parameters, GENERATION_PARAMETERS),
    example='{"inputs": "A man is riding a bicycle.", "parameters": {"generate_parameters": {"num_beams": 4}}}',
    describe="inputs: a text or a list of texts. Answers [{translation_text}], one per text.",
    client_call='translation("A man is riding a bicycle.")',
)


register(
    TaskSpec(
        rank=20,
        name="translation",
        description="Translation: any sequence-to-sequence model, or an encoder-decoder warm-started from a pretrained "
        "encoder.",
        build=build_task,
        predictor=load_predictor,
        evaluate_run=evaluate_run,
        check_data=seq2seq.data_checks(columns),
        app="toolkit.apps.translation",
        example_config="recipes/configs/translation_multi30k_en_de.yaml",
        metrics=METRICS,
        usage='predict("A man is riding a bicycle down the street.")',
        pipeline_tag="translation",
        serve=SERVE,
        export=export_onnx,
        config=TranslationConfig,
    )
)

# An export written before this task's code moved names its predictor by an old module: found here by name.
__getattr__ = names_on_demand(__name__, {"OnnxTextGenerator": "toolkit.recipes.seq2seq.onnx"})
