"""Every core, ``MultiHeadAttention`` and ``AttentionPooling`` run in bfloat16 and match their float32 results
within bf16 precision, on every available device."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from attnkit.layers import (
    Attention,
    AttentionCore,
    AttentionPooling,
    ChunkedAttention,
    LinearAttention,
    LocalAttention,
    MultiHeadAttention,
    make_scorer,
)

# bf16 keeps 8 bits of mantissa (relative spacing 2^-8 ~ 0.004); contexts are averages of O(1) values.
BF16_ATOL = 2e-2

CORES: dict[str, Callable[[], AttentionCore]] = {
    "scaled_dot": lambda: Attention(make_scorer("scaled_dot", 8)),
    "dot": lambda: Attention(make_scorer("dot", 8)),
    "general": lambda: Attention(make_scorer("general", 8)),
    "additive": lambda: Attention(make_scorer("additive", 8)),
    "chunked": lambda: ChunkedAttention(3),
    "local": lambda: LocalAttention(2),
    "linear": lambda: LinearAttention(3),
}


def bf16_inputs(ndim: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inputs exactly representable in bf16, so float32 and bf16 runs start from the same numbers."""
    lead = (2, 2) if ndim == 4 else (2,)
    q, k, v = (torch.randn(*lead, 7, 8).bfloat16().float().to(device) for _ in range(3))
    padding = torch.ones(2, 7, dtype=torch.bool, device=device)
    padding[0, 5:] = False
    padding[1] = False  # a fully padded example: zeros, not NaN, in bf16 too
    return q, k, v, padding


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("ndim", [3, 4])
@pytest.mark.parametrize("core_name", sorted(CORES))
def test_core_in_bfloat16_matches_float32(
    core_name: str, ndim: int, causal: bool, need_weights: bool, device: torch.device
) -> None:
    core = CORES[core_name]().to(device)
    q, k, v, padding = bf16_inputs(ndim, device)
    kwargs = {"key_keep": padding, "causal": causal, "need_weights": need_weights}
    full = core(q, k, v, **kwargs)
    half = core.to(torch.bfloat16)(q.bfloat16(), k.bfloat16(), v.bfloat16(), **kwargs)
    assert half.context.dtype == torch.bfloat16
    assert half.context.device.type == device.type
    assert not torch.isnan(half.context).any()
    assert (half.context[1] == 0).all()
    torch.testing.assert_close(half.context.float(), full.context, atol=BF16_ATOL, rtol=BF16_ATOL)
    if need_weights:
        weights = half.require_weights()
        assert weights.dtype == torch.bfloat16
        assert not torch.isnan(weights).any()
        torch.testing.assert_close(weights.float(), full.require_weights(), atol=BF16_ATOL, rtol=BF16_ATOL)
        sums = weights[0].float().sum(dim=-1)
        torch.testing.assert_close(sums, torch.ones_like(sums), atol=BF16_ATOL, rtol=0)


def test_float32_results_are_on_device(device: torch.device) -> None:
    q, k, v, padding = bf16_inputs(4, device)
    for name, make in CORES.items():
        out = make().to(device)(q, k, v, key_keep=padding, need_weights=True)
        assert out.context.dtype == torch.float32, name
        assert out.context.device.type == device.type, name
        assert out.require_weights().device.type == device.type, name


@pytest.mark.parametrize("core_name", ["default", "chunked", "local", "linear"])
def test_multihead_in_bfloat16_matches_float32(core_name: str, device: torch.device) -> None:
    core = {
        "default": None,
        "chunked": ChunkedAttention(2),
        "local": LocalAttention(1),
        "linear": LinearAttention(2),
    }
    mha = MultiHeadAttention(8, 2, core=core[core_name]).to(device)
    x = torch.randn(2, 6, 8, device=device).bfloat16().float()
    padding = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool, device=device)
    full = mha(x, key_keep=padding, causal=True, need_weights=True)
    half = mha.to(torch.bfloat16)(x.bfloat16(), key_keep=padding, causal=True, need_weights=True)
    assert half.context.dtype == torch.bfloat16
    # Three bf16 projections on top of the attention: allow a little more.
    torch.testing.assert_close(half.context.float(), full.context, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(half.require_weights().float(), full.require_weights(), atol=BF16_ATOL, rtol=0)


@pytest.mark.parametrize("scorer", ["dot", "scaled_dot", "general", "additive", "multihead"])
def test_pooling_in_bfloat16_matches_float32(scorer: str, device: torch.device) -> None:
    pool = AttentionPooling(8, scorer=scorer, num_queries=2, num_heads=2).to(device)
    states = torch.randn(3, 6, 8, device=device).bfloat16().float()
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] + [0] * 5], dtype=torch.bool, device=device)
    full = pool(states, mask)
    half = pool.to(torch.bfloat16)(states.bfloat16(), mask)
    assert half.pooled.dtype == torch.bfloat16
    torch.testing.assert_close(half.pooled.float(), full.pooled, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(half.weights.float(), full.weights, atol=BF16_ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------------------
# float64: the cores should keep double precision (what torch.autograd.gradcheck needs)

FLOAT64_CASES = [
    pytest.param("attention", False, id="attention-fused"),
    pytest.param("attention", True, id="attention-weights"),
    pytest.param("chunked", False, id="chunked-fused"),
    pytest.param("chunked", True, id="chunked-weights"),
    pytest.param("local", False, id="local"),
    pytest.param("linear", False, id="linear"),
]
FLOAT64_CORES: dict[str, Callable[[], AttentionCore]] = {
    "attention": lambda: Attention(dim=3),
    "chunked": lambda: ChunkedAttention(2),
    "local": lambda: LocalAttention(1),
    "linear": lambda: LinearAttention(2),
}


def float64_reference(core_name: str, q: Tensor, k: Tensor, v: Tensor, padding: Tensor) -> Tensor:
    """Context computed entirely in float64 with plain tensor ops."""
    keep = padding.unsqueeze(1).expand(-1, q.shape[1], -1)  # (B, Q, K)
    if core_name == "linear":
        phi_q = torch.where(q > 0, q + 1, torch.exp(q))
        phi_k = torch.where(k > 0, k + 1, torch.exp(k))
        sim = (phi_q @ phi_k.transpose(-2, -1)) * keep
        return (sim / sim.sum(-1, keepdim=True)) @ v
    if core_name == "local":
        i, j = torch.arange(q.shape[1]).view(-1, 1), torch.arange(k.shape[1]).view(1, -1)
        keep = keep & ((i - j).abs() <= 1)
    scores = (q @ k.transpose(-2, -1)) / 3**0.5
    return torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1) @ v


@pytest.mark.parametrize(("core_name", "need_weights"), FLOAT64_CASES)
def test_float64_keeps_double_precision(core_name: str, need_weights: bool) -> None:
    q, k, v = (torch.randn(2, 5, 3, dtype=torch.float64) for _ in range(3))
    padding = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 1, 1]], dtype=torch.bool)
    out = FLOAT64_CORES[core_name]()(q, k, v, key_keep=padding, need_weights=need_weights)
    assert out.context.dtype == torch.float64
    torch.testing.assert_close(
        out.context, float64_reference(core_name, q, k, v, padding), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize(("core_name", "need_weights"), FLOAT64_CASES)
def test_float64_gradcheck(core_name: str, need_weights: bool) -> None:
    core = FLOAT64_CORES[core_name]()
    padding = torch.tensor([[1, 1, 1], [0, 1, 1]], dtype=torch.bool)
    leaves = tuple(torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))

    def context(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return core(q, k, v, key_keep=padding, causal=True, need_weights=need_weights).context

    assert torch.autograd.gradcheck(context, leaves, raise_exception=False)
