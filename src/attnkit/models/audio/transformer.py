"""A transformer over frames (or stacks of frames: ``audio.stack_frames`` makes frame patches) with attention
pooling: the speech counterpart of the ViT.

Dimension legend: ``B`` batch, ``U`` units, ``E`` features per unit, ``D`` model size, ``H`` heads, ``K`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnkit.models.audio.base import AudioClassifier, AudioModelConfig
from attnkit.models.pooled import PooledUnits
from attnkit.models.transformer import check_encoder_fields, encoder_blocks, init_encoder_blocks_


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
        check_encoder_fields(self)

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
        self.blocks = encoder_blocks(config)
        self.norm = nn.LayerNorm(dim)
        self._build_pooling_head(dim)
        self._init_weights()

    def has_layer_attentions(self) -> bool:
        return True

    def _init_weights(self) -> None:
        init_encoder_blocks_(self.blocks)
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
