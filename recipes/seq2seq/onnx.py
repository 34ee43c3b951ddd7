"""ONNX export of sequence-to-sequence runs (translation, abstractive summarization) and the predictor that runs it.

Three graphs, as a decoder with a cache needs them in ONNX Runtime (optimum's layout; optimum itself needs
transformers < 4.58):
- ``model.onnx``: the encoder, token ids in, hidden states out;
- ``decoder_first.onnx``: the first decoding step, which also computes each layer's cross-attention keys and values
  from the encoder's output, once;
- ``decoder_step.onnx``: every later step, with the self-attention and cross-attention cache in and the grown
  self-attention cache out.
Decoding stays transformers' own ``generate()`` (beam search, length penalty, n-gram blocking, forced language
codes): the predictor hands it the run's model with its encoder and forward calls answered by ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch

from toolkit.errors import ToolkitError
from toolkit.export import OPSET
from toolkit.onnx_backend import open_session
from toolkit.recipes.seq2seq.predictors import TextGenerator, load_seq2seq

FIRST_STEP, NEXT_STEP = "decoder_first.onnx", "decoder_step.onnx"


class EncoderGraph(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


class DecoderGraph(torch.nn.Module):
    """One decoding step of the whole model (so that a projection between encoder and decoder stays in): the last
    position's logits, then each layer's self-attention keys and values (with ``past``: grown by this step), then,
    on the first step only, each layer's cross-attention keys and values. ``past`` is flat: self keys, self values,
    cross keys, cross values, layer by layer."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, encoder_hidden_states, attention_mask, past=()):
        from transformers import DynamicCache, EncoderDecoderCache

        own = [(past[i], past[i + 1]) for i in range(0, len(past), 4)]
        cross = [(past[i + 2], past[i + 3]) for i in range(0, len(past), 4)]
        cache = EncoderDecoderCache(DynamicCache(own or None), DynamicCache(cross or None))
        out = self.model(
            encoder_outputs=(encoder_hidden_states,),
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            cache=cache,
            use_cache=True,
            return_dict=True,
        )
        states = [t for layer in out.cache.self_attention_cache.layers for t in (layer.keys, layer.values)]
        if not past:
            states += [t for layer in out.cache.cross_attention_cache.layers for t in (layer.keys, layer.values)]
        return (out.logits[:, -1], *states)


def export_seq2seq(folder: Path, path: Path, cfg, quantize: bool) -> str:
    """The encoder to ``path``, the two decoder graphs beside it. Returns the predictor that answers with them."""
    from transformers import AutoTokenizer

    if quantize:
        raise ToolkitError(
            "--quantize int8 is for classifiers, taggers and question answering; a sequence-to-sequence export "
            "is fp32. Export without --quantize."
        )
    model = load_seq2seq(folder, attn_implementation="eager").eval()  # plain MatMuls: see export_text_classifier
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    sample = AutoTokenizer.from_pretrained(folder)(
        ["an example", "a longer example sentence for the export"], padding=True, return_tensors="pt"
    )
    ids, mask = sample["input_ids"], sample["attention_mask"]
    start = torch.full((2, 1), int(model.generation_config.decoder_start_token_id or 0))
    with torch.no_grad():
        hidden = EncoderGraph(model)(ids, mask)
        first = DecoderGraph(model)(start, hidden, mask)
    layers = (len(first) - 1) // 4
    batch, source, cached = torch.export.Dim("batch"), torch.export.Dim("source"), torch.export.Dim("cached")
    text = {"attention_mask": {0: batch, 1: source}}
    _save(EncoderGraph(model), {"input_ids": ids, "attention_mask": mask}, ["encoder_hidden_states"],
          {"input_ids": {0: batch, 1: source}, **text}, path)  # fmt: skip

    inputs = {"decoder_input_ids": start, "encoder_hidden_states": hidden, "attention_mask": mask}
    shapes = {"decoder_input_ids": {0: batch}, "encoder_hidden_states": {0: batch, 1: source}, **text}
    own = [f"present.{i}.{kind}" for i in range(layers) for kind in ("self_key", "self_value")]
    cross = [f"present.{i}.{kind}" for i in range(layers) for kind in ("cross_key", "cross_value")]
    _save(DecoderGraph(model), inputs, ["logits", *own, *cross], shapes, path.with_name(FIRST_STEP))

    past_names, past = [], []  # two cached steps (a dimension of 1 would be fixed at 1)
    for i in range(layers):
        own_k, own_v = first[1 + 2 * i], first[2 + 2 * i]
        cross_k, cross_v = first[1 + 2 * layers + 2 * i], first[2 + 2 * layers + 2 * i]
        past += [torch.cat([own_k, own_k], 2), torch.cat([own_v, own_v], 2), cross_k, cross_v]
        past_names += [f"past.{i}.{kind}" for kind in ("self_key", "self_value", "cross_key", "cross_value")]
    past_shapes = tuple({0: batch, 2: cached if "self" in name else source} for name in past_names)
    _save(DecoderGraph(model), {**inputs, "past": tuple(past)}, ["logits", *own], {**shapes, "past": past_shapes},
          path.with_name(NEXT_STEP), input_names=[*inputs, *past_names])  # fmt: skip
    return f"{__name__}:OnnxTextGenerator"


def _save(module, inputs: dict, outputs: list, shapes: dict, path: Path, input_names: list | None = None) -> None:
    """torch.onnx's exporter (torch.export based), the weights inside the one file."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(
            module.eval(),
            (),
            kwargs=inputs,
            dynamo=True,
            input_names=input_names or list(inputs),
            output_names=outputs,
            dynamic_shapes=shapes,
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
    program.save(str(path), external_data=False)


class OnnxTextGenerator(TextGenerator):
    """The ONNX twin of TextGenerator: the same decoding settings and answers, each forward pass in ONNX Runtime.
    transformers' ``generate()`` still drives the search, on the run's model object."""

    def load(self) -> None:
        super().load()
        self.device = "cpu"
        self.encoder_session = open_session(self.folder, spin=False)
        self.first_session = open_session(self.folder, FIRST_STEP, spin=False)
        self.step_session = open_session(self.folder, NEXT_STEP, spin=False)
        self.step_inputs = {i.name for i in self.step_session.get_inputs()}
        self.first_inputs = {i.name for i in self.first_session.get_inputs()}
        if hasattr(self.model, "merge_and_unload"):  # a LoRA run: its generate() would call the base model's forward
            self.model = self.model.merge_and_unload()
        self.model = self.model.float().to("cpu")
        self.model.get_encoder().forward = self.encode
        self.model.forward = self.decode
        drop_weights(self.model)  # generate() reads only the model's settings, device and dtype now

    def computing(self, module=None):
        return contextlib.nullcontext()  # an export computes in fp32

    def encode(self, input_ids=None, attention_mask=None, **_):
        from transformers.modeling_outputs import BaseModelOutput

        feed = {"input_ids": _array(input_ids), "attention_mask": _array(attention_mask)}
        (hidden,) = self.encoder_session.run(None, feed)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))

    def decode(self, decoder_input_ids=None, encoder_outputs=None, attention_mask=None, cache=None, **_):
        from transformers import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import Seq2SeqLMOutput

        hidden = encoder_outputs[0]
        feed = {
            "decoder_input_ids": _array(decoder_input_ids[:, -1:]),
            "encoder_hidden_states": hidden.numpy(),
            "attention_mask": _array(attention_mask),
        }
        if cache is None or cache.get_seq_length() == 0:
            outputs = self.first_session.run(None, {k: v for k, v in feed.items() if k in self.first_inputs})
            layers = (len(outputs) - 1) // 4
            own, cross = outputs[1 : 1 + 2 * layers], outputs[1 + 2 * layers :]
        else:
            for layer, (own_layer, cross_layer) in enumerate(
                zip(cache.self_attention_cache.layers, cache.cross_attention_cache.layers)
            ):
                feed[f"past.{layer}.self_key"] = own_layer.keys.numpy()
                feed[f"past.{layer}.self_value"] = own_layer.values.numpy()
                feed[f"past.{layer}.cross_key"] = cross_layer.keys.numpy()
                feed[f"past.{layer}.cross_value"] = cross_layer.values.numpy()
            outputs = self.step_session.run(None, {k: v for k, v in feed.items() if k in self.step_inputs})
            own = outputs[1:]
            cross = [t for layer in cache.cross_attention_cache.layers for t in (layer.keys, layer.values)]
        cache = EncoderDecoderCache(DynamicCache(_pairs(own)), DynamicCache(_pairs(cross)))
        return Seq2SeqLMOutput(logits=torch.from_numpy(outputs[0])[:, None], cache=cache)


def drop_weights(model) -> None:
    """Each parameter of ``model`` an empty tensor of its dtype: the memory back, the settings kept."""
    for module in model.modules():
        for name, parameter in list(module._parameters.items()):
            if parameter is not None:
                module._parameters[name] = torch.nn.Parameter(parameter.new_empty(0), requires_grad=False)


def _array(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.numpy(), dtype=np.int64)


def _pairs(flat: list) -> list:
    tensors = [torch.as_tensor(t) for t in flat]
    return [(tensors[i], tensors[i + 1]) for i in range(0, len(tensors), 2)]
