"""Chinese word levels (``word-zh``, ``word-zh+char``): segmentation, exact offsets against the char level,
fallback to characters, truncation, save/load (and old saved tokenizers), determinism, config and training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnkit.data import TextTokenizer, TokenizerConfig, detect_level
from attnkit.data.text.tokenizer import _HAN_RE, UNK_ID, clean_text, segment_chinese
from attnkit.train.config import ConfigError, RunConfig, TokenizerSection

BIG = 100_000
ZH_LEVELS = ["word-zh", "word-zh+char"]


def fit(texts: list[str], **kwargs: object) -> TextTokenizer:
    options: dict[str, object] = {"vocab_size": BIG, "max_length": BIG, **kwargs}
    return TextTokenizer.fit(texts, TokenizerConfig(**options))  # type: ignore[arg-type]


def is_han(token: str) -> bool:
    return bool(token) and all(_HAN_RE.fullmatch(c) for c in token)


@pytest.mark.parametrize("level", ZH_LEVELS)
def test_bu_cuo_is_one_token(level: str) -> None:
    text = "这本书写得很不错"
    tok = fit([text, "质量不错"], level=level)
    enc = tok.encode(text)
    assert "不错" in enc.tokens
    assert enc.offsets[enc.tokens.index("不错")] == (6, 8)
    assert "".join(enc.tokens) == text and tok.id_to_token(enc.ids[enc.tokens.index("不错")]) == "不错"


def test_mixed_text_tokens_and_offsets() -> None:
    text = "iPhone 13真的很好用!\n价格 2999元,👍 OK"
    enc = fit([text], level="word-zh").encode(text)
    for token, (start, end) in zip(enc.tokens, enc.offsets, strict=True):
        assert text[start:end] == token
    assert enc.tokens == [
        "iPhone",
        "13",
        "真的",
        "很",
        "好",
        "用",
        "!",
        "价格",
        "2999",
        "元",
        ",",
        "👍",
        "OK",
    ]
    # Non-Han pieces are tokenized as at the char level; only the Han runs are segmented into words.
    char = fit([text], level="char").encode(text)
    non_han = [(t, o) for t, o in zip(char.tokens, char.offsets, strict=True) if not is_han(t)]
    assert non_han == [(t, o) for t, o in zip(enc.tokens, enc.offsets, strict=True) if not is_han(t)]
    assert any(len(t) > 1 and is_han(t) for t in enc.tokens)


def test_unknown_words_fall_back_to_characters() -> None:
    tok = fit(["不错 很好 书"], level="word-zh+char")
    # 不错 is known; 这本 and 书写 are not, so they become characters (这 and 本 unknown, 书 known, 写 unknown).
    enc = tok.encode("这本书写得很不错")
    assert enc.tokens == ["这", "本", "书", "写", "得", "很", "不错"]
    assert [tok.id_to_token(i) for i in enc.ids] == ["[UNK]", "[UNK]", "书", "[UNK]", "[UNK]", "很", "不错"]
    # The vocabulary holds the characters inside words too.
    assert {"不", "错", "很", "好"} <= set(tok.get_vocab())
    # word-zh keeps the unknown words whole, as [UNK].
    plain = fit(["不错 很好 书"], level="word-zh")
    assert plain.encode("这本书写得很不错").tokens == ["这本", "书写", "得", "很", "不错"]
    assert "不" not in plain.get_vocab()


def test_vocabulary_counts_ties_and_min_freq() -> None:
    texts = ["这本书写得很不错", "质量不错,价格也不错", "物流很快,质量很好", "不推荐"] * 2 + ["一般"]
    runs = [run for t in texts for run in t.split(",")]
    words = [w for run in runs for w in segment_chinese(run)]
    # Reference: counts in plain Python, most frequent first, ties by the token; + every character of a word.
    plain = Counter(words) + Counter({",": len(runs) - len(texts)})
    with_chars = plain + Counter(c for w in words if len(w) > 1 for c in w)
    for level, counts in (("word-zh", plain), ("word-zh+char", with_chars)):
        order = sorted(counts, key=lambda t: (-counts[t], t))
        tok = fit(texts, level=level, vocab_size=8)
        assert [tok.id_to_token(i) for i in range(tok.vocab_size)] == ["[PAD]", "[UNK]", *order[:6]]
        kept = fit(texts, level=level, min_freq=3)
        assert set(kept.get_vocab()) - {"[PAD]", "[UNK]"} == {t for t in counts if counts[t] >= 3}
    assert with_chars["不"] > plain["不"]  # counted inside 不错 and 不推荐 too


def test_truncation_and_long_texts_without_spaces() -> None:
    text = "这本书写得很不错,但是价格太贵了。" * 400  # 6,800 characters, no whitespace to cut at
    spaced = " ".join(["这本书写得很不错"] * 2000)
    tok = fit([text, spaced], level="word-zh+char")
    for probe in (text, spaced):
        full = tok.encode(probe)
        short = tok.with_max_length(30).encode(probe)
        assert len(short) == 30 and short.ids == full.ids[:30] and short.offsets == full.offsets[:30]
    assert tok.encode_ids([text, spaced, ""]) == [e.ids for e in tok.encode_batch([text, spaced, ""])]


@pytest.mark.parametrize("level", ZH_LEVELS)
def test_save_load_round_trip(tmp_path: Path, level: str) -> None:
    texts = ["这本书写得很不错", "质量太差了,不推荐!", "还行吧 OK 👍"]
    tok = fit(texts, level=level, vocab_size=12, max_length=8)
    loaded = TextTokenizer.load(tok.save(tmp_path / "tok"))
    assert loaded.level == level and loaded.config == tok.config and loaded.get_vocab() == tok.get_vocab()
    probe = [*texts, "这本书的质量很不错,推荐", ""]
    assert loaded.encode_batch(probe) == tok.encode_batch(probe)


def test_tokenizer_saved_before_chinese_levels_still_loads(tmp_path: Path) -> None:
    # Exactly what the previous release wrote for TextTokenizer.fit(["电影很好看!", "不好看 ok"], max_length=50).
    cjk = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0003134f"
    hf = {
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 50, "strategy": "LongestFirst", "stride": 0},
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": f"[{cjk}]|(?:(?![{cjk}])\\w)+|[^\\w\\s]"},
            "behavior": "Removed",
            "invert": True,
        },
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "WordLevel",
            "vocab": {
                "[PAD]": 0,
                "[UNK]": 1,
                "好": 2,
                "看": 3,
                "!": 4,
                "ok": 5,
                "不": 6,
                "影": 7,
                "很": 8,
                "电": 9,
            },
            "unk_token": "[UNK]",
        },
    }
    meta = {
        "format": "attnkit-tokenizer",
        "version": 1,
        "level": "char",
        "config": {"level": "auto", "vocab_size": 10000, "min_freq": 1, "lowercase": True, "max_length": 50},
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(hf, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(meta), encoding="utf-8")
    old = TextTokenizer.load(tmp_path)
    new = TextTokenizer.fit(["电影很好看!", "不好看 ok"], TokenizerConfig(level="char", max_length=50))
    assert old.level == "char" and old.get_vocab() == new.get_vocab()
    probe = ["电影不好看!OK", "很好", "Σ 电影"]
    assert old.encode_batch(probe) == new.encode_batch(probe)


def test_auto_picks_chinese_words_only_for_chinese() -> None:
    chinese = ["这个手机很好用,电池也耐用", "质量太差了,不推荐", "还行吧 OK"]
    japanese = ["この映画はとても面白かったです", "音楽も良かった"]
    korean = ["이 영화 정말 좋아요", "음악도 좋았어요"]
    english = ["this phone works well", "terrible quality, avoid", "it is ok 好"]
    assert detect_level(chinese) == "word-zh" and TextTokenizer.fit(chinese).level == "word-zh"
    assert detect_level(japanese) == "char" and detect_level(korean) == "char"
    assert detect_level(english) == "word"


def test_config_accepts_the_levels() -> None:
    for level in ZH_LEVELS:
        assert TokenizerSection(level=level).level == level  # type: ignore[arg-type]
        assert RunConfig.from_dict({"tokenizer": {"level": level}}).tokenizer.level == level
        assert TokenizerConfig(level=level).level == level  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"tokenizer.level must be one of .*word-zh\+char"):
        RunConfig.from_dict({"tokenizer": {"level": "jieba"}})
    with pytest.raises(ValueError, match=r"level must be one of word, char, word-zh, word-zh\+char, auto"):
        TokenizerConfig(level="zh")  # type: ignore[arg-type]


def test_segmentation_is_private_deterministic_and_writes_no_files(tmp_path: Path) -> None:
    import rjieba

    texts = ["这本书写得很不错", "物流很快,包装完好,客服态度也很好", "南京市长江大桥"]
    here = [segment_chinese(t) for t in texts]
    # Words added to rjieba's module-level instance do not change ours.
    rjieba.add_word("书写得", 10**9, None)
    assert [segment_chinese(t) for t in texts] == here
    # A fresh process with empty, read-only HOME and TMPDIR segments the same and leaves them empty.
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    for d in (home, tmp):
        d.mkdir()
        d.chmod(0o500)
    # The child imports only rjieba (what segment_chinese wraps), not attnkit and torch: that keeps it fast.
    code = (
        "import json, sys, rjieba; j = rjieba.Jieba(); "
        "print(json.dumps([j.cut(t, True) for t in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home / ".cache")}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(texts)], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == here
    assert not any(home.iterdir()) and not any(tmp.iterdir())


def test_tiny_training_run_with_chinese_words(tmp_path: Path, quick_writes: None) -> None:
    from attnkit.explain import explain
    from attnkit.predictor import Predictor
    from attnkit.train.loop import fit as fit_run

    rows = []
    for i in range(60):
        good = i % 2 == 0
        rows.append(
            {
                "text": ("这本书写得很不错" if good else "这本书质量太差了") + "。" * (i % 3),
                "label": "pos" if good else "neg",
            }
        )
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = RunConfig.from_dict(
        {
            "data": {"train": str(data)},
            "tokenizer": {"level": "auto", "vocab_size": 200, "max_length": 32},
            "model": {"name": "bag-attn"},
            "optim": {"lr": 0.02, "batch_size": 16},
            "train": {"epochs": 2, "threads": 1, "seed": 0},
        }
    )
    result = fit_run(config, tmp_path / "run")
    predictor = Predictor(result.run_dir)
    assert predictor.tokenizer.level == "word-zh"
    text = "这本书写得很不错"
    (item,) = explain(predictor, [text], ["attention"])
    tokens = [t.text for t in item.tokens]
    assert "不错" in tokens and "".join(tokens) == text
    assert all(text[t.start : t.end] == t.text for t in item.tokens)
    assert item.prediction.label == "pos"


# ----------------------------------------------------------------------------------------------------
# Property tests: offsets are the surface forms, and splitting the Han words into characters gives the char
# level's tokens exactly.

PIECES = st.sampled_from(
    [
        "这本书", "写得很", "不错", "质量", "太差了", "推荐", "的", "。", ",", "!", "?", "“", "”", "、", "…",
        "𠀀", "豈", "々", "日本語", "カタカナ", "한국어", "iPhone", "OK", "don't", "5s", "2999", "3.5", "١٢٣",
        " ", "  ", "\n", "\t", "\u3000", "\u00a0", "\r\n", "<br />", "😀", "👍🏽", "👨\u200d👩", "\u200b",
        "\x00", "İ", "Σ", "ß", "e\u0301", "[PAD]", "_", "-",
    ]
)  # fmt: skip
TEXTS = st.one_of(
    st.lists(PIECES, max_size=30).map("".join),
    st.lists(st.one_of(PIECES, st.text(max_size=3)), max_size=20).map("".join),
)
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_offsets(text: str, tok: TextTokenizer, *, all_known: bool) -> None:
    enc = tok.encode(text)
    previous_end = 0
    covered = [False] * len(text)
    for token, (start, end), index in zip(enc.tokens, enc.offsets, enc.ids, strict=True):
        assert previous_end <= start < end <= len(text)
        assert token == text[start:end] and not any(c.isspace() for c in token)
        if all_known or index != UNK_ID:
            assert tok.id_to_token(index) == token.lower()
        covered[start:end] = [True] * (end - start)
        previous_end = end
    cleaned = clean_text(text)
    assert all(covered[i] or cleaned[i].isspace() for i in range(len(text)))
    # Reference: the char level, whose tokens are these with every Han word split into its characters.
    char = fit([text], level="char").encode(text)
    split = [
        (c, (start + k, start + k + 1)) if is_han(token) else (token, (start, end))
        for token, (start, end) in zip(enc.tokens, enc.offsets, strict=True)
        for k, c in enumerate(token if is_han(token) else [token])
    ]
    assert split == list(zip(char.tokens, char.offsets, strict=True))


@pytest.mark.parametrize("level", ZH_LEVELS)
@PROPERTY
@given(text=TEXTS)
def test_property_offsets_fitted_on_the_text(level: str, text: str) -> None:
    check_offsets(text, fit([text], level=level), all_known=True)


@PROPERTY
@given(text=TEXTS, train=TEXTS)
def test_property_offsets_with_fallback_to_characters(text: str, train: str) -> None:
    check_offsets(text, fit([train], level="word-zh+char"), all_known=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=6), st.integers(min_value=1, max_value=10))
def test_property_batch_equals_single_and_truncation_is_prefix(texts: list[str], max_length: int) -> None:
    tok = fit(texts, level="word-zh+char")
    short = tok.with_max_length(max_length)
    for text, enc in zip(texts, short.encode_batch(texts), strict=True):
        assert enc == short.encode(text)
        full = tok.encode(text)
        assert enc.ids == full.ids[:max_length] and enc.offsets == full.offsets[:max_length]
