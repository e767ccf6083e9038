"""Encoding a corpus in chunks (for its progress bar) gives exactly the ids of one batch call."""

from __future__ import annotations

import pytest

from attnkit.data import TextExample, TextTokenizer, TokenizerConfig
from attnkit.tasks import text


def test_chunked_encoding_equals_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"review {i} was {'good' if i % 2 else 'bad'} <br /> really {i % 7}" for i in range(23)] + [""]
    examples = [TextExample(text=t, label="pos" if i % 2 else "neg") for i, t in enumerate(texts)]
    tokenizer = TextTokenizer.fit(texts, TokenizerConfig(level="word", vocab_size=50))
    whole = [row or [tokenizer.unk_id] for row in tokenizer.encode_ids(texts)]
    monkeypatch.setattr(text, "ENCODE_CHUNK", 5)  # 24 texts: chunks of 5, 5, 5, 5, 4
    dataset = text.encode_texts(tokenizer, examples, ["neg", "pos"])
    assert dataset.ids == whole
    assert dataset.labels == [1 if i % 2 else 0 for i in range(24)]
