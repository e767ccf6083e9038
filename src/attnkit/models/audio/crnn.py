"""CRNN for speech: 2-D convolutions over the (time, feature) plane, a BiGRU over time, attention over frames.

The convolutions pool only along the feature (frequency) axis, so every frame keeps its own state and the
attention pooling weighs frames (the article's "the frames that matter"). Padding frames are zeroed after every
convolution block, so a clip's states do not depend on how much padding its batch adds after it.

Dimension legend: ``B`` batch, ``U`` frames (units), ``E`` features per frame, ``C`` conv channels, ``E'`` features
left after pooling, ``H`` GRU units per direction, ``K`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from attnkit.models.audio.base import AudioClassifier, AudioModelConfig
from attnkit.models.pooled import PooledUnits
from attnkit.models.recurrent import BidirectionalRNN


@dataclass(frozen=True)
class CRNNConfig(AudioModelConfig):
    """Config of :class:`CRNNClassifier`.

    Attributes:
        conv_channels: output channels of each conv-BN-ReLU block; each block then halves the feature axis
            (max-pooling over 2 features, never over time).
        kernel_size: side of the square convolution kernels (odd, so time stays aligned).
        hidden_dim: GRU units per direction ``H``; the pooled states are ``2H`` wide.
    """

    conv_channels: tuple[int, ...] = (16, 32)
    kernel_size: int = 3
    hidden_dim: int = 64
    dropout: float = 0.1

    def _validate_model(self) -> None:
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ValueError(
                f"{self._name}.conv_channels must list at least one channel count >= 1, got {list(self.conv_channels)}"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"{self._name}.kernel_size must be an odd number >= 1, got {self.kernel_size}")
        self._require_min("hidden_dim", 1)
        if self.pooled_features < 1:
            raise ValueError(
                f"{self._name}: {len(self.conv_channels)} conv blocks halve feature_dim={self.feature_dim} to 0; "
                "use fewer conv_channels or more features (audio.n_mels)"
            )

    @property
    def pooled_features(self) -> int:
        """``E'``: features left after the blocks' pooling."""
        return self.feature_dim // 2 ** len(self.conv_channels)

    def pooling_dims(self) -> tuple[int, ...]:
        return (2 * self.hidden_dim,)


class _ConvBlock(nn.Module):
    """conv -> BN -> ReLU -> max-pool over 2 features; padding frames zeroed."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d((1, 2))

    def forward(self, x: Tensor, frame_keep: Tensor) -> Tensor:
        """``x (B, C, U, E)``, ``frame_keep (B, 1, U, 1)`` float -> ``(B, C', U, E // 2)``."""
        return self.pool(self.norm(self.conv(x)).relu()) * frame_keep


class CRNNClassifier(PooledUnits, AudioClassifier):
    """conv blocks over ``(U, E)`` -> per-frame vectors -> BiGRU -> attention pooling over frames -> Dense."""

    config: CRNNConfig

    def __init__(self, config: CRNNConfig | None = None) -> None:
        config = config or CRNNConfig()
        super().__init__(config)
        blocks, channels = [], 1
        for width in config.conv_channels:
            blocks.append(_ConvBlock(channels, width, config.kernel_size))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        self.rnn = BidirectionalRNN(channels * config.pooled_features, config.hidden_dim, cell=nn.GRU)
        self._build_pooling_head(2 * config.hidden_dim)

    def forward_features(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        keep = unit_mask[:, None, :, None].to(units.dtype)  # (B, 1, U, 1)
        x = units.unsqueeze(1) * keep  # (B, 1, U, E)
        for block in self.blocks:
            x = block(x, keep)  # (B, C, U, E')
        batch, channels, frames, features = x.shape
        x = x.permute(0, 2, 1, 3).reshape(batch, frames, channels * features)  # (B, U, C * E')
        states = self.rnn(self.dropout(x), unit_mask.sum(dim=1))  # (B, U, 2H)
        return states, None
