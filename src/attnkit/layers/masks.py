"""Attention masks.

One convention everywhere: a mask is a bool tensor where ``True`` means *keep* (the key takes part in attention)
and ``False`` means *masked out*. Masks broadcast against scores of shape ``(B, [H,] Q, K)``.

Dimension legend: ``B`` batch, ``H`` heads, ``Q`` queries, ``K`` keys, ``T`` tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Key-padding mask from sequence lengths.

    Args:
        lengths: ``(B,)`` integer lengths.
        max_length: width of the mask; defaults to ``lengths.max()``.

    Returns:
        ``(B, T)`` bool mask, ``True`` for the first ``lengths[b]`` positions of row ``b``.
    """
    width = int(lengths.max().item()) if max_length is None else max_length
    positions = torch.arange(width, device=lengths.device)  # (T,)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | None = None) -> Tensor:
    """Causal mask aligned top-left: query ``i`` may attend keys ``j <= i`` (as ``torch`` SDPA's ``is_causal``).

    Returns:
        ``(Q, K)`` bool mask.
    """
    k_len = q_len if k_len is None else k_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril()


def _check_bool(name: str, mask: Tensor) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(
            f"{name} must be a bool tensor with True = keep (got dtype {mask.dtype}); "
            "convert with `mask.bool()` or, for an additive float mask, `mask == 0`"
        )


def check_attn_mask(attn_mask: Tensor, q_len: int, k_len: int, score_ndim: int) -> None:
    """Raise ``ValueError`` unless ``attn_mask`` is bool and broadcastable to scores ``(..., Q, K)``."""
    _check_bool("attn_mask", attn_mask)
    if attn_mask.dim() < 2 or attn_mask.dim() > score_ndim:
        raise ValueError(
            f"attn_mask must end in (queries, keys) = ({q_len}, {k_len}) and have 2 to {score_ndim} dimensions, "
            f"got shape {tuple(attn_mask.shape)}"
        )
    if attn_mask.shape[-2:] not in {(q_len, k_len), (1, k_len)}:
        raise ValueError(
            f"attn_mask must end in (queries, keys) = ({q_len}, {k_len}), got {tuple(attn_mask.shape)}"
        )


def padding_view(key_padding_mask: Tensor, score_ndim: int, batch: int, k_len: int) -> Tensor:
    """Validate a ``(B, K)`` key-padding mask and view it as ``(B, 1, ..., K)`` with ``score_ndim`` dims."""
    _check_bool("key_padding_mask", key_padding_mask)
    if key_padding_mask.dim() != 2 or tuple(key_padding_mask.shape) != (batch, k_len):
        raise ValueError(
            f"key_padding_mask must have shape (batch, {k_len}) = ({batch}, {k_len}) to match the keys, "
            f"got {tuple(key_padding_mask.shape)}"
        )
    return key_padding_mask.view(batch, *([1] * (score_ndim - 2)), k_len)


def build_mask(
    *,
    key_padding_mask: Tensor | None,
    attn_mask: Tensor | None,
    causal: bool,
    q_len: int,
    k_len: int,
    score_ndim: int,
    device: torch.device,
    batch: int | None = None,
) -> Tensor | None:
    """Combine a key-padding mask, an explicit mask and causality into one mask broadcastable to the scores.

    Args:
        key_padding_mask: ``(B, K)`` bool, True = real key.
        attn_mask: bool, broadcastable to the scores ``(B, [H,] Q, K)``; a ``(Q, K)`` mask applies to every row.
        causal: add a top-left aligned causal mask.
        q_len: number of queries ``Q``.
        k_len: number of keys ``K``.
        score_ndim: number of dimensions of the scores (3 for ``(B, Q, K)``, 4 for ``(B, H, Q, K)``).
        device: device of the scores.
        batch: batch size ``B`` of the scores, to check ``key_padding_mask`` against.

    Returns:
        A bool mask broadcastable to the scores, or ``None`` when nothing is masked.
    """
    mask: Tensor | None = None
    if key_padding_mask is not None:
        rows = key_padding_mask.shape[0] if batch is None else batch
        # (B, K) -> (B, 1, [1,] K): broadcast over heads and queries
        mask = padding_view(key_padding_mask, score_ndim, rows, k_len)
    if attn_mask is not None:
        check_attn_mask(attn_mask, q_len, k_len, score_ndim)
        mask = attn_mask if mask is None else mask & attn_mask
    if causal:
        tri = causal_mask(q_len, k_len, device=device)  # (Q, K)
        mask = tri if mask is None else mask & tri
    return mask
