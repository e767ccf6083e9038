"""The hybrid ViT: its tokens are the conv stem's cells, projected."""

from __future__ import annotations

import pytest
import torch

from attnkit.models.vision import HybridViTClassifier, HybridViTConfig

from .conftest import ImageBatchFactory, ImageModelFactory


def test_tokens_are_the_projected_stem_cells(
    tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model("hybrid-vit", "rgb32").eval()
    assert isinstance(model, HybridViTClassifier)
    pixels = image_batch(2, "rgb32")
    with torch.no_grad():
        tokens = model.tokens(model.embed(pixels))  # (B, U, D)
        features = model.stem(pixels)  # (B, 8, 8, 8)
        cells = features.permute(0, 2, 3, 1).reshape(2, 64, 8)  # (B, U, F), row-major
        expected = cells @ model.patch_embed.weight.T + model.patch_embed.bias
    assert features.shape == (2, 8, 8, 8)
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=0)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="stem_strides \\[2\\] multiply to 2"):
        HybridViTConfig(stem_widths=(8,), stem_strides=(2,))
    with pytest.raises(ValueError, match="num_heads=5 must divide embed_dim=96"):
        HybridViTConfig(num_heads=5)
