"""Ways to export a sentiment run for ONNX Runtime, timed in interleaved rounds in one process against a stock
`pipeline` (timings on a shared machine drift between rounds; interleaving spreads that over every variant).

Variants: the dynamo exporter tracing SDPA or eager attention, the TorchScript exporter (deprecated in torch),
ONNX Runtime's BERT fusions on it; each in fp32 and with int8 MatMul weights (per channel, as `toolkit export`).
Usage: python benchmarks/onnx_export_variants.py RUN [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TOOLKIT_SHARED_DATA") or ROOT.parent / "shared" / "data") / "sentiment" / "rt-polarity"
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def logits_module(best: Path, attention: str):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(best, attn_implementation=attention).eval()

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    return Logits().eval()


def build_variants(best: Path, folder: Path) -> dict[str, Path]:
    import torch
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoTokenizer

    from toolkit.export import _export

    sample = AutoTokenizer.from_pretrained(best)(
        ["an example", "a longer example sentence"], padding=True, return_tensors="pt"
    )
    inputs = {n: sample[n] for n in NAMES}
    files = {}
    for attention in ("sdpa", "eager"):
        for int8 in (False, True):
            files[f"dynamo, {attention}{', int8' if int8 else ''}"] = path = folder / f"dynamo_{attention}_{int8}.onnx"
            _export(logits_module(best, attention), inputs, path, int8)
    files["TorchScript exporter, eager"] = script = folder / "torchscript.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            logits_module(best, "eager"),
            tuple(inputs.values()),
            str(script),
            dynamo=False,
            input_names=NAMES,
            output_names=["logits"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in NAMES},
            opset_version=17,
        )
    files["TorchScript + BERT fusions"] = fused = folder / "fused.onnx"
    optimize_model(str(script), model_type="bert", num_heads=0, hidden_size=0).save_model_to_file(str(fused))
    return files


def onnx_answers(path: Path, best: Path, texts: list[str], batch: int, threads: int):
    import numpy as np
    import onnxruntime
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(best / "tokenizer.json"))
    tokenizer.enable_truncation(128)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    labels = json.loads((best / "labels.json").read_text())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))

    def answer() -> list[str]:
        out = [None] * len(texts)
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            encodings = tokenizer.encode_batch([texts[i] for i in chunk])
            columns = {
                "input_ids": [e.ids for e in encodings],
                "attention_mask": [e.attention_mask for e in encodings],
                "token_type_ids": [e.type_ids for e in encodings],
            }
            logits = session.run(None, {n: np.asarray(columns[n], dtype=np.int64) for n in wanted})[0]
            for i, row in zip(chunk, logits):
                out[i] = labels[int(row.argmax())]
        return out

    return answer


def main() -> int:
    from toolkit.hardware import benchmark_header, torch_threads

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("run", help="a finished sentiment run")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    import pandas as pd
    from transformers import pipeline

    best = Path(args.run) / "best"
    test = pd.read_csv(DATA / "test.csv")
    texts, gold = list(test["text"]), list(test["label"].astype(str))
    stock = pipeline("text-classification", model=str(best), top_k=None)
    runners = {
        "stock pipeline (batch_size=32)": lambda: [
            max(r, key=lambda s: s["score"])["label"] for r in stock(texts, batch_size=32)
        ]
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in build_variants(best, Path(tmp)).items():
            for batch in (16, 32):
                runners[f"{name}, batch {batch}"] = onnx_answers(path, best, texts, batch, torch_threads())
        accuracy = {name: sum(a == g for a, g in zip(run(), gold)) / len(gold) for name, run in runners.items()}
        speeds = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                tic = time.perf_counter()
                run()
                speeds[name].append(len(texts) / (time.perf_counter() - tic))
    base = statistics.median(speeds["stock pipeline (batch_size=32)"])
    print(f"\n{'variant':44} {'median/s':>9} {'range':>11} {'x pipeline':>10} {'test acc':>9}")
    for name, values in speeds.items():
        median = statistics.median(values)
        print(
            f"{name:44} {median:9.1f} {min(values):5.0f}-{max(values):<5.0f} {median / base:9.2f}x "
            f"{accuracy[name]:9.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
