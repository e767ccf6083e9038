"""The attention contract: scores -> mask -> normalize -> weighted sum.

Every attention layer in attnkit returns an :class:`AttentionOutput` holding the context and, when asked, the
attention weights ``(B, [H,] Q, K)``. Asking for weights never silently returns ``None``.

Dimension legend: ``B`` batch, ``H`` heads, ``Q`` queries, ``K`` keys, ``D`` query/key size, ``Dv`` value size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.layers.masks import build_mask, refuse_attn_mask, resolve_key_keep
from attnkit.layers.scoring import ScaledDotScorer, Scorer


@dataclass
class AttentionOutput:
    """What every attention layer returns.

    Attributes:
        context: ``(B, [H,] Q, Dv)`` weighted sums of the values (or the layer's projected output).
        weights: ``(B, [H,] Q, K)`` attention weights when ``need_weights=True``, else ``None``. Rows sum to 1 over
            kept keys; fully masked rows are all zeros.
    """

    context: Tensor
    weights: Tensor | None = None

    def require_weights(self) -> Tensor:
        """The weights, or a clear error if the layer was called without ``need_weights=True``."""
        if self.weights is None:
            raise ValueError("attention weights were not computed: call the layer with need_weights=True")
        return self.weights


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` that gives masked entries exactly 0 and fully masked rows all zeros (never NaN).

    Computed in at least float32 (float64 stays float64) and returned in the scores' dtype.

    Args:
        scores: ``(..., K)`` raw scores.
        mask: bool, broadcastable to ``scores``, True = keep; ``None`` keeps everything.
    """
    compute = torch.promote_types(scores.dtype, torch.float32)
    wide = scores.to(compute)
    if mask is None:
        return torch.softmax(wide, dim=dim).to(scores.dtype)
    # A finite fill keeps fully masked rows NaN-free (they become uniform); multiplying by the mask zeroes them.
    filled = wide.masked_fill(~mask, torch.finfo(compute).min)
    return (torch.softmax(filled, dim=dim) * mask).to(scores.dtype)


def weighted_sum(weights: Tensor, value: Tensor) -> Tensor:
    """``(..., Q, K) @ (..., K, Dv) -> (..., Q, Dv)``."""
    return weights @ value


class AttentionCore(nn.Module):
    """Base of every attention core: ``forward(query, key, value, *, masks, need_weights) -> AttentionOutput``.

    Inputs are ``query (B, [H,] Q, D)``, ``key (B, [H,] K, D)``, ``value (B, [H,] K, Dv)``;
    ``key_keep (B, K)`` and ``keep`` (broadcastable to ``(B, [H,] Q, K)``) are bool, True = attend;
    ``causal`` adds a top-left aligned causal mask. ``key_padding_mask (B, K)`` is torch's alternative to
    ``key_keep`` with torch's meaning (True = padding, ignored); ``attn_mask`` is refused with an error, since
    torch gives it two opposite meanings (see :mod:`attnkit.layers.masks`).
    """

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        key_keep: Tensor | None = None,
        keep: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> AttentionOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def core_masks(
    layer: str, key_keep: Tensor | None, key_padding_mask: Tensor | None, attn_mask: Tensor | None
) -> Tensor | None:
    """A core's ``(B, K)`` keep-mask from ``key_keep`` or torch's ``key_padding_mask``; refuses ``attn_mask``."""
    refuse_attn_mask(layer, attn_mask)
    return resolve_key_keep(key_keep, key_padding_mask)


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> None:
    if query.dim() < 3 or key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError(
            "query, key and value must share a rank of 3 (B, T, D) or 4 (B, H, T, D); got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key and value need the same length, got {key.shape[-2]} and {value.shape[-2]}")


class Attention(AttentionCore):
    """Attention with any scorer: scores -> mask -> softmax -> dropout -> weighted sum.

    When the scorer is a (scaled) dot product and weights are not needed, the fused
    ``torch.nn.functional.scaled_dot_product_attention`` computes the same context without materializing
    the weights; otherwise the weights are computed explicitly.

    Args:
        scorer: the score function; defaults to scaled dot product over ``dim``.
        dim: query/key size, used only to build the default scorer.
        dropout: dropout on the attention weights during training.
    """

    def __init__(self, scorer: Scorer | None = None, *, dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if scorer is None:
            if dim is None:
                raise ValueError(
                    "Attention needs a scorer or a `dim` for the default scaled dot-product scorer"
                )
            scorer = ScaledDotScorer(dim)
        self.scorer = scorer
        self.dropout = dropout

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        key_keep: Tensor | None = None,
        keep: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> AttentionOutput:
        _check_qkv(query, key, value)
        key_keep = core_masks(type(self).__name__, key_keep, key_padding_mask, attn_mask)
        q_len, k_len = query.shape[-2], key.shape[-2]
        mask = build_mask(
            key_keep=key_keep,
            keep=keep,
            causal=causal,
            q_len=q_len,
            k_len=k_len,
            score_ndim=query.dim(),
            device=query.device,
            batch=query.shape[0],
        )
        dropout_p = self.dropout if self.training else 0.0
        scale = self.scorer.sdpa_scale
        if scale is not None and not need_weights:
            if causal and key_keep is None and keep is None:
                # SDPA's own causal mode (same top-left alignment) never materializes a (Q, K) mask.
                return AttentionOutput(
                    context=F.scaled_dot_product_attention(
                        query, key, value, dropout_p=dropout_p, is_causal=True, scale=scale
                    )
                )
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=dropout_p, scale=scale
            )  # (B, [H,] Q, Dv)
            if mask is not None:
                # Some SDPA backends return NaN for rows with no kept key; the contract says zeros.
                row_kept = mask.any(dim=-1, keepdim=True)  # (B|1, [H|1,] Q|1, 1)
                context = context.masked_fill(~row_kept, 0.0)
            return AttentionOutput(context=context)
        scores = self.scorer(query, key)  # (B, [H,] Q, K)
        weights = masked_softmax(scores, mask)  # (B, [H,] Q, K)
        dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
        context = weighted_sum(dropped, value)  # (B, [H,] Q, Dv)
        return AttentionOutput(context=context, weights=weights if need_weights else None)
