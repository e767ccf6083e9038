"""A small pre-LN transformer encoder classifier with attention pooling.

Dimension legend: ``B`` batch, ``T`` tokens, ``D`` model size (= embedding size), ``H`` heads,
``F`` feed-forward size, ``C`` classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnkit.layers.multihead import MultiHeadAttention
from attnkit.models.base import ClassifierConfig, TextClassifier


@dataclass(frozen=True)
class TransformerConfig(ClassifierConfig):
    """Config of :class:`TransformerClassifier`.

    Attributes:
        embed_dim: model size ``D`` (token and position embeddings, every block).
        num_layers: encoder blocks.
        num_heads: self-attention heads (must divide ``embed_dim``).
        ff_dim: hidden size of each block's feed-forward network.
        attention_dropout: dropout on the self-attention weights. Off by default: on CPU it forces SDPA onto
            its slow path and draws a ``(B, H, T, T)`` random mask per layer; ``dropout`` still regularizes
            the embeddings and both residual branches.
        max_length: number of learned positions.
    """

    embed_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    ff_dim: int = 256
    attention_dropout: float = 0.0

    def _validate_model(self) -> None:
        self._require_min("num_layers", 1)
        self._require_min("num_heads", 1)
        self._require_min("ff_dim", 1)
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(
                f"{self._name}.attention_dropout must be in [0, 1), got {self.attention_dropout}"
            )
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"{self._name}.num_heads={self.num_heads} must divide embed_dim={self.embed_dim}"
            )


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))``.

    Args:
        dim: model size ``D``.
        num_heads: attention heads.
        ff_dim: feed-forward hidden size.
        dropout: dropout on both residual branches.
        attention_dropout: dropout on the attention weights.
    """

    def __init__(
        self, dim: int, num_heads: int, ff_dim: int, *, dropout: float = 0.0, attention_dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=attention_dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, *, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """``x (B, T, D)``, ``mask (B, T)`` -> ``(B, T, D)`` and, if asked, weights ``(B, H, T, T)``.

        Without ``need_weights`` the attention takes the fused SDPA path.
        """
        out = self.attn(self.norm1(x), key_keep=mask, need_weights=need_weights)
        x = x + self.dropout(out.context)  # (B, T, D)
        x = x + self.dropout(self.mlp(self.norm2(x)))  # (B, T, D)
        return x, out.weights


class TransformerClassifier(TextClassifier):
    """Token + learned position embeddings -> pre-LN encoder blocks -> final LN -> attention pooling -> Dense.

    ``embed`` returns the token embeddings only; positions are added in ``forward_features``, so gradients and
    Integrated Gradients are taken w.r.t. the tokens.
    """

    config: TransformerConfig

    def has_layer_attentions(self) -> bool:
        return True

    def __init__(self, config: TransformerConfig | None = None) -> None:
        config = config or TransformerConfig()
        super().__init__(config)
        dim = config.embed_dim
        self.position = nn.Embedding(config.max_length, dim)
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
        self.pooling = self._make_pooling(dim)
        self.head = nn.Linear(self.pooling.output_dim, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2 / nanoGPT: N(0, 0.02) everywhere, residual output projections scaled by 1/sqrt(2 * layers).
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for block in self.blocks:
            assert isinstance(block, EncoderBlock)
            for name, module in block.named_modules():
                if isinstance(module, nn.Linear):
                    is_residual = name in {"attn.out_proj", "mlp.2"}
                    nn.init.normal_(module.weight, std=residual_std if is_residual else 0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        nn.init.normal_(self.position.weight, std=0.02)
        self._init_embedding(std=0.02)

    def forward_features(
        self, embeddings: Tensor, attention_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        length = embeddings.shape[1]
        positions = torch.arange(length, device=embeddings.device)  # (T,)
        x = self.dropout(embeddings + self.position(positions))  # (B, T, D)
        layer_attentions: list[Tensor] = []
        for block in self.blocks:
            x, weights = block(x, attention_mask, need_weights=need_layer_attentions)  # (B, T, D)
            if weights is not None:
                layer_attentions.append(weights)  # (B, H, T, T)
        return self.norm(x), (layer_attentions if need_layer_attentions else None)
