"""What the tasks' JSON API shapes share (toolkit.tasks.ServeShape): the Hugging Face Inference API's ways of
sending text, its parameters, and ranked labels. Light: every recipe imports it when tasks are registered."""

from __future__ import annotations

import base64
import binascii

from .errors import ToolkitError


def texts_of(inputs) -> tuple[list[str], bool]:
    """A text task's "inputs": one string, or a list of them (one batch)."""
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, list) and all(isinstance(item, str) for item in inputs):
        return inputs, False
    raise ToolkitError('inputs must be a string or a list of strings, e.g. {"inputs": "a gripping film"}.')


def check_parameters(parameters: dict, known: dict) -> None:
    """Refuse parameters the task does not take (``known``: name -> what it does), naming the ones it does; a
    parameter sent as null (as InferenceClient leaves unset ones out anyway) is ignored."""
    unknown = sorted(k for k, v in parameters.items() if k not in known and v is not None)
    if unknown:
        takes = ", ".join(f"{k} ({what})" for k, what in known.items()) or "none"
        raise ToolkitError(f"unknown parameter(s) {', '.join(unknown)}: this task takes {takes}.")


def top_k_of(parameters: dict, most: int) -> int:
    value = parameters.get("top_k")
    if value is None:
        return most
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ToolkitError(f"top_k must be a whole number of 1 or more, not {value!r}.")
    return min(value, most)


def ranked(scores: dict, top_k: int) -> list[dict]:
    """{label: probability} as [{label, score}], best first, the first ``top_k``."""
    order = sorted(scores.items(), key=lambda item: -item[1])
    return [{"label": label, "score": float(score)} for label, score in order[:top_k]]


def label_options(top_k_meaning: str):
    """The options of a classifier's request: top_k (checked before the request waits for the model) and
    function_to_apply (softmax, the only one); the predictor itself takes none."""

    def options(parameters: dict) -> dict:
        check_parameters(parameters, {"top_k": top_k_meaning, "function_to_apply": "softmax, the only one"})
        top_k_of(parameters, 1)
        if parameters.get("function_to_apply") not in (None, "softmax"):
            raise ToolkitError("function_to_apply: this server answers softmax probabilities only.")
        return {}

    return options


def generation_options(parameters: dict, known: dict) -> dict:
    """A text-to-text task's options: ``generate_parameters`` max_new_tokens and num_beams (InferenceClient's
    spelling), or the same keys at the top of "parameters"."""
    check_parameters(parameters, known)
    nested = parameters.get("generate_parameters") or {}
    if not isinstance(nested, dict):
        raise ToolkitError('generate_parameters must be an object, e.g. {"max_new_tokens": 64}.')
    options = {}
    for key, (low, high) in (("max_new_tokens", (1, 1024)), ("num_beams", (1, 16))):
        value = nested.get(key, parameters.get(key))
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ToolkitError(f"{key} must be a whole number from {low} to {high}, not {value!r}.")
        options[key] = value
    other = sorted(k for k, v in nested.items() if k not in ("max_new_tokens", "num_beams") and v is not None)
    if other:
        raise ToolkitError(f"generate_parameters {', '.join(other)} are not taken: give max_new_tokens or num_beams.")
    return options


GENERATION_PARAMETERS = {
    "generate_parameters": "max_new_tokens and num_beams",
    "max_new_tokens": "the longest output, in tokens",
    "num_beams": "beam search width",
    "clean_up_tokenization_spaces": "ignored: outputs are always cleaned",
    "truncation": "ignored: inputs are cut to the run's max_length (the answer's truncated says so)",
    "src_lang": "the run's source language, if given",
    "tgt_lang": "the run's target language, if given",
}


def generated(field: str):
    """The write of a text-to-text task: [{FIELD: text}] per input (translation_text, summary_text)."""

    def write(answers: list[dict], single: bool, parameters: dict) -> list:
        return [{field: answer["output"]} for answer in answers]

    return write


def image_bytes_of(inputs) -> tuple[list[bytes], bool]:
    """An image task's JSON "inputs": the file's bytes in base64 (or a list of them)."""
    items, single = ([inputs], True) if isinstance(inputs, str) else (inputs, False)
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ToolkitError("inputs must be an image file's bytes in base64, or a list of them (or send the raw bytes).")
    try:
        return [base64.b64decode(item, validate=True) for item in items], single
    except (binascii.Error, ValueError):
        raise ToolkitError("inputs is not base64: send an image file's bytes in base64, or the raw bytes.") from None
