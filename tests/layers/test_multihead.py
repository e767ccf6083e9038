"""``MultiHeadAttention`` against ``torch.nn.MultiheadAttention(batch_first=True)`` with copied weights, and
with each efficient core plugged in."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from attnkit.layers import (
    Attention,
    ChunkedAttention,
    LinearAttention,
    LocalAttention,
    MultiHeadAttention,
    causal_mask,
    elu_feature_map,
)

DIM, HEADS, BATCH = 8, 2, 3


def paired(
    dim: int = DIM,
    heads: int = HEADS,
    *,
    key_dim: int | None = None,
    value_dim: int | None = None,
    bias: bool = True,
) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    """A torch MHA with random weights and an attnkit MHA holding the same weights."""
    theirs = nn.MultiheadAttention(dim, heads, bias=bias, kdim=key_dim, vdim=value_dim, batch_first=True)
    with torch.no_grad():  # torch zero-initializes its biases; make them count
        for p in theirs.parameters():
            p.normal_(0.0, 0.3)
    ours = MultiHeadAttention(dim, heads, key_dim=key_dim, value_dim=value_dim, bias=bias)
    with torch.no_grad():
        if theirs._qkv_same_embed_dim:
            w_q, w_k, w_v = theirs.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = theirs.q_proj_weight, theirs.k_proj_weight, theirs.v_proj_weight
        ours.q_proj.weight.copy_(w_q)
        ours.k_proj.weight.copy_(w_k)
        ours.v_proj.weight.copy_(w_v)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        if bias:
            b_q, b_k, b_v = theirs.in_proj_bias.chunk(3)
            ours.q_proj.bias.copy_(b_q)
            ours.k_proj.bias.copy_(b_k)
            ours.v_proj.bias.copy_(b_v)
            ours.out_proj.bias.copy_(theirs.out_proj.bias)
    return ours.eval(), theirs.eval()


def torch_forward(
    theirs: nn.MultiheadAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    key_keep: Tensor | None = None,
    keep: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """torch's MHA given attnkit-style keep masks, inverted to its convention (True = ignore)."""
    out, weights = theirs(
        query,
        key,
        value,
        key_padding_mask=None if key_keep is None else ~key_keep,
        attn_mask=None if keep is None else ~keep,
        need_weights=True,
        average_attn_weights=False,
    )
    return out, weights


def padding_for(k_len: int) -> Tensor:
    """Right padding of different lengths, no row fully padded (torch returns NaN there)."""
    lengths = torch.tensor([k_len, k_len - 2, 1])
    return torch.arange(k_len).unsqueeze(0) < lengths.unsqueeze(1)  # (B, K)


CASES = {
    # name: (Q, K, key_dim, value_dim)
    "self": (5, 5, None, None),
    "cross_longer_keys": (4, 7, None, None),
    "cross_shorter_keys": (6, 3, None, None),
    "cross_kdim_vdim": (4, 6, 5, 3),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("masking", ["none", "padding", "keep", "causal", "padding+causal"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch_multihead_attention(case: str, masking: str, bias: bool) -> None:
    q_len, k_len, key_dim, value_dim = CASES[case]
    ours, theirs = paired(key_dim=key_dim, value_dim=value_dim, bias=bias)
    query = torch.randn(BATCH, q_len, DIM)
    key = torch.randn(BATCH, k_len, key_dim or DIM)
    value = query if case == "self" else torch.randn(BATCH, k_len, value_dim or DIM)
    key = query if case == "self" else key
    padding = padding_for(k_len) if "padding" in masking else None
    pair_keep = None
    if masking == "keep":
        pair_keep = torch.rand(q_len, k_len) > 0.4
        pair_keep[:, 0] = True
    causal = "causal" in masking

    # Ours: masks in attnkit's convention, causal as a flag; self-attention needs only the query.
    args = (query,) if case == "self" else (query, key, value)
    kwargs = {"key_keep": padding, "keep": pair_keep, "causal": causal}
    with_weights = ours(*args, **kwargs, need_weights=True)
    fused = ours(*args, **kwargs, need_weights=False)
    torch_mask = causal_mask(q_len, k_len) if causal else pair_keep
    expected, expected_weights = torch_forward(theirs, query, key, value, key_keep=padding, keep=torch_mask)

    assert with_weights.context.shape == (BATCH, q_len, DIM)
    torch.testing.assert_close(with_weights.context, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused.context, expected, atol=1e-5, rtol=1e-4)
    assert fused.weights is None
    weights = with_weights.require_weights()
    assert weights.shape == (BATCH, HEADS, q_len, k_len)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)


def test_per_example_attn_mask_matches_torch() -> None:
    # Ours takes (B, Q, K) and shares it over heads; torch wants it repeated per head as (B * H, Q, K).
    ours, theirs = paired()
    query, key = torch.randn(BATCH, 4, DIM), torch.randn(BATCH, 6, DIM)
    pair_keep = torch.rand(BATCH, 4, 6) > 0.5
    pair_keep[..., 2] = True
    out = ours(query, key, keep=pair_keep, need_weights=True)
    expected, expected_weights = torch_forward(
        theirs, query, key, key, keep=pair_keep.repeat_interleave(HEADS, dim=0)
    )
    torch.testing.assert_close(out.context, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.require_weights(), expected_weights, atol=1e-6, rtol=1e-5)


def test_per_head_attn_mask() -> None:
    ours, theirs = paired()
    query = torch.randn(BATCH, 5, DIM)
    pair_keep = torch.rand(BATCH, HEADS, 5, 5) > 0.5
    pair_keep[..., 0] = True
    out = ours(query, keep=pair_keep, need_weights=True)
    expected, expected_weights = torch_forward(
        theirs, query, query, query, keep=pair_keep.reshape(BATCH * HEADS, 5, 5)
    )
    torch.testing.assert_close(out.context, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.require_weights(), expected_weights, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# torch-named masks have torch's meaning: no silent inversion (issue 11).


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("per_head", [False, True])
def test_torch_style_masks_give_torchs_result(per_head: bool, need_weights: bool) -> None:
    """The very same mask tensors, True = ignore, passed to both modules under the same names."""
    ours, theirs = paired()
    query, key, value = torch.randn(BATCH, 4, DIM), torch.randn(BATCH, 6, DIM), torch.randn(BATCH, 6, DIM)
    key_padding_mask = ~padding_for(6)  # torch style: True = padding
    attn_mask = torch.rand(BATCH * HEADS if per_head else 1, 4, 6) > 0.7  # True = not allowed
    attn_mask[..., 0] = False  # every query keeps a real key: torch gives NaN for a fully masked row
    attn_mask = attn_mask if per_head else attn_mask[0]
    got = ours(
        query, key, value, key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=need_weights
    )
    expected, expected_weights = theirs(
        query, key, value, key_padding_mask=key_padding_mask, attn_mask=attn_mask, average_attn_weights=False
    )
    torch.testing.assert_close(got.context, expected, atol=1e-5, rtol=1e-4)
    if need_weights:
        torch.testing.assert_close(got.require_weights(), expected_weights, atol=1e-6, rtol=1e-5)
        # The trap this replaces: a torch-style mask attended only to padding. Padding now gets no weight.
        on_padding = got.require_weights() * key_padding_mask[:, None, None, :]  # (B, H, Q, K)
        assert (on_padding == 0).all()
    # attnkit's keep-masks are the complements.
    keep = (~attn_mask).view(BATCH, HEADS, 4, 6) if per_head else ~attn_mask
    same = ours(query, key, value, key_keep=~key_padding_mask, keep=keep, need_weights=need_weights)
    torch.testing.assert_close(same.context, got.context, atol=1e-6, rtol=1e-6)


def test_encoder_style_padded_self_attention_matches_torch() -> None:
    """A padded batch of self-attention, called the way nn.TransformerEncoder calls torch's MHA."""
    ours, theirs = paired()
    x = torch.randn(BATCH, 5, DIM)
    pad = ~padding_for(5)
    expected, _ = theirs(x, x, x, key_padding_mask=pad)
    torch.testing.assert_close(ours(x, key_padding_mask=pad).context, expected, atol=1e-5, rtol=1e-4)


def test_both_conventions_at_once_is_an_error() -> None:
    ours, _ = paired()
    x = torch.randn(BATCH, 5, DIM)
    pad = ~padding_for(5)
    with pytest.raises(ValueError, match=r"pass key_keep \(True = attend\) or key_padding_mask .*not both"):
        ours(x, key_keep=~pad, key_padding_mask=pad)
    with pytest.raises(ValueError, match=r"pass keep \(True = attend\) or attn_mask .*not both"):
        ours(x, keep=torch.ones(5, 5, dtype=torch.bool), attn_mask=torch.zeros(5, 5, dtype=torch.bool))


def test_torch_style_mask_errors_say_what_to_do() -> None:
    ours, _ = paired()
    x = torch.randn(BATCH, 5, DIM)
    with pytest.raises(
        ValueError, match=r"key_padding_mask must be a bool .*True = padding.*key_keep=\(mask == 0\)"
    ):
        ours(x, key_padding_mask=torch.zeros(BATCH, 5))
    with pytest.raises(ValueError, match=r"attn_mask must be a bool .*True = ignore.*keep=\(mask == 0\)"):
        ours(x, attn_mask=torch.zeros(5, 5))
    with pytest.raises(
        ValueError, match=r"attn_mask must have shape \(queries, keys\) = \(5, 5\) or \(batch \* heads"
    ):
        ours(
            x, attn_mask=torch.zeros(BATCH, 5, 5, dtype=torch.bool)
        )  # (B, Q, K) is not one of torch's shapes


def test_value_defaults_to_key() -> None:
    ours, _ = paired()
    query, key = torch.randn(BATCH, 3, DIM), torch.randn(BATCH, 5, DIM)
    torch.testing.assert_close(ours(query, key).context, ours(query, key, key).context)


def test_constructor_and_input_errors() -> None:
    with pytest.raises(ValueError, match="must divide dim"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"\(batch, length, dim\)"):
        MultiHeadAttention(DIM, HEADS)(torch.randn(BATCH, HEADS, 4, DIM))


def test_gradients_match_torch() -> None:
    ours, theirs = paired()
    query, key = torch.randn(BATCH, 4, DIM), torch.randn(BATCH, 6, DIM)
    padding = padding_for(6)
    upstream = torch.randn(BATCH, 4, DIM)
    out = ours(query, key, key_keep=padding).context
    expected, _ = torch_forward(theirs, query, key, key, key_keep=padding)
    ours_grads = torch.autograd.grad((out * upstream).sum(), list(ours.parameters()))
    theirs_grads = torch.autograd.grad((expected * upstream).sum(), list(theirs.parameters()))
    named = dict(zip([n for n, _ in ours.named_parameters()], ours_grads, strict=True))
    torch_named = dict(zip([n for n, _ in theirs.named_parameters()], theirs_grads, strict=True))
    torch.testing.assert_close(
        torch.cat([named["q_proj.weight"], named["k_proj.weight"], named["v_proj.weight"]]),
        torch_named["in_proj_weight"],
        atol=1e-5,
        rtol=1e-4,
    )
    torch.testing.assert_close(named["out_proj.weight"], torch_named["out_proj.weight"], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------------------
# Efficient cores inside MultiHeadAttention: only the core changes, the projections are shared.


def with_core(base: MultiHeadAttention, core: nn.Module) -> MultiHeadAttention:
    other = MultiHeadAttention(base.dim, base.num_heads, core=core)  # type: ignore[arg-type]
    other.load_state_dict(base.state_dict())
    return other.eval()


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 5, 16])
@pytest.mark.parametrize("masking", ["none", "padding", "keep", "causal", "padding+causal"])
def test_chunked_core_equals_default_core(chunk_size: int, masking: str) -> None:
    base, _ = paired()
    chunked = with_core(base, ChunkedAttention(chunk_size))
    query, key = torch.randn(BATCH, 7, DIM), torch.randn(BATCH, 6, DIM)
    pair_keep = torch.rand(7, 6) > 0.4 if masking == "keep" else None
    kwargs = {
        "key_keep": padding_for(6) if "padding" in masking else None,
        "keep": pair_keep,
        "causal": "causal" in masking,
    }
    for need_weights in (False, True):
        expected = base(query, key, **kwargs, need_weights=need_weights)
        got = chunked(query, key, **kwargs, need_weights=need_weights)
        torch.testing.assert_close(got.context, expected.context, atol=1e-6, rtol=1e-6)
        if need_weights:
            torch.testing.assert_close(got.require_weights(), expected.require_weights(), atol=1e-7, rtol=0)


def band(length: int, window: int, causal: bool) -> Tensor:
    i = torch.arange(length).unsqueeze(1)
    j = torch.arange(length).unsqueeze(0)
    keep = (i - j).abs() <= window
    return keep & (j <= i) if causal else keep


@pytest.mark.parametrize("window", [0, 1, 3, 9])
@pytest.mark.parametrize("masking", ["none", "padding", "causal", "padding+causal"])
def test_local_core_equals_banded_default_core(window: int, masking: str) -> None:
    base, theirs = paired()
    local = with_core(base, LocalAttention(window))
    length = 7
    query = torch.randn(BATCH, length, DIM)
    padding = padding_for(length) if "padding" in masking else None
    causal = "causal" in masking
    mask = band(length, window, causal)
    expected = base(query, key_keep=padding, keep=mask, need_weights=True)
    got = local(query, key_keep=padding, causal=causal, need_weights=True)
    torch.testing.assert_close(got.context, expected.context, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.require_weights(), expected.require_weights(), atol=1e-6, rtol=1e-5)
    # ...and both agree with torch's MHA given the same band, on the rows where torch is defined (it gives NaN
    # for a query whose whole window is padding; ours gives zero weights there).
    torch_out, torch_weights = torch_forward(theirs, query, query, query, key_keep=padding, keep=mask)
    defined = torch_out.isfinite().all(dim=-1)  # (B, T)
    torch.testing.assert_close(got.context[defined], torch_out[defined], atol=1e-5, rtol=1e-4)
    weights = got.require_weights().transpose(1, 2)  # (B, T, H, T)
    torch.testing.assert_close(weights[defined], torch_weights.transpose(1, 2)[defined], atol=1e-6, rtol=1e-5)
    assert (weights[~defined] == 0).all()


@pytest.mark.parametrize("causal", [False, True])
def test_linear_core_uses_kernel_attention_on_projected_heads(causal: bool) -> None:
    base, _ = paired()
    linear = with_core(base, LinearAttention(chunk_size=3))
    query = torch.randn(BATCH, 7, DIM)
    padding = padding_for(7)
    out = linear(query, key_keep=padding, causal=causal, need_weights=True)

    # Reference: project, split heads, phi(q) phi(k)^T normalized over kept keys, merge, out_proj.
    def heads(x: Tensor) -> Tensor:
        return x.view(BATCH, 7, HEADS, DIM // HEADS).transpose(1, 2)  # (B, H, T, Dh)

    q = elu_feature_map(heads(base.q_proj(query)))
    k = elu_feature_map(heads(base.k_proj(query)))
    v = heads(base.v_proj(query))
    keep = padding.view(BATCH, 1, 1, 7) & (
        torch.ones(7, 7).tril().bool() if causal else torch.ones(7, 7).bool()
    )
    sim = (q @ k.transpose(-2, -1)) * keep  # (B, H, T, T)
    weights = sim / sim.sum(dim=-1, keepdim=True)
    merged = (weights @ v).transpose(1, 2).reshape(BATCH, 7, DIM)
    torch.testing.assert_close(out.require_weights(), weights, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.context, base.out_proj(merged), atol=1e-5, rtol=1e-4)


def test_default_core_is_scaled_dot_attention_over_head_dim() -> None:
    mha = MultiHeadAttention(12, 3)
    assert isinstance(mha.core, Attention)
    assert mha.core.scorer.sdpa_scale == pytest.approx(0.5)  # 1 / sqrt(12 / 3)
