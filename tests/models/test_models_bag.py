"""bag-attn: the bigram hash by hand, and the embedding it builds."""

from __future__ import annotations

import torch

from attnkit.models import BagAttnClassifier, BagAttnConfig, bigram_buckets
from attnkit.models.bag import BIGRAM_HASH_PRIME


def test_bigram_buckets_by_hand() -> None:
    ids = torch.tensor([[5, 7, 9, 0, 0], [0, 0, 0, 0, 0], [8, 8, 0, 0, 0]])
    buckets = bigram_buckets(ids, pad_id=0, num_buckets=11)
    # 1 + (5 * 1_000_003 + 7) % 10 = 1 + 5_000_022 % 10 = 3;  1 + (7 * 1_000_003 + 9) % 10 = 1 + 0 = 1;
    # 1 + (8 * 1_000_003 + 8) % 10 = 1 + 8_000_032 % 10 = 3.  Position 0 and anything touching padding: 0.
    assert BIGRAM_HASH_PRIME == 1_000_003
    assert buckets.tolist() == [[0, 3, 1, 0, 0], [0, 0, 0, 0, 0], [0, 3, 0, 0, 0]]


def test_pad_id_other_than_zero() -> None:
    ids = torch.tensor([[4, 2, 1, 1]])  # pad_id = 1
    expected = 1 + (4 * BIGRAM_HASH_PRIME + 2) % 6
    assert bigram_buckets(ids, pad_id=1, num_buckets=7).tolist() == [[0, expected, 0, 0]]


def test_embedding_is_word_plus_bigram() -> None:
    torch.manual_seed(0)
    model = BagAttnClassifier(BagAttnConfig(vocab_size=20, embed_dim=4, bigram_buckets=11))
    assert model.bigram_embedding is not None
    words, bigrams = model.embedding.weight, model.bigram_embedding.weight
    assert torch.all(bigrams[0] == 0)
    emb = model.embed(torch.tensor([[5, 7, 9, 0, 0]]))[0]
    torch.testing.assert_close(emb[0], words[5])  # nothing precedes the first token
    torch.testing.assert_close(emb[1], words[7] + bigrams[3])
    torch.testing.assert_close(emb[2], words[9] + bigrams[1])
    assert torch.all(emb[3:] == 0)  # padding: zero word vector and no bigram


def test_no_bigrams() -> None:
    model = BagAttnClassifier(BagAttnConfig(vocab_size=20, embed_dim=4, bigram_buckets=0))
    ids = torch.tensor([[5, 7, 9, 0]])
    assert model.bigram_embedding is None
    assert torch.equal(model.embed(ids), model.embedding(ids))


def test_bigram_rows_of_padding_get_no_gradient() -> None:
    torch.manual_seed(0)
    model = BagAttnClassifier(BagAttnConfig(vocab_size=20, embed_dim=4, bigram_buckets=11))
    ids = torch.tensor([[5, 7, 9, 0, 0]])
    mask = ids != 0
    model(ids, mask).logits.sum().backward()
    assert model.bigram_embedding is not None and model.bigram_embedding.weight.grad is not None
    touched = model.bigram_embedding.weight.grad.abs().sum(-1).nonzero().flatten().tolist()
    assert touched == [1, 3]  # exactly the two real bigrams
