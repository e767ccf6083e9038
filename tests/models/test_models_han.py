"""HAN: the vectorized sentence split against hand-computed and naive splits, the model against a per-sentence
loop."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from attnkit.models import HANClassifier, TextClassifier, split_sentences
from attnkit.models.recurrent import BidirectionalRNN

ModelFactory = Callable[..., TextClassifier]
BatchFactory = Callable[..., tuple[Tensor, Tensor]]
DOT, BANG = 3, 4
END_IDS = (DOT, BANG)


def test_split_by_hand() -> None:
    ids = torch.tensor(
        [
            # "w w . | w ! ! | w w w w | w": runs of ends stay in one sentence, 4-token cap, 3 sentences kept
            [10, 11, DOT, 12, BANG, BANG, 13, 14, 15, 16, 17, 0, 0],
            [
                20,
                DOT,
                21,
                BANG,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],  # ends right before the padding: no empty sentence
            [0] * 13,  # empty document
        ]
    )
    mask = ids != 0
    split = split_sentences(ids, mask, sentence_end_ids=END_IDS, max_sentence_length=4, max_sentences=3)
    pad = [-1] * 9
    assert split.sentence_index.tolist() == [
        [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, -1, -1, -1],  # the 4th sentence ("17") is past max_sentences: dropped
        [0, 0, 1, 1, *pad],
        [-1] * 13,
    ]
    assert split.position.tolist() == [
        [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, -1, -1, -1],
        [0, 1, 0, 1, *pad],
        [-1] * 13,
    ]
    assert split.lengths.tolist() == [[3, 3, 4], [2, 2, 0], [0, 0, 0]]
    assert split.num_sentences.tolist() == [3, 2, 0]


def test_split_without_end_ids_and_leading_ends() -> None:
    ids = torch.tensor([[DOT, DOT, 7, 8, 9, 10, 11, 12, 13]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    chunks = split_sentences(ids, mask, sentence_end_ids=(), max_sentence_length=4, max_sentences=9)
    assert chunks.sentence_index.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 2]]
    split = split_sentences(ids, mask, sentence_end_ids=END_IDS, max_sentence_length=4, max_sentences=9)
    assert split.sentence_index.tolist() == [[0, 0, 1, 1, 1, 1, 2, 2, 2]]  # ". ." is a sentence of its own
    assert split.position.tolist() == [[0, 1, 0, 1, 2, 3, 0, 1, 2]]


def naive_split(ids: list[int], ends: tuple[int, ...], cap: int, most: int) -> list[list[int]]:
    """Token positions of each sentence, by a plain loop."""
    sentences: list[list[int]] = []
    current: list[int] = []
    for i, tok in enumerate(ids):
        current.append(i)
        run_ends = tok in ends and not (i + 1 < len(ids) and ids[i + 1] in ends)
        if run_ends or len(current) == cap:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences[:most]


@pytest.mark.parametrize("seed", range(5))
def test_split_matches_a_loop(seed: int, make_batch: BatchFactory) -> None:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 40, (6,), generator=gen).tolist()
    ids, mask = make_batch(lengths, 40, seed=seed)
    split = split_sentences(ids, mask, sentence_end_ids=END_IDS, max_sentence_length=5, max_sentences=6)
    for row, n in enumerate(lengths):
        expected = naive_split(ids[row, :n].tolist(), END_IDS, 5, 6)
        index = [-1] * 40
        position = [-1] * 40
        for s, sentence in enumerate(expected):
            for p, t in enumerate(sentence):
                index[t], position[t] = s, p
        assert split.sentence_index[row].tolist() == index
        assert split.position[row].tolist() == position
        assert split.num_sentences[row] == len(expected)
        assert split.lengths[row, : len(expected)].tolist() == [len(s) for s in expected]


def naive_birnn(rnn: BidirectionalRNN, sequence: Tensor) -> Tensor:
    """``(l, I)`` -> ``(1, l, 2H)``: each direction run over exactly the real steps."""
    ahead, _ = rnn.forward_rnn(sequence.unsqueeze(0))
    behind, _ = rnn.backward_rnn(sequence.flip(0).unsqueeze(0))
    return torch.cat([ahead, behind.flip(1)], dim=-1)


@pytest.mark.parametrize("scorer", ["additive", "multihead"])
def test_model_matches_a_per_sentence_loop(
    scorer: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    heads = 2 if scorer == "multihead" else 1
    model = tiny_model("han", pooling_scorer=scorer, pooling_heads=heads, pooling_queries=2).eval()
    assert isinstance(model, HANClassifier)
    cfg = model.config
    ids, mask = make_batch([30, 7, 19, 1], 30, seed=4)
    with torch.no_grad():
        out = model(ids, mask)
        emb = model.embed(ids)
        for row in range(ids.shape[0]):
            n = int(mask[row].sum())
            sentences = naive_split(ids[row, :n].tolist(), cfg.sentence_end_ids, cfg.max_sentence_length, 8)
            vectors, word_weights = [], []
            for positions in sentences:
                states = naive_birnn(model.word_rnn, emb[row, positions])  # (1, l, 2 Hw)
                pooled = model.word_pooling(states)
                vectors.append(pooled.pooled)
                word_weights.append(pooled.token_weights()[0])
            doc_states = naive_birnn(model.sentence_rnn, torch.cat(vectors))  # (1, S, 2 Hs)
            doc = model.pooling(doc_states)
            torch.testing.assert_close(out.logits[row], model.head(doc.pooled)[0], atol=1e-5, rtol=0)
            sentence_weights = doc.token_weights()[0]
            expected = torch.zeros(ids.shape[1])
            for s, positions in enumerate(sentences):
                expected[positions] = word_weights[s] * sentence_weights[s]
                torch.testing.assert_close(
                    out.extras["word_attention"][row, s, : len(positions)], word_weights[s]
                )
            torch.testing.assert_close(out.token_attention[row], expected, atol=1e-6, rtol=0)
            torch.testing.assert_close(
                out.extras["sentence_attention"][row, : len(sentences)], sentence_weights, atol=1e-6, rtol=0
            )
    raw_word = out.extras["word_pooling_weights"]
    assert raw_word.shape[:2] == out.extras["word_attention"].shape[:2]
    assert raw_word.shape[2:-1] == ((heads, 2) if heads > 1 else (2,))
    assert out.extras["sentence_pooling_weights"].shape[1:-1] == raw_word.shape[2:-1]


def test_forward_from_embeddings_needs_ids(tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = tiny_model("han")
    ids, mask = make_batch([5, 3], 6)
    with pytest.raises(ValueError, match="pass input_ids"):
        model.forward_from_embeddings(model.embed(ids), mask)


def test_dropped_sentences_get_no_attention(tiny_model: ModelFactory) -> None:
    model = tiny_model("han", max_sentences=2).eval()
    ids = torch.tensor([[7, DOT, 8, 9, DOT, 10, 11, DOT, 12]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        out = model(ids, mask)
    assert out.extras["sentence_index"].tolist() == [[0, 0, 1, 1, 1, -1, -1, -1, -1]]
    assert torch.all(out.token_attention[0, 5:] == 0) and torch.all(out.token_attention[0, :5] > 0)
    torch.testing.assert_close(out.token_attention.sum(), torch.tensor(1.0))
