"""The ViT: the patch embedding is a strided convolution, the fused and explicit attention paths agree, and its
layer attentions are proper distributions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.models.vision import ViTClassifier, ViTConfig

from .conftest import ImageBatchFactory, ImageModelFactory


def test_patch_embedding_is_a_convolution_with_stride_patch(
    tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model("vit", "rgb32")
    assert isinstance(model, ViTClassifier)
    pixels = image_batch(2, "rgb32")
    tokens = model.tokens(model.embed(pixels))  # (B, U, D)
    weight = model.patch_embed.weight.view(16, 3, 4, 4)  # (D, C, S, S)
    conv = F.conv2d(pixels, weight, model.patch_embed.bias, stride=4)  # (B, D, 8, 8)
    torch.testing.assert_close(tokens, conv.flatten(2).transpose(1, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_path_equals_explicit_weights_path(
    masked: bool, tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model("vit", num_layers=3).eval()
    pixels = image_batch(3)
    mask = model.unit_mask_of(pixels)
    if masked:
        mask[1, ::3] = False
        mask[2] = False
    with torch.no_grad():
        fast = model(pixels, mask)
        slow = model(pixels, mask, need_layer_attentions=True)
    assert fast.layer_attentions is None
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.unit_attention, slow.unit_attention, atol=1e-6, rtol=0)
    assert slow.layer_attentions is not None and len(slow.layer_attentions) == 3
    for weights in slow.layer_attentions:
        assert weights.shape == (3, 2, 49, 49)  # (B, H, U, U)
        assert torch.all(weights >= 0)
        rows = weights.sum(-1)  # (B, H, U)
        torch.testing.assert_close(rows[:2], torch.ones(2, 2, 49), atol=1e-5, rtol=0)
        if masked:
            assert torch.all(rows[2] == 0)  # no real key: all zeros, not NaN
            assert torch.all(weights.movedim(-1, 1)[~mask] == 0)


def test_both_paths_have_the_same_gradients(
    tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model("vit", dropout=0.0)
    pixels = image_batch(2)
    grads = []
    for need in (False, True):
        model.zero_grad()
        model(pixels, need_layer_attentions=need).logits.sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_self_attention_sees_positions(
    tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    """Permuting the patches changes the logits only because of the position embeddings."""
    model = tiny_image_model("vit").eval()
    units = model.embed(image_batch(2))  # (B, U, E)
    perm = torch.randperm(49, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 49, dtype=torch.bool)
    with torch.no_grad():
        base = model.forward_units(units, mask)
        shuffled = model.forward_units(units[:, perm], mask)
        model.position.zero_()
        base0 = model.forward_units(units, mask)
        shuffled0 = model.forward_units(units[:, perm], mask)
    assert (base.logits - shuffled.logits).abs().max() > 1e-4
    torch.testing.assert_close(base0.logits, shuffled0.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(shuffled0.unit_attention, base0.unit_attention[:, perm], atol=1e-6, rtol=0)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_heads=3 must divide embed_dim=16"):
        ViTConfig(embed_dim=16, num_heads=3)
    with pytest.raises(ValueError, match="attention_dropout"):
        ViTConfig(attention_dropout=1.0)
    with pytest.raises(ValueError, match="divisible by unit_size=5"):
        ViTConfig(unit_size=5)
    config = ViTConfig(image_size=[32, 32], channels=3, embed_dim=32, num_heads=2)
    assert config.image_size == (32, 32) and config.num_units == 64
    assert ViTConfig.from_dict(config.to_dict()) == config
