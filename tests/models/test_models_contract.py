"""The output contract, checked on every registered model with every pooling scorer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attnkit.models import MODEL_REGISTRY, TextClassifier, available_models

ModelFactory = Callable[..., TextClassifier]
BatchFactory = Callable[..., tuple[Tensor, Tensor]]

MODELS = available_models("text")
# The registered models plus variants with their own code paths (tests/conftest.py: TINY_VARIANTS).
VARIANTS = ["nb-attn+chars"]
CHECKED = [*MODELS, *VARIANTS]
SCORERS = ["dot", "scaled_dot", "general", "additive", "multihead"]
SCORER_FIELDS = {s: {"pooling_scorer": s, "pooling_heads": 2 if s == "multihead" else 1} for s in SCORERS}
LENGTHS = [17, 9, 1, 23]


def test_every_registered_model_has_a_tiny_config(
    tiny_configs: dict[str, Any], tiny_variants: dict[str, Any]
) -> None:
    assert set(tiny_configs) == set(MODEL_REGISTRY) == set(MODELS)
    assert sorted(tiny_variants) == VARIANTS
    assert MODELS == ["bag-attn", "bilstm-attn", "cnn-attn", "han", "nb-attn", "transformer"]


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("name", CHECKED)
def test_forward_backward(name: str, scorer: str, tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = tiny_model(name, **SCORER_FIELDS[scorer])
    model.train()
    ids, mask = make_batch(LENGTHS, 24)
    out = model(ids, mask)
    assert out.logits.shape == (4, model.config.num_classes)
    assert torch.isfinite(out.logits).all()
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 1])).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), pname
    emb_grad = model.embedding.weight.grad
    assert emb_grad is not None
    assert emb_grad[ids[mask]].abs().sum(-1).min() > 0  # every real token's embedding gets a gradient
    assert torch.all(emb_grad[model.config.pad_id] == 0)  # the pad row never learns


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("name", CHECKED)
def test_attention_contract_and_padding_invariance(
    name: str, scorer: str, tiny_model: ModelFactory, make_batch: BatchFactory, repad: BatchFactory
) -> None:
    model = tiny_model(name, **SCORER_FIELDS[scorer]).eval()
    ids, mask = make_batch([*LENGTHS, 0], 24)  # the last row has no real token
    with torch.no_grad():
        out = model(ids, mask)
        wide = model(*repad(ids, mask, 37))
    attn = out.token_attention
    assert attn.shape == ids.shape
    assert torch.all(attn >= 0)
    assert torch.all(attn[~mask] == 0)
    torch.testing.assert_close(attn.sum(1)[:-1], torch.ones(4), atol=1e-5, rtol=0)
    assert torch.all(attn[-1] == 0) and torch.isfinite(out.logits).all()
    weights = out.pooling_weights
    if name == "han":  # HAN's pooling_weights is its (B, 1, T) token attention
        assert weights.shape == (5, 1, 24)
    else:
        assert weights.shape == ((5, 2, 1, 24) if scorer == "multihead" else (5, 1, 24))
    assert torch.all(weights.movedim(-1, 1)[~mask] == 0)
    # Padding the same texts to a longer width changes nothing.
    torch.testing.assert_close(wide.logits, out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(wide.token_attention[:, :24], attn, atol=1e-6, rtol=0)
    assert torch.all(wide.token_attention[:, 24:] == 0)


@pytest.mark.parametrize("name", CHECKED)
def test_padding_gets_exactly_zero_gradient(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model(name).eval()
    ids, mask = make_batch(LENGTHS, 24)
    emb = model.embed(ids).detach().requires_grad_(True)
    garbage = emb.detach().masked_fill(~mask.unsqueeze(-1), 3.0)
    out = model.forward_from_embeddings(emb, mask, input_ids=ids)
    # Whatever sits at the padding positions has no effect on the logits and receives no gradient.
    other = model.forward_from_embeddings(garbage, mask, input_ids=ids)
    torch.testing.assert_close(other.logits, out.logits, atol=1e-5, rtol=0)
    (grad,) = torch.autograd.grad(out.logits[:, 1].sum(), emb)
    assert torch.all(grad[~mask] == 0)
    assert grad[mask].abs().sum(-1).min() > 0


@pytest.mark.parametrize("name", CHECKED)
def test_forward_equals_forward_from_embeddings(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model(name).eval()
    ids, mask = make_batch(LENGTHS, 24)
    with torch.no_grad():
        direct = model(ids, mask)
        via = model.forward_from_embeddings(model.embed(ids), mask, input_ids=ids)
    assert torch.equal(direct.logits, via.logits)
    assert torch.equal(direct.token_attention, via.token_attention)


@pytest.mark.parametrize("name", CHECKED)
def test_batch_independence(name: str, tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = tiny_model(name).eval()
    ids, mask = make_batch(LENGTHS, 24)
    with torch.no_grad():
        together = model(ids, mask)
        for row, length in enumerate(LENGTHS):
            alone = model(ids[row : row + 1, :length], mask[row : row + 1, :length])
            torch.testing.assert_close(alone.logits[0], together.logits[row], atol=1e-5, rtol=0)
            torch.testing.assert_close(
                alone.token_attention[0], together.token_attention[row, :length], atol=1e-6, rtol=0
            )


@pytest.mark.parametrize("name", CHECKED)
def test_determinism_with_a_seed(name: str, tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    first, second, other = tiny_model(name, seed=3), tiny_model(name, seed=3), tiny_model(name, seed=4)
    for key, a in first.state_dict().items():
        assert torch.equal(a, second.state_dict()[key]), key
    assert any(not torch.equal(a, c) for a, c in zip(first.parameters(), other.parameters(), strict=True))
    ids, mask = make_batch(LENGTHS, 24)
    first.train()
    second.train()
    torch.manual_seed(11)
    a_out = first(ids, mask).logits
    torch.manual_seed(11)
    b_out = second(ids, mask).logits
    assert torch.equal(a_out, b_out)  # the dropout masks are drawn the same way too


@pytest.mark.parametrize("name", CHECKED)
def test_dropout_is_active_in_training_only(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model(name, dropout=0.5)
    ids, mask = make_batch(LENGTHS, 24)
    model.train()
    torch.manual_seed(0)
    a = model(ids, mask).logits
    torch.manual_seed(1)
    b = model(ids, mask).logits
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(ids, mask).logits, model(ids, mask).logits)


@pytest.mark.parametrize("name", CHECKED)
def test_pad_embedding_starts_at_zero(name: str, tiny_model: ModelFactory) -> None:
    model = tiny_model(name)
    assert torch.all(model.embedding.weight[model.config.pad_id] == 0)
    assert model.embedding.weight[1:].std() > 0


@pytest.mark.parametrize("name", CHECKED)
def test_input_mistakes_raise_clear_errors(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory, repad: BatchFactory
) -> None:
    model = tiny_model(name)
    ids, mask = make_batch(LENGTHS, 24)
    with pytest.raises(ValueError, match="right-padded"):
        model(ids, mask.flip(1))
    with pytest.raises(ValueError, match="bool"):
        model(ids, mask.long())
    with pytest.raises(ValueError, match="vocab_size"):
        model(ids + model.config.vocab_size, mask)
    with pytest.raises(ValueError, match="max_length"):
        model(*repad(ids, mask, model.config.max_length + 1))
    with pytest.raises(ValueError, match="shape"):
        model(ids, mask[:, :-1])
    with pytest.raises(ValueError, match="embeddings must have shape"):
        model.forward_from_embeddings(model.embed(ids)[..., :-1], mask, input_ids=ids)
