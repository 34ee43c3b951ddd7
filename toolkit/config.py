"""Typed run configuration: dataclasses, YAML files, dotted ``key=value`` overrides.

Every value passes through :func:`build_config`, so a typo or a wrong type in a file
or on the command line gets the same error naming the key and what would be valid.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import ToolkitError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class DataConfig:
    """Where the data is and which columns mean what."""

    train: Optional[str] = None
    validation: Optional[str] = None
    test: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    missing_labels: Literal["skip", "error"] = "skip"  # rows with an empty/NaN/null label: skipped and counted, or refused
    holdout: float = 0.1  # without data.validation: this fraction of train validates; 0: none (best/ = the final weights)
    max_train_rows: Optional[int] = None  # a seeded sample of N training rows
    max_eval_rows: Optional[int] = None  # ... of validation rows (evaluated at every evaluation)
    max_test_rows: Optional[int] = None  # ... of test rows
    source_lang: Optional[str] = None  # translation: field of the source text (e.g. en)
    target_lang: Optional[str] = None  # translation: field of the target text (e.g. de)
    source_lang_code: Optional[str] = None  # multilingual models (mBART, NLLB): the source's code, e.g. en_XX
    target_lang_code: Optional[str] = None  # ... the target's code, e.g. de_DE; generation starts with it
    summary_column: str = "summary"  # summarization: the target column (text_column is the input)
    oracle_sentences: bool = False  # summarization: also train on (document, its sentence closest to the summary)
    source_prefix: Optional[str] = None  # prepended to inputs, e.g. T5's "translate English to German: "
    image_column: str = "image"  # image classification from a hub / saved dataset: the image column
    classes: Optional[list[str]] = None  # images: keep only these labels (e.g. digits 0-4)
    max_per_class: Optional[int] = None  # images: keep the first N training images of each label (few-shot)


@dataclass
class GenerationConfig:
    """Decoding settings used by evaluation, predict and the apps of sequence-to-sequence tasks."""

    num_beams: int = 4
    max_new_tokens: int = 64
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


@dataclass
class PeftConfig:
    """LoRA through peft; ``enabled: false`` trains the whole model."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: Optional[list[str]] = None  # None: peft's default for the architecture
    merge: bool = True  # merge the adapters into the saved best/ model at the end


@dataclass
class WarmStartConfig:
    """An encoder-decoder built from encoder checkpoints (transformers' EncoderDecoderModel; Rothe et al. 2020).

    Set ``encoder`` to use it (``model`` is then not used). ``decoder`` set: warm-start the decoder too
    (bert2bert, shared vocabulary); unset: a new decoder of the encoder's width.
    """

    encoder: Optional[str] = None
    decoder: Optional[str] = None
    decoder_layers: int = 3  # new decoder only
    decoder_heads: int = 12
    decoder_intermediate_size: int = 1536
    # Target vocabulary: "encoder" (the encoder's tokenizer), "train" (byte-level BPE trained on the training
    # targets, cased and lossless: MiniLM's uncased vocabulary would strip umlauts), or a tokenizer folder.
    target_tokenizer: str = "encoder"
    target_vocab_size: int = 8000
    pretrained: bool = True  # false: the same architecture from random weights (the from-scratch baseline)
    encoder_lr_scale: float = 1.0  # the pretrained encoder's learning rate is lr x this (the new decoder's is lr)


@dataclass
class ExtractiveConfig:
    """Summarization by picking the document's own sentences (BertSumExt, Liu & Lapata 2019): ``model`` is an
    encoder (the packaged MiniLM offline), fine-tuned to score sentences against greedy ROUGE oracle labels."""

    enabled: bool = False
    max_sentences: int = 1  # the summary: at most this many sentences ...
    max_words: Optional[int] = None  # ... and at most this many words (unset: no word limit)
    block_trigrams: bool = True  # skip a sentence that repeats a trigram of one already picked (Paulus et al. 2018)
    oracle_sentences: int = 3  # training labels: at most this many sentences, picked greedily by ROUGE
    head_layers: int = 2  # inter-sentence transformer layers over the sentence vectors (0: a linear scorer alone)
    max_position: int = 64  # sentence positions with their own embedding; later sentences share the last one


@dataclass
class ImageConfig:
    """Image classification: input size, augmentation (torchvision transforms v2) and the transfer mode.

    Unset size/mean/std/crop_pct come from the backbone's pretrained data config (timm's, or the
    image processor's for transformers models).
    """

    pretrained: bool = True  # false: the backbone from random weights
    # lp_ft: fit the head as a logistic-regression probe on frozen features first, then fine-tune everything from
    # there, with best/ starting as that probe (LP-FT, Kumar et al. 2022: fine-tuning with a random head distorts
    # the pretrained features, and lost to a probe on classes ImageNet lacks)
    mode: Literal["full", "linear_probe", "two_stage", "lp_ft"] = "full"
    head_epochs: float = 1.0  # two_stage: epochs that train only the head before the backbone is unfrozen
    backbone_lr_scale: Optional[float] = None  # the backbone's learning rate is lr x this; default 0.1 for two_stage, else 1
    size: Optional[int] = None
    channels: Optional[int] = None  # 1 (grey) or 3; default: the backbone's
    crop_pct: Optional[float] = None  # evaluation: resize to size / crop_pct, then centre-crop
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    random_resized_crop: bool = True
    crop_scale_min: float = 0.25  # smallest random crop, as a fraction of the image area
    hflip: float = 0.5  # probability
    rotation: float = 0.0  # degrees, either way
    color_jitter: float = 0.0  # brightness, contrast and saturation amount
    max_upload_mb: float = 10.0  # apps and predict refuse larger files
    max_megapixels: float = 40.0  # ... and images of more pixels, read from the header before decoding
    top_k: int = 5  # labels shown by predict and the app


@dataclass
class GanConfig:
    """DCGAN (Radford et al. 2016), optionally class-conditional (conditional batch norm in the generator, projection
    discriminator), spectral norm, non-saturating or hinge loss, and an exponential moving average of the generator
    for sampling."""

    latent_dim: int = 64
    channels: int = 64  # width of the last generator / first discriminator block; doubles per block
    conditional: bool = False
    spectral_norm: bool = True  # on the discriminator
    loss: Literal["nonsaturating", "hinge"] = "nonsaturating"
    d_lr_scale: float = 1.0  # the discriminator's learning rate is lr x this
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999
    init_from: Optional[str] = None  # fine-tune from this run directory's generator and discriminator
    freeze_d_layers: int = 0  # FreezeD (Mo et al. 2020): freeze this many of the discriminator's first blocks
    grid_rows: int = 8  # the fixed-noise sample grid written every evaluation
    # FID/KID features (ImageNet Inception weights cannot be downloaded here): a finished image-classification run
    # (e.g. a seed CNN on digits), or an ImageNet timm backbone by name (tf_efficientnet_lite0 for colour images).
    eval_classifier: Optional[str] = None
    eval_samples: int = 1000  # generated (and at most this many real) images per FID/KID evaluation


@dataclass
class Config:
    """One training run. Defaults run as they are."""

    task: str = "sentiment"
    model: str = DEFAULT_TEXT_MODEL
    data: DataConfig = field(default_factory=DataConfig)
    epochs: float = 3.0
    max_steps: Optional[int] = None  # overrides epochs when set
    license: Optional[str] = None  # the model card's license (default: the packaged base model's, where known)
    batch_size: int = 32
    eval_batch_size: Optional[int] = None  # default: 2 x batch_size
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: Optional[float] = 1.0
    max_length: int = 128
    max_target_length: int = 128  # sequence-to-sequence targets
    # true: batches of similar lengths, in shuffled groups of 4 (the least padding); false: random batches, which on
    # the CPU run as length-sorted micro-batches (micro_batches) with the whole batch's gradient
    group_by_length: bool = True
    micro_batches: Optional[int] = None  # random batches only: pieces per batch by length; unset: batch/8 on CPU, 1 on GPU
    # auto: bf16 where the GPU or the CPU computes it natively (AMX, AVX512-BF16), fp16 on older GPUs, else fp32
    precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    seed: int = 42
    eval_every: Union[int, Literal["epoch"]] = "epoch"  # optimizer steps, or once per epoch
    save_every: Optional[int] = None  # extra last/ checkpoints every N steps (for resume)
    metric: Optional[str] = None  # validation metric that picks best/; default: the task's (accuracy, bleu, rougeL)
    greater_is_better: Optional[bool] = None  # default: False for loss, True for the others
    patience: Optional[int] = None  # early stopping: evaluations without improvement
    log_every: int = 10
    output_dir: Optional[str] = None  # default: runs/<config file name>
    resume: bool = False
    overwrite: bool = False
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    peft: PeftConfig = field(default_factory=PeftConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    extractive: ExtractiveConfig = field(default_factory=ExtractiveConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    num_workers: Optional[int] = None  # DataLoader worker processes; unset: from the usable CPUs and the task's data
    max_train_minutes: Optional[float] = None  # stop training after this much training time (a fixed budget)
    trust_remote_code: bool = False
    # "auto": eager attention on the CPU (its SDPA backward was 20-35% slower for short texts here), else SDPA.
    attn_implementation: str = "auto"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only lossless cases (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ToolkitError:
                continue
    elif origin is Literal:
        if value is False and "no" in typing.get_args(tp):
            return "no"  # YAML 1.1 reads a bare no (precision: no, precision=no) as false
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
    elif origin is list:
        if isinstance(value, str):  # CLI: a,b,c
            value = [v for v in value.split(",") if v]
        if isinstance(value, list):
            (item_tp,) = typing.get_args(tp)
            return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 3e-5 (no dot) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, prefix=f"{key}.")
    raise ToolkitError(
        f"config key '{key}' has value {value!r} ({type(value).__name__}); expected {_type_name(tp)}."
    )


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise ToolkitError(
                f"unknown config key '{prefix}{key}'.{hint} Valid keys here: {', '.join(prefix + n for n in names)}."
            )
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def _parse_scalar(text: str) -> Any:
    """A CLI value is read as YAML, so ``lr=3e-5``, ``peft.enabled=true`` and ``x=null`` work."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``dotted.key=value`` strings to a nested dict (a copy)."""
    out = copy.deepcopy(values)
    for item in overrides:
        if "=" not in item:
            raise ToolkitError(f"override '{item}' is not of the form key=value (e.g. lr=3e-5).")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ToolkitError(f"override '{item}': '{part}' is not a section.")
        node[parts[-1]] = _parse_scalar(raw)
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"config file '{path}' does not exist. Shipped configs live in recipes/configs/.")
    try:
        text = path.read_text(encoding="utf-8")
        if "\x00" in text:
            raise ToolkitError(f"config file '{path}' is not a text file (it holds binary data). Give a YAML config "
                               f"(see recipes/configs/).")
        values = yaml.safe_load(text) or {}
    except UnicodeDecodeError as err:
        raise ToolkitError(f"config file '{path}' is not a text file (not UTF-8). Give a YAML config (see recipes/configs/).") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ToolkitError(f"config file '{path}' is not valid YAML{where}: {problem}. Fix that line "
                           f"(indent with spaces, 'key: value').") from err
    if not isinstance(values, dict):
        raise ToolkitError(f"config file '{path}' must hold a mapping of keys to values.")
    return values


def build_config(values: dict, ranges: bool = True) -> Config:
    """Validate plain values (from YAML and overrides) into a :class:`Config`; ``ranges=False`` skips the range
    checks (a finished run's saved config, which an older version may have accepted)."""
    cfg = _build(Config, values)
    if ranges:
        check_ranges(cfg)
    return cfg


def _at_least(low: float) -> tuple[str, Any]:
    return f"at least {low}", lambda v: v >= low


def _above(low: float) -> tuple[str, Any]:
    return f"above {low}", lambda v: v > low


def _between(low: float, high: float, high_open: bool = False) -> tuple[str, Any]:
    if high_open:
        return f"from {low} up to (not including) {high}", lambda v: low <= v < high
    return f"from {low} to {high}", lambda v: low <= v <= high


# Every numeric key's allowed values, checked when a config loads: a value out of range is a config error
# naming the key, never a silent odd run or a traceback later.
RANGES = {
    "epochs": _above(0), "max_steps": _at_least(1), "batch_size": _at_least(1), "eval_batch_size": _at_least(1),
    "grad_accum": _at_least(1), "lr": _at_least(0), "weight_decay": _at_least(0), "warmup_ratio": _between(0, 1),
    "max_grad_norm": _at_least(0), "max_length": _at_least(2), "max_target_length": _at_least(2),
    "seed": _between(0, 2**32 - 1), "eval_every": _at_least(1), "save_every": _at_least(1), "patience": _at_least(1),
    "log_every": _at_least(1), "micro_batches": _at_least(1), "num_workers": _at_least(0), "max_train_minutes": _above(0),
    "data.holdout": _between(0, 1, True), "data.max_train_rows": _at_least(1), "data.max_eval_rows": _at_least(1),
    "data.max_test_rows": _at_least(1), "data.max_per_class": _at_least(1),
    "generation.num_beams": _at_least(1), "generation.max_new_tokens": _at_least(1),
    "generation.length_penalty": _between(-10, 10), "generation.no_repeat_ngram_size": _at_least(0),
    "peft.r": _at_least(1), "peft.alpha": _above(0), "peft.dropout": _between(0, 1, True),
    "warm_start.decoder_layers": _at_least(1), "warm_start.decoder_heads": _at_least(1),
    "warm_start.decoder_intermediate_size": _at_least(1), "warm_start.target_vocab_size": _at_least(300),
    "warm_start.encoder_lr_scale": _at_least(0),
    "extractive.max_sentences": _at_least(1), "extractive.max_words": _at_least(1),
    "extractive.oracle_sentences": _at_least(1), "extractive.head_layers": _at_least(0),
    "extractive.max_position": _at_least(1),
    "image.head_epochs": _at_least(0), "image.backbone_lr_scale": _at_least(0), "image.size": _at_least(8),
    "image.channels": ("1 or 3", lambda v: v in (1, 3)), "image.crop_pct": _between(0.05, 1),
    "image.crop_scale_min": _between(0.01, 1), "image.hflip": _between(0, 1), "image.rotation": _between(0, 180),
    "image.color_jitter": _between(0, 1), "image.max_upload_mb": _above(0), "image.max_megapixels": _above(0), "image.top_k": _at_least(1),
    "gan.latent_dim": _at_least(1), "gan.channels": _at_least(1), "gan.d_lr_scale": _above(0),
    "gan.beta1": _between(0, 1, True), "gan.beta2": _between(0, 1, True), "gan.ema_decay": _between(0, 1, True),
    "gan.freeze_d_layers": _at_least(0), "gan.grid_rows": _at_least(1), "gan.eval_samples": _at_least(2),
}


def check_ranges(cfg: Config) -> None:
    for key, (allowed, ok) in RANGES.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (math.isfinite(value) and ok(value)):
            raise ToolkitError(f"config key '{key}' is {value!r}; it must be {allowed}.")


def load_config(source: str | Path | dict | Config, overrides: list[str] | None = None,
                default_output: bool = True) -> Config:
    """Load a config from a YAML path, a dict or a Config, then apply overrides.

    When ``output_dir`` is unset (and ``default_output``), the run goes to :func:`default_output_dir`.
    """
    if isinstance(source, Config):
        values = config_to_dict(source)
    elif isinstance(source, dict):
        values = source
    else:
        values = read_yaml(source)
    cfg = build_config(apply_overrides(values, overrides or []))
    if cfg.output_dir is None and default_output:
        cfg.output_dir = str(default_output_dir(source, cfg))
    return cfg


def default_output_dir(source: str | Path | dict | Config, cfg: Config) -> Path:
    """``runs/<config file name>`` for a config file, ``runs/<task>`` otherwise."""
    named = isinstance(source, (str, Path))
    return Path("runs") / (Path(source).stem if named else cfg.task)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
