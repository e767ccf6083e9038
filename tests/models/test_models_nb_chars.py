"""nb-attn's character n-grams: the n-grams and their rows by hand, the per-word evidence against a naive
``(B, T, M, C)`` computation, document counts against a by-hand count, and the vocabulary plumbing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnkit.models import NBAttnClassifier, NBAttnConfig
from attnkit.models.nb import char_ngram_bucket, char_ngram_table, char_ngrams, gather_segments

WORDS = ["", "", "cat", "hat", "at", "dog", "cats", "hippopotamus"]  # ids 0..7; "" = [PAD], [UNK]
BUCKETS = 1009


def tiny(**overrides: object) -> NBAttnClassifier:
    torch.manual_seed(0)
    fields: dict[str, object] = {
        "vocab_size": len(WORDS),
        "num_classes": 3,
        "embed_dim": 4,
        "max_order": 2,
        "ngram_buckets": 31,
        "max_length": 16,
        "key_std": 0.5,
        "gate_init": 0.7,
        "char_buckets": BUCKETS,
        "char_min_n": 2,
        "char_max_n": 3,
        "char_max_word_length": 6,
        "char_gate_init": 0.4,
        **overrides,
    }
    model = NBAttnClassifier(NBAttnConfig(**fields))  # type: ignore[arg-type]
    model.set_vocabulary(WORDS)
    return model


def rows_of(word: str, model: NBAttnClassifier) -> list[int]:
    """By hand: the table rows of a word's character n-grams (2..3 with markers), in n-gram order."""
    cfg = model.config
    return [
        cfg.word_rows + char_ngram_bucket(g, cfg.char_buckets) for g in char_ngrams(word, min_n=2, max_n=3)
    ]


def test_char_ngrams_by_hand() -> None:
    assert char_ngrams("cat", min_n=2, max_n=3) == ["<c", "ca", "at", "t>", "<ca", "cat", "at>"]
    assert char_ngrams("a", min_n=2, max_n=5) == ["<a", "a>", "<a>"]  # n-grams longer than <a> do not exist
    assert char_ngrams("", min_n=2, max_n=5) == []
    # "banana" has "an" and "na" twice, and "ana" twice: each listed once, at its first position.
    assert char_ngrams("banana", min_n=2, max_n=3) == [
        "<b", "ba", "an", "na", "a>", "<ba", "ban", "ana", "nan", "na>",
    ]  # fmt: skip


def test_char_ngram_bucket_is_crc32() -> None:
    # 0xCBF43926 is the published CRC-32 check value of "123456789".
    assert char_ngram_bucket("123456789", 1000) == 1 + 0xCBF43926 % 999
    assert all(1 <= char_ngram_bucket(g, 7) < 7 for g in ["<c", "ca", "é>", "猫"])


def test_char_ngram_table_by_hand() -> None:
    rows, offsets = char_ngram_table(
        ["", "cat", "at", "hippopotamus"],
        min_n=2,
        max_n=3,
        num_buckets=BUCKETS,
        first_row=100,
        max_word_length=6,
    )
    cat = [100 + char_ngram_bucket(g, BUCKETS) for g in ["<c", "ca", "at", "t>", "<ca", "cat", "at>"]]
    at = [100 + char_ngram_bucket(g, BUCKETS) for g in ["<a", "at", "t>", "<at", "at>"]]
    assert offsets.tolist() == [0, 0, 7, 12, 12]  # "" and the 12-letter word (> 6) have none
    assert rows.tolist() == cat + at
    # With two buckets every n-gram lands in bucket 1: one row per word, not one per n-gram.
    rows, offsets = char_ngram_table(
        ["cat", "at"], min_n=2, max_n=3, num_buckets=2, first_row=10, max_word_length=6
    )
    assert rows.tolist() == [11, 11] and offsets.tolist() == [0, 1, 2]


def test_gather_segments_against_a_loop() -> None:
    values = torch.arange(100, 110)
    offsets = torch.tensor([0, 3, 3, 7, 10])
    index = torch.tensor([3, 0, 1, 2, 0])
    got, owner = gather_segments(values, offsets, index)
    expected = [
        (v, k) for k, i in enumerate(index.tolist()) for v in values[offsets[i] : offsets[i + 1]].tolist()
    ]
    assert got.tolist() == [v for v, _ in expected]
    assert owner.tolist() == [k for _, k in expected]


def test_set_vocabulary_builds_the_rows_of_each_word() -> None:
    model = tiny()
    for i, word in enumerate(WORDS):
        rows, owner = model.char_rows_of(torch.tensor([i]))
        expected = rows_of(word, model) if len(word) <= 6 else []
        assert rows.tolist() == expected, word
        assert owner.tolist() == [0] * len(expected)
    assert model.char_rows.min() >= model.config.word_rows
    assert model.char_rows.max() < model.config.num_rows
    # Not part of the saved weights: the tokenizer determines them.
    assert "char_rows" not in model.state_dict() and "char_offsets" not in model.state_dict()


def test_document_counts_by_hand() -> None:
    model = tiny()
    cat, hat, at, dog, cats = 2, 3, 4, 5, 6
    texts = [[cat, hat, cat], [at, dog], [dog], [cats, 1]]
    labels = [0, 0, 1, 2]
    counts = model.document_counts(texts, labels)  # (N, C)
    # By hand, with the bucket hash: "at>" is in cat, hat and at; "<d" only in dog; "ts>" only in cats.
    r_at = model.config.word_rows + char_ngram_bucket("at>", BUCKETS)
    r_d = model.config.word_rows + char_ngram_bucket("<d", BUCKETS)
    r_ts = model.config.word_rows + char_ngram_bucket("ts>", BUCKETS)
    assert len({r_at, r_d, r_ts}) == 3
    assert counts[r_at].tolist() == [
        2.0,
        0.0,
        0.0,
    ]  # text 0 has "at>" three times (cat, hat, cat): counted once
    assert counts[r_d].tolist() == [1.0, 1.0, 0.0]
    assert counts[r_ts].tolist() == [0.0, 0.0, 1.0]
    # Every character row against a naive count: the union of the rows of each text's words.
    naive = torch.zeros_like(counts)
    for text, label in zip(texts, labels, strict=True):
        present = {
            row for word in text for row in (rows_of(WORDS[word], model) if len(WORDS[word]) <= 6 else [])
        }
        for row in present:
            naive[row, label] += 1
    word_rows = model.config.word_rows
    torch.testing.assert_close(counts[word_rows:], naive[word_rows:])
    # The word n-gram rows are counted as without characters.
    plain = tiny(char_buckets=0).document_counts(texts, labels)
    torch.testing.assert_close(counts[:word_rows], plain)


def naive_evidence(model: NBAttnClassifier, ids: torch.Tensor) -> torch.Tensor:
    """``(B, T, C)`` evidence the slow way: ``(B, T, M, C)`` character rows per position, zero-padded, and the
    word n-grams; each row counted where its word (or n-gram) first occurs in the text."""
    cfg = model.config
    batch, length = ids.shape
    lists = [rows_of(WORDS[i], model) if len(WORDS[i]) <= 6 else [] for i in range(len(WORDS))]
    width = max(len(rows) for rows in lists)
    char_rows = torch.zeros(batch, length, width, dtype=torch.long)  # (B, T, M); row 0 (padding) is zero
    for b in range(batch):
        for t in range(length):
            rows = lists[int(ids[b, t])]
            char_rows[b, t, : len(rows)] = torch.tensor(rows, dtype=torch.long)
    char = (F.embedding(char_rows, model.nb_ratios) * model.gate(char_rows)).sum(dim=2)  # (B, T, C)
    grams = torch.tensor(
        [[max(1, len(lists[int(i)])) for i in row] for row in ids], dtype=torch.float
    )  # (B, T)
    char = char / grams.pow(cfg.char_norm_power).unsqueeze(-1)  # (B, T, C)
    out = torch.zeros(batch, length, cfg.num_classes)
    for b in range(batch):
        seen: set[int] = set()
        for t in range(length):
            for row in model.rows(ids[b : b + 1])[0, t].tolist():
                if row != cfg.pad_id and row not in seen:
                    seen.add(row)
                    out[b, t] += model.nb_ratios[row] * model.gate.weight[row]
            if int(ids[b, t]) != cfg.pad_id and int(ids[b, t]) not in ids[b, :t].tolist():
                out[b, t] += char[b, t]
    return out


@pytest.mark.parametrize("norm_power", [0.0, 0.5, 1.0])
def test_evidence_per_distinct_word_equals_the_naive_computation(norm_power: float) -> None:
    model = tiny(char_norm_power=norm_power)
    model.init_from_data([[2, 3, 5], [4, 6, 6], [5, 7], [2, 1]], [0, 1, 2, 2])
    with torch.no_grad():
        model.gate.weight.uniform_(-1.0, 1.0)  # distinct gates, so any row mix-up shows
        model.gate.weight[0].zero_()
    ids = torch.tensor([[2, 3, 2, 6, 1, 7], [4, 4, 5, 0, 0, 0], [6, 0, 0, 0, 0, 0]])
    evidence = model.embed(ids)[..., 4:]  # (B, T, C)
    naive = naive_evidence(model, ids)
    torch.testing.assert_close(evidence, naive)
    assert torch.any(model.char_evidence(ids)[0, 0] != 0)  # the character path is part of the check
    assert torch.all(evidence[1, 3:] == 0)  # padding: nothing

    every = tiny(binary=False, char_norm_power=norm_power)
    every.load_state_dict(model.state_dict())
    emb = every.embed(torch.tensor([[2, 2]]))[..., 4:]  # (1, 2, C): the repeated word counts again
    rows = every.rows(torch.tensor([[2, 2]]))[0, 1]  # (K,): the word and the bigram "cat cat"
    words = (every.nb_ratios[rows] * every.gate.weight[rows]).sum(0)  # (C,)
    torch.testing.assert_close(emb[0, 1], every.char_evidence(torch.tensor([[2]]))[0, 0] + words)


def test_padding_and_batching_change_nothing_and_char_gates_learn() -> None:
    model = tiny(dropout=0.0).eval()
    model.init_from_data([[2, 3, 5], [4, 6, 6], [5, 7], [2, 1]], [0, 1, 2, 2])
    texts = [[2, 3, 6, 5], [4], [7, 2, 2]]
    width = 9
    ids = torch.zeros(len(texts), width, dtype=torch.long)
    for b, text in enumerate(texts):
        ids[b, : len(text)] = torch.tensor(text)
    mask = ids != 0
    batched = model(ids, mask).logits  # (B, C)
    for b, text in enumerate(texts):
        alone = model(torch.tensor([text]), torch.ones(1, len(text), dtype=torch.bool)).logits
        torch.testing.assert_close(batched[b : b + 1], alone)
    model.train()
    F.cross_entropy(model(ids, mask).logits, torch.tensor([0, 1, 2])).backward()
    grad = model.gate.weight.grad
    assert grad is not None
    cat_rows = torch.tensor(rows_of("cat", model))
    assert torch.all(grad[cat_rows].abs().sum(-1) > 0)  # the char gates of a word in the batch learn
    unused = torch.ones(model.config.num_rows, dtype=torch.bool)
    unused[model.char_rows_of(ids.unique())[0]] = False
    unused[model.rows(ids).flatten()] = False
    assert torch.all(grad[unused] == 0)


def test_gates_start_at_their_init_and_the_head_is_unchanged() -> None:
    model = tiny()
    cfg = model.config
    assert torch.all(model.gate.weight[1 : cfg.word_rows] == 0.7)
    assert torch.all(model.gate.weight[cfg.word_rows :] == 0.4)
    assert model.head.in_features == cfg.embed_dim + cfg.num_classes  # the evidence block keeps its size


def test_mistakes_raise_clear_errors() -> None:
    model = NBAttnClassifier(NBAttnConfig(vocab_size=8, num_classes=2, char_buckets=11, ngram_buckets=31))
    with pytest.raises(ValueError, match="set_vocabulary"):
        model.embed(torch.tensor([[2, 3]]))
    with pytest.raises(ValueError, match="set_vocabulary"):
        model.init_from_data([[2, 3]], [0])
    with pytest.raises(ValueError, match="vocabulary entries"):
        model.set_vocabulary(["", "", "a"])
    with pytest.raises(ValueError, match="char_buckets"):
        NBAttnConfig(char_buckets=1)
    with pytest.raises(ValueError, match="char_norm_power"):
        NBAttnConfig(char_norm_power=-1.0)
    with pytest.raises(ValueError, match="char_max_n"):
        NBAttnConfig(char_buckets=11, char_min_n=3, char_max_n=2)
    # Without character n-grams the vocabulary is not needed and the table has no extra rows.
    plain = NBAttnConfig(vocab_size=8, max_order=1, ngram_buckets=0)
    assert plain.num_rows == 8 and NBAttnConfig(vocab_size=8, max_order=1, char_buckets=5).num_rows == 13
    NBAttnClassifier(plain).embed(torch.tensor([[2, 3]]))


def test_fit_and_predictor_rebuild_the_rows_from_the_tokenizer(
    tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None
) -> None:
    from attnkit.predictor import Predictor
    from attnkit.tasks.text import vocabulary_strings
    from attnkit.train.config import RunConfig
    from attnkit.train.loop import fit

    train, test = tiny_data
    config = RunConfig.from_dict(
        {
            "data": {"train": str(train), "test": str(test)},
            "tokenizer": {"level": "word", "vocab_size": 200, "max_length": 64},
            "model": {
                "name": "nb-attn",
                "options": {"embed_dim": 8, "ngram_buckets": 101, "char_buckets": 211, "gate_init": 0.5},
            },
            "optim": {"lr": 0.01, "batch_size": 16},
            "train": {"epochs": 2, "seed": 3, "progress": False},
        }
    )
    result = fit(config, tmp_path / "run")
    assert result.metrics["test"]["accuracy"] >= 0.9
    model = result.model
    assert isinstance(model, NBAttnClassifier)
    tokenizer = result.task.tokenizer  # type: ignore[union-attr]
    words = vocabulary_strings(tokenizer)
    assert words[:2] == ["", ""]
    great = tokenizer.token_to_id("great")
    rows, _ = model.char_rows_of(torch.tensor([great]))
    expected = [
        model.config.word_rows + char_ngram_bucket(g, 211) for g in char_ngrams("great", min_n=2, max_n=5)
    ]
    assert rows.tolist() == list(dict.fromkeys(expected))  # distinct buckets, in n-gram order
    predictor = Predictor(tmp_path / "run")
    loaded = predictor.model
    assert isinstance(loaded, NBAttnClassifier)
    torch.testing.assert_close(loaded.char_rows, model.char_rows)
    ids = torch.tensor([result.data.test.ids[0]]) if result.data.test else torch.tensor([[great]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask).logits, model(ids, mask).logits)


def test_words_without_character_ngrams_get_none() -> None:
    model = tiny()
    model.init_from_data([[2, 3, 5], [4, 6, 7]], [0, 1])
    ids = torch.tensor([[7, 1, 7, 1, 2]])  # "hippopotamus" (too long), [UNK] (no string), then "cat"
    evidence = model.char_evidence(ids)  # (1, T, C): 3 distinct words, only one with n-grams
    assert torch.all(evidence[0, :4] == 0)
    torch.testing.assert_close(evidence[0, 4], model.char_evidence(torch.tensor([[2]]))[0, 0])
