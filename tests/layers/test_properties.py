"""Hypothesis properties every attention core must keep, over random shapes, masks and values.

For each core (``Attention`` with every scorer, ``ChunkedAttention``, ``LocalAttention``,
``LinearAttention``): weights are non-negative, rows sum to 1 over kept keys (0 when nothing is kept), masked
keys get exactly 0, and nothing is NaN; the fused and explicit paths agree; keys are an unordered set
(non-causal cores other than ``LocalAttention``, whose window is positional); batch elements do not leak into
each other; gradients flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from attnkit.layers import (
    SCORER_NAMES,
    Attention,
    AttentionCore,
    ChunkedAttention,
    LinearAttention,
    LocalAttention,
    make_scorer,
)

CORE_NAMES = ["attention", "chunked", "local", "linear"]
# Derandomized: the same examples every run, so the suite is reproducible and never flaky in CI.
PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@dataclass
class Case:
    """One random call of a core, with the keep mask the contract implies (built without the library)."""

    core: AttentionCore
    query: Tensor  # (B, [H,] Q, D)
    key: Tensor  # (B, [H,] K, D)
    value: Tensor  # (B, [H,] K, Dv)
    key_keep: Tensor | None  # (B, K)
    pair_keep: Tensor | None  # (Q, K)
    causal: bool
    keep: Tensor  # (B, [H,] Q, K)
    seed: int
    kwargs: dict[str, object] = field(init=False)

    def __post_init__(self) -> None:
        self.kwargs = {
            "key_keep": self.key_keep,
            "keep": self.pair_keep,
            "causal": self.causal,
        }

    def run(self, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        out = self.core(self.query, self.key, self.value, **self.kwargs, need_weights=need_weights)
        return out.context, out.weights


@st.composite
def cases(
    draw: st.DrawFn, core_name: str, *, allow_causal: bool = True, value_scale: float | None = None
) -> Case:
    batch = draw(st.integers(1, 3))
    heads = draw(st.sampled_from([None, 1, 3]))
    causal = allow_causal and draw(st.booleans())
    square = core_name == "local" or (core_name == "linear" and causal)
    q_len = draw(st.integers(1, 7))
    k_len = q_len if square else draw(st.integers(1, 7))
    dim, v_dim = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    scale = value_scale if value_scale is not None else draw(st.sampled_from([0.3, 1.0, 3.0]))
    seed = draw(st.integers(0, 2**31 - 1))

    gen = torch.Generator().manual_seed(seed)
    lead = (batch,) if heads is None else (batch, heads)
    query = torch.randn(*lead, q_len, dim, generator=gen) * scale
    key = torch.randn(*lead, k_len, dim, generator=gen) * scale
    value = torch.randn(*lead, k_len, v_dim, generator=gen)

    padding = None
    if draw(st.booleans()):
        bits = draw(st.lists(st.booleans(), min_size=batch * k_len, max_size=batch * k_len))
        padding = torch.tensor(bits, dtype=torch.bool).view(batch, k_len)
    pair_keep = None
    if core_name in {"attention", "chunked"} and draw(st.booleans()):
        bits = draw(st.lists(st.booleans(), min_size=q_len * k_len, max_size=q_len * k_len))
        pair_keep = torch.tensor(bits, dtype=torch.bool).view(q_len, k_len)

    core: AttentionCore
    i = torch.arange(q_len).view(-1, 1)
    j = torch.arange(k_len).view(1, -1)
    keep2d = torch.ones(q_len, k_len, dtype=torch.bool)  # (Q, K)
    if core_name == "attention":
        core = Attention(make_scorer(draw(st.sampled_from(SCORER_NAMES)), dim, hidden_dim=3))
    elif core_name == "chunked":
        core = ChunkedAttention(draw(st.integers(1, 8)))
    elif core_name == "local":
        window = draw(st.integers(0, 8))
        core = LocalAttention(window)
        keep2d &= (i - j).abs() <= window
    else:
        core = LinearAttention(draw(st.integers(1, 8)))
    if causal:
        keep2d &= j <= i
    if pair_keep is not None:
        keep2d &= pair_keep
    keep = keep2d.expand(*lead, q_len, k_len).clone()
    if padding is not None:
        keep &= padding.view(batch, *([1] * (len(lead) - 1)), 1, k_len)
    return Case(core, query, key, value, padding, pair_keep, causal, keep, seed)


# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("core_name", CORE_NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_weights_are_a_distribution_over_kept_keys(core_name: str, data: st.DataObject) -> None:
    case = data.draw(cases(core_name))
    context, weights = case.run(need_weights=True)
    assert weights is not None
    assert weights.shape == case.keep.shape
    assert context.shape == (*case.query.shape[:-1], case.value.shape[-1])
    assert not torch.isnan(weights).any()
    assert not torch.isnan(context).any()
    assert (weights >= 0).all()
    assert (weights[~case.keep] == 0).all(), "a masked key got weight"
    has_key = case.keep.any(dim=-1)  # (B, [H,] Q)
    sums = weights.sum(dim=-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]), atol=1e-5, rtol=0)
    assert (weights[~has_key] == 0).all()
    assert (context[~has_key] == 0).all()
    # The context is the weighted sum of the values under these very weights.
    torch.testing.assert_close(context, weights @ case.value, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("core_name", CORE_NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_with_and_without_weights_give_the_same_context(core_name: str, data: st.DataObject) -> None:
    case = data.draw(cases(core_name))
    explicit, _ = case.run(need_weights=True)
    fast, weights = case.run(need_weights=False)
    assert weights is None
    assert not torch.isnan(fast).any()
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("core_name", ["attention", "chunked", "linear"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_permuting_keys_permutes_weights_and_keeps_context(core_name: str, data: st.DataObject) -> None:
    case = data.draw(cases(core_name, allow_causal=False))
    k_len = case.key.shape[-2]
    perm = torch.tensor(data.draw(st.permutations(range(k_len))), dtype=torch.long)
    context, weights = case.run()
    permuted = case.core(
        case.query,
        case.key[..., perm, :],
        case.value[..., perm, :],
        key_keep=None if case.key_keep is None else case.key_keep[:, perm],
        keep=None if case.pair_keep is None else case.pair_keep[:, perm],
        need_weights=True,
    )
    torch.testing.assert_close(permuted.context, context, atol=1e-5, rtol=1e-4)
    assert weights is not None
    torch.testing.assert_close(permuted.require_weights(), weights[..., perm], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("core_name", CORE_NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_batch_elements_are_independent(core_name: str, data: st.DataObject) -> None:
    case = data.draw(cases(core_name))
    batch = case.query.shape[0]
    if batch == 1:  # nothing else in the batch to change
        return
    need_weights = data.draw(st.booleans())
    context, weights = case.run(need_weights=need_weights)

    # Replace every other element of the batch (values and padding); element 0 must not notice.
    gen = torch.Generator().manual_seed(case.seed + 1)
    query, key, value = (t.clone() for t in (case.query, case.key, case.value))
    for t in (query, key, value):
        t[1:] = torch.randn(t[1:].shape, generator=gen) * 10
    padding = case.key_keep
    if padding is not None:
        padding = padding.clone()
        padding[1:] = ~padding[1:]
    other = case.core(query, key, value, **{**case.kwargs, "key_keep": padding}, need_weights=need_weights)
    torch.testing.assert_close(other.context[0], context[0], atol=1e-6, rtol=1e-5)
    if need_weights:
        assert weights is not None
        torch.testing.assert_close(other.require_weights()[0], weights[0], atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("core_name", CORE_NAMES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_gradients_flow_and_are_finite(core_name: str, data: st.DataObject) -> None:
    case = data.draw(cases(core_name, value_scale=1.0))
    need_weights = data.draw(st.booleans())
    leaves = [t.clone().requires_grad_() for t in (case.query, case.key, case.value)]
    out = case.core(*leaves, **case.kwargs, need_weights=need_weights)
    gen = torch.Generator().manual_seed(case.seed)
    upstream = torch.randn(out.context.shape, generator=gen)
    grads = torch.autograd.grad((out.context * upstream).sum(), leaves)
    for name, grad in zip("qkv", grads, strict=True):
        assert torch.isfinite(grad).all(), f"non-finite gradient for {name}"
    grad_q, grad_k, grad_v = grads
    kept_per_row = case.keep.sum(dim=-1)  # (B, [H,] Q)
    if kept_per_row.max() >= 1:
        assert grad_v.abs().sum() > 0
    if kept_per_row.max() >= 2:  # a single kept key gets weight 1 whatever the scores: no signal to q or k
        assert grad_k.abs().sum() > 0
        # With one feature, linear attention's phi(q) cancels between numerator and denominator.
        if not (core_name == "linear" and case.query.shape[-1] == 1):
            assert grad_q.abs().sum() > 0
    # Masked keys take no part in the output, so they receive no gradient at all.
    unused = ~case.keep.any(dim=-2)  # (B, [H,] K)
    assert (grad_v[unused] == 0).all()
    assert (grad_k[unused] == 0).all()
