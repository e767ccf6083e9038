"""Efficient attention cores with the same contract as :class:`~attnkit.layers.attention.Attention`.

- :class:`ChunkedAttention`: exact softmax attention computed a block of queries at a time, so peak memory grows
  linearly with sequence length (backward recomputes each block instead of storing all weights).
- :class:`LocalAttention`: exact softmax attention restricted to a sliding window ``|i - j| <= window``,
  time and memory ``O(T * window)``.
- :class:`LinearAttention`: kernelized attention ``phi(q) (phi(k)^T v)`` (Katharopoulos et al. 2020), time and
  memory linear in sequence length; not a softmax, so its weights differ from the other cores'.

Each core returns explicit weights ``(B, [H,] Q, K)`` when ``need_weights=True`` (that costs ``O(Q * K)`` memory,
as any dense weight map must).

Dimension legend: ``B`` batch, ``H`` heads, ``Q`` queries, ``K`` keys, ``T`` tokens, ``D`` key size,
``Dv`` value size, ``N`` blocks, ``C`` block size, ``W`` window.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from attnkit.layers.attention import AttentionCore, AttentionOutput, _check_qkv, core_masks, masked_softmax
from attnkit.layers.masks import check_keep, padding_view


def _padding_view(key_keep: Tensor | None, score_ndim: int, batch: int, k_len: int) -> Tensor | None:
    """``(B, K)`` -> ``(B, 1, [1,] K)``, validated."""
    return None if key_keep is None else padding_view(key_keep, score_ndim, batch, k_len)


class ChunkedAttention(AttentionCore):
    """Exact scaled dot-product attention over blocks of ``chunk_size`` queries.

    Peak memory is ``O(chunk_size * K)`` instead of ``O(Q * K)``. Without weights each block runs through the fused
    SDPA kernel; under autograd each block is checkpointed, so backward memory stays linear in length too.

    Args:
        chunk_size: queries per block.
        scale: score multiplier; defaults to ``1 / sqrt(D)``.
    """

    def __init__(self, chunk_size: int = 1024, scale: float | None = None) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.scale = scale

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
        q_len, k_len = query.shape[-2], key.shape[-2]
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(query.shape[-1])
        key_keep = core_masks(type(self).__name__, key_keep, key_padding_mask, attn_mask)
        padding = _padding_view(key_keep, query.dim(), query.shape[0], k_len)  # (B, 1, [1,] K)
        if keep is not None:
            check_keep(keep, q_len, k_len, query.dim())
        key_positions = torch.arange(k_len, device=query.device)  # (K,)
        use_checkpoint = (
            torch.is_grad_enabled() and not need_weights and any(t.requires_grad for t in (query, key, value))
        )

        contexts: list[Tensor] = []
        weight_blocks: list[Tensor] = []
        for start in range(0, q_len, self.chunk_size):
            stop = min(start + self.chunk_size, q_len)
            block_mask = padding
            if keep is not None:
                rows = keep[..., start:stop, :] if keep.shape[-2] == q_len else keep
                block_mask = rows if block_mask is None else block_mask & rows
            q_block = query[..., start:stop, :]  # (B, [H,] C, D)
            if need_weights:
                if causal:
                    query_positions = torch.arange(start, stop, device=query.device)  # (C,)
                    tri = key_positions.unsqueeze(0) <= query_positions.unsqueeze(1)  # (C, K)
                    block_mask = tri if block_mask is None else block_mask & tri
                scores = (q_block @ key.transpose(-2, -1)) * scale  # (B, [H,] C, K)
                weights = masked_softmax(scores, block_mask)
                weight_blocks.append(weights)
                contexts.append(weights @ value)  # (B, [H,] C, Dv)
                continue
            k_block, v_block = key, value
            if causal:
                # Keys after the block's last query are masked for every query in it: leave them out.
                reach = min(stop, k_len)
                k_block, v_block = key[..., :reach, :], value[..., :reach, :]  # (B, [H,] K', D)
                block_mask = None if block_mask is None else block_mask[..., :reach]
            # The causal mask is built inside the block, so checkpointing keeps no (C, K) mask per block alive.
            block_fn = _sdpa_block(block_mask, scale, causal_start=start if causal else None)
            if use_checkpoint:
                ctx = checkpoint(block_fn, q_block, k_block, v_block, use_reentrant=False)
                assert isinstance(ctx, Tensor)
            else:
                ctx = block_fn(q_block, k_block, v_block)
            contexts.append(ctx)
        context = torch.cat(contexts, dim=-2)  # (B, [H,] Q, Dv)
        weights_out = torch.cat(weight_blocks, dim=-2) if need_weights else None
        return AttentionOutput(context=context, weights=weights_out)


def _sdpa_block(
    base_mask: Tensor | None, scale: float, causal_start: int | None = None
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """One block of exact attention through SDPA; with ``causal_start``, query ``i`` of the block (position
    ``causal_start + i``) sees keys ``j <= causal_start + i``."""

    def run(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        mask = base_mask
        if causal_start is not None:
            query_positions = torch.arange(causal_start, causal_start + q.shape[-2], device=q.device)  # (C,)
            tri = torch.arange(k.shape[-2], device=q.device).unsqueeze(0) <= query_positions.unsqueeze(
                1
            )  # (C, K')
            mask = tri if mask is None else mask & tri
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)  # (B, [H,] C, Dv)
        if mask is not None:
            ctx = ctx.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
        return ctx

    return run


class LocalAttention(AttentionCore):
    """Exact softmax attention within a sliding window: query ``i`` attends keys ``j`` with ``|i - j| <= window``
    (``i - window <= j <= i`` when causal).

    Queries and keys must be the same sequence length (self-attention). Time and memory are
    ``O(T * window)``: queries are cut into blocks of ``window`` and each block scores only the keys that its
    window can reach.

    Args:
        window: how far each query looks to either side.
        scale: score multiplier; defaults to ``1 / sqrt(D)``.
    """

    def __init__(self, window: int, scale: float | None = None) -> None:
        super().__init__()
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.window = window
        self.scale = scale

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
        if keep is not None:
            raise ValueError(
                "LocalAttention takes key_keep and causal only: a dense keep mask would cost the O(T^2) "
                "memory this layer avoids; use Attention or ChunkedAttention for arbitrary masks"
            )
        length = query.shape[-2]
        if key.shape[-2] != length:
            raise ValueError(
                f"LocalAttention needs as many queries as keys (self-attention), got {length} and {key.shape[-2]}"
            )
        window = self.window
        block = max(1, min(window, length))
        num_blocks = math.ceil(length / block)
        padded_len = num_blocks * block
        span = block + 2 * window  # keys one query block can reach
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(query.shape[-1])
        lead = query.shape[:-2]  # (B, [H])

        q_blocks = F.pad(query, (0, 0, 0, padded_len - length))  # (B, [H,] N*C, D)
        q_blocks = q_blocks.reshape(*lead, num_blocks, block, query.shape[-1])  # (B, [H,] N, C, D)
        right = padded_len - length + window

        def windows(x: Tensor) -> Tensor:
            padded = F.pad(x, (0, 0, window, right))  # (B, [H,] W + N*C + W, D)
            return padded.unfold(-2, span, block).transpose(-2, -1)  # (B, [H,] N, C + 2W, D)

        k_windows, v_windows = windows(key), windows(value)
        scores = (q_blocks @ k_windows.transpose(-2, -1)) * scale  # (B, [H,] N, C, C + 2W)

        device = query.device
        block_starts = torch.arange(num_blocks, device=device).view(-1, 1, 1) * block  # (N, 1, 1)
        query_pos = block_starts + torch.arange(block, device=device).view(1, -1, 1)  # (N, C, 1)
        key_pos = block_starts - window + torch.arange(span, device=device).view(1, 1, -1)  # (N, 1, C + 2W)
        band = ((query_pos - key_pos).abs() <= window) & (key_pos >= 0) & (key_pos < length)  # (N, C, C + 2W)
        if causal:
            band = band & (key_pos <= query_pos)
        mask = band
        if key_keep is not None:
            padding = _padding_view(key_keep, query.dim() - 1, query.shape[0], length)  # (B, [1,] T)
            assert padding is not None
            padded_keys = F.pad(padding, (window, right), value=False)  # (B, [1,] W + N*C + W)
            key_windows = padded_keys.unfold(-1, span, block)  # (B, [1,] N, C + 2W)
            mask = mask & key_windows.unsqueeze(-2)  # (B, [1,] N, C, C + 2W)

        weights = masked_softmax(scores, mask)  # (B, [H,] N, C, C + 2W)
        context = weights @ v_windows  # (B, [H,] N, C, Dv)
        context = context.reshape(*lead, padded_len, value.shape[-1])[..., :length, :]  # (B, [H,] T, Dv)
        if not need_weights:
            return AttentionOutput(context=context)
        # Scatter the banded weights into a dense (T, T) map: column = key position + W in the padded key axis.
        dense = weights.new_zeros(*lead, num_blocks, block, padded_len + 2 * window)
        columns = (key_pos + window).expand(num_blocks, block, span).expand(*weights.shape)
        dense.scatter_(-1, columns, weights)
        dense = dense.reshape(*lead, padded_len, padded_len + 2 * window)
        return AttentionOutput(context=context, weights=dense[..., :length, window : window + length])


def elu_feature_map(x: Tensor) -> Tensor:
    """``phi(x) = elu(x) + 1``: positive features (Katharopoulos et al. 2020).

    Written as ``exp(x)`` for ``x <= 0`` rather than ``(exp(x) - 1) + 1``, which rounds small values to 0.
    """
    return torch.where(x > 0, x + 1.0, torch.exp(x.clamp(max=0.0)))


class LinearAttention(AttentionCore):
    """Kernelized linear attention: ``context_i = phi(q_i) S / phi(q_i) z`` with ``S = sum_j phi(k_j) v_j^T``.

    Weights, when asked, are the normalized kernel similarities ``phi(q_i) . phi(k_j) / sum_j (...)``: non-negative
    and summing to one over kept keys, like softmax weights, but from a different similarity. Supports key
    padding and causal masking (causal needs ``Q == K``; it runs in blocks of ``chunk_size`` so memory stays
    linear); arbitrary dense masks are rejected.

    Args:
        chunk_size: block size for the causal prefix sums.
        feature_map: the positive feature map ``phi``.
    """

    def __init__(
        self, chunk_size: int = 256, feature_map: Callable[[Tensor], Tensor] = elu_feature_map
    ) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.feature_map = feature_map

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
        if keep is not None:
            raise ValueError("LinearAttention takes key_keep and causal only, not a dense keep mask")
        q_len, k_len = query.shape[-2], key.shape[-2]
        if causal and q_len != k_len:
            raise ValueError(f"causal LinearAttention needs as many queries as keys, got {q_len} and {k_len}")
        compute = torch.promote_types(query.dtype, torch.float32)  # bf16 -> f32, f64 stays f64
        q_feat = self.feature_map(query.to(compute))  # (B, [H,] Q, D)
        k_feat = self.feature_map(key.to(compute))  # (B, [H,] K, D)
        v32 = value.to(compute)
        padding = _padding_view(key_keep, query.dim(), query.shape[0], k_len)
        if padding is not None:
            k_feat = k_feat * padding.transpose(-2, -1)  # masked keys contribute nothing: (B, 1, [1,] K, 1)
        if causal:
            numerator, denominator = self._causal(q_feat, k_feat, v32)
        else:
            kv = k_feat.transpose(-2, -1) @ v32  # (B, [H,] D, Dv)
            numerator = q_feat @ kv  # (B, [H,] Q, Dv)
            denominator = q_feat @ k_feat.sum(dim=-2).unsqueeze(-1)  # (B, [H,] Q, 1)
        safe = denominator.clamp_min(torch.finfo(compute).tiny)
        context = torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))
        weights = None
        if need_weights:
            similarity = q_feat @ k_feat.transpose(-2, -1)  # (B, [H,] Q, K)
            if causal:
                similarity = similarity.tril()
            weights = torch.where(denominator > 0, similarity / safe, torch.zeros_like(similarity))
            weights = weights.to(query.dtype)
        return AttentionOutput(context=context.to(value.dtype), weights=weights)

    def _causal(self, q_feat: Tensor, k_feat: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        lead = q_feat.shape[:-2]
        state = q_feat.new_zeros(*lead, q_feat.shape[-1], value.shape[-1])  # (B, [H,] D, Dv)
        normalizer = q_feat.new_zeros(*lead, q_feat.shape[-1], 1)  # (B, [H,] D, 1)
        numerators, denominators = [], []
        for start in range(0, q_feat.shape[-2], self.chunk_size):
            stop = min(start + self.chunk_size, q_feat.shape[-2])
            q_c, k_c, v_c = q_feat[..., start:stop, :], k_feat[..., start:stop, :], value[..., start:stop, :]
            intra = (q_c @ k_c.transpose(-2, -1)).tril()  # (B, [H,] C, C)
            numerators.append(intra @ v_c + q_c @ state)  # (B, [H,] C, Dv)
            denominators.append(intra.sum(dim=-1, keepdim=True) + q_c @ normalizer)  # (B, [H,] C, 1)
            state = state + k_c.transpose(-2, -1) @ v_c
            normalizer = normalizer + k_c.sum(dim=-2).unsqueeze(-1)
        return torch.cat(numerators, dim=-2), torch.cat(denominators, dim=-2)
