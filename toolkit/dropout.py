"""Dropout with cheaper random numbers, for training on a CPU.

A CPU draws dropout's random numbers one value at a time (torch's ``bernoulli_``, about 5 ns each), and a MiniLM
step of 32 x 48 tokens needs 12 million of them: a fifth of a bf16 training step. One 64-bit draw of the same
generator cut into four 16-bit numbers makes four keep-or-drop decisions for the price of about one: the same
independent masks, with the drop probability rounded to 1/65,536. The draws come from torch's default generator,
so seeds, checkpoints and resumes behave as before. GPUs draw in parallel kernels: nothing changes there.

``install(model)`` swaps the model's ``nn.Dropout`` layers for ``PackedDropout`` and, in transformers models with
plain eager attention, the dropout of the attention probabilities (registered with transformers'
``AttentionInterface``). Only the forward pass changes: weights, ``state_dict`` and saved files are the same.
The mask kept for the backward pass is in the values' dtype (torch keeps one byte per value): faster, for a
little more memory in fp32.
"""

from __future__ import annotations

import torch
from torch import nn

RESOLUTION = 1 << 16  # 16-bit draws: probabilities are rounded to 1/65,536
ATTENTION = "toolkit_packed_dropout"  # the attention implementation's registered name
# Model types whose eager attention is transformers' plain one (scores, additive mask, softmax, dropout, values):
# the function below reproduces it, with its dropout drawn as above. tests/test_dropout.py compares the sources.
PLAIN_EAGER_ATTENTION = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def keep_mask(shape: torch.Size, p: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A ``dtype`` mask holding 0 with probability about ``p`` and else the scale that keeps the mean."""
    count = shape.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), None)
    draws = words.view(torch.int16)[:count].view(shape)  # uniform over [-32768, 32767]
    dropped = round(p * RESOLUTION)
    scale = torch.tensor(RESOLUTION / (RESOLUTION - dropped), dtype=dtype, device=device)
    # In the values' dtype, not bool: one multiply forward and backward (a bool mask costs a cast in each).
    return torch.where(draws >= dropped - RESOLUTION // 2, scale, torch.zeros((), dtype=dtype, device=device))


def packed_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``nn.functional.dropout`` with packed draws on a CPU; torch's own elsewhere."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    return x * keep_mask(x.shape, p, x.device, x.dtype)


class PackedDropout(nn.Dropout):
    """``nn.Dropout`` drawing its masks as ``packed_dropout`` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_dropout(x, self.p, self.training)


def eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' plain eager attention (as in modeling_bert), its probabilities dropped with packed draws."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1)
    weights = packed_dropout(weights, dropout, module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def install(model: nn.Module) -> int:
    """Swap ``model``'s dropout for packed draws (see the module's docstring); returns the layers changed."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, PackedDropout(child.p, child.inplace).train(child.training))
                swapped += 1
    if _plain_eager(model):
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

        AttentionInterface.register(ATTENTION, eager_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)  # the additive float mask eager attention adds
        model.set_attn_implementation(ATTENTION)
        swapped += 1
    return swapped


def uninstall(model: nn.Module) -> None:
    """Back to torch's dropout layers and transformers' eager attention (before saving or evaluating elsewhere)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is PackedDropout:
                setattr(parent, name, nn.Dropout(child.p, child.inplace).train(child.training))
    if _uses(model, ATTENTION):
        model.set_attn_implementation("eager")


def _configs(model: nn.Module) -> list:
    """The model's transformers config and its sub-configs (an encoder-decoder's two), or [] for other models."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "model_type"):
        return []
    found, queue = [], [config]
    while queue:
        current = queue.pop()
        found.append(current)
        queue += [getattr(current, key) for key in getattr(current, "sub_configs", {}) if getattr(current, key, None)]
    return found


def _plain_eager(model: nn.Module) -> bool:
    leaves = [c for c in _configs(model) if not getattr(c, "sub_configs", None)]
    return bool(leaves) and all(
        c.model_type in PLAIN_EAGER_ATTENTION and c._attn_implementation == "eager" for c in leaves
    )


def _uses(model: nn.Module, implementation: str) -> bool:
    return any(c._attn_implementation == implementation for c in _configs(model))
