"""Packed dropout draws (toolkit/dropout.py): the same masks as torch's dropout, for a quarter of the draws."""

import importlib
import inspect
import json

import pytest
import torch
from torch import nn

from toolkit import dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_masks_drop_at_the_rate_and_keep_the_mean(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(1_000_000, dtype=dtype)
    y = dropout.packed_dropout(x, p).float()
    assert abs((y == 0).float().mean().item() - p) < 0.003
    assert abs(y.mean().item() - 1.0) < 0.01  # the scale keeps the mean (bf16 rounds the scale itself)
    assert y.dtype == torch.float32 and dropout.packed_dropout(x, p).dtype == dtype


def test_masks_are_independent_across_positions_and_calls():
    """Neighbouring values come from the same 64-bit draw: their decisions must still be independent."""
    torch.manual_seed(0)
    first = (dropout.packed_dropout(torch.ones(400_000), 0.5) > 0).float().view(-1, 4)
    second = (dropout.packed_dropout(torch.ones(400_000), 0.5) > 0).float().view(-1, 4)
    both_kept = (first[:, 0] * first[:, 1]).mean().item()
    assert abs(both_kept - 0.25) < 0.005  # P(keep and keep) = P(keep)^2
    assert abs((first * second).mean().item() - 0.25) < 0.005
    assert not torch.equal(first, second)


def test_the_seed_decides_the_masks_and_the_gradient_is_the_mask():
    x = torch.randn(64, 32, requires_grad=True)
    torch.manual_seed(1)
    a = dropout.packed_dropout(x, 0.2)
    torch.manual_seed(1)
    b = dropout.packed_dropout(x, 0.2)
    assert torch.equal(a, b)  # seeds and resumes replay the same masks
    a.sum().backward()
    assert torch.allclose(x.grad, (a / x).detach(), atol=1e-5)  # d(x * mask)/dx = mask


def test_off_outside_training_and_at_zero():
    x = torch.randn(10, 10)
    assert dropout.packed_dropout(x, 0.3, training=False) is x
    assert dropout.packed_dropout(x, 0.0) is x


def test_install_keeps_evaluation_identical_and_saved_files_stock(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, attn_implementation="eager").eval()
    ids = torch.randint(5, 40, (4, 12))
    mask = torch.ones_like(ids)
    mask[:, 8:] = 0  # padding: the attention mask must reach the new attention function as eager's
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    changed = dropout.install(model)
    assert changed == sum(1 for _ in model.modules() if isinstance(_, dropout.PackedDropout)) + 1  # + attention
    assert model.config._attn_implementation == dropout.ATTENTION
    assert all(type(m) is not nn.Dropout for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)
        model.train()
        one, two = (model(input_ids=ids, attention_mask=mask).logits for _ in range(2))
    assert not torch.equal(one, two)  # dropout is on in training
    model.eval().save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved/config.json").read_text())
    assert dropout.ATTENTION not in json.dumps(saved)  # stock transformers reloads it
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids, attention_mask=mask).logits, before, atol=1e-5)
    dropout.uninstall(model)
    assert model.config._attn_implementation == "eager"
    assert not any(isinstance(m, dropout.PackedDropout) for m in model.modules())


def test_models_with_other_attention_keep_theirs(tiny_t5):
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5, attn_implementation="eager")
    before = model.config._attn_implementation
    dropout.install(model)
    assert model.config._attn_implementation == before  # T5's attention is not the plain one: only layers change


@pytest.mark.parametrize("model_type", ["roberta", "xlm_roberta", "camembert", "electra"])
def test_the_listed_models_use_the_plain_eager_attention(model_type):
    """dropout.eager_attention reproduces BERT's eager attention; the other listed types must share its source."""
    bert = importlib.import_module("transformers.models.bert.modeling_bert")
    other = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    assert inspect.getsource(other.eager_attention_forward) == inspect.getsource(bert.eager_attention_forward)


def test_training_records_packed_draws_on_the_cpu(tiny_config):
    from toolkit import train

    for draws, expected in (("auto", "packed"), ("torch", "torch")):
        run = train({**tiny_config, "dropout_draws": draws, "output_dir": f"{tiny_config['output_dir']}-{draws}"})
        assert json.loads((run.dir / "results.json").read_text())["dropout_draws"] == expected
        assert run.metrics["test"]["accuracy"] >= 0.9
