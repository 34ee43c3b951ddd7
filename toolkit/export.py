"""`toolkit export`: write a run's checkpoint as an ONNX model (optionally int8), which `toolkit predict`, `serve`
and `toolkit.load` then use by default, through ONNX Runtime and without importing torch."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Union

from .checkpoint import find_checkpoint, write_atomically
from .errors import ToolkitError
from .predictor import EXPORT_DIR, EXPORT_INFO
from .tasks import all_tasks

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
OPSET = 18


def export_run(run_dir: Union[str, Path], checkpoint: str = "best", quantize: bool = False) -> Path:
    """Export ``checkpoint`` of a run to ``<checkpoint>/onnx/`` and return that folder.

    ``quantize``: int8 weights by ONNX Runtime's dynamic quantization (smaller and faster on CPU, slightly
    different scores: benchmarks/predict_speed.py measures both)."""
    from .run import read_run_config
    from .tasks import get_task

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    folder = find_checkpoint(run_dir, checkpoint, intact=True)
    if folder is None:
        raise ToolkitError(f"run '{run_dir}' has no {checkpoint}/ checkpoint yet. Train it first with `toolkit train`.")
    spec = get_task(cfg.task)
    if spec.export is None:
        exportable = ", ".join(t.name for t in _all_tasks() if t.export is not None)
        raise ToolkitError(f"`toolkit export` does not support '{cfg.task}' runs yet (it supports: {exportable}).")
    _require_onnx()
    tic = time.perf_counter()

    def write(tmp: Path) -> None:
        predictor = spec.export(folder, tmp / MODEL_FILE, cfg, quantize)
        record = {
            "predictor": predictor,
            "file": MODEL_FILE,
            "quantized": "int8" if quantize else None,
            "opset": OPSET,
            "seconds": round(time.perf_counter() - tic, 1),
        }
        (tmp / EXPORT_INFO).write_text(json.dumps(record, indent=2) + "\n")

    again = (
        f"toolkit export {run_dir}"
        + (f" --checkpoint {checkpoint}" if checkpoint != "best" else "")
        + (" --quantize int8" if quantize else "")
    )
    write_atomically(folder / EXPORT_DIR, write, again=again)
    log.info("exported %s to %s in %.1f s", folder, folder / EXPORT_DIR, time.perf_counter() - tic)
    return folder / EXPORT_DIR


def quantization_change(run_dir: Union[str, Path], checkpoint: str = "best") -> dict:
    """The run's metric on its validation split (else its test split) with the original weights and with the int8
    export, so that a user sees what quantizing costs before choosing it. Returns {"split", "metric", "torch",
    "int8", "change"}, or {"skipped": why} when the run has no split file to score."""
    from . import api
    from .run import read_results, read_run_config
    from .tasks import choose_goal, get_task

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    splits = [name for name in ("validation", "test") if getattr(cfg.data, name)]
    if not splits:
        return {
            "skipped": "the run has no validation or test file configured (its validation rows were held out of "
            "data.train); score both with `toolkit eval RUN --data FILE` and `--backend torch`"
        }
    split = splits[0]
    metric = read_results(run_dir).get("metric") or choose_goal(get_task(cfg.task), cfg).metric
    scores = {
        backend: api.evaluate(run_dir, split=split, checkpoint=checkpoint, backend=backend).get(metric)
        for backend in ("torch", "onnx")
    }
    if scores["torch"] is None or scores["onnx"] is None:
        return {"skipped": f"the {split} scores have no '{metric}'"}
    return {
        "split": split,
        "metric": metric,
        "torch": scores["torch"],
        "int8": scores["onnx"],
        "change": scores["onnx"] - scores["torch"],
    }


def _all_tasks():
    return all_tasks()


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ToolkitError(
            f"exporting needs onnx, onnxscript and onnxruntime ({err.name} is missing): pip install 'toolkit[onnx]'."
        ) from err


def export_checkpoint(folder: Path, path: Path, quantize: bool, head: str, outputs: tuple = ("logits",)) -> None:
    """A saved ``AutoModelFor<head>`` checkpoint (a merged or unmerged LoRA too) as ONNX, with eager attention
    (as the text classifier's export: faster in ONNX Runtime, and int8 quantizes them), its ``outputs`` out."""
    from transformers import AutoTokenizer

    from .models import load_checkpoint_model

    model = load_checkpoint_model(folder, head, attn_implementation="eager").eval()
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    export_logits(model, AutoTokenizer.from_pretrained(folder), path, quantize, outputs)


def export_module(module, inputs: dict, path: Path, outputs: tuple = ("output",)) -> None:
    """A torch module that takes whole tensors (images, latents) as ONNX, fp32, with only the batch dynamic."""
    _export(module.eval(), inputs, path, quantize=False, outputs=outputs, dynamic_axes=(0,))


def export_logits(model, tokenizer, path: Path, quantize: bool, outputs: tuple = ("logits",)) -> None:
    """A transformers model that takes token ids as ONNX: ids in (batch and sequence length dynamic), the named
    ``outputs`` of its forward out (e.g. logits, or start_logits and end_logits)."""
    import torch

    sample = tokenizer(["an example", "a longer example sentence for the export"], padding=True, return_tensors="pt")
    names = [n for n in tokenizer.model_input_names if n in sample]

    class Outputs(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            out = self.inner(input_ids=input_ids, **{k: v for k, v in given.items() if v is not None})
            return tuple(out[name] for name in outputs) if len(outputs) > 1 else out[outputs[0]]

    _export(Outputs(model).eval(), {n: sample[n] for n in names}, path, quantize, outputs)


def _export(
    module, inputs: dict, path: Path, quantize: bool, outputs: tuple = ("logits",), dynamic_axes: tuple = (0, 1)
) -> None:
    """torch.onnx's exporter (torch.export based) with the ``dynamic_axes`` of every input dynamic (default: batch
    and sequence length), weights inside the one file; then int8 weights if asked."""
    import torch

    names = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    target = path.with_name("fp32.onnx") if quantize else path
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals, not the user's to act on
        program = torch.onnx.export(
            module,
            (),
            kwargs=inputs,
            dynamo=True,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_shapes={n: {axis: names[axis] for axis in dynamic_axes} for n in inputs},
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
    program.save(str(target), external_data=False)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its "pre-process first" hint
        # Per-channel int8 weights of the matrix products only: on rt-polarity this kept test accuracy within
        # 0.2 points of fp32 (per-tensor weights, or quantized embeddings too, moved it by 0.6-1.1 points).
        quantize_dynamic(
            str(target), str(path), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
        target.unlink()
