"""``Attention`` with every scorer against a naive, loop-by-loop reference, and its fused path against its own
explicit path and against torch's SDPA."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attnkit.layers import (
    SCORER_NAMES,
    AdditiveScorer,
    Attention,
    BilinearScorer,
    DotScorer,
    ScaledDotScorer,
    Scorer,
    make_scorer,
)

ScoreFn = Callable[[Tensor, Tensor], float]

# ------------------------------------------------------------------------------------------------------------
# The reference: one query row at a time, one key at a time, in float64 with python scalars.


def score_fn(scorer: Scorer) -> ScoreFn:
    """The textbook formula of ``scorer`` for one query vector ``q (Dq,)`` and one key vector ``k (Dk,)``,
    written with the layer's own parameters."""
    if isinstance(scorer, ScaledDotScorer):
        return lambda q, k: sum(float(a) * float(b) for a, b in zip(q, k, strict=True)) * scorer.sdpa_scale
    if isinstance(scorer, DotScorer):
        return lambda q, k: sum(float(a) * float(b) for a, b in zip(q, k, strict=True))
    if isinstance(scorer, BilinearScorer):
        w = scorer.weight.detach().double()  # (Dq, Dk)
        return lambda q, k: sum(
            float(q[a]) * float(w[a, b]) * float(k[b]) for a in range(w.shape[0]) for b in range(w.shape[1])
        )
    if isinstance(scorer, AdditiveScorer):
        w_q = scorer.query_proj.weight.detach().double()  # (A, Dq)
        w_k = scorer.key_proj.weight.detach().double()  # (A, Dk)
        b_k = scorer.key_proj.bias.detach().double()  # (A,)
        v = scorer.vector.weight.detach().double()[0]  # (A,)

        def additive(q: Tensor, k: Tensor) -> float:
            hidden = torch.tanh(w_q @ q + w_k @ k + b_k)  # (A,)
            return float((v * hidden).sum())

        return additive
    raise TypeError(type(scorer))


def full_keep(
    lead: tuple[int, ...],
    q_len: int,
    k_len: int,
    *,
    key_keep: Tensor | None,
    pair_keep: Tensor | None,
    causal: bool,
) -> Tensor:
    """The keep mask ``(*lead, Q, K)`` spelled out element by element."""
    keep = torch.ones(*lead, q_len, k_len, dtype=torch.bool)
    attn = None if pair_keep is None else torch.broadcast_to(pair_keep, keep.shape)
    for index in itertools.product(*(range(n) for n in lead)):
        for i, j in itertools.product(range(q_len), range(k_len)):
            kept = True
            if key_keep is not None:
                kept = kept and bool(key_keep[index[0], j])
            if attn is not None:
                kept = kept and bool(attn[(*index, i, j)])
            if causal:
                kept = kept and j <= i
            keep[(*index, i, j)] = kept
    return keep


def naive_attention(
    query: Tensor, key: Tensor, value: Tensor, score: ScoreFn, keep: Tensor
) -> tuple[Tensor, Tensor]:
    """For each query row: scores over kept keys, softmax by ``math.exp``, weighted sum. Returns float64
    ``(context (*lead, Q, Dv), weights (*lead, Q, K))``; a row with no kept key gets zeros."""
    query, key, value = query.detach().double(), key.detach().double(), value.detach().double()
    lead, q_len, k_len = query.shape[:-2], query.shape[-2], key.shape[-2]
    context = torch.zeros(*lead, q_len, value.shape[-1], dtype=torch.float64)
    weights = torch.zeros(*lead, q_len, k_len, dtype=torch.float64)
    for index in itertools.product(*(range(n) for n in lead)):
        for i in range(q_len):
            kept = [j for j in range(k_len) if keep[(*index, i, j)]]
            if not kept:
                continue
            scores = {j: score(query[(*index, i)], key[(*index, j)]) for j in kept}
            top = max(scores.values())
            exps = {j: math.exp(s - top) for j, s in scores.items()}
            total = sum(exps.values())
            for j in kept:
                weights[(*index, i, j)] = exps[j] / total
                context[(*index, i)] += exps[j] / total * value[(*index, j)]
    return context, weights


# ------------------------------------------------------------------------------------------------------------
# Cases

BATCH, HEADS = 2, 2


def make_inputs(
    ndim: int, q_len: int, k_len: int, q_dim: int = 4, k_dim: int = 4, v_dim: int = 3
) -> tuple[Tensor, Tensor, Tensor]:
    lead = (BATCH, HEADS) if ndim == 4 else (BATCH,)
    return (
        torch.randn(*lead, q_len, q_dim),
        torch.randn(*lead, k_len, k_dim),
        torch.randn(*lead, k_len, v_dim),
    )


def make_masks(
    kind: str, ndim: int, q_len: int, k_len: int
) -> tuple[Tensor | None, Tensor | None, bool, bool]:
    """``(key_keep, pair_keep, causal, has_empty_row)`` for a named combination."""
    padding = torch.ones(BATCH, k_len, dtype=torch.bool)
    padding[0, k_len - 2 :] = False  # batch 0 has two padded keys at the end
    padding[1, 0] = False  # batch 1 pads its first key (so causal row 0 of batch 1 is empty)
    # A per-example, per-query mask with one row fully masked.
    lead = (BATCH, 1) if ndim == 4 else (BATCH,)
    attn = torch.rand(*lead, q_len, k_len) > 0.35
    attn[..., :, 0] = True
    attn[0, ..., q_len - 1, :] = False  # last query of batch 0 sees nothing
    shared = torch.rand(q_len, k_len) > 0.3  # one (Q, K) mask for every example
    shared[:, 1] = True
    table: dict[str, tuple[Tensor | None, Tensor | None, bool, bool]] = {
        "none": (None, None, False, False),
        "padding": (padding, None, False, False),
        "keep": (None, attn, False, True),
        "shared_attn_mask": (None, shared, False, False),
        "causal": (None, None, True, False),
        "padding+pair_keep": (padding, attn, False, True),
        "padding+causal": (padding, None, True, True),
        "padding+pair_keep+causal": (padding, attn, True, True),
    }
    return table[kind]


MASK_KINDS = [
    "none",
    "padding",
    "keep",
    "shared_attn_mask",
    "causal",
    "padding+pair_keep",
    "padding+causal",
    "padding+pair_keep+causal",
]
LENGTHS = [(5, 5), (3, 6), (6, 4)]


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("ndim", [3, 4])
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("scorer_name", SCORER_NAMES)
def test_attention_matches_naive_reference(
    scorer_name: str, mask_kind: str, ndim: int, need_weights: bool
) -> None:
    q_len, k_len = 4, 5
    query, key, value = make_inputs(ndim, q_len, k_len)
    padding, attn, causal, _ = make_masks(mask_kind, ndim, q_len, k_len)
    layer = Attention(make_scorer(scorer_name, 4, hidden_dim=6))
    out = layer(query, key, value, key_keep=padding, keep=attn, causal=causal, need_weights=need_weights)

    keep = full_keep(query.shape[:-2], q_len, k_len, key_keep=padding, pair_keep=attn, causal=causal)
    ref_context, ref_weights = naive_attention(query, key, value, score_fn(layer.scorer), keep)
    assert out.context.shape == ref_context.shape
    assert out.context.dtype == torch.float32
    torch.testing.assert_close(out.context.double(), ref_context, atol=2e-6, rtol=1e-5)
    if need_weights:
        assert out.weights is not None
        torch.testing.assert_close(out.weights.double(), ref_weights, atol=2e-6, rtol=1e-5)
    else:
        assert out.weights is None


@pytest.mark.parametrize("scorer_name", ["general", "additive"])
@pytest.mark.parametrize("ndim", [3, 4])
def test_cross_attention_with_different_query_key_value_sizes(scorer_name: str, ndim: int) -> None:
    q_dim, k_dim, v_dim, q_len, k_len = 3, 5, 2, 4, 6
    query, key, value = make_inputs(ndim, q_len, k_len, q_dim, k_dim, v_dim)
    padding, _, _, _ = make_masks("padding", ndim, q_len, k_len)
    layer = Attention(make_scorer(scorer_name, q_dim, k_dim, hidden_dim=4))
    out = layer(query, key, value, key_keep=padding, need_weights=True)
    keep = full_keep(query.shape[:-2], q_len, k_len, key_keep=padding, pair_keep=None, causal=False)
    ref_context, ref_weights = naive_attention(query, key, value, score_fn(layer.scorer), keep)
    torch.testing.assert_close(out.context.double(), ref_context, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out.require_weights().double(), ref_weights, atol=2e-6, rtol=1e-5)


def test_reference_detects_a_wrong_scale() -> None:
    # Guard the guard: the naive reference must tell scaled from unscaled dot products.
    query, key, value = make_inputs(3, 4, 5)
    keep = torch.ones(BATCH, 4, 5, dtype=torch.bool)
    out = Attention(DotScorer())(query, key, value, need_weights=True)
    ref_context, _ = naive_attention(query, key, value, score_fn(ScaledDotScorer(4)), keep)
    assert not torch.allclose(out.context.double(), ref_context, atol=1e-3)


def test_default_scorer_is_scaled_dot_over_dim() -> None:
    layer = Attention(dim=4)
    assert isinstance(layer.scorer, ScaledDotScorer)
    assert layer.scorer.sdpa_scale == pytest.approx(0.5)


def test_attention_without_scorer_or_dim_raises() -> None:
    with pytest.raises(ValueError, match="scorer or a `dim`"):
        Attention()


def test_hand_computed_two_key_example() -> None:
    # q . k = (2, 0); scaled by 1/sqrt(4): (1, 0) -> weights (e/(e+1), 1/(e+1)).
    query = torch.tensor([[[1.0, 1.0, 1.0, 1.0]]])  # (1, 1, 4)
    key = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]])  # (1, 2, 4)
    value = torch.tensor([[[10.0], [20.0]]])  # (1, 2, 1)
    out = Attention(dim=4)(query, key, value, need_weights=True)
    w0 = math.e / (math.e + 1)
    torch.testing.assert_close(out.require_weights(), torch.tensor([[[w0, 1 - w0]]]))
    torch.testing.assert_close(out.context, torch.tensor([[[10 * w0 + 20 * (1 - w0)]]]))


# ------------------------------------------------------------------------------------------------------------
# Scorers on their own: no masking, no normalization, shapes (..., Q, K).


@pytest.mark.parametrize("scorer_name", SCORER_NAMES)
def test_scorers_give_raw_scores_matching_formula(scorer_name: str) -> None:
    scorer = make_scorer(scorer_name, 4, hidden_dim=3)
    query, key = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    scores = scorer(query, key)
    assert scores.shape == (2, 3, 5)
    fn = score_fn(scorer)
    expected = torch.tensor(
        [
            [[fn(query[b, i].double(), key[b, j].double()) for j in range(5)] for i in range(3)]
            for b in range(2)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(scores.double(), expected, atol=1e-5, rtol=1e-5)


def test_make_scorer_aliases_and_errors() -> None:
    assert isinstance(make_scorer("bilinear", 4), BilinearScorer)
    assert isinstance(make_scorer("concat", 4), AdditiveScorer)
    assert make_scorer("additive", 4, hidden_dim=7).query_proj.out_features == 7  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown scorer 'cosine'"):
        make_scorer("cosine", 4)
    for name in ("dot", "scaled_dot"):
        with pytest.raises(ValueError, match="equal query and key sizes"):
            make_scorer(name, 4, 5)


def test_only_dot_scorers_offer_the_fused_path() -> None:
    assert make_scorer("dot", 4).sdpa_scale == 1.0
    assert make_scorer("scaled_dot", 16).sdpa_scale == pytest.approx(0.25)
    assert make_scorer("general", 4).sdpa_scale is None
    assert make_scorer("additive", 4).sdpa_scale is None


# ------------------------------------------------------------------------------------------------------------
# Fused SDPA path (need_weights=False) vs explicit path (need_weights=True)


@pytest.mark.parametrize(("q_len", "k_len"), LENGTHS)
@pytest.mark.parametrize("ndim", [3, 4])
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("scorer_name", ["dot", "scaled_dot"])
def test_fused_path_equals_explicit_path(
    scorer_name: str, mask_kind: str, ndim: int, q_len: int, k_len: int
) -> None:
    query, key, value = make_inputs(ndim, q_len, k_len)
    padding, attn, causal, has_empty_row = make_masks(mask_kind, ndim, q_len, k_len)
    layer = Attention(make_scorer(scorer_name, 4))
    kwargs = {"key_keep": padding, "keep": attn, "causal": causal}
    fused = layer(query, key, value, **kwargs, need_weights=False)
    explicit = layer(query, key, value, **kwargs, need_weights=True)
    assert fused.weights is None
    assert explicit.weights is not None
    assert not torch.isnan(fused.context).any()
    torch.testing.assert_close(fused.context, explicit.context, atol=1e-6, rtol=1e-5)
    # Rows with no kept key are zeros on both paths.
    weights = explicit.require_weights()
    empty = weights.sum(dim=-1) == 0  # (*lead, Q)
    assert bool(empty.any()) == has_empty_row
    assert (fused.context[empty] == 0).all()
    assert (explicit.context[empty] == 0).all()


@pytest.mark.parametrize(("q_len", "k_len"), LENGTHS)
@pytest.mark.parametrize("ndim", [3, 4])
def test_causal_matches_torch_is_causal(ndim: int, q_len: int, k_len: int) -> None:
    query, key, value = make_inputs(ndim, q_len, k_len)
    expected = F.scaled_dot_product_attention(query, key, value, is_causal=True)
    layer = Attention(dim=4)
    for need_weights in (False, True):
        out = layer(query, key, value, causal=True, need_weights=need_weights)
        torch.testing.assert_close(out.context, expected, atol=1e-6, rtol=1e-5)


def test_fully_masked_batch_element_is_zero_on_both_paths() -> None:
    query, key, value = make_inputs(4, 3, 5)
    padding = torch.tensor([[True, True, False, True, False], [False] * 5])
    layer = Attention(dim=4)
    for need_weights in (False, True):
        out = layer(query, key, value, key_keep=padding, need_weights=need_weights)
        assert torch.isfinite(out.context).all()
        assert (out.context[1] == 0).all()
        assert (out.context[0].abs().sum(dim=-1) > 0).all()
        if need_weights:
            assert (out.require_weights()[1] == 0).all()


def test_fused_path_gradients_equal_explicit_path() -> None:
    query, key, value = make_inputs(4, 4, 5)
    padding, _, _, _ = make_masks("padding", 4, 4, 5)
    layer = Attention(dim=4)
    upstream = torch.randn(BATCH, HEADS, 4, 3)
    grads = []
    for need_weights in (False, True):
        inputs = [t.clone().requires_grad_() for t in (query, key, value)]
        out = layer(*inputs, key_keep=padding, causal=True, need_weights=need_weights)
        grads.append(torch.autograd.grad((out.context * upstream).sum(), inputs))
    for fused, explicit in zip(*grads, strict=True):
        assert torch.isfinite(fused).all()
        torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------------------
# Dropout


def test_dropout_only_in_training_and_weights_stay_undropped() -> None:
    query, key, value = make_inputs(3, 4, 6)
    layer = Attention(dim=4, dropout=0.5)
    reference = Attention(dim=4)(query, key, value, need_weights=True)
    layer.eval()
    evaluated = layer(query, key, value, need_weights=True)
    torch.testing.assert_close(evaluated.context, reference.context)
    layer.train()
    trained = layer(query, key, value, need_weights=True)
    # The returned weights are the attention distribution; dropout acts only on the weighted sum.
    torch.testing.assert_close(trained.require_weights(), reference.require_weights())
    assert not torch.allclose(trained.context, reference.context)
