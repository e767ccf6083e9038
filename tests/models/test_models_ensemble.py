"""EnsembleClassifier against its members run one by one: logits, attention, contributions, explanations."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from attnkit.explain.methods import compute_scores, grad_input_scores, ig_scores
from attnkit.models import TextClassifier
from attnkit.models.ensemble import EnsembleClassifier

ModelFactory = Callable[..., TextClassifier]
BatchFactory = Callable[..., tuple[Tensor, Tensor]]
LENGTHS = [17, 9, 1, 23]
# Different architectures (and token input widths): the ensemble must not assume its members look alike.
MEMBERS = ["bag-attn", "nb-attn+chars", "bilstm-attn"]


@pytest.fixture
def members(tiny_model: ModelFactory) -> list[TextClassifier]:
    return [tiny_model(name, seed=i).eval() for i, name in enumerate(MEMBERS)]


def test_logits_and_attention_are_the_members_means(
    members: list[TextClassifier], make_batch: BatchFactory
) -> None:
    ensemble = EnsembleClassifier(members).eval()
    ids, mask = make_batch(LENGTHS, 24)
    with torch.no_grad():
        out = ensemble(ids, mask)
        alone = [member(ids, mask) for member in members]
    expected_logits = sum(o.logits for o in alone) / len(alone)
    torch.testing.assert_close(out.logits, expected_logits, rtol=1e-6, atol=1e-6)
    expected_attention = sum(o.token_attention for o in alone) / len(alone)
    torch.testing.assert_close(out.token_attention, expected_attention, rtol=1e-6, atol=1e-6)
    assert out.pooling_weights.shape == (4, 3, 24)
    for index, o in enumerate(alone):
        torch.testing.assert_close(out.pooling_weights[:, index], o.token_attention)
        torch.testing.assert_close(out.extras["member_logits"][:, index], o.logits)
    # Still a distribution over the real tokens, 0 on padding.
    torch.testing.assert_close(out.token_attention.sum(dim=1), torch.ones(4))
    assert torch.all(out.token_attention[~mask] == 0)


def test_embed_concatenates_member_inputs_and_forward_from_embeddings_matches(
    members: list[TextClassifier], make_batch: BatchFactory
) -> None:
    ensemble = EnsembleClassifier(members).eval()
    ids, mask = make_batch(LENGTHS, 24)
    with torch.no_grad():
        embeddings = ensemble.embed(ids)
        widths = [m.config.token_input_dim() for m in members]
        assert embeddings.shape == (4, 24, sum(widths))
        start = 0
        for member, width in zip(members, widths, strict=True):
            torch.testing.assert_close(embeddings[..., start : start + width], member.embed(ids))
            start += width
        via_embeddings = ensemble.forward_from_embeddings(embeddings, mask, input_ids=ids).logits
        torch.testing.assert_close(via_embeddings, ensemble(ids, mask).logits)
    with pytest.raises(ValueError, match="embeddings must have shape"):
        ensemble.forward_from_embeddings(embeddings[..., :-1], mask, input_ids=ids)


def test_token_contributions_are_exact_and_the_members_mean(
    members: list[TextClassifier], make_batch: BatchFactory
) -> None:
    decomposable = [m for m in members if m.has_token_contributions()]
    assert len(decomposable) >= 2
    ensemble = EnsembleClassifier(decomposable).eval()
    assert ensemble.has_token_contributions()
    ids, mask = make_batch(LENGTHS, 24)
    with torch.no_grad():
        parts = ensemble.token_contributions(ids, mask)  # (B, T, C)
        expected = sum(m.token_contributions(ids, mask) for m in decomposable) / len(decomposable)
        torch.testing.assert_close(parts, expected, rtol=1e-6, atol=1e-6)
        # logits = sum over tokens + a constant per class that depends on the biases only: the same for every row.
        constant = ensemble(ids, mask).logits - parts.sum(dim=1)  # (B, C)
        torch.testing.assert_close(constant, constant[:1].expand_as(constant), rtol=1e-5, atol=1e-5)


def test_explanations_are_the_members_means(members: list[TextClassifier], make_batch: BatchFactory) -> None:
    """Gradient x input and Integrated Gradients are linear in the logits, so the ensemble's are the mean of its
    members' (IG exactly: the members share the interpolation grid). The gradient norm and leave-one-out are not
    linear: checked against a by-hand computation instead."""
    ensemble = EnsembleClassifier(members).eval()
    ids, mask = make_batch(LENGTHS, 24)
    targets = torch.tensor([0, 1, 2, 1])
    got = grad_input_scores(ensemble, ids, mask, targets)
    expected = sum(grad_input_scores(m, ids, mask, targets) for m in members) / len(members)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    got_ig = ig_scores(ensemble, ids, mask, targets, steps=16)
    expected_ig = sum(ig_scores(m, ids, mask, targets, steps=16) for m in members) / len(members)
    assert isinstance(got_ig, Tensor) and isinstance(expected_ig, Tensor)
    torch.testing.assert_close(got_ig, expected_ig, rtol=1e-4, atol=1e-5)

    # The gradient norm is that of the members' gradients side by side, each divided by M (not their mean norm).
    norms = compute_scores("gradient", ensemble, ids, mask, targets, pad_id=0, unk_id=1)
    squared = torch.zeros(4, 24)
    for member in members:
        embeddings = member.embed(ids).detach().requires_grad_(True)
        logits = member.forward_from_embeddings(embeddings, mask, input_ids=ids).logits
        centered = logits - logits.mean(dim=-1, keepdim=True)
        (grad,) = torch.autograd.grad(centered.gather(1, targets[:, None]).sum(), embeddings)
        squared += (grad / len(members)).pow(2).sum(dim=-1)
    torch.testing.assert_close(norms, squared.sqrt() * mask, rtol=1e-4, atol=1e-6)

    # Leave-one-out moves probabilities (not linear in the logits): against a deletion done by hand for one token.
    loo = compute_scores("loo", ensemble, ids, mask, targets, pad_id=0, unk_id=1)
    assert loo.shape == (4, 24) and torch.all(loo[~mask] == 0)
    n = int(mask[0].sum())
    kept = torch.cat([ids[0, :5], ids[0, 6:n]]).unsqueeze(0)  # row 0 without its token 5
    with torch.no_grad():
        p_full = ensemble(ids[:1, :n], mask[:1, :n]).logits.softmax(-1)[0, 0]
        p_without = ensemble(kept, torch.ones_like(kept, dtype=torch.bool)).logits.softmax(-1)[0, 0]
    assert float(loo[0, 5]) == pytest.approx(float(p_full - p_without), abs=1e-5)


def test_no_layer_attentions_so_no_rollout(tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    """Two transformers' layers are two separate stacks: the ensemble offers no layer attentions (no rollout)."""
    ensemble = EnsembleClassifier(
        [tiny_model("transformer", seed=0), tiny_model("transformer", seed=1)]
    ).eval()
    ids, mask = make_batch(LENGTHS, 24)
    with torch.no_grad():
        assert ensemble(ids, mask, need_layer_attentions=True).layer_attentions is None
        assert ensemble.classifiers[0](ids, mask, need_layer_attentions=True).layer_attentions


def test_incompatible_members_are_a_clear_error(tiny_model: ModelFactory) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        EnsembleClassifier([tiny_model("bag-attn"), tiny_model("bag-attn", num_classes=2)])
    with pytest.raises(ValueError, match="vocab_size"):
        EnsembleClassifier([tiny_model("bag-attn"), tiny_model("cnn-attn", vocab_size=77)])
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleClassifier([])


def test_state_dict_round_trip(
    members: list[TextClassifier], tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    ensemble = EnsembleClassifier(members).eval()
    fresh = EnsembleClassifier([tiny_model(name, seed=10 + i) for i, name in enumerate(MEMBERS)]).eval()
    ids, mask = make_batch(LENGTHS, 24)
    with torch.no_grad():
        assert not torch.allclose(fresh(ids, mask).logits, ensemble(ids, mask).logits)
        fresh.load_state_dict(ensemble.state_dict())
        torch.testing.assert_close(fresh(ids, mask).logits, ensemble(ids, mask).logits, rtol=0, atol=0)
    assert all(key.startswith("members.") for key in ensemble.state_dict())
