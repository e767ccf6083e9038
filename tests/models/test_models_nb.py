"""nb-attn: the n-gram hash by hand, first occurrences, NB ratios against a naive count, and the pooling."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.models import NBAttnClassifier, NBAttnConfig, nb_log_count_ratios, ngram_rows
from attnkit.models.nb import NGRAM_HASH_PRIME, first_occurrences


def _hash(*ids: int, buckets: int) -> int:
    h = len(ids)
    for i in ids:
        h = (h * NGRAM_HASH_PRIME + i) % (buckets - 1)
    return 1 + h


def tiny(**overrides: object) -> NBAttnClassifier:
    torch.manual_seed(0)
    fields: dict[str, object] = {
        "vocab_size": 20,
        "num_classes": 2,
        "embed_dim": 4,
        "ngram_buckets": 31,
        "max_length": 16,
        "key_std": 0.5,
        "gate_init": 0.7,
        **overrides,
    }
    return NBAttnClassifier(NBAttnConfig(**fields))  # type: ignore[arg-type]


def test_ngram_rows_by_hand() -> None:
    ids = torch.tensor([[5, 7, 9, 0], [8, 0, 0, 0]])
    rows = ngram_rows(ids, pad_id=0, vocab_size=20, num_buckets=31, max_order=3)
    assert rows.shape == (2, 4, 3)
    assert rows[:, :, 0].tolist() == ids.tolist()  # unigrams are the word ids
    b57, b79, b579 = _hash(5, 7, buckets=31), _hash(7, 9, buckets=31), _hash(5, 7, 9, buckets=31)
    assert rows[0, :, 1].tolist() == [0, 20 + b57, 20 + b79, 0]
    assert rows[0, :, 2].tolist() == [0, 0, 20 + b579, 0]
    assert torch.all(rows[1, :, 1:] == 0)  # a one-word text has no bigram or trigram
    assert int(rows.max()) < 20 + 31


def test_first_occurrences() -> None:
    rows = torch.tensor([[[3, 0], [4, 9], [3, 9], [0, 0]]])  # (1, 4, 2); 0 is padding
    first = first_occurrences(rows, pad_id=0)
    assert first.tolist() == [[[True, False], [True, True], [False, False], [False, False]]]


def test_nb_ratios_against_naive_counts() -> None:
    model = tiny(max_order=2)
    texts = [[5, 7, 5, 7], [5, 6], [9, 9, 7], [6]]
    labels = [0, 0, 1, 1]
    counts = model.document_counts(texts, labels)
    naive = torch.zeros_like(counts)
    for text, label in zip(texts, labels, strict=True):
        rows = ngram_rows(torch.tensor([text]), pad_id=0, vocab_size=20, num_buckets=31, max_order=2)
        for row in set(rows.flatten().tolist()) - {0}:
            naive[row, label] += 1
    assert torch.equal(counts, naive)
    assert counts[5].tolist() == [2.0, 0.0] and counts[7].tolist() == [1.0, 1.0]

    ratios = nb_log_count_ratios(counts, alpha=1.0)
    seen = counts.sum(1) > 0
    p = (counts[:, 1] + 1)[seen]
    q = (counts[:, 0] + 1)[seen]
    row5 = int(seen[:5].sum())  # index of row 5 among the seen rows
    expected = math.log(p[row5] / p.sum()) - math.log(q[row5] / q.sum())
    assert ratios[5, 1].item() == pytest.approx(expected, rel=1e-5)
    assert ratios[5, 0].item() == pytest.approx(-expected, rel=1e-5)  # two classes: one-vs-rest is symmetric
    assert torch.all(ratios[~seen] == 0)


def test_init_from_data_sets_evidence_and_nothing_on_padding() -> None:
    model = tiny()
    model.init_from_data([[5, 7, 9], [6, 6, 8]], [0, 1])
    assert torch.all(model.nb_ratios[0] == 0)
    assert model.nb_ratios[5, 0] > 0 > model.nb_ratios[5, 1]
    ids = torch.tensor([[5, 7, 9, 0]])
    emb = model.embed(ids)  # (1, 4, E + C)
    assert emb.shape == (1, 4, 4 + 2)
    assert torch.all(emb[0, 3] == 0)  # padding: no key, no evidence
    rows = model.rows(ids)[0]  # (T, K)
    expected = (model.nb_ratios[rows] * model.gate.weight[rows]).sum(1)  # (T, C): every row occurs once here
    torch.testing.assert_close(emb[0, :, 4:], expected)


def test_binary_counts_repeated_ngrams_once() -> None:
    model = tiny(max_order=1)
    model.init_from_data([[5, 6], [7, 6]], [0, 1])
    emb = model.embed(torch.tensor([[5, 5, 5]]))
    assert torch.all(emb[0, 1:, 4:] == 0) and torch.any(emb[0, 0, 4:] != 0)
    counted = tiny(max_order=1, binary=False)
    counted.load_state_dict(model.state_dict())
    emb = counted.embed(torch.tensor([[5, 5, 5]]))
    torch.testing.assert_close(emb[0, 1, 4:], emb[0, 0, 4:])


def test_pooled_evidence_is_attention_weighted_and_length_scaled() -> None:
    model = tiny(length_power=0.5).eval()
    model.init_from_data([[5, 7, 9, 11], [6, 8, 10, 12]], [0, 1])
    ids = torch.tensor([[5, 7, 9, 11, 0, 0]])
    mask = ids != 0
    out = model(ids, mask)
    states = model.embed(ids)  # (1, T, E + C)
    weights = out.token_attention  # (1, T)
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.all(weights[0, 4:] == 0)
    keys, evidence = states[..., :4], states[..., 4:]
    pooled = torch.cat([weights @ keys[0], (weights @ evidence[0]) * 4**0.5], dim=-1)  # (1, E + C)
    torch.testing.assert_close(out.logits, model.head(pooled))


def test_head_starts_as_scaled_identity_on_the_evidence() -> None:
    model = tiny(nb_scale=2.0, pooling_queries=2)
    weight = model.head.weight  # (C, R*E + R*C)
    assert torch.all(model.head.bias == 0)
    torch.testing.assert_close(weight[:, 8:10], torch.eye(2))
    torch.testing.assert_close(weight[:, 10:12], torch.eye(2))


def test_forward_from_embeddings_checks_the_state_width() -> None:
    model = tiny()
    with pytest.raises(ValueError, match="embeddings must have shape"):
        model.forward_from_embeddings(torch.zeros(1, 3, 4), torch.ones(1, 3, dtype=torch.bool))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="ngram_buckets"):
        NBAttnConfig(max_order=2, ngram_buckets=1)
    with pytest.raises(ValueError, match="nb_alpha"):
        NBAttnConfig(nb_alpha=0.0)
    with pytest.raises(ValueError, match="binary"):
        NBAttnConfig(binary="yes")  # type: ignore[arg-type]
    assert NBAttnConfig(max_order=1, ngram_buckets=0).num_rows == NBAttnConfig().vocab_size


def test_with_evidence_padding_changes_nothing_and_gradients_reach_the_evidence() -> None:
    model = tiny(gate_init=1.0).eval()
    model.init_from_data([[5, 7, 9, 11, 5], [6, 8, 10, 12], [5, 9, 13]], [0, 1, 0])
    ids = torch.tensor([[5, 7, 9, 11, 5, 0], [6, 8, 10, 0, 0, 0]])
    mask = ids != 0
    wide_ids = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    out, wide = model(ids, mask), model(wide_ids, wide_ids != 0)
    torch.testing.assert_close(out.logits, wide.logits)
    torch.testing.assert_close(out.token_attention, wide.token_attention[:, :6])
    # What explanation methods do: gradients of a logit w.r.t. (scaled) embeddings, evidence columns included.
    emb = (0.5 * model.embed(ids)).detach().requires_grad_(True)
    model.forward_from_embeddings(emb, mask, input_ids=ids).logits[:, 1].sum().backward()
    assert emb.grad is not None
    assert torch.all(emb.grad[mask][:, 4:].abs().sum(-1) > 0)  # every real token's evidence matters
    assert torch.all(emb.grad[~mask] == 0)
