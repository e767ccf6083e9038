"""Tiny configs of every image model and batch builders for the image model tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from attnkit.models.vision import (
    CBAMAttnClassifier,
    CBAMAttnConfig,
    HybridViTClassifier,
    HybridViTConfig,
    ImageClassifier,
    ImageCNNAttnClassifier,
    ImageCNNAttnConfig,
    ImageModelConfig,
    ViTClassifier,
    ViTConfig,
)

# name -> (config class, model class, tiny fields): every image model, registered or not.
IMAGE_MODELS: dict[str, tuple[type[ImageModelConfig], type[ImageClassifier], dict[str, Any]]] = {
    "vit": (ViTConfig, ViTClassifier, {"embed_dim": 16, "num_heads": 2, "ff_dim": 32, "num_layers": 2}),
    "cnn-attn": (ImageCNNAttnConfig, ImageCNNAttnClassifier, {"widths": (4, 8), "strides": (2, 2)}),
    "cbam-attn": (
        CBAMAttnConfig,
        CBAMAttnClassifier,
        {"widths": (4, 8), "strides": (2, 2), "reduction": 2, "spatial_kernel": 3},
    ),
    "hybrid-vit": (
        HybridViTConfig,
        HybridViTClassifier,
        {
            "stem_widths": (4, 8),
            "stem_strides": (2, 2),
            "embed_dim": 16,
            "num_heads": 2,
            "ff_dim": 32,
            "num_layers": 2,
        },
    ),
}
# Input kinds: grayscale 28x28 (Fashion-MNIST) and RGB 32x32 (CIFAR-like); unit_size 4 -> 7x7 and 8x8 grids.
INPUTS: dict[str, dict[str, Any]] = {
    "gray28": {"image_size": (28, 28), "channels": 1},
    "rgb32": {"image_size": (32, 32), "channels": 3},
}

ImageModelFactory = Callable[..., ImageClassifier]
ImageBatchFactory = Callable[..., Tensor]


def tiny_image_model(name: str, inputs: str = "gray28", seed: int = 0, **overrides: Any) -> ImageClassifier:
    """A tiny image model ``name`` for inputs ``inputs`` with 3 classes, seeded."""
    config_cls, model_cls, fields = IMAGE_MODELS[name]
    torch.manual_seed(seed)
    config = config_cls(**{"num_classes": 3, **INPUTS[inputs], **fields, **overrides})
    return model_cls(config)


def image_batch(batch: int, inputs: str = "gray28", seed: int = 0) -> Tensor:
    """``(batch, C, H, W)`` standard-normal pixels (normalized images)."""
    spec = INPUTS[inputs]
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, spec["channels"], *spec["image_size"], generator=gen)


@pytest.fixture(name="tiny_image_model")
def tiny_image_model_fixture() -> ImageModelFactory:
    return tiny_image_model


@pytest.fixture(name="image_batch")
def image_batch_fixture() -> ImageBatchFactory:
    return image_batch
