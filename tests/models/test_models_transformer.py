"""The transformer classifier: layer attentions, the fused path, and a block checked against torch's own."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnkit.models import EncoderBlock, TextClassifier, TransformerClassifier

ModelFactory = Callable[..., TextClassifier]
BatchFactory = Callable[..., tuple[Tensor, Tensor]]


def test_layer_attentions(tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = tiny_model("transformer", num_layers=3).eval()
    ids, mask = make_batch([11, 4, 0], 12)
    with torch.no_grad():
        out = model(ids, mask, need_layer_attentions=True)
        fast = model(ids, mask)
    assert fast.layer_attentions is None
    assert out.layer_attentions is not None and len(out.layer_attentions) == 3
    for weights in out.layer_attentions:
        assert weights.shape == (3, 2, 12, 12)  # (B, H, T, T)
        rows = weights.sum(-1)  # (B, H, T)
        torch.testing.assert_close(rows[:2], torch.ones(2, 2, 12), atol=1e-5, rtol=0)
        assert torch.all(rows[2] == 0)  # no real key: all zeros, not NaN
        assert torch.all(weights.transpose(-1, 1)[~mask] == 0)  # padded keys get no weight
    # The fused SDPA path and the explicit-weights path compute the same thing.
    torch.testing.assert_close(fast.logits, out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.token_attention, out.token_attention, atol=1e-6, rtol=0)


def test_fused_and_weights_paths_have_the_same_gradients(
    tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model("transformer", dropout=0.0)
    ids, mask = make_batch([11, 6], 12)
    grads = []
    for need in (False, True):
        emb = model.embed(ids).detach().requires_grad_(True)
        out = model.forward_from_embeddings(emb, mask, need_layer_attentions=need)
        (grad,) = torch.autograd.grad(out.logits[:, 0].sum(), emb)
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_block_matches_torch_pre_ln_encoder_layer() -> None:
    torch.manual_seed(0)
    dim, heads, ff = 16, 4, 24
    block = EncoderBlock(dim, heads, ff).eval()
    for param in block.parameters():  # move every parameter off its init so norms and biases matter
        nn.init.normal_(param, std=0.3)
    ref = nn.TransformerEncoderLayer(
        dim, heads, ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    ).eval()
    attn = block.attn
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(
            torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        )
        ref.self_attn.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        ref.self_attn.out_proj.weight.copy_(attn.out_proj.weight)
        ref.self_attn.out_proj.bias.copy_(attn.out_proj.bias)
        for ours, theirs in [(block.norm1, ref.norm1), (block.norm2, ref.norm2)]:
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
        ref.linear1.load_state_dict(block.mlp[0].state_dict())
        ref.linear2.load_state_dict(block.mlp[2].state_dict())
    x = torch.randn(3, 7, dim)
    mask = torch.arange(7).unsqueeze(0) < torch.tensor([[7], [5], [2]])
    ours_out, _ = block(x, mask)
    theirs_out = ref(x, src_key_padding_mask=~mask)
    torch.testing.assert_close(ours_out[mask], theirs_out[mask], atol=1e-5, rtol=1e-5)


def test_init_scales() -> None:
    torch.manual_seed(0)
    model = TransformerClassifier()
    assert abs(model.embedding.weight[1:].std().item() - 0.02) < 1e-3
    block = model.blocks[0]
    assert isinstance(block, EncoderBlock)
    assert abs(block.attn.out_proj.weight.std().item() - 0.01) < 1e-3  # 0.02 / sqrt(2 * 2 layers)
    assert torch.all(block.attn.q_proj.bias == 0)


def test_bigram_embeddings_are_added_per_token_and_padding_never_makes_one(
    tiny_model: ModelFactory, make_batch: BatchFactory, repad: Callable[..., tuple[Tensor, Tensor]]
) -> None:
    from attnkit.models.bag import bigram_buckets

    model = tiny_model("transformer", bigram_buckets=64).eval()
    assert isinstance(model, TransformerClassifier) and model.bigram_embedding is not None
    ids, mask = make_batch([9, 5], 9)
    pad = model.config.pad_id
    expected = model.embedding(ids) + model.bigram_embedding(bigram_buckets(ids, pad_id=pad, num_buckets=64))
    torch.testing.assert_close(model.embed(ids), expected)
    assert not torch.equal(model.embed(ids), model.embedding(ids))
    with torch.no_grad():
        out = model(ids, mask)
        wider = model(*repad(ids, mask, 14))  # more padding: the same logits and attention
    torch.testing.assert_close(wider.logits, out.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(wider.token_attention[:, :9], out.token_attention, atol=1e-6, rtol=1e-4)
    assert tiny_model("transformer").bigram_embedding is None  # off by default
