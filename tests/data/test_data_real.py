"""The shared real datasets (``$ATTNKIT_DATA``): counts from MANIFEST.md. Skipped when the data is absent."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from attnkit.data import TextTokenizer, TokenizerConfig, inspect_examples, load_builtin, load_source


def test_sst2_dev(shared_data: Path) -> None:
    dev = load_builtin("sst2", "dev", data_dir=str(shared_data), allow_download=False)
    assert len(dev) == 872
    assert Counter(e.label for e in dev) == {"positive": 444, "negative": 428}
    assert dev[0].text == "it 's a charming and often affecting journey . "  # trailing space kept


def test_imdb_test(shared_data: Path) -> None:
    test = load_source("imdb:test", data_dir=str(shared_data), allow_download=False)
    assert len(test) == 25000
    assert Counter(e.label for e in test) == {"pos": 12500, "neg": 12500}
    ratings = Counter(e.rating for e in test)
    assert ratings == {1: 5022, 2: 2302, 3: 2541, 4: 2635, 7: 2307, 8: 2850, 9: 2344, 10: 4999}
    assert inspect_examples({"test": test})["splits"]["test"]["duplicates"]["rows"] == 199


def test_ag_news_test_and_mr(shared_data: Path) -> None:
    ag = load_builtin("ag_news", "test", data_dir=str(shared_data), allow_download=False)
    assert Counter(e.label for e in ag) == {"World": 1900, "Sports": 1900, "Business": 1900, "Sci/Tech": 1900}
    mr = load_builtin("mr", data_dir=str(shared_data), allow_download=False)
    assert Counter(e.label for e in mr) == {"pos": 5331, "neg": 5331}


@pytest.mark.slow
def test_large_splits_match_manifest(shared_data: Path) -> None:
    options = {"data_dir": str(shared_data), "allow_download": False}
    news = load_builtin("20newsgroups", "train", **options)  # type: ignore[arg-type]
    assert len(news) == 11314 and Counter(e.label for e in news)["talk.religion.misc"] == 377
    sst2 = load_builtin("sst2", "train", **options)  # type: ignore[arg-type]
    assert Counter(e.label for e in sst2) == {"positive": 37569, "negative": 29780}
    assert inspect_examples({"train": sst2})["splits"]["train"]["duplicates"]["rows"] == 371
    assert len(load_builtin("imdb", "unsup", **options)) == 50000  # type: ignore[arg-type]


@pytest.mark.slow
def test_tokenizer_speed_on_imdb_train(shared_data: Path) -> None:
    texts = [e.text for e in load_builtin("imdb", "train", data_dir=str(shared_data), allow_download=False)]
    tok = TextTokenizer.fit(texts, TokenizerConfig(vocab_size=20000, max_length=500))
    start = time.perf_counter()
    encodings = tok.encode_batch(texts)
    seconds = time.perf_counter() - start
    assert len(encodings) == 25000 and max(len(e) for e in encodings) == 500
    assert "<" not in {t for e in encodings[:200] for t in e.tokens}  # <br /> never becomes tokens
    assert seconds < 60, f"encoding 25,000 IMDb reviews took {seconds:.1f} s"
