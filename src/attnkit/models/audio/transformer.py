"""A transformer over frames (or stacks of frames: ``audio.stack_frames`` makes frame patches) with attention
pooling: the speech counterpart of the ViT.

Dimension legend: ``B`` batch, ``U`` units, ``E`` features per unit, ``D`` model size, ``H`` heads, ``K`` classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnkit.models.audio.base import AudioClassifier, AudioModelConfig
from attnkit.models.pooled import PooledUnits
from attnkit.models.transformer import EncoderBlock


@dataclass(frozen=True)
class AudioTransformerConfig(AudioModelConfig):
    """Config of :class:`AudioTransformerClassifier`.

    Attributes:
        embed_dim: model size ``D``.
        num_layers: encoder blocks.
        num_heads: self-attention heads (must divide ``embed_dim``).
        ff_dim: hidden size of each block's feed-forward network.
        attention_dropout: dropout on the self-attention weights (off by default: on CPU it forces SDPA onto
            its slow path).
    """

    embed_dim: int = 96
    num_layers: int = 3
    num_heads: int = 4
    ff_dim: int = 192
    attention_dropout: float = 0.0
    pooling_scorer: str = "multihead"
    pooling_heads: int = 4

    def _validate_model(self) -> None:
        self._require_min("embed_dim", 1)
        self._require_min("num_layers", 1)
        self._require_min("num_heads", 1)
        self._require_min("ff_dim", 1)
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(
                f"{self._name}.attention_dropout must be in [0, 1), got {self.attention_dropout}"
            )
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"{self._name}.num_heads={self.num_heads} must divide embed_dim={self.embed_dim}; "
                "pick a divisor of embed_dim"
            )

    def pooling_dims(self) -> tuple[int, ...]:
        return (self.embed_dim,)


class AudioTransformerClassifier(PooledUnits, AudioClassifier):
    """Linear unit embedding + learned positions -> pre-LN encoder blocks -> LN -> attention pooling -> Dense.

    Self-attention attends only to units whose ``unit_mask`` is True; without ``need_layer_attentions`` it takes
    the fused SDPA path.
    """

    config: AudioTransformerConfig

    def __init__(self, config: AudioTransformerConfig | None = None) -> None:
        config = config or AudioTransformerConfig()
        super().__init__(config)
        dim = config.embed_dim
        self.unit_embed = nn.Linear(config.feature_dim, dim)
        self.position = nn.Parameter(torch.zeros(1, config.max_units, dim))  # (1, U_max, D)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                dim,
                config.num_heads,
                config.ff_dim,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
            )
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self._build_pooling_head(dim)
        self._init_weights()

    def has_layer_attentions(self) -> bool:
        return True

    def _init_weights(self) -> None:
        # N(0, 0.02) for the encoder's Linear layers, residual output projections scaled by 1/sqrt(2 * layers).
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for block in self.blocks:
            for name, module in block.named_modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(
                        module.weight, std=residual_std if name in {"attn.out_proj", "mlp.2"} else 0.02
                    )
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        nn.init.normal_(self.position, std=0.02)

    def forward_features(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        x = self.unit_embed(units) + self.position[:, : units.shape[1]]  # (B, U, D)
        x = self.dropout(x)
        layer_attentions: list[Tensor] = []
        for block in self.blocks:
            x, weights = block(x, unit_mask, need_weights=need_layer_attentions)  # (B, U, D)
            if weights is not None:
                layer_attentions.append(weights)  # (B, H, U, U)
        return self.norm(x), (layer_attentions if need_layer_attentions else None)
