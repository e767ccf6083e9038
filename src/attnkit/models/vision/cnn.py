"""A convolutional image classifier whose attention pooling runs over the cells of its final feature map.

conv-BN-ReLU layers whose strides multiply to ``unit_size`` turn ``(B, C, H, W)`` pixels into a ``rows x cols``
map: one cell per unit box, so the pooling weights are an attention map over the unit grid.

Dimension legend: ``B`` batch, ``C`` image channels, ``H`` / ``W`` image height / width, ``F`` feature
channels, ``U`` units (final feature-map cells, row-major), ``E`` unit pixels, ``K`` classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from attnkit.models.vision.base import ImageModelConfig
from attnkit.models.vision.pooled import PooledImageClassifier


def check_conv_layers(
    owner: str, widths: Sequence[int], strides: Sequence[int], unit_size: int, *, prefix: str = ""
) -> None:
    """Raise ``ValueError`` unless ``widths`` / ``strides`` describe conv layers of total stride ``unit_size``."""
    if not widths or min(widths) < 1:
        raise ValueError(
            f"{owner}.{prefix}widths must be a non-empty list of channel counts >= 1, got {list(widths)}"
        )
    if len(strides) != len(widths) or min(strides) < 1:
        raise ValueError(
            f"{owner}.{prefix}strides must give one stride >= 1 per layer of {prefix}widths "
            f"({len(widths)} layers), got {list(strides)}"
        )
    total = math.prod(strides)
    if total != unit_size:
        raise ValueError(
            f"{owner}.{prefix}strides {list(strides)} multiply to {total}, but the total stride must equal "
            f"unit_size={unit_size} (one final feature-map cell per unit); change {prefix}strides or unit_size"
        )


def conv_bn_relu(
    in_channels: int, out_channels: int, *, stride: int = 1, kernel_size: int = 3
) -> nn.Sequential:
    """``Conv2d (no bias, 'same'-style padding) -> BatchNorm2d -> ReLU``; spatial size divides by ``stride``."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
    )
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def conv_stack(
    in_channels: int, widths: Sequence[int], strides: Sequence[int], *, kernel_size: int = 3
) -> nn.Sequential:
    """One :func:`conv_bn_relu` per ``(width, stride)``: ``(B, C, H, W)`` -> ``(B, widths[-1], H/s, W/s)``."""
    layers = []
    channels = in_channels
    for width, stride in zip(widths, strides, strict=True):
        layers.append(conv_bn_relu(channels, width, stride=stride, kernel_size=kernel_size))
        channels = width
    return nn.Sequential(*layers)


def cells(features: Tensor) -> Tensor:
    """``features (B, F, rows, cols)`` -> ``(B, U, F)``: one state per cell, row-major like the unit grid."""
    return features.flatten(2).transpose(1, 2)  # (B, U, F)


@dataclass(frozen=True)
class ImageCNNAttnConfig(ImageModelConfig):
    """Config of :class:`ImageCNNAttnClassifier`.

    Attributes:
        widths: output channels of each conv-BN-ReLU layer, in order; the pooled states are ``widths[-1]`` wide.
        strides: stride of each layer; they must multiply to ``unit_size``.
        kernel_size: side of every convolution kernel (odd, so padding keeps the grid aligned).
    """

    widths: tuple[int, ...] = (32, 64, 128, 128)
    strides: tuple[int, ...] = (2, 1, 2, 1)
    kernel_size: int = 3

    def _validate_model(self) -> None:
        check_conv_layers(self._name, self.widths, self.strides, self.unit_size)
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"{self._name}.kernel_size must be an odd number >= 1, got {self.kernel_size}")

    def pooling_dims(self) -> tuple[int, ...]:
        return (self.widths[-1],)


class ImageCNNAttnClassifier(PooledImageClassifier):
    """conv-BN-ReLU layers -> final feature map, one cell per unit -> attention pooling over cells -> Dense.

    The image is rebuilt from the unit pixels (:meth:`images_of`), so gradients w.r.t. ``embed``'s output are
    gradients w.r.t. the pixels of each box. Units whose ``unit_mask`` is False still pass through the
    convolutions (a cell sees its neighbours) but get no pooling weight.
    """

    unit_name: ClassVar[str] = "cell"
    config: ImageCNNAttnConfig

    def __init__(self, config: ImageCNNAttnConfig | None = None) -> None:
        config = config or ImageCNNAttnConfig()
        super().__init__(config)
        self.features = conv_stack(
            config.channels, config.widths, config.strides, kernel_size=config.kernel_size
        )
        self._build_pooling_head(config.widths[-1])

    def forward_features(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        pixels = self.images_of(units)  # (B, C, H, W)
        return cells(self.features(pixels)), None  # (B, U, F)
