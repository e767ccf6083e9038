"""Tokenizer: exact tokens and offsets, normalization that never breaks offsets (property tests), levels,
truncation, batch = single, save/load round trip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnkit.data import DataError, TextTokenizer, TokenizerConfig, detect_level
from attnkit.data.text.tokenizer import PAD_ID, UNK_ID, clean_text

BIG = 100_000


def fit(texts: list[str], **kwargs: object) -> TextTokenizer:
    options: dict[str, object] = {"vocab_size": BIG, "max_length": BIG, **kwargs}
    return TextTokenizer.fit(texts, TokenizerConfig(**options))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# Exact, hand-checked tokenizations.


def test_word_level_tokens_and_offsets() -> None:
    text = "Don't STOP!<br />Café 5pm…<BR>ok"
    tok = fit([text], level="word")
    enc = tok.encode(text)
    assert enc.tokens == ["Don", "'", "t", "STOP", "!", "Café", "5pm", "…", "ok"]
    assert enc.offsets == [(0, 3), (3, 4), (4, 5), (6, 10), (10, 11), (17, 21), (22, 25), (25, 26), (30, 32)]
    assert [tok.id_to_token(i) for i in enc.ids] == ["don", "'", "t", "stop", "!", "café", "5pm", "…", "ok"]
    assert "br" not in tok.get_vocab() and "<" not in tok.get_vocab()


@pytest.mark.parametrize("br", ["<br />", "<br/>", "<br>", "<BR />", "<br  />", "<Br\n/>"])
def test_html_line_breaks_are_whitespace(br: str) -> None:
    text = f"one{br}two"
    tok = fit(["one two"], level="word")
    enc = tok.encode(text)
    assert enc.tokens == ["one", "two"]
    assert enc.offsets == [(0, 3), (3 + len(br), 6 + len(br))]


def test_char_level_cjk_with_ascii_words() -> None:
    text = "我爱北京,iPhone很好!"
    tok = fit([text], level="char")
    enc = tok.encode(text)
    assert enc.tokens == ["我", "爱", "北", "京", ",", "iPhone", "很", "好", "!"]
    assert enc.offsets == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 11), (11, 12), (12, 13), (13, 14)]
    assert tok.id_to_token(enc.ids[5]) == "iphone"
    # Word level keeps a CJK run whole.
    assert fit([text], level="word").encode(text).tokens == ["我爱北京", ",", "iPhone很好", "!"]


def test_emoji_and_astral_offsets_are_code_points() -> None:
    text = "a😀b 𠀀x"  # 😀 and U+20000 are outside the BMP (2 UTF-16 units, 4 UTF-8 bytes)
    enc = fit([text], level="char").encode(text)
    assert enc.tokens == ["a", "😀", "b", "𠀀", "x"]
    assert enc.offsets == [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6)]


def test_length_changing_lowercase_and_final_sigma() -> None:
    # "İ".lower() is two characters and "Σ" lowercases by context: the slow path keeps offsets exact.
    text = "İSTANBUL ΟΔΟΣ. ΟΔΟΣ'Α"
    tok = fit([text], level="word")
    enc = tok.encode(text)
    assert enc.tokens == ["İSTANBUL", "ΟΔΟΣ", ".", "ΟΔΟΣ", "'", "Α"]
    assert [tok.id_to_token(i) for i in enc.ids] == [t.lower() for t in enc.tokens]
    assert tok.id_to_token(enc.ids[1]) == "οδος"  # final sigma, as str.lower gives for the token alone


def test_unknown_tokens_and_special_ids() -> None:
    tok = fit(["the cat sat"], level="word")
    assert tok.vocab_size == 5 and tok.pad_id == PAD_ID == 0 and tok.unk_id == UNK_ID == 1
    assert [tok.id_to_token(i) for i in range(5)] == ["[PAD]", "[UNK]", "cat", "sat", "the"]
    enc = tok.encode("The dog sat [PAD] [UNK]")
    assert enc.ids == [4, 1, 3, 1, 1, 1, 1, 1, 1]  # "[PAD]" in text is "[", "pad", "]": never id 0
    assert enc.tokens[3:6] == ["[", "PAD", "]"]
    assert tok.token_to_id("CAT") == 2 and tok.token_to_id("dog") == UNK_ID


def test_vocab_size_min_freq_and_frequency_order() -> None:
    texts = ["a a a a b b b c c d", "a b c e"]
    tok = fit(texts, level="word", vocab_size=5)
    assert [tok.id_to_token(i) for i in range(tok.vocab_size)] == ["[PAD]", "[UNK]", "a", "b", "c"]
    tok2 = fit(texts, level="word", min_freq=3)
    assert set(tok2.get_vocab()) == {"[PAD]", "[UNK]", "a", "b", "c"}
    assert fit(texts, level="word", lowercase=False).encode("A").ids == [UNK_ID]


def test_vocabulary_is_deterministic_with_ties() -> None:
    # 200 words seen once each, cut to 50: which ones win is decided by the tie-break, not hash order.
    texts = [" ".join(f"w{i}" for i in range(200))] * 3
    vocabs = [fit(texts, vocab_size=52).get_vocab() for _ in range(5)]
    assert all(v == vocabs[0] for v in vocabs) and len(vocabs[0]) == 52


def test_lowercase_false_keeps_case() -> None:
    tok = fit(["Apple apple"], level="word", lowercase=False)
    assert tok.encode("apple Apple APPLE").ids[2] == UNK_ID
    assert len(set(tok.encode("apple Apple").ids)) == 2


def test_control_and_zero_width_characters_are_whitespace() -> None:
    text = "a\x00b\u200bc\ufeffd\x1fe"
    assert clean_text(text) == "a b c d e"
    assert fit([text], level="word").encode(text).tokens == ["a", "b", "c", "d", "e"]


def test_lone_surrogates_do_not_crash() -> None:
    text = "ok \ud83d here"  # possible from JSON "\ud83d" escapes
    assert fit(["ok here"], level="word").encode(text).tokens == ["ok", "here"]


def test_auto_level_detection() -> None:
    chinese = ["这个手机很好用，电池也耐用", "质量太差了，不推荐", "还行吧 OK"]
    english = ["this phone works well", "terrible quality, avoid", "it is ok 好"]
    assert detect_level(chinese) == "word-zh" and detect_level(english) == "word"
    assert TextTokenizer.fit(chinese).level == "word-zh"  # more levels in test_tokenizer_zh.py
    assert TextTokenizer.fit(english).level == "word"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="level must be"):
        TokenizerConfig(level="bpe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 3"):
        TokenizerConfig(vocab_size=2)
    with pytest.raises(ValueError, match="min_freq"):
        TokenizerConfig(min_freq=0)
    with pytest.raises(ValueError, match="max_length"):
        TokenizerConfig(max_length=0)
    with pytest.raises(ValueError, match="zero texts"):
        TextTokenizer.fit([])
    with pytest.raises(TypeError, match=r"texts\[1\] is int; fit takes strings"):
        TextTokenizer.fit(["a", 3])  # type: ignore[list-item]


# ----------------------------------------------------------------------------------------------------
# Truncation, batching, persistence.


def test_truncation_is_a_prefix() -> None:
    text = " ".join(f"w{i}" for i in range(50))
    tok = fit([text], level="word")
    full = tok.encode(text)
    short = tok.with_max_length(7).encode(text)
    assert len(full) == 50 and short.ids == full.ids[:7] and short.offsets == full.offsets[:7]


def test_long_texts_are_cut_before_encoding_without_changing_the_result() -> None:
    # Long texts are cut at whitespace after max_length * 16 characters; texts whose first tokens are very
    # long (a 20,000-character "word") fall back to the whole text.
    words = [f"w{i % 37}" for i in range(5000)]
    texts = [" ".join(words), "x" * 20_000 + " tail " + " ".join(words), "Σ " + " ".join(words)]
    tok = fit(texts, level="word")
    short = tok.with_max_length(100)
    for text, enc in zip(texts, short.encode_batch(texts), strict=True):
        full = tok.encode(text)
        assert enc.ids == full.ids[:100] and enc.offsets == full.offsets[:100]
    assert short.encode(texts[1]).tokens[:2] == ["x" * 20_000, "tail"]


def _head_and_tail(ids: list, max_length: int) -> list:
    """By hand: the first max_length // 4 and the last max_length - max_length // 4 of a longer list."""
    if len(ids) <= max_length:
        return ids
    head = max_length // 4
    return ids[:head] + ids[len(ids) - (max_length - head) :]


@pytest.mark.parametrize("level", ["word", "char", "word-zh", "word-zh+char"])
def test_head_and_tail_truncation_keeps_both_ends_of_the_untruncated_encoding(level: str) -> None:
    words = [f"w{i % 41}" for i in range(5000)]
    texts = [
        " ".join(words) + " VERDICT",  # long: encoded as two pieces (head, tail)
        "x" * 20_000 + " tail " + " ".join(words[:150]),  # a huge first word: the whole-text fallback
        "Σ İ " + " ".join(words[:600]),  # lowercasing that changes length: the split path
        "这本书写得很不错，" * 90 + " END",  # Chinese
        "short text, kept whole",
        " ".join(words[:101]),  # one token over the limit
        "",
    ]
    tok = fit(texts, level=level)  # max_length BIG: the reference encodings, untruncated
    for max_length in (1, 4, 101, 400):
        cut = TextTokenizer.fit(
            texts, TokenizerConfig(level=level, vocab_size=BIG, max_length=max_length, truncation="head+tail")
        )
        assert cut.get_vocab() == tok.get_vocab()
        encodings = cut.encode_batch(texts)
        assert cut.encode_ids(texts) == [e.ids for e in encodings]
        for text, enc in zip(texts, encodings, strict=True):
            full = tok.encode(text)
            assert enc.ids == _head_and_tail(full.ids, max_length), (level, max_length, text[:30])
            assert enc.offsets == _head_and_tail(full.offsets, max_length)
            assert enc == cut.encode(text)
    assert cut.encode(texts[0]).tokens[-1] == "VERDICT"


def test_truncation_setting_is_checked_saved_and_absent_means_head(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="truncation must be one of head, head\\+tail"):
        TokenizerConfig(truncation="tail")  # type: ignore[arg-type]
    text = " ".join(f"w{i}" for i in range(30))
    tok = TextTokenizer.fit([text], TokenizerConfig(max_length=8, truncation="head+tail"))
    loaded = TextTokenizer.load(tok.save(tmp_path / "tok"))
    assert loaded.config.truncation == "head+tail" and loaded.encode(text).tokens == [
        "w0",
        "w1",
        *[f"w{i}" for i in range(24, 30)],
    ]
    head = TextTokenizer.fit([text], TokenizerConfig(max_length=8)).save(tmp_path / "head")
    assert "truncation" not in json.loads((head / "tokenizer_config.json").read_text())["config"]
    # A tokenizer saved before the setting existed truncates at the head, as it did.
    meta = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    del meta["config"]["truncation"]
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps(meta))
    assert TextTokenizer.load(tmp_path / "tok").encode(text).tokens == [f"w{i}" for i in range(8)]


def test_encode_ids_matches_encode_batch() -> None:
    texts = ["Hello there!", "", "İi Σσ", "中文 text", "   "]
    tok = fit(texts)
    encs = tok.encode_batch(texts)
    assert tok.encode_ids(texts) == [e.ids for e in encs]
    assert encs[1].ids == [] and encs[4].tokens == []
    with pytest.raises(TypeError, match="use encode\\(\\) for a single text"):
        tok.encode_batch("one text")


def test_save_load_round_trip(tmp_path: Path) -> None:
    texts = ["The movie was great<br />great!", "İSTANBUL ΟΔΟΣ", "电影很好看"]
    tok = TextTokenizer.fit(texts, TokenizerConfig(vocab_size=20, max_length=6))
    out = tok.save(tmp_path / "tok")
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    meta = json.loads((out / "tokenizer_config.json").read_text())
    assert meta["level"] == "word" and meta["config"]["max_length"] == 6
    loaded = TextTokenizer.load(out)
    probe = [*texts, "unseen words here and more and more", ""]
    assert loaded.encode_batch(probe) == tok.encode_batch(probe)
    assert loaded.get_vocab() == tok.get_vocab() and loaded.config == tok.config and loaded.level == tok.level


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"tokenizer\.json: not found"):
        TextTokenizer.load(tmp_path)
    fit(["a b"]).save(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(DataError, match="cannot load tokenizer"):
        TextTokenizer.load(tmp_path)


# ----------------------------------------------------------------------------------------------------
# Property tests: offsets always point at the original surface form.

PIECES = st.sampled_from(
    [
        "<br />", "<br/>", "<BR>", "<br", "/>", " ", "  ", "\n", "\t", "\u00a0", "\u3000", "\x85", "\x1c",
        "\u200b", "\x00", "Σ", "ς", "İ", "ß", "ẞ", "ǅ", "ﬁ", "e\u0301", "é", "Ä", "ñ", "😀", "👍🏽",
        "👨\u200d👩", "中", "文", "日本語", "한국어", "カタカナ", "𠀀", "Hello", "WORLD", "don't",
        "5pm", "...", "!", ",", "-", "_", "'", '"', "(", ")", "[PAD]", "[UNK]", "a", "Z", "١٢٣", "Ⓐ", "Ⅻ",
    ]
)  # fmt: skip
TEXTS = st.one_of(
    st.lists(PIECES, max_size=30).map("".join),
    st.text(max_size=60),
    st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=20).map("".join),
)
BR = re.compile(r"<br\s*/?\s*>", re.IGNORECASE)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_offsets(text: str, tok: TextTokenizer) -> None:
    enc = tok.encode(text)
    previous_end = 0
    covered = [False] * len(text)
    for token, (start, end), index in zip(enc.tokens, enc.offsets, enc.ids, strict=True):
        assert previous_end <= start < end <= len(text)
        assert token == text[start:end]
        assert not any(c.isspace() for c in token)
        # The vocabulary entry is exactly the lowercased surface form (every token was seen in training).
        assert tok.id_to_token(index) == token.lower()
        for i in range(start, end):
            covered[i] = True
        previous_end = end
    # Nothing but whitespace, line breaks and invisible characters is left out; no token touches a <br />.
    breaks = {i for m in BR.finditer(text) for i in range(m.start(), m.end())}
    cleaned = clean_text(text)
    for i, c in enumerate(text):
        if i in breaks:
            assert not covered[i]
        elif not covered[i]:
            assert cleaned[i].isspace(), (text, i, c)


@PROPERTY
@given(TEXTS)
def test_property_word_offsets_are_surface_forms(text: str) -> None:
    check_offsets(text, fit([text], level="word"))


@PROPERTY
@given(TEXTS)
def test_property_char_offsets_are_surface_forms(text: str) -> None:
    check_offsets(text, fit([text], level="char"))


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=8), st.integers(min_value=1, max_value=12))
def test_property_batch_equals_single_and_truncation_is_prefix(texts: list[str], max_length: int) -> None:
    tok = fit(texts)
    short = tok.with_max_length(max_length)
    batch = short.encode_batch(texts)
    for text, enc in zip(texts, batch, strict=True):
        assert enc == short.encode(text)
        full = tok.encode(text)
        assert enc.ids == full.ids[:max_length] and enc.offsets == full.offsets[:max_length]
