"""A hybrid Vision Transformer: a small convolutional stem makes the patch tokens, then ViT encoder blocks.

The stem's strides multiply to ``unit_size``, so each cell of its final map is one unit box (as in
:mod:`attnkit.models.vision.cnn`); a Linear maps each cell to a ``D``-wide token, and the rest is
:class:`~attnkit.models.vision.vit.ViTClassifier` (positions, pre-LN blocks, final LN, attention pooling, Dense).
Convolutions give the tokens local features and translation equivariance that a Linear patch embedding has to
learn from data.

Measured against ``cbam-attn`` at equal training time on Fashion-MNIST (5 minutes of CPU time on one core, AdamW
3e-3 one-cycle, label smoothing 0.1, no augmentation): 86.7% test accuracy (2.6 epochs, ~470 images/s) against
90.0% for ``cbam-attn`` (3.1 epochs, ~570 images/s); ``cbam-attn`` is the third image model the README
recommends, this one stays for comparison.

Dimension legend: ``B`` batch, ``C`` image channels, ``H`` / ``W`` image height / width, ``F`` stem channels,
``U`` units (stem cells = tokens), ``E`` unit pixels, ``D`` model size, ``K`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from attnkit.models.vision.cnn import cells, check_conv_layers, conv_stack
from attnkit.models.vision.vit import ViTClassifier, ViTConfig


@dataclass(frozen=True)
class HybridViTConfig(ViTConfig):
    """Config of :class:`HybridViTClassifier`: a :class:`ViTConfig` with a conv stem instead of a patch Linear.

    Attributes:
        stem_widths: output channels of each conv-BN-ReLU layer of the stem.
        stem_strides: stride of each stem layer; they must multiply to ``unit_size``.
    """

    embed_dim: int = 96
    num_layers: int = 2
    num_heads: int = 2
    ff_dim: int = 192
    stem_widths: tuple[int, ...] = (32, 64)
    stem_strides: tuple[int, ...] = (2, 2)

    def _validate_model(self) -> None:
        super()._validate_model()
        check_conv_layers(self._name, self.stem_widths, self.stem_strides, self.unit_size, prefix="stem_")


class HybridViTClassifier(ViTClassifier):
    """conv stem -> one token per final cell -> positions -> pre-LN encoder blocks -> attention pooling -> Dense."""

    unit_name: ClassVar[str] = "cell"
    config: HybridViTConfig

    def __init__(self, config: HybridViTConfig | None = None) -> None:
        super().__init__(config or HybridViTConfig())

    def _build_tokenizer(self) -> None:
        cfg = self.config
        self.stem = conv_stack(cfg.channels, cfg.stem_widths, cfg.stem_strides)
        self.patch_embed = nn.Linear(cfg.stem_widths[-1], cfg.embed_dim)

    def tokens(self, units: Tensor) -> Tensor:
        features = self.stem(self.images_of(units))  # (B, F, rows, cols)
        return self.patch_embed(cells(features))  # (B, U, D)
