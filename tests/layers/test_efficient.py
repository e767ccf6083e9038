"""Efficient cores against references: ``ChunkedAttention`` vs ``Attention``, ``LocalAttention`` vs
``Attention`` with a band mask, ``LinearAttention`` vs a naive ``phi(q) . phi(k)`` loop."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attnkit.layers import Attention, ChunkedAttention, LinearAttention, LocalAttention, elu_feature_map

BATCH, HEADS, DIM, VDIM = 2, 2, 4, 3


def inputs(ndim: int, q_len: int, k_len: int) -> tuple[Tensor, Tensor, Tensor]:
    lead = (BATCH, HEADS) if ndim == 4 else (BATCH,)
    return torch.randn(*lead, q_len, DIM), torch.randn(*lead, k_len, DIM), torch.randn(*lead, k_len, VDIM)


def padding(k_len: int) -> Tensor:
    """Batch 0 pads its last two keys, batch 1 its first one."""
    keep = torch.ones(BATCH, k_len, dtype=torch.bool)
    keep[0, -2:] = False
    keep[1, 0] = False
    return keep


def band(q_len: int, k_len: int, window: int, causal: bool = False) -> Tensor:
    i = torch.arange(q_len).unsqueeze(1)
    j = torch.arange(k_len).unsqueeze(0)
    keep = (i - j).abs() <= window
    return keep & (j <= i) if causal else keep


# ------------------------------------------------------------------------------------------------------------
# ChunkedAttention == Attention


def pair_keep_for(kind: str, ndim: int, q_len: int, k_len: int) -> Tensor | None:
    if kind == "none":
        return None
    if kind == "shared":
        mask = torch.rand(q_len, k_len) > 0.4  # (Q, K)
    elif kind == "row":
        mask = torch.rand(1, k_len) > 0.4  # (1, K): one row for every query
    elif kind == "per_example":
        mask = torch.rand(BATCH, *([1] if ndim == 4 else []), q_len, k_len) > 0.4  # (B, [1,] Q, K)
    else:  # per_head
        mask = torch.rand(BATCH, HEADS, q_len, k_len) > 0.4  # (B, H, Q, K)
    mask[..., 0, :] = False  # the first query sees nothing: its row must come out as zeros
    return mask


CHUNK_CASES = [
    # (ndim, pair_keep kind)
    (3, "none"),
    (3, "shared"),
    (3, "row"),
    (3, "per_example"),
    (4, "none"),
    (4, "shared"),
    (4, "per_example"),
    (4, "per_head"),
]


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("use_padding", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("ndim", "mask_kind"), CHUNK_CASES)
@pytest.mark.parametrize("chunk_size", [1, 3, 10])
def test_chunked_equals_attention(
    chunk_size: int, ndim: int, mask_kind: str, causal: bool, use_padding: bool, need_weights: bool
) -> None:
    q_len, k_len = 7, 6  # chunk size 1 divides Q, 3 does not, 10 exceeds it
    query, key, value = inputs(ndim, q_len, k_len)
    kwargs = {
        "key_keep": padding(k_len) if use_padding else None,
        "keep": pair_keep_for(mask_kind, ndim, q_len, k_len),
        "causal": causal,
        "need_weights": need_weights,
    }
    expected = Attention(dim=DIM)(query, key, value, **kwargs)
    got = ChunkedAttention(chunk_size)(query, key, value, **kwargs)
    assert got.context.shape == expected.context.shape
    torch.testing.assert_close(got.context, expected.context, atol=1e-6, rtol=1e-6)
    if need_weights:
        torch.testing.assert_close(got.require_weights(), expected.require_weights(), atol=1e-7, rtol=0)
    else:
        assert got.weights is None


@pytest.mark.parametrize(("q_len", "k_len"), [(3, 8), (8, 3)])
def test_chunked_causal_cross_lengths_is_top_left_aligned(q_len: int, k_len: int) -> None:
    query, key, value = inputs(4, q_len, k_len)
    expected = F.scaled_dot_product_attention(query, key, value, is_causal=True)
    for need_weights in (False, True):
        got = ChunkedAttention(3)(query, key, value, causal=True, need_weights=need_weights)
        torch.testing.assert_close(got.context, expected, atol=1e-6, rtol=1e-5)


def test_chunked_explicit_scale() -> None:
    query, key, value = inputs(3, 5, 5)
    got = ChunkedAttention(2, scale=0.3)(query, key, value, need_weights=True)
    expected = torch.softmax(0.3 * query @ key.transpose(-2, -1), dim=-1)
    torch.testing.assert_close(got.require_weights(), expected)
    torch.testing.assert_close(got.context, expected @ value)


def test_chunked_rejects_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        ChunkedAttention(0)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 3, 16])
def test_chunked_gradients_equal_attention(chunk_size: int, causal: bool) -> None:
    # Without need_weights, blocks are checkpointed: backward recomputes them and must give equal gradients.
    query, key, value = inputs(4, 7, 7)
    keep = padding(7)
    keep[1] = False  # a fully padded example: its gradients are exactly zero, never NaN
    upstream = torch.randn(BATCH, HEADS, 7, VDIM)

    def grads(core: torch.nn.Module) -> tuple[Tensor, ...]:
        leaves = [t.clone().requires_grad_() for t in (query, key, value)]
        out = core(*leaves, key_keep=keep, causal=causal)
        return torch.autograd.grad((out.context * upstream).sum(), leaves)

    expected = grads(Attention(dim=DIM))
    got = grads(ChunkedAttention(chunk_size))
    for name, g, e in zip("qkv", got, expected, strict=True):
        assert torch.isfinite(g).all(), name
        assert (g[1] == 0).all(), name
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4, msg=name)


def test_chunked_checkpoints_blocks_under_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    import attnkit.layers.efficient as efficient

    calls: list[int] = []
    real = efficient.checkpoint

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(efficient, "checkpoint", counting)
    query, key, value = (t.requires_grad_() for t in inputs(3, 7, 7))
    ChunkedAttention(3)(query, key, value)
    assert len(calls) == 3  # ceil(7 / 3) blocks
    with torch.no_grad():
        ChunkedAttention(3)(query, key, value)
    assert len(calls) == 3  # no graph, nothing to checkpoint


# ------------------------------------------------------------------------------------------------------------
# LocalAttention == Attention with a band mask


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("use_padding", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("ndim", [3, 4])
@pytest.mark.parametrize(
    ("window", "length"), [(0, 5), (1, 5), (1, 6), (2, 7), (3, 7), (3, 9), (7, 7), (12, 5)]
)
def test_local_equals_banded_attention(
    window: int, length: int, ndim: int, causal: bool, use_padding: bool, need_weights: bool
) -> None:
    query, key, value = inputs(ndim, length, length)
    keep = padding(length) if use_padding else None
    expected = Attention(dim=DIM)(
        query,
        key,
        value,
        key_keep=keep,
        keep=band(length, length, window, causal),
        need_weights=True,
    )
    got = LocalAttention(window)(query, key, value, key_keep=keep, causal=causal, need_weights=need_weights)
    assert got.context.shape == expected.context.shape
    torch.testing.assert_close(got.context, expected.context, atol=1e-6, rtol=1e-5)
    if need_weights:
        weights = got.require_weights()
        assert weights.shape == expected.require_weights().shape
        torch.testing.assert_close(weights, expected.require_weights(), atol=1e-6, rtol=1e-5)
        outside = ~band(length, length, window, causal)
        assert (weights[..., outside] == 0).all()
    else:
        assert got.weights is None


def test_local_window_zero_is_identity_on_values() -> None:
    query, key, value = inputs(3, 6, 6)
    out = LocalAttention(0)(query, key, value, need_weights=True)
    torch.testing.assert_close(out.context, value)
    torch.testing.assert_close(out.require_weights(), torch.eye(6).expand(BATCH, 6, 6))


def test_local_explicit_scale() -> None:
    query, key, value = inputs(3, 6, 6)
    got = LocalAttention(2, scale=0.7)(query, key, value, need_weights=True)
    scores = 0.7 * query @ key.transpose(-2, -1)
    expected = torch.softmax(scores.masked_fill(~band(6, 6, 2), float("-inf")), dim=-1)
    torch.testing.assert_close(got.require_weights(), expected)
    torch.testing.assert_close(got.context, expected @ value)


def test_local_gradients_equal_banded_attention() -> None:
    query, key, value = inputs(4, 7, 7)
    keep = padding(7)
    upstream = torch.randn(BATCH, HEADS, 7, VDIM)

    def grads(run: object) -> tuple[Tensor, ...]:
        leaves = [t.clone().requires_grad_() for t in (query, key, value)]
        out = run(*leaves)  # type: ignore[operator]
        return torch.autograd.grad((out.context * upstream).sum(), leaves)

    got = grads(lambda q, k, v: LocalAttention(2)(q, k, v, key_keep=keep))
    expected = grads(lambda q, k, v: Attention(dim=DIM)(q, k, v, key_keep=keep, keep=band(7, 7, 2)))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def test_local_errors() -> None:
    with pytest.raises(ValueError, match="window must be >= 0"):
        LocalAttention(-1)
    query, key, value = inputs(3, 4, 5)
    with pytest.raises(ValueError, match="as many queries as keys"):
        LocalAttention(1)(query, key, value)
    query, key, value = inputs(3, 4, 4)
    with pytest.raises(ValueError, match="dense keep mask"):
        LocalAttention(1)(query, key, value, keep=torch.ones(4, 4, dtype=torch.bool))


# ------------------------------------------------------------------------------------------------------------
# LinearAttention == naive kernel attention


def naive_linear(
    query: Tensor, key: Tensor, value: Tensor, keep_padding: Tensor | None, causal: bool
) -> tuple[Tensor, Tensor]:
    """``w_ij = phi(q_i) . phi(k_j) / sum_{kept j'} phi(q_i) . phi(k_j')`` over kept keys, one row at a time,
    in float64 with ``phi(x) = elu(x) + 1`` written out as ``x + 1 if x > 0 else exp(x)``."""

    def phi(x: Tensor) -> list[float]:
        return [float(a) + 1.0 if a > 0 else float(torch.exp(a)) for a in x.double()]

    lead, q_len, k_len = query.shape[:-2], query.shape[-2], key.shape[-2]
    context = torch.zeros(*lead, q_len, value.shape[-1], dtype=torch.float64)
    weights = torch.zeros(*lead, q_len, k_len, dtype=torch.float64)
    for index in itertools.product(*(range(n) for n in lead)):
        k_feats = [phi(key[(*index, j)]) for j in range(k_len)]
        for i in range(q_len):
            q_feat = phi(query[(*index, i)])
            kept = [
                j
                for j in range(k_len)
                if (keep_padding is None or keep_padding[index[0], j]) and (not causal or j <= i)
            ]
            sims = {j: sum(a * b for a, b in zip(q_feat, k_feats[j], strict=True)) for j in kept}
            total = sum(sims.values())
            for j, s in sims.items():
                weights[(*index, i, j)] = s / total
                context[(*index, i)] += s / total * value[(*index, j)].double()
    return context, weights


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("use_padding", [False, True])
@pytest.mark.parametrize("ndim", [3, 4])
@pytest.mark.parametrize(("q_len", "k_len"), [(5, 5), (3, 7), (6, 2)])
def test_linear_non_causal_matches_naive(
    q_len: int, k_len: int, ndim: int, use_padding: bool, need_weights: bool
) -> None:
    query, key, value = inputs(ndim, q_len, k_len)
    keep = padding(k_len) if use_padding else None
    got = LinearAttention()(query, key, value, key_keep=keep, need_weights=need_weights)
    ref_context, ref_weights = naive_linear(query, key, value, keep, causal=False)
    assert got.context.dtype == torch.float32
    torch.testing.assert_close(got.context.double(), ref_context, atol=1e-6, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(got.require_weights().double(), ref_weights, atol=1e-6, rtol=1e-5)
    else:
        assert got.weights is None


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("use_padding", [False, True])
@pytest.mark.parametrize("ndim", [3, 4])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 7, 20])
def test_linear_causal_matches_naive(
    chunk_size: int, ndim: int, use_padding: bool, need_weights: bool
) -> None:
    length = 7  # chunk sizes 2, 3 and 4 do not divide it
    query, key, value = inputs(ndim, length, length)
    keep = padding(length) if use_padding else None
    got = LinearAttention(chunk_size)(
        query, key, value, key_keep=keep, causal=True, need_weights=need_weights
    )
    ref_context, ref_weights = naive_linear(query, key, value, keep, causal=True)
    torch.testing.assert_close(got.context.double(), ref_context, atol=1e-6, rtol=1e-5)
    if use_padding:
        # Batch 1 pads key 0, so its first query has nothing to attend to.
        assert (got.context[1, ..., 0, :] == 0).all()
    if need_weights:
        torch.testing.assert_close(got.require_weights().double(), ref_weights, atol=1e-6, rtol=1e-5)


def test_linear_fully_padded_example_is_zero() -> None:
    query, key, value = inputs(4, 5, 5)
    keep = torch.ones(BATCH, 5, dtype=torch.bool)
    keep[0] = False
    for causal in (False, True):
        out = LinearAttention(2)(query, key, value, key_keep=keep, causal=causal, need_weights=True)
        assert (out.context[0] == 0).all()
        assert (out.require_weights()[0] == 0).all()
        torch.testing.assert_close(out.require_weights()[1].sum(-1), torch.ones(HEADS, out.context.shape[-2]))


def test_linear_gradients_match_naive_autograd() -> None:
    query, key, value = inputs(3, 6, 6)
    keep = padding(6)
    upstream = torch.randn(BATCH, 6, VDIM)
    for causal in (False, True):
        leaves = [t.clone().requires_grad_() for t in (query, key, value)]
        out = LinearAttention(4)(*leaves, key_keep=keep, causal=causal).context
        got = torch.autograd.grad((out * upstream).sum(), leaves)

        ref_leaves = [t.clone().requires_grad_() for t in (query, key, value)]
        q, k, v = ref_leaves
        tri = torch.ones(6, 6).tril().bool() if causal else torch.ones(6, 6).bool()
        sim = (elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)) * (keep.unsqueeze(1) & tri)
        total = sim.sum(-1, keepdim=True)
        ref = (sim / total.clamp_min(1e-30)) @ v  # an empty causal row (batch 1, query 0) stays zero
        expected = torch.autograd.grad((ref * upstream).sum(), ref_leaves)
        for g, e in zip(got, expected, strict=True):
            assert torch.isfinite(g).all()
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def test_linear_rejects_dense_mask_and_causal_cross_lengths() -> None:
    query, key, value = inputs(3, 4, 4)
    with pytest.raises(ValueError, match="not a dense keep mask"):
        LinearAttention()(query, key, value, keep=torch.ones(4, 4, dtype=torch.bool))
    query, key, value = inputs(3, 3, 5)
    with pytest.raises(ValueError, match="as many queries as keys"):
        LinearAttention()(query, key, value, causal=True)


def test_linear_custom_feature_map() -> None:
    # The feature map is pluggable: with phi = exp the similarity is phi(q) . phi(k) = sum_d exp(q_d + k_d).
    query, key, value = inputs(3, 4, 5)
    out = LinearAttention(feature_map=torch.exp)(query, key, value, need_weights=True)
    sim = torch.exp(query.unsqueeze(-2) + key.unsqueeze(-3)).sum(-1)  # (B, Q, K)
    torch.testing.assert_close(out.require_weights(), sim / sim.sum(-1, keepdim=True))


@pytest.mark.parametrize("chunk_size", [0, -2])
def test_linear_rejects_bad_chunk_size(chunk_size: int) -> None:
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        LinearAttention(chunk_size)


def test_elu_feature_map_is_accurate_and_positive_for_negative_inputs() -> None:
    x = torch.tensor([-5.0, -10.0, -15.0, -17.0, -20.0, -40.0])
    phi = elu_feature_map(x)
    assert (phi > 0).all()
    torch.testing.assert_close(phi, torch.exp(x), rtol=1e-5, atol=0)


def test_linear_weights_sum_to_one_for_very_negative_queries() -> None:
    query = torch.full((1, 1, 2), -20.0)
    key, value = torch.randn(1, 3, 2), torch.randn(1, 3, 2)
    out = LinearAttention()(query, key, value, need_weights=True)
    torch.testing.assert_close(out.require_weights().sum(-1), torch.ones(1, 1))
    naive_context, _ = naive_linear(query, key, value, None, causal=False)
    torch.testing.assert_close(out.context.double(), naive_context, atol=1e-6, rtol=1e-5)
