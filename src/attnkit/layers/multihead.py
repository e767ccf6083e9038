"""Multi-head attention (self and cross) over any attention core.

Dimension legend: ``B`` batch, ``H`` heads, ``Q`` queries, ``K`` keys, ``D`` model size, ``Dh`` head size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnkit.layers.attention import Attention, AttentionCore, AttentionOutput
from attnkit.layers.masks import resolve_key_keep
from attnkit.layers.scoring import ScaledDotScorer


class MultiHeadAttention(nn.Module):
    """Multi-head attention with projections kept apart from the attention core.

    Numerically the same as ``torch.nn.MultiheadAttention(dim, num_heads, batch_first=True)`` given the same
    projection weights (``q_proj``/``k_proj``/``v_proj`` are the three blocks of its ``in_proj_weight``) and
    the same masks: ``key_padding_mask`` and ``attn_mask`` have torch's meaning (True = ignore). attnkit's own
    keep-masks (True = attend) are ``key_keep`` and ``keep``. Weights are per head ``(B, H, Q, K)``.

    Args:
        dim: model size ``D`` of the queries and of the output.
        num_heads: number of heads ``H``; must divide ``dim``.
        key_dim: size of the keys (cross-attention); defaults to ``dim``.
        value_dim: size of the values; defaults to ``key_dim``.
        bias: use biases in the projections.
        dropout: dropout on the attention weights (only used by the default core).
        core: the attention core; defaults to scaled dot-product :class:`Attention`. Pass an efficient variant
            (:class:`~attnkit.layers.efficient.ChunkedAttention`, ``LocalAttention``, ``LinearAttention``) to
            change how heads attend without changing the projections.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        key_dim: int | None = None,
        value_dim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        core: AttentionCore | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"num_heads ({num_heads}) must divide dim ({dim})")
        key_dim = key_dim or dim
        value_dim = value_dim or key_dim
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(key_dim, dim, bias=bias)
        self.v_proj = nn.Linear(value_dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.core = core if core is not None else Attention(ScaledDotScorer(self.head_dim), dropout=dropout)

    def _keep_from_attn_mask(
        self, keep: Tensor | None, attn_mask: Tensor | None, batch: int, q_len: int, k_len: int
    ) -> Tensor | None:
        """attnkit's ``keep`` from ``nn.MultiheadAttention``'s ``attn_mask`` (bool, True = ignore)."""
        if attn_mask is None:
            return keep
        if keep is not None:
            raise ValueError(
                "pass keep (True = attend) or attn_mask (torch's convention, True = ignore), not both"
            )
        if attn_mask.dtype != torch.bool:
            raise ValueError(
                f"attn_mask must be a bool tensor with nn.MultiheadAttention's meaning, True = ignore (got dtype "
                f"{attn_mask.dtype}); for an additive float mask of 0 / -inf pass keep=(mask == 0)"
            )
        if attn_mask.dim() == 2 and tuple(attn_mask.shape) == (q_len, k_len):
            return ~attn_mask  # (Q, K)
        if attn_mask.dim() == 3 and tuple(attn_mask.shape) == (batch * self.num_heads, q_len, k_len):
            return (~attn_mask).view(batch, self.num_heads, q_len, k_len)  # (B*H, Q, K) -> (B, H, Q, K)
        raise ValueError(
            f"attn_mask must have shape (queries, keys) = ({q_len}, {k_len}) or (batch * heads, queries, keys) = "
            f"({batch * self.num_heads}, {q_len}, {k_len}) as in nn.MultiheadAttention, got {tuple(attn_mask.shape)}"
        )

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        key_keep: Tensor | None = None,
        keep: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> AttentionOutput:
        """Attend from ``query (B, Q, D)`` to ``key (B, K, Dk)`` / ``value (B, K, Dv)``.

        ``key`` defaults to ``query`` (self-attention) and ``value`` to ``key``. Masks are bool; give each
        one in either convention, not both:

        - attnkit's, True = attend: ``key_keep (B, K)``; ``keep`` of shape ``(Q, K)``, ``(B, Q, K)`` or
          ``(B, H, Q, K)``.
        - ``torch.nn.MultiheadAttention``'s, True = ignore: ``key_padding_mask (B, K)``; ``attn_mask`` of
          shape ``(Q, K)`` or ``(B * H, Q, K)``.

        ``causal`` adds a top-left aligned causal mask (torch's ``is_causal``).

        Returns:
            ``AttentionOutput`` with ``context (B, Q, D)`` and, when asked, ``weights (B, H, Q, K)``.
        """
        key = query if key is None else key
        value = key if value is None else value
        if query.dim() != 3:
            raise ValueError(
                f"MultiHeadAttention expects (batch, length, dim) inputs, got {tuple(query.shape)}"
            )
        key_keep = resolve_key_keep(key_keep, key_padding_mask)
        keep = self._keep_from_attn_mask(keep, attn_mask, query.shape[0], query.shape[1], key.shape[1])
        q = self._split_heads(self.q_proj(query))  # (B, H, Q, Dh)
        k = self._split_heads(self.k_proj(key))  # (B, H, K, Dh)
        v = self._split_heads(self.v_proj(value))  # (B, H, K, Dh)
        if keep is not None and keep.dim() == 3:
            keep = keep.unsqueeze(1)  # (B, Q, K) -> (B, 1, Q, K): same mask for every head
        out = self.core(q, k, v, key_keep=key_keep, keep=keep, causal=causal, need_weights=need_weights)
        batch, _, q_len, _ = out.context.shape
        merged = out.context.transpose(1, 2).reshape(batch, q_len, self.dim)  # (B, Q, D)
        return AttentionOutput(context=self.out_proj(merged), weights=out.weights)
