"""Fixtures for the image explanation tests: tiny untrained image models, and one run trained (once per session)
on a task where one fixed unit box carries the label.

The task: 28x28 grayscale noise (pixels 0-99) with a 4x4 patch at the fixed box ``CUE_BOX`` (a unit of the 4-pixel
grid): all white (``bright``) or white with black rows 1 and 3 (``striped``). Only that box differs between the
classes, so a faithful method ranks it first and removing it (setting it to the training mean) destroys the
evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
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
    ViTClassifier,
    ViTConfig,
)

#: The cue's box ``[x0, y0, x1, y1]``: unit (row 2, col 3) of the 7x7 grid of 4-pixel boxes, index 17.
CUE_BOX = (12, 8, 16, 12)
CUE_UNIT = 2 * 7 + 3

# name -> (config class, model class, tiny fields) for 28x28 grayscale inputs with 4-pixel units.
TINY_IMAGE: dict[str, tuple[type, type, dict[str, Any]]] = {
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

ImageModels = Callable[..., ImageClassifier]


def tiny_image_model(name: str, seed: int = 0, **overrides: Any) -> ImageClassifier:
    """A tiny untrained image model ``name`` (3 classes, 28x28 grayscale, 7x7 units) in eval mode.

    BatchNorm layers get non-trivial running statistics, so eval mode is not the identity on them.
    """
    config_cls, model_cls, fields = TINY_IMAGE[name]
    torch.manual_seed(seed)
    config = config_cls(
        num_classes=3, image_size=(28, 28), channels=1, unit_size=4, **{**fields, **overrides}
    )
    model = model_cls(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(name="image_model")
def image_model_fixture() -> ImageModels:
    return tiny_image_model


@pytest.fixture(name="pixels")
def pixels_fixture() -> Callable[..., Tensor]:
    """``pixels(batch, seed)``: normalized-looking ``(B, 1, 28, 28)`` float images."""

    def make(batch: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(batch, 1, 28, 28, generator=gen).to(dtype)

    return make


def cue_image(label: str, rng: np.random.Generator) -> np.ndarray:
    """One ``(28, 28)`` uint8 image of the cue task."""
    image = rng.integers(0, 100, (28, 28), dtype=np.uint8)
    x0, y0, x1, y1 = CUE_BOX
    image[y0:y1, x0:x1] = 255
    if label == "striped":
        image[y0 + 1 : y1 : 2, x0:x1] = 0
    return image


def write_cue_folder(root: Path, per_class: int, seed: int) -> Path:
    """``root/<label>/<i>.png`` for both labels of the cue task."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in ("bright", "striped"):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(cue_image(label, rng)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def cue_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"train": folder, "test": folder}`` of the cue task (80 and 12 images per class)."""
    root = tmp_path_factory.mktemp("cue-images")
    return {
        "train": write_cue_folder(root / "train", 80, seed=0),
        "test": write_cue_folder(root / "test", 12, seed=1),
    }


@pytest.fixture(scope="session")
def cue_run(cue_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cnn-attn run trained on the cue task (6 epochs, a few seconds on one thread; validation accuracy 1.0).

    The training seed matters for attention (not for IG or occlusion): a cell of cnn-attn's final map sees pixels
    ``4j-3 .. 4j+3`` (two 3x3 convs of stride 2), so the cue box ``4j .. 4j+3`` is seen whole by its own cell and
    three quarters of it by the next cell down and right, and the pooling may learn to attend either. Over
    training seeds 0-4 the test sample's deletion AOPC of attention was 0.05, 0.38, 0.09, 0.38, 0.31 (random:
    0.06, 0.08, 0.02, 0.08, 0.05; IG: 0.42, 0.50, 0.15, 0.48, 0.33). Seed 1 is a run whose pooling attends the
    cue's own cell; with seed 0 it attends the neighbours and attention is no better than random, while IG and
    occlusion still find the cue.
    """
    from attnkit.train.config import RunConfig
    from attnkit.train.loop import fit

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("cue-run")
        config = RunConfig.from_dict(
            {
                "data": {"train": str(cue_data["train"])},
                "image": {"mode": "L"},
                "model": {"name": "cnn-attn", "options": {"widths": [8, 16], "strides": [2, 2]}},
                # seed 1: see the docstring
                "train": {"epochs": 6, "seed": 1, "threads": 1, "progress": False, "calibrate": False},
                "optim": {"batch_size": 16, "lr": 0.01},
            }
        )
        result = fit(config, out)
    finally:
        torch.set_num_threads(before)
    assert result.metrics["val"]["accuracy"] == 1.0, result.metrics["val"]
    return out
