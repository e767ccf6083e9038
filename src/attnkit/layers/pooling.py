"""Attention pooling: learned queries attend over a sequence and return a pooled vector plus token weights.

This is the building block of the seed article's classifier (BiLSTM -> attention -> dense).

Dimension legend: ``B`` batch, ``T`` tokens, ``D`` state size, ``R`` learned queries, ``H`` heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attnkit.layers.attention import Attention
from attnkit.layers.multihead import MultiHeadAttention
from attnkit.layers.scoring import make_scorer

PoolingScorer = Literal["dot", "scaled_dot", "general", "additive", "multihead"]
POOLING_SCORERS: tuple[str, ...] = ("dot", "scaled_dot", "general", "additive", "multihead")


@dataclass
class PoolingOutput:
    """Result of attention pooling.

    Attributes:
        pooled: ``(B, R * D)``: the ``R`` pooled vectors, concatenated.
        weights: ``(B, [H,] R, T)`` attention weights over tokens; zero on padding.
    """

    pooled: Tensor
    weights: Tensor

    def token_weights(self) -> Tensor:
        """``(B, T)`` one weight per token: the mean over heads and queries (each row still sums to 1)."""
        return self.weights.reshape(self.weights.shape[0], -1, self.weights.shape[-1]).mean(dim=1)


class AttentionPooling(nn.Module):
    """Pool ``states (B, T, D)`` with ``num_queries`` learned query vectors.

    Memory is linear in ``T`` (``R`` queries x ``T`` keys), so weights are always returned.

    Args:
        dim: state size ``D``.
        scorer: ``dot``, ``scaled_dot``, ``general`` (bilinear), ``additive`` (Bahdanau) or ``multihead``.
        num_queries: number of learned queries ``R`` (Lin et al. 2017 use several to see several aspects).
        num_heads: heads for the ``multihead`` scorer.
        hidden_dim: hidden size of the additive scorer (defaults to ``dim``).
        dropout: dropout on the attention weights during training.
    """

    def __init__(
        self,
        dim: int,
        *,
        scorer: str = "additive",
        num_queries: int = 1,
        num_heads: int = 1,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if scorer not in POOLING_SCORERS:
            raise ValueError(f"unknown pooling scorer {scorer!r}; choose one of {', '.join(POOLING_SCORERS)}")
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}")
        self.dim = dim
        self.num_queries = num_queries
        self.scorer_name = scorer
        self.query = nn.Parameter(torch.randn(num_queries, dim) / dim**0.5)  # (R, D)
        self.attention: nn.Module
        if scorer == "multihead":
            self.attention = MultiHeadAttention(dim, num_heads, dropout=dropout)
        else:
            self.attention = Attention(make_scorer(scorer, dim, dim, hidden_dim), dropout=dropout)

    @property
    def output_dim(self) -> int:
        return self.num_queries * self.dim

    def token_contributions(self, states: Tensor, keep: Tensor | None = None) -> Tensor:
        """``(B, R, T, D)``: each token's additive share of each pooled vector.

        ``pooled_r = sum_t contributions[:, r, t] + c`` where ``c`` depends only on biases (the multihead scorer's
        output projection bias; 0 otherwise): query ``r`` weighs token ``t``'s value by its attention weight.
        """
        weights = self.forward(states, keep).weights  # (B, [H,] R, T)
        if isinstance(self.attention, MultiHeadAttention):
            mha = self.attention
            values = mha._split_heads(mha.v_proj(states))  # (B, H, T, Dh)
            out_weight = mha.out_proj.weight.view(self.dim, mha.num_heads, mha.head_dim)  # (D, H, Dh)
            per_head = torch.einsum("bhtk,dhk->bhtd", values, out_weight)  # (B, H, T, D): head h's output
            return torch.einsum("bhrt,bhtd->brtd", weights, per_head)  # (B, R, T, D)
        return weights[..., None] * states[:, None, :, :]  # (B, R, T, D)

    def forward(self, states: Tensor, keep: Tensor | None = None) -> PoolingOutput:
        """Pool ``states (B, T, D)`` under ``keep (B, T)`` (bool, True = real token)."""
        batch = states.shape[0]
        queries = self.query.unsqueeze(0).expand(batch, -1, -1)  # (B, R, D)
        out = self.attention(queries, states, states, key_keep=keep, need_weights=True)
        pooled = out.context.reshape(batch, self.output_dim)  # (B, R * D)
        return PoolingOutput(pooled=pooled, weights=out.require_weights())  # weights (B, [H,] R, T)
