"""Score functions: how similar each key is to each query.

A scorer maps ``query (..., Q, Dq)`` and ``key (..., K, Dk)`` to raw scores ``(..., Q, K)``. Scorers never mask
and never normalize: that is the attention core's job (:mod:`attnkit.layers.attention`).

Dimension legend: ``Q`` queries, ``K`` keys, ``Dq``/``Dk`` query/key feature sizes, ``A`` additive hidden size.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

ScorerName = Literal["dot", "scaled_dot", "general", "additive"]
SCORER_NAMES: tuple[str, ...] = ("dot", "scaled_dot", "general", "additive")


class Scorer(nn.Module):
    """Base class: ``forward(query (..., Q, Dq), key (..., K, Dk)) -> scores (..., Q, K)``."""

    #: Multiplier applied to ``q @ k^T`` when the scorer is a (scaled) dot product, else ``None``.
    #: The attention core uses it to take the fused SDPA path.
    sdpa_scale: float | None = None

    def forward(self, query: Tensor, key: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class DotScorer(Scorer):
    """``score(q, k) = q . k`` (Luong "dot")."""

    sdpa_scale = 1.0

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        return query @ key.transpose(-2, -1)  # (..., Q, K)


class ScaledDotScorer(Scorer):
    """``score(q, k) = q . k / sqrt(d)`` (Vaswani et al. 2017), or times an explicit ``scale``."""

    def __init__(self, dim: int, scale: float | None = None) -> None:
        super().__init__()
        self.scale = scale if scale is not None else 1.0 / math.sqrt(dim)
        self.sdpa_scale = self.scale

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        return (query @ key.transpose(-2, -1)) * self.scale  # (..., Q, K)


class BilinearScorer(Scorer):
    """``score(q, k) = q^T W k`` (Luong "general"; the seed article's ``h^T W x``)."""

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(query_dim, key_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        projected = query @ self.weight  # (..., Q, Dk)
        return projected @ key.transpose(-2, -1)  # (..., Q, K)


class AdditiveScorer(Scorer):
    """``score(q, k) = v^T tanh(W_q q + W_k k)`` (Bahdanau et al. 2015, "concat").

    Memory is ``(..., Q, K, A)``: fine for pooling (few queries), costly for all-pairs self-attention.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or key_dim
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden_dim, bias=True)
        self.vector = nn.Linear(hidden_dim, 1, bias=False)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        q = self.query_proj(query).unsqueeze(-2)  # (..., Q, 1, A)
        k = self.key_proj(key).unsqueeze(-3)  # (..., 1, K, A)
        return self.vector(torch.tanh(q + k)).squeeze(-1)  # (..., Q, K)


def make_scorer(
    name: str, query_dim: int, key_dim: int | None = None, hidden_dim: int | None = None
) -> Scorer:
    """Build a scorer by name: ``dot``, ``scaled_dot``, ``general`` (bilinear) or ``additive``."""
    key_dim = query_dim if key_dim is None else key_dim
    if name in {"dot", "scaled_dot"} and key_dim != query_dim:
        raise ValueError(
            f"the {name!r} scorer needs equal query and key sizes, got {query_dim} and {key_dim}"
        )
    if name == "dot":
        return DotScorer()
    if name == "scaled_dot":
        return ScaledDotScorer(query_dim)
    if name in {"general", "bilinear"}:
        return BilinearScorer(query_dim, key_dim)
    if name in {"additive", "concat"}:
        return AdditiveScorer(query_dim, key_dim, hidden_dim)
    raise ValueError(f"unknown scorer {name!r}; choose one of {', '.join(SCORER_NAMES)}")
