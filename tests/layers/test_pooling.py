"""``AttentionPooling`` against hand-written references that use the module's own parameters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from attnkit.layers import POOLING_SCORERS, AttentionPooling, PoolingOutput

BATCH, TOKENS, DIM = 3, 6, 8
LENGTHS = [6, 4, 1]


def mask_of(lengths: list[int], width: int) -> Tensor:
    return torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, T)


def single_head_scores(pool: AttentionPooling, query: Tensor, state: Tensor) -> float:
    """One learned query ``(D,)`` against one token state ``(D,)``, by the scorer's formula."""
    scorer = pool.attention.scorer  # type: ignore[union-attr]
    q, h = query.double(), state.double()
    if pool.scorer_name == "dot":
        return float((q * h).sum())
    if pool.scorer_name == "scaled_dot":
        return float((q * h).sum()) / math.sqrt(pool.dim)
    if pool.scorer_name == "general":
        return float(q @ scorer.weight.detach().double() @ h)
    w_q, w_k = scorer.query_proj.weight.detach().double(), scorer.key_proj.weight.detach().double()
    b_k, v = scorer.key_proj.bias.detach().double(), scorer.vector.weight.detach().double()[0]
    return float(v @ torch.tanh(w_q @ q + w_k @ h + b_k))


def reference_pool(pool: AttentionPooling, states: Tensor, lengths: list[int]) -> tuple[Tensor, Tensor]:
    """``(pooled (B, R * D), weights (B, [H,] R, T))`` in float64, one sequence and one query at a time;
    padded tokens are never looked at."""
    states = states.detach().double()
    batch, tokens, dim = states.shape
    queries = pool.query.detach().double()  # (R, D)
    if pool.scorer_name != "multihead":
        weights = torch.zeros(batch, pool.num_queries, tokens, dtype=torch.float64)
        pooled = torch.zeros(batch, pool.num_queries, dim, dtype=torch.float64)
        for b in range(batch):
            for r in range(pool.num_queries):
                scores = [single_head_scores(pool, queries[r], states[b, t]) for t in range(lengths[b])]
                top = max(scores)
                exps = [math.exp(s - top) for s in scores]
                for t, e in enumerate(exps):
                    weights[b, r, t] = e / sum(exps)
                    pooled[b, r] += e / sum(exps) * states[b, t]
        return pooled.reshape(batch, -1), weights

    mha = pool.attention
    heads, head_dim = mha.num_heads, mha.head_dim  # type: ignore[union-attr]

    def linear(layer: torch.nn.Linear, x: Tensor) -> Tensor:
        return x @ layer.weight.detach().double().T + layer.bias.detach().double()

    weights = torch.zeros(batch, heads, pool.num_queries, tokens, dtype=torch.float64)
    pooled = torch.zeros(batch, pool.num_queries, dim, dtype=torch.float64)
    for b in range(batch):
        keys = linear(mha.k_proj, states[b, : lengths[b]])  # (L, D)
        values = linear(mha.v_proj, states[b, : lengths[b]])  # (L, D)
        for r in range(pool.num_queries):
            q = linear(mha.q_proj, queries[r])  # (D,)
            merged = torch.zeros(dim, dtype=torch.float64)
            for h in range(heads):
                part = slice(h * head_dim, (h + 1) * head_dim)
                scores = [float(q[part] @ keys[t, part]) / math.sqrt(head_dim) for t in range(lengths[b])]
                top = max(scores)
                exps = [math.exp(s - top) for s in scores]
                for t, e in enumerate(exps):
                    weights[b, h, r, t] = e / sum(exps)
                    merged[part] += e / sum(exps) * values[t, part]
            pooled[b, r] = linear(mha.out_proj, merged)
    return pooled.reshape(batch, -1), weights


@pytest.mark.parametrize("num_queries", [1, 3])
@pytest.mark.parametrize("scorer", POOLING_SCORERS)
def test_pooling_matches_reference(scorer: str, num_queries: int) -> None:
    pool = AttentionPooling(DIM, scorer=scorer, num_queries=num_queries, num_heads=2, hidden_dim=5).eval()
    if scorer == "multihead":
        with torch.no_grad():  # make the projection biases count
            for name, p in pool.attention.named_parameters():
                if name.endswith("bias"):
                    p.normal_()
    states = torch.randn(BATCH, TOKENS, DIM)
    out = pool(states, mask_of(LENGTHS, TOKENS))
    ref_pooled, ref_weights = reference_pool(pool, states, LENGTHS)
    assert isinstance(out, PoolingOutput)
    assert out.pooled.shape == (BATCH, num_queries * DIM) == (BATCH, pool.output_dim)
    expected_shape = (
        (BATCH, 2, num_queries, TOKENS) if scorer == "multihead" else (BATCH, num_queries, TOKENS)
    )
    assert out.weights.shape == expected_shape
    torch.testing.assert_close(out.pooled.double(), ref_pooled, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out.weights.double(), ref_weights, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("scorer", POOLING_SCORERS)
def test_pooling_ignores_appended_padding(scorer: str) -> None:
    pool = AttentionPooling(DIM, scorer=scorer, num_queries=2, num_heads=2).eval()
    states = torch.randn(BATCH, TOKENS, DIM)
    mask = mask_of(LENGTHS, TOKENS)
    short = pool(states, mask)
    # Garbage (large, not NaN) in the old padding slots and in three new padded tokens.
    garbage = torch.randn(BATCH, TOKENS + 3, DIM) * 1e3
    longer = torch.where(
        mask_of(LENGTHS, TOKENS + 3).unsqueeze(-1), torch.cat([states, garbage[:, :3]], 1), garbage
    )
    long = pool(longer, mask_of(LENGTHS, TOKENS + 3))
    torch.testing.assert_close(long.pooled, short.pooled, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(long.weights[..., :TOKENS], short.weights, atol=1e-7, rtol=1e-6)
    assert (long.token_weights()[~mask_of(LENGTHS, TOKENS + 3)] == 0).all()


@pytest.mark.parametrize("scorer", POOLING_SCORERS)
def test_token_weights_sum_to_one_and_are_zero_on_padding(scorer: str) -> None:
    pool = AttentionPooling(DIM, scorer=scorer, num_queries=3, num_heads=4)
    states = torch.randn(BATCH, TOKENS, DIM)
    mask = mask_of(LENGTHS, TOKENS)
    out = pool(states, mask)
    token_weights = out.token_weights()
    assert token_weights.shape == (BATCH, TOKENS)
    torch.testing.assert_close(token_weights.sum(dim=-1), torch.ones(BATCH))
    assert (token_weights[~mask] == 0).all()
    # It is the mean over heads and queries.
    expected = out.weights.reshape(BATCH, -1, TOKENS).mean(dim=1)
    torch.testing.assert_close(token_weights, expected)
    # The one-token sequence puts all its weight on that token.
    torch.testing.assert_close(token_weights[2, 0], torch.tensor(1.0))


def test_pooling_without_mask_uses_every_token() -> None:
    pool = AttentionPooling(DIM, scorer="scaled_dot")
    states = torch.randn(BATCH, TOKENS, DIM)
    ref_pooled, ref_weights = reference_pool(pool, states, [TOKENS] * BATCH)
    out = pool(states)
    torch.testing.assert_close(out.pooled.double(), ref_pooled, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out.weights.double(), ref_weights, atol=2e-6, rtol=1e-5)


def test_fully_masked_sequence_pools_to_zero_weights() -> None:
    pool = AttentionPooling(DIM, scorer="additive")
    out = pool(torch.randn(2, 4, DIM), torch.tensor([[True, True, False, False], [False] * 4]))
    assert torch.isfinite(out.pooled).all()
    assert (out.weights[1] == 0).all()
    assert (out.pooled[1] == 0).all()
    assert out.token_weights()[1].sum() == 0


def test_pooling_gradients_reach_query_and_scorer() -> None:
    pool = AttentionPooling(DIM, scorer="additive", num_queries=2)
    out = pool(torch.randn(BATCH, TOKENS, DIM), mask_of(LENGTHS, TOKENS))
    (out.pooled * torch.randn_like(out.pooled)).sum().backward()
    for name, p in pool.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_pooling_constructor_errors() -> None:
    with pytest.raises(ValueError, match="unknown pooling scorer 'max'"):
        AttentionPooling(DIM, scorer="max")
    with pytest.raises(ValueError, match="num_queries must be >= 1"):
        AttentionPooling(DIM, num_queries=0)
    with pytest.raises(ValueError, match="must divide dim"):
        AttentionPooling(DIM, scorer="multihead", num_heads=3)


def test_pooling_rejects_non_bool_mask() -> None:
    pool = AttentionPooling(DIM, scorer="dot")
    with pytest.raises(ValueError, match="bool"):
        pool(torch.randn(2, 4, DIM), torch.ones(2, 4))
