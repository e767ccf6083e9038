"""Masks (True = keep), ``masked_softmax`` and ``AttentionOutput`` against hand-written values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from attnkit.layers import (
    Attention,
    AttentionOutput,
    ChunkedAttention,
    LinearAttention,
    LocalAttention,
    build_mask,
    causal_mask,
    lengths_to_mask,
    masked_softmax,
)

# ------------------------------------------------------------------------------------------------------------
# lengths_to_mask / causal_mask


def test_lengths_to_mask_by_hand() -> None:
    mask = lengths_to_mask(torch.tensor([3, 1, 0, 4]))
    expected = torch.tensor(
        [
            [True, True, True, False],
            [True, False, False, False],
            [False, False, False, False],
            [True, True, True, True],
        ]
    )
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_lengths_to_mask_max_length_widens() -> None:
    mask = lengths_to_mask(torch.tensor([2, 1]), max_length=5)
    assert torch.equal(mask, torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool))


def test_lengths_to_mask_row_sums_are_lengths(device: torch.device) -> None:
    lengths = torch.tensor([7, 0, 3, 5, 1], device=device)
    mask = lengths_to_mask(lengths, max_length=9)
    assert mask.shape == (5, 9)
    assert mask.device.type == device.type
    assert mask.sum(dim=1).tolist() == [7, 0, 3, 5, 1]
    # Kept positions form a prefix: no True after a False in any row.
    assert not (mask[:, 1:] & ~mask[:, :-1]).any()


@pytest.mark.parametrize(("q_len", "k_len"), [(1, 1), (3, 3), (2, 4), (4, 2), (5, 1)])
def test_causal_mask_is_top_left_aligned(q_len: int, k_len: int) -> None:
    mask = causal_mask(q_len, k_len)
    assert mask.shape == (q_len, k_len)
    assert mask.dtype == torch.bool
    for i, j in itertools.product(range(q_len), range(k_len)):
        assert bool(mask[i, j]) == (j <= i), (i, j)


def test_causal_mask_by_hand_and_default_square() -> None:
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(3), expected)
    assert torch.equal(causal_mask(2, 3), expected[:2])


def test_causal_mask_matches_torch_sdpa_is_causal() -> None:
    # torch documents is_causal as tril of a (L, S) ones matrix: the top-left alignment we promise.
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 5, 4), torch.randn(1, 5, 2)
    ours = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(3, 5))
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------------------
# build_mask


def _build(**overrides: object) -> torch.Tensor | None:
    kwargs: dict[str, object] = {
        "key_keep": None,
        "keep": None,
        "causal": False,
        "q_len": 3,
        "k_len": 4,
        "score_ndim": 3,
        "device": torch.device("cpu"),
    }
    kwargs.update(overrides)
    return build_mask(**kwargs)  # type: ignore[arg-type]


def test_build_mask_nothing_masked_is_none() -> None:
    assert _build() is None


@pytest.mark.parametrize("score_ndim", [3, 4])
def test_build_mask_combines_padding_attn_mask_and_causal(score_ndim: int) -> None:
    batch, heads, q_len, k_len = 2, 3, 3, 4
    padding = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1]], dtype=torch.bool)
    attn = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    mask = _build(key_keep=padding, keep=attn, causal=True, q_len=q_len, k_len=k_len, score_ndim=score_ndim)
    assert mask is not None
    shape = (batch, heads, q_len, k_len) if score_ndim == 4 else (batch, q_len, k_len)
    full = mask.expand(shape)
    for b, i, j in itertools.product(range(batch), range(q_len), range(k_len)):
        expected = bool(padding[b, j]) and bool(attn[i, j]) and j <= i
        got = full[b, :, i, j] if score_ndim == 4 else full[b, i, j]
        assert bool(torch.all(got == expected)), (b, i, j)


def test_build_mask_padding_only_broadcasts_over_heads_and_queries() -> None:
    padding = torch.tensor([[1, 0, 1, 1]], dtype=torch.bool)
    mask = _build(key_keep=padding, score_ndim=4)
    assert mask is not None
    assert mask.shape == (1, 1, 1, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8])
@pytest.mark.parametrize("which", ["key_keep", "keep"])
def test_build_mask_rejects_non_bool_with_helpful_message(which: str, dtype: torch.dtype) -> None:
    shape = (2, 4) if which == "key_keep" else (3, 4)
    with pytest.raises(ValueError, match=rf"{which} must be a bool tensor with True = keep") as info:
        _build(**{which: torch.ones(shape, dtype=dtype)})
    # The message says what was passed and how to fix it.
    assert str(dtype) in str(info.value)
    assert "mask.bool()" in str(info.value)


@pytest.mark.parametrize("shape", [(2, 5), (2, 3), (4,), (2, 1, 4)])
def test_build_mask_rejects_wrong_key_padding_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"key_keep must have shape \(batch, 4\)"):
        _build(key_keep=torch.ones(shape, dtype=torch.bool))


@pytest.mark.parametrize("shape", [(3, 5), (2, 4), (4, 3), (2, 3, 5)])
def test_build_mask_rejects_wrong_attn_mask_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"keep must end in \(queries, keys\) = \(3, 4\)"):
        _build(keep=torch.ones(shape, dtype=torch.bool))


def test_build_mask_accepts_single_row_attn_mask() -> None:
    row = torch.tensor([[1, 0, 1, 1]], dtype=torch.bool)  # (1, K): same for every query
    mask = _build(keep=row)
    assert mask is not None
    assert torch.equal(mask.expand(3, 4), row.expand(3, 4))


# Every core validates masks the same way: a user's mistake is a ValueError, not a broadcasting RuntimeError.
CORES = {
    "attention": lambda: Attention(dim=4),
    "chunked": lambda: ChunkedAttention(chunk_size=2),
    "local": lambda: LocalAttention(window=1),
    "linear": lambda: LinearAttention(chunk_size=2),
}


@pytest.mark.parametrize("core_name", sorted(CORES))
@pytest.mark.parametrize("bad", ["float_padding", "wrong_length_padding", "one_dim_padding"])
def test_cores_reject_bad_key_padding(core_name: str, bad: str) -> None:
    core = CORES[core_name]()
    q = k = v = torch.randn(2, 4, 4)
    padding = {
        "float_padding": torch.ones(2, 4),
        "wrong_length_padding": torch.ones(2, 5, dtype=torch.bool),
        "one_dim_padding": torch.ones(4, dtype=torch.bool),
    }[bad]
    with pytest.raises(ValueError, match="key_keep"):
        core(q, k, v, key_keep=padding)


@pytest.mark.parametrize("core_name", ["attention", "chunked"])
def test_dense_cores_reject_float_attn_mask(core_name: str) -> None:
    q = k = v = torch.randn(2, 4, 4)
    with pytest.raises(ValueError, match="keep must be a bool tensor"):
        CORES[core_name]()(q, k, v, keep=torch.zeros(4, 4))


@pytest.mark.parametrize("core_name", sorted(CORES))
def test_cores_reject_mismatched_ranks(core_name: str) -> None:
    with pytest.raises(ValueError, match="rank"):
        CORES[core_name]()(torch.randn(2, 4, 4), torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4))


@pytest.mark.parametrize("core_name", sorted(CORES))
def test_cores_reject_key_value_length_mismatch(core_name: str) -> None:
    with pytest.raises(ValueError, match="same length"):
        CORES[core_name]()(torch.randn(2, 4, 4), torch.randn(2, 4, 4), torch.randn(2, 3, 4))


# ------------------------------------------------------------------------------------------------------------
# masked_softmax and AttentionOutput


def test_masked_softmax_by_hand() -> None:
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    weights = masked_softmax(scores, mask)
    denom = math.exp(1.0) + math.exp(3.0)
    expected = torch.tensor([[math.exp(1.0) / denom, 0.0, math.exp(3.0) / denom], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(weights, expected, atol=1e-7, rtol=0)
    assert weights[0, 1].item() == 0.0  # exactly, not merely small


def test_masked_softmax_without_mask_is_softmax() -> None:
    scores = torch.randn(2, 3, 5)
    torch.testing.assert_close(masked_softmax(scores, None), torch.softmax(scores, dim=-1))


def test_masked_softmax_large_scores_no_overflow_and_keeps_dtype() -> None:
    scores = torch.tensor([[1e4, 1e4 - 1.0, -1e4]], dtype=torch.bfloat16)
    mask = torch.tensor([[True, True, False]])
    weights = masked_softmax(scores, mask)
    assert weights.dtype == torch.bfloat16
    assert torch.isfinite(weights).all()
    # bf16 rounds 1e4 - 1 to 1e4 (spacing 64 there), so the two kept keys tie.
    torch.testing.assert_close(weights.float(), torch.tensor([[0.5, 0.5, 0.0]]), atol=1e-3, rtol=0)


def test_require_weights_raises_without_weights() -> None:
    with pytest.raises(ValueError, match="need_weights=True"):
        AttentionOutput(context=torch.zeros(1, 1, 1)).require_weights()


def test_require_weights_returns_the_weights() -> None:
    weights = torch.rand(1, 2, 3)
    assert AttentionOutput(context=torch.zeros(1, 2, 1), weights=weights).require_weights() is weights


@pytest.mark.parametrize("shape", [(4, 5), (4, 1), (4,), (3, 4), (2, 3, 4)])
def test_chunked_rejects_wrong_attn_mask_shape_like_attention(shape: tuple[int, ...]) -> None:
    q = k = v = torch.randn(2, 4, 4)
    mask = torch.ones(shape, dtype=torch.bool)
    with pytest.raises(ValueError, match="keep must end in"):
        Attention(dim=4)(q, k, v, keep=mask)
    with pytest.raises(ValueError, match="keep"):
        ChunkedAttention(chunk_size=2)(q, k, v, keep=mask)


@pytest.mark.parametrize("core_name", sorted(CORES))
def test_cores_reject_key_padding_with_wrong_batch(core_name: str) -> None:
    q = k = v = torch.randn(2, 4, 4)
    with pytest.raises(ValueError, match="key_keep"):
        CORES[core_name]()(q, k, v, key_keep=torch.ones(3, 4, dtype=torch.bool))


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("core_name", ["attention", "chunked"])
def test_attn_mask_with_more_dims_than_scores_is_rejected(core_name: str, need_weights: bool) -> None:
    q = k = v = torch.randn(2, 3, 4)  # scores (B, Q, K)
    mask = torch.ones(2, 1, 3, 3, dtype=torch.bool)  # (B, 1, Q, K): meant for 4-d inputs
    with pytest.raises(ValueError, match="keep"):
        CORES[core_name]()(q, k, v, keep=mask, need_weights=need_weights)


# ------------------------------------------------------------------------------------------------------------
# torch's names keep torch's meaning (issue 11): no core silently inverts a torch-style mask.


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("core_name", sorted(CORES))
def test_cores_read_key_padding_mask_as_torch_does(core_name: str, need_weights: bool) -> None:
    """``key_padding_mask`` (True = padding) is the complement of ``key_keep`` (True = attend)."""
    q = k = v = torch.randn(2, 4, 4)
    keep = torch.tensor([[True, True, True, False], [True, False, False, False]])
    core = CORES[core_name]()
    expected = core(q, k, v, key_keep=keep, need_weights=need_weights)
    got = core(q, k, v, key_padding_mask=~keep, need_weights=need_weights)
    torch.testing.assert_close(got.context, expected.context, atol=0, rtol=0)
    if need_weights:
        assert (got.require_weights()[~keep.unsqueeze(1).expand(2, 4, 4)] == 0).all()  # padding gets nothing
    with pytest.raises(ValueError, match=r"pass key_keep \(True = attend\) or key_padding_mask .*not both"):
        core(q, k, v, key_keep=keep, key_padding_mask=~keep)
    with pytest.raises(ValueError, match=r"key_padding_mask must be a bool tensor with torch's meaning"):
        core(q, k, v, key_padding_mask=(~keep).float())


@pytest.mark.parametrize("core_name", sorted(CORES))
def test_cores_refuse_attn_mask_and_say_why(core_name: str) -> None:
    q = k = v = torch.randn(2, 4, 4)
    name = type(CORES[core_name]()).__name__
    with pytest.raises(
        ValueError,
        match=rf"^{name} takes keep= \(bool, True = attend\) for a \(queries, keys\) mask, not attn_mask",
    ):
        CORES[core_name]()(q, k, v, attn_mask=torch.ones(4, 4, dtype=torch.bool))
