"""What every image model honours: shapes, gradients, attention over the unit grid, masks, export, contributions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.models.registry import REGISTRY

from .conftest import IMAGE_MODELS, INPUTS, ImageBatchFactory, ImageModelFactory

NAMES = sorted(IMAGE_MODELS)


def test_every_registered_image_model_is_tested() -> None:
    assert set(REGISTRY["image"]) <= set(IMAGE_MODELS)
    for name, (config_cls, model_cls) in REGISTRY["image"].items():
        assert IMAGE_MODELS[name][:2] == (config_cls, model_cls)


@pytest.mark.parametrize("inputs", sorted(INPUTS))
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_and_attention(
    name: str, inputs: str, tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model(name, inputs)
    model.train()
    pixels = image_batch(2, inputs)
    out = model(pixels)
    units = model.config.num_units
    assert units == (49 if inputs == "gray28" else 64)
    assert out.logits.shape == (2, 3) and torch.isfinite(out.logits).all()
    assert out.unit_attention.shape == (2, units)
    assert torch.all(out.unit_attention >= 0)
    torch.testing.assert_close(out.unit_attention.sum(1), torch.ones(2), atol=1e-5, rtol=0)
    assert out.pooling_weights.shape[0] == 2 and out.pooling_weights.shape[-1] == units
    F.cross_entropy(out.logits, torch.tensor([0, 2])).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("scorer", ["additive", "multihead"])
@pytest.mark.parametrize("name", NAMES)
def test_masked_units_get_no_attention(
    name: str, scorer: str, tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    heads = 2 if scorer == "multihead" else 1
    model = tiny_image_model(name, pooling_scorer=scorer, pooling_heads=heads, pooling_queries=2).eval()
    pixels = image_batch(4)
    mask = torch.rand(4, 49, generator=torch.Generator().manual_seed(3)) < 0.5
    mask[0] = True
    mask[1] = False
    mask[1, 0] = True  # a single real unit
    mask[3] = False  # no real unit
    with torch.no_grad():
        out = model(pixels, mask, need_layer_attentions=model.has_layer_attentions())
    attn = out.unit_attention
    assert torch.all(attn >= 0) and torch.all(attn[~mask] == 0)
    torch.testing.assert_close(attn.sum(1)[:3], torch.ones(3), atol=1e-5, rtol=0)
    assert torch.all(attn[3] == 0) and torch.isfinite(out.logits).all()
    assert attn[1, 0] == pytest.approx(1.0, abs=1e-6)
    assert torch.all(out.pooling_weights.movedim(-1, 1)[~mask] == 0)
    if out.layer_attentions is not None:
        for weights in out.layer_attentions:
            assert torch.all(weights.movedim(-1, 1)[~mask] == 0)  # masked keys get no self-attention


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic_and_embed_path_equals_forward(
    name: str, tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model(name).eval()
    pixels = image_batch(3)
    mask = model.unit_mask_of(pixels)
    with torch.no_grad():
        first, second = model(pixels), model(pixels)
        via_embed = model.forward_from_embeddings(model.embed(pixels), mask, pixels)
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.unit_attention, second.unit_attention)
    torch.testing.assert_close(via_embed.logits, first.logits, atol=1e-6, rtol=0)
    # One image alone gets the logits it gets in a batch (no batch statistics in eval mode).
    with torch.no_grad():
        alone = model(pixels[1:2])
    torch.testing.assert_close(alone.logits, first.logits[1:2], atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("name", NAMES)
def test_export_module_matches_forward_and_traces(
    name: str, tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model(name, "rgb32").eval()
    pixels = image_batch(2, "rgb32")
    mask = model.unit_mask_of(pixels)
    mask[1, 5:20] = False
    module = model.export_module().eval()
    with torch.no_grad():
        out = model(pixels, mask)
        logits, attention = module(pixels, mask)
        traced = torch.jit.trace(module, (pixels, mask))
        other = image_batch(2, "rgb32", seed=7)
        traced_logits, traced_attention = traced(other, mask)
        reference = model(other, mask)
    torch.testing.assert_close(logits, out.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(attention, out.unit_attention, atol=1e-6, rtol=0)
    torch.testing.assert_close(traced_logits, reference.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(traced_attention, reference.unit_attention, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scorer", ["additive", "dot", "multihead"])
@pytest.mark.parametrize("name", NAMES)
def test_unit_contributions_sum_to_the_logits_minus_the_bias_constant(
    name: str, scorer: str, tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    heads = 2 if scorer == "multihead" else 1
    model = tiny_image_model(name, pooling_scorer=scorer, pooling_heads=heads, pooling_queries=2).eval()
    assert model.has_unit_contributions()
    pixels = image_batch(3)
    mask = model.unit_mask_of(pixels)
    mask[2, 30:] = False
    with torch.no_grad():
        parts = model.unit_contributions(pixels, mask)  # (B, U, K)
        logits = model(pixels, mask).logits
    assert parts.shape == (3, 49, 3)
    assert torch.all(parts[2, 30:] == 0)
    constant = model.head.bias.detach().clone()  # (K,)
    pooling = model.pooling.attention
    if scorer == "multihead":  # the pooled vector of each query carries the output projection's bias
        out_bias = pooling.out_proj.bias.detach().repeat(2)  # (R*D,)
        constant += model.head.weight.detach() @ out_bias
    torch.testing.assert_close(parts.sum(1), logits - constant, atol=1e-5, rtol=1e-5)
