"""``test_time_flip``: an evaluating image model averages its passes over the image and its mirror."""

from __future__ import annotations

import pytest
import torch

from attnkit.models.vision.pooled import PooledImageClassifier

from .conftest import IMAGE_MODELS


def twins(name: str) -> tuple[PooledImageClassifier, PooledImageClassifier]:
    config_class, model_class, fields = IMAGE_MODELS[name]
    torch.manual_seed(0)
    plain = model_class(config_class(num_classes=3, image_size=(16, 24), **fields))
    flipping = model_class(config_class(num_classes=3, image_size=(16, 24), test_time_flip=True, **fields))
    flipping.load_state_dict(plain.state_dict())
    assert isinstance(plain, PooledImageClassifier) and isinstance(flipping, PooledImageClassifier)
    return plain.eval(), flipping.eval()


def test_the_mirror_index_of_a_grid() -> None:
    _, model = twins("cnn-attn")  # 16x24 pixels, stride 4: a 4 x 6 grid
    assert model.mirror_index()[:6].tolist() == [5, 4, 3, 2, 1, 0]
    assert model.mirror_index()[6:12].tolist() == [11, 10, 9, 8, 7, 6]
    assert torch.equal(model.mirror_index()[model.mirror_index()], torch.arange(24))


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_outputs_are_the_mean_of_the_image_and_its_mirror(name: str) -> None:
    plain, flipping = twins(name)
    pixels = torch.randn(2, 1, 16, 24, generator=torch.Generator().manual_seed(1))
    mirror = flipping.mirror_index()
    with torch.no_grad():
        out = flipping(pixels, need_layer_attentions=True)
        a, b = plain(pixels, need_layer_attentions=True), plain(pixels.flip(-1), need_layer_attentions=True)
    torch.testing.assert_close(out.logits, (a.logits + b.logits) / 2)
    torch.testing.assert_close(out.unit_attention, (a.unit_attention + b.unit_attention[:, mirror]) / 2)
    torch.testing.assert_close(out.unit_attention.sum(-1), torch.ones(2))
    if a.layer_attentions is not None:  # the ViTs: both query and key axes mapped back
        assert out.layer_attentions is not None
        for mine, first, second in zip(
            out.layer_attentions, a.layer_attentions, b.layer_attentions, strict=True
        ):
            torch.testing.assert_close(mine, (first + second[..., mirror][..., mirror, :]) / 2)
            torch.testing.assert_close(mine.sum(-1), torch.ones_like(mine.sum(-1)))
    # Contributions stay exact: they sum to the logits minus the same bias constant as without the flip.
    with torch.no_grad():
        mask = flipping.unit_mask_of(pixels)
        parts = flipping.unit_contributions(pixels, mask)  # (B, U, K)
        constant = a.logits - plain.unit_contributions(pixels, mask).sum(1)  # (B, K)
    torch.testing.assert_close(parts.sum(1) + constant, out.logits, atol=1e-5, rtol=1e-4)
    # Training is unchanged (one pass, the image as it is).
    plain.train(), flipping.train()
    torch.manual_seed(3)
    trained = flipping(pixels).logits
    torch.manual_seed(3)
    torch.testing.assert_close(trained, plain(pixels).logits)
