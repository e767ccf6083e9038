"""A CNN with CBAM attention (channel, then spatial) after every conv layer, and attention pooling over cells.

CBAM (Woo et al., 2018) reweights a feature map twice: each channel by a sigmoid gate computed from the map's
average- and max-pooled channel descriptors through a shared two-layer MLP, then each position by a sigmoid gate
computed by one convolution over the per-position channel mean and max. The network is otherwise
:class:`~attnkit.models.vision.cnn.ImageCNNAttnClassifier`: its final cells are the units the pooling weighs.

Dimension legend: ``B`` batch, ``C`` image channels, ``H`` / ``W`` image height / width, ``F`` feature
channels, ``h`` / ``w`` feature-map height / width, ``U`` units (final cells), ``E`` unit pixels, ``K`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attnkit.models.vision.cnn import ImageCNNAttnConfig, cells, conv_bn_relu
from attnkit.models.vision.pooled import PooledImageClassifier


class ChannelGate(nn.Module):
    """``x (B, F, h, w)`` -> ``x * sigmoid(mlp(avg(x)) + mlp(max(x)))`` per channel.

    Args:
        channels: ``F``.
        reduction: the MLP's hidden size is ``max(1, F // reduction)``.
    """

    def __init__(self, channels: int, *, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        avg = x.mean(dim=(2, 3))  # (B, F)
        peak = x.amax(dim=(2, 3))  # (B, F)
        gate = torch.sigmoid(self.mlp(avg) + self.mlp(peak))  # (B, F)
        return x * gate[:, :, None, None]  # (B, F, h, w)


class SpatialGate(nn.Module):
    """``x (B, F, h, w)`` -> ``x * sigmoid(conv([mean_F(x), max_F(x)]))`` per position.

    Args:
        kernel_size: side of the (odd) convolution over the two descriptor maps.
    """

    def __init__(self, *, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        descriptors = torch.cat(
            [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1
        )  # (B, 2, h, w)
        return x * torch.sigmoid(self.conv(descriptors))  # (B, F, h, w)


class CBAMBlock(nn.Module):
    """conv-BN-ReLU (spatial size / ``stride``) -> :class:`ChannelGate` -> :class:`SpatialGate`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        kernel_size: int,
        reduction: int,
        spatial_kernel: int,
    ) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels, stride=stride, kernel_size=kernel_size)
        self.channel_gate = ChannelGate(out_channels, reduction=reduction)
        self.spatial_gate = SpatialGate(kernel_size=spatial_kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial_gate(self.channel_gate(self.conv(x)))  # (B, F, h, w)


@dataclass(frozen=True)
class CBAMAttnConfig(ImageCNNAttnConfig):
    """Config of :class:`CBAMAttnClassifier`: an :class:`ImageCNNAttnConfig` plus the CBAM gates' sizes.

    Attributes:
        reduction: the channel gate's MLP hidden size is ``max(1, F // reduction)``.
        spatial_kernel: side of the spatial gate's convolution (odd).
    """

    reduction: int = 8
    spatial_kernel: int = 7

    def _validate_model(self) -> None:
        super()._validate_model()
        self._require_min("reduction", 1)
        if self.spatial_kernel < 1 or self.spatial_kernel % 2 == 0:
            raise ValueError(
                f"{self._name}.spatial_kernel must be an odd number >= 1, got {self.spatial_kernel}"
            )


class CBAMAttnClassifier(PooledImageClassifier):
    """:class:`CBAMBlock` layers -> final cells (one per unit) + learned positions -> attention pooling -> Dense."""

    unit_name: ClassVar[str] = "cell"
    config: CBAMAttnConfig

    def __init__(self, config: CBAMAttnConfig | None = None) -> None:
        config = config or CBAMAttnConfig()
        super().__init__(config)
        blocks = []
        channels = config.channels
        for width, stride in zip(config.widths, config.strides, strict=True):
            blocks.append(
                CBAMBlock(
                    channels,
                    width,
                    stride=stride,
                    kernel_size=config.kernel_size,
                    reduction=config.reduction,
                    spatial_kernel=config.spatial_kernel,
                )
            )
            channels = width
        self.features = nn.Sequential(*blocks)
        self.position = nn.Parameter(torch.zeros(1, config.num_units, config.widths[-1]))  # (1, U, F)
        self._build_pooling_head(config.widths[-1])

    def forward_features(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        pixels = self.images_of(units)  # (B, C, H, W)
        return cells(self.features(pixels)) + self.position, None  # (B, U, F)
