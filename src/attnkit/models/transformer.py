"""A small pre-LN transformer encoder classifier with attention pooling.

Dimension legend: ``B`` batch, ``T`` tokens, ``D`` model size (= embedding size), ``H`` heads,
``F`` feed-forward size, ``C`` classes.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from attnkit.layers.multihead import MultiHeadAttention
from attnkit.models.bag import bigram_table, with_bigrams
from attnkit.models.base import ClassifierConfig, ModelConfig, TextClassifier


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
        bigram_buckets: rows of a hashed bigram embedding added to each token's (as ``bag-attn`` has; row 0 is
            "no bigram"); 0 (default) turns it off.
    """

    embed_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    ff_dim: int = 256
    attention_dropout: float = 0.0
    bigram_buckets: int = 0

    def _validate_model(self) -> None:
        check_encoder_fields(self)
        if self.bigram_buckets != 0 and self.bigram_buckets < 2:
            raise ValueError(
                f"{self._name}.bigram_buckets must be 0 (no bigrams) or >= 2, got {self.bigram_buckets}"
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


class EncoderFields(Protocol):
    """The config fields of an encoder stack (text transformer, ViT, audio transformer)."""

    embed_dim: int
    num_layers: int
    num_heads: int
    ff_dim: int
    dropout: float
    attention_dropout: float


def check_encoder_fields(config: ModelConfig) -> None:
    """Validate a config's encoder fields (``embed_dim``, ``num_layers``, ``num_heads``, ``ff_dim``,
    ``attention_dropout``); one-line ``ValueError`` naming the config and field."""
    fields = typing.cast(EncoderFields, config)
    for name in ("embed_dim", "num_layers", "num_heads", "ff_dim"):
        config._require_min(name, 1)
    if not 0.0 <= fields.attention_dropout < 1.0:
        raise ValueError(
            f"{config._name}.attention_dropout must be in [0, 1), got {fields.attention_dropout}"
        )
    if fields.embed_dim % fields.num_heads != 0:
        raise ValueError(
            f"{config._name}.num_heads={fields.num_heads} must divide embed_dim={fields.embed_dim}; "
            "pick a divisor of embed_dim"
        )


def encoder_blocks(config: ModelConfig) -> nn.ModuleList:
    """``num_layers`` :class:`EncoderBlock` s of the config's sizes."""
    fields = typing.cast(EncoderFields, config)
    return nn.ModuleList(
        EncoderBlock(
            fields.embed_dim,
            fields.num_heads,
            fields.ff_dim,
            dropout=fields.dropout,
            attention_dropout=fields.attention_dropout,
        )
        for _ in range(fields.num_layers)
    )


def init_encoder_blocks_(blocks: nn.ModuleList) -> None:
    """GPT-2 / nanoGPT: N(0, 0.02) for every Linear of the blocks, zero biases, and the residual output projections
    scaled by ``1 / sqrt(2 * layers)``."""
    residual_std = 0.02 / math.sqrt(2 * len(blocks))
    for block in blocks:
        for name, module in block.named_modules():
            if isinstance(module, nn.Linear):
                is_residual = name in {"attn.out_proj", "mlp.2"}
                nn.init.normal_(module.weight, std=residual_std if is_residual else 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


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
        self.bigram_embedding = bigram_table(config.bigram_buckets, dim, std=0.02)
        self.blocks = encoder_blocks(config)
        self.norm = nn.LayerNorm(dim)
        self.pooling = self._make_pooling(dim)
        self.head = nn.Linear(self.pooling.output_dim, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        init_encoder_blocks_(self.blocks)
        nn.init.normal_(self.position.weight, std=0.02)
        self._init_embedding(std=0.02)

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token embeddings, plus the bigram each token closes when ``bigram_buckets`` is set: ``(B, T, D)``."""
        return with_bigrams(
            self.embedding(input_ids), input_ids, self.bigram_embedding, pad_id=self.config.pad_id
        )

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
