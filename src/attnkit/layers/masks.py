"""Attention masks.

One convention everywhere: a mask is a bool tensor where ``True`` means *keep* (the key takes part in attention)
and ``False`` means *masked out*. Masks broadcast against scores of shape ``(B, [H,] Q, K)``. Keep-masks are
named for it: ``key_keep (B, K)`` per key and ``keep`` per (query, key) pair.

torch uses the opposite polarity under other names: ``key_padding_mask`` (``nn.MultiheadAttention``,
``nn.Transformer*``) is True for *padding*, to be ignored. Every attnkit layer that takes ``key_padding_mask``
gives it torch's meaning (:func:`resolve_key_keep`), so a torch-style mask gives torch's result and is never
silently inverted. torch's ``attn_mask`` means "True = attend" in ``scaled_dot_product_attention`` but "True =
ignore" in ``nn.MultiheadAttention``; only :class:`~attnkit.layers.multihead.MultiHeadAttention` takes it, in
``nn.MultiheadAttention``'s meaning, and the cores refuse it (:func:`refuse_attn_mask`).

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


def resolve_key_keep(key_keep: Tensor | None, key_padding_mask: Tensor | None) -> Tensor | None:
    """The ``(B, K)`` keep-mask from either attnkit's ``key_keep`` or torch's ``key_padding_mask``.

    Args:
        key_keep: bool, True = the key is attended.
        key_padding_mask: bool, torch's convention: True = padding, ignored.

    Raises:
        ValueError: both are given, or ``key_padding_mask`` is not bool (torch also takes additive float
            masks; attnkit does not).
    """
    if key_padding_mask is None:
        return key_keep
    if key_keep is not None:
        raise ValueError(
            "pass key_keep (True = attend) or key_padding_mask (torch's convention, True = padding), not both"
        )
    if key_padding_mask.dtype != torch.bool:
        raise ValueError(
            f"key_padding_mask must be a bool tensor with torch's meaning, True = padding (got dtype "
            f"{key_padding_mask.dtype}); for an additive float mask of 0 / -inf pass key_keep=(mask == 0)"
        )
    return ~key_padding_mask


def refuse_attn_mask(layer: str, attn_mask: Tensor | None) -> None:
    """Raise for an ``attn_mask`` given to an attention core: torch gives that name two opposite meanings."""
    if attn_mask is not None:
        raise ValueError(
            f"{layer} takes keep= (bool, True = attend) for a (queries, keys) mask, not attn_mask, whose "
            "meaning differs in torch (True = attend in scaled_dot_product_attention, True = ignore in "
            "nn.MultiheadAttention); MultiHeadAttention takes attn_mask with nn.MultiheadAttention's meaning"
        )


def check_keep(keep: Tensor, q_len: int, k_len: int, score_ndim: int) -> None:
    """Raise ``ValueError`` unless ``keep`` is bool and broadcastable to scores ``(..., Q, K)``."""
    _check_bool("keep", keep)
    if keep.dim() < 2 or keep.dim() > score_ndim:
        raise ValueError(
            f"keep must end in (queries, keys) = ({q_len}, {k_len}) and have 2 to {score_ndim} dimensions, "
            f"got shape {tuple(keep.shape)}"
        )
    if keep.shape[-2:] not in {(q_len, k_len), (1, k_len)}:
        raise ValueError(f"keep must end in (queries, keys) = ({q_len}, {k_len}), got {tuple(keep.shape)}")


def padding_view(key_keep: Tensor, score_ndim: int, batch: int, k_len: int) -> Tensor:
    """Validate a ``(B, K)`` key keep-mask and view it as ``(B, 1, ..., K)`` with ``score_ndim`` dims."""
    _check_bool("key_keep", key_keep)
    if key_keep.dim() != 2 or tuple(key_keep.shape) != (batch, k_len):
        raise ValueError(
            f"key_keep must have shape (batch, {k_len}) = ({batch}, {k_len}) to match the keys, "
            f"got {tuple(key_keep.shape)}"
        )
    return key_keep.view(batch, *([1] * (score_ndim - 2)), k_len)


def build_mask(
    *,
    key_keep: Tensor | None,
    keep: Tensor | None,
    causal: bool,
    q_len: int,
    k_len: int,
    score_ndim: int,
    device: torch.device,
    batch: int | None = None,
) -> Tensor | None:
    """Combine a key keep-mask, a (query, key) keep-mask and causality into one mask broadcastable to the scores.

    Args:
        key_keep: ``(B, K)`` bool, True = real key.
        keep: bool, broadcastable to the scores ``(B, [H,] Q, K)``, True = attend; a ``(Q, K)`` mask applies
            to every row.
        causal: add a top-left aligned causal mask.
        q_len: number of queries ``Q``.
        k_len: number of keys ``K``.
        score_ndim: number of dimensions of the scores (3 for ``(B, Q, K)``, 4 for ``(B, H, Q, K)``).
        device: device of the scores.
        batch: batch size ``B`` of the scores, to check ``key_keep`` against.

    Returns:
        A bool mask broadcastable to the scores, or ``None`` when nothing is masked.
    """
    mask: Tensor | None = None
    if key_keep is not None:
        rows = key_keep.shape[0] if batch is None else batch
        # (B, K) -> (B, 1, [1,] K): broadcast over heads and queries
        mask = padding_view(key_keep, score_ndim, rows, k_len)
    if keep is not None:
        check_keep(keep, q_len, k_len, score_ndim)
        mask = keep if mask is None else mask & keep
    if causal:
        tri = causal_mask(q_len, k_len, device=device)  # (Q, K)
        mask = tri if mask is None else mask & tri
    return mask
