"""The image CNN: its cells are the unit grid in row-major order, and its config checks the total stride."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnkit.models.vision import ImageCNNAttnClassifier, ImageCNNAttnConfig, conv_stack

from .conftest import ImageBatchFactory, ImageModelFactory


def test_cell_u_is_computed_from_unit_u() -> None:
    """With one 1x1 convolution of stride 4, cell u sees only the top-left pixel of unit u's box."""
    config = ImageCNNAttnConfig(num_classes=3, image_size=(8, 12), widths=(8,), strides=(4,), kernel_size=1)
    model = ImageCNNAttnClassifier(config).eval()
    pixels = torch.randn(1, 1, 8, 12)
    mask = model.unit_mask_of(pixels)
    with torch.no_grad():
        base, _ = model.forward_features(model.embed(pixels), mask)  # (1, 6, 8)
        for u, (y, x) in enumerate([(0, 0), (0, 4), (0, 8), (4, 0), (4, 4), (4, 8)]):
            moved = pixels.clone()
            moved[0, 0, y, x] += 10.0
            states, _ = model.forward_features(model.embed(moved), mask)
            changed = (states - base).abs().sum(-1)[0] > 1e-6  # (U,)
            assert changed.tolist() == [v == u for v in range(6)]


def test_features_match_the_conv_stack_on_the_image(
    tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model("cnn-attn", "rgb32").eval()
    assert isinstance(model, ImageCNNAttnClassifier)
    pixels = image_batch(2, "rgb32")
    reference = nn.Sequential(*conv_stack(3, (4, 8), (2, 2))).eval()
    reference.load_state_dict(model.features.state_dict())
    with torch.no_grad():
        model.position.normal_()
        states, _ = model.forward_features(model.embed(pixels), model.unit_mask_of(pixels))
        expected = reference(pixels)  # (B, 8, 8, 8)
    # Cell states are the final map read row-major, plus each cell's learned position vector.
    expected_states = expected.permute(0, 2, 3, 1).reshape(2, 64, 8) + model.position
    torch.testing.assert_close(states, expected_states, atol=1e-6, rtol=0)
    # conv -> BN -> ReLU, by hand for the first layer.
    conv, bn = model.features[0][0], model.features[0][1]
    first = torch.relu(bn(conv(pixels)))
    torch.testing.assert_close(model.features[0](pixels), first, atol=1e-6, rtol=0)
    assert first.shape == (2, 4, 16, 16)


def test_config_checks_the_total_stride() -> None:
    with pytest.raises(
        ValueError, match=r"strides \[2, 1\] multiply to 2, but the total stride must equal unit_size=4"
    ):
        ImageCNNAttnConfig(widths=(8, 16), strides=(2, 1))
    with pytest.raises(ValueError, match="one stride >= 1 per layer"):
        ImageCNNAttnConfig(widths=(8, 16), strides=(4,))
    with pytest.raises(ValueError, match="non-empty list"):
        ImageCNNAttnConfig(widths=(), strides=())
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        ImageCNNAttnConfig(kernel_size=4)
    config = ImageCNNAttnConfig(widths=[8, 16, 16], strides=[1, 2, 2], unit_size=4)
    assert config.pooling_dims() == (16,)
    assert ImageCNNAttnConfig.from_dict(config.to_dict()) == config
