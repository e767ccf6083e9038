"""Word-, Chinese-word- and character-level tokenization on Hugging Face ``tokenizers``, with offsets into the
original text.

Levels:

- ``word`` (space-delimited languages): runs of word characters (``\\w+``) are tokens and every other
  non-space character (punctuation, symbols, emoji) is a token of its own: ``"Don't!"`` -> ``Don ' t !``.
- ``char`` (CJK text): every CJK character (Han, kana, Hangul) is a token; runs of other word characters,
  such as ASCII words inside Chinese text, stay whole; punctuation as for ``word``.
- ``word-zh`` (Chinese): as ``char``, except that each run of Han characters is segmented into words by
  jieba's algorithm and dictionary (the ``rjieba`` binding of jieba-rs, with its HMM for unknown words):
  ``这本书写得很不错`` -> ``这本 书写 得 很 不错``. Words outside the vocabulary are ``[UNK]``.
- ``word-zh+char``: ``word-zh``, but a Han word outside the vocabulary is split into its characters, which the
  vocabulary also holds (counted over every Han character of the training texts, inside words too).
- ``auto``: when CJK characters are at least :data:`CJK_THRESHOLD` of the non-space characters in a sample of
  the training texts, ``word-zh`` if they are Chinese (kana and Hangul under :data:`KANA_HANGUL_SHARE` of
  them) and ``char`` otherwise (Japanese, Korean); else ``word``. On the embedded Chinese review corpus the
  demo model is most accurate with ``word-zh``, then ``word-zh+char``, then ``char``
  (``benchmarks/chinese_tokenizers.py``).

Normalization never moves characters, so offsets need no mapping: before the Rust tokenizer runs, HTML
line breaks (``<br />``, ``<br/>``, ``<br>``, any case) and invisible characters (C0/C1 controls, zero-width
spaces, BOMs, unpaired surrogates) are replaced by the same number of spaces, then the text is lowercased
with :meth:`str.lower`. The rare texts where lowercasing is not one character for one character (``İ``
becomes two characters; ``Σ`` depends on its neighbours) are split on the unchanged text and each piece is
lowercased on its own. Either way, for every token ``text[start:end]`` is its original surface form and
``text[start:end].lower()`` is the vocabulary entry it is looked up under.

The Chinese segmentation runs in Python (about a million characters a second) on the cleaned text, and its
pieces are looked up one by one, lowercased on their own; a word-level tokenizer's offsets are exact by
construction because the segmenter only ever splits a Han run into pieces that concatenate back to it. The
segmenter's dictionary is compiled into the ``rjieba`` wheel (pinned in ``pyproject.toml``): it writes no cache
file and reads no state, so it segments identically across runs, processes and machines.

Truncation: texts longer than ``max_length`` tokens keep their first ``max_length`` tokens (``head``), or
(``head+tail``) their first quarter and their last three quarters: a long review's verdict is usually at its
end (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification", found head + tail best on IMDb). The
offsets of the kept tokens still point into the original text. The head and the tail are joined as they are:
models over n-grams (``bag-attn``, ``nb-attn``) see a few n-grams across the junction that the text does not
have.

Special tokens: ``[PAD]`` is id 0 and ``[UNK]`` id 1. They are ordinary vocabulary entries, not "added
tokens", so text that happens to contain ``[PAD]`` is tokenized like any other text and id 0 only ever means
padding.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from attnkit.data.errors import DataError

if TYPE_CHECKING:
    import rjieba

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
PAD_ID = 0
UNK_ID = 1
#: ``auto`` picks a CJK level when at least this fraction of non-space sample characters are CJK.
CJK_THRESHOLD = 0.3
#: ``auto`` segments CJK text into Chinese words when kana and Hangul are under this share of its CJK characters.
KANA_HANGUL_SHARE = 0.1

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
_FORMAT = "attnkit-tokenizer"
_FORMAT_VERSION = 1

# Han (with extension A, compatibility ideographs and the supplementary planes), kana and Hangul syllables.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_KANA_HANGUL = "\u3040-\u30ff\uac00-\ud7af"
# Both, in the order saved char-level tokenizers have in their pattern.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0003134f"
_CJK_RE = re.compile(f"[{_CJK}]")
_HAN_RE = re.compile(f"[{_HAN}]")
_KANA_HANGUL_RE = re.compile(f"[{_KANA_HANGUL}]")
# Oniguruma patterns for the Rust pre-tokenizer; each non-space character lands in exactly one token.
_WORD_PATTERN = r"\w+|[^\w\s]"
_CHAR_PATTERN = f"[{_CJK}]|(?:(?![{_CJK}])\\w)+|[^\\w\\s]"
# As _CHAR_PATTERN, but a run of Han characters is one piece (then segmented into words in Python).
_HAN_RUN_PATTERN = f"[{_HAN}]+|[{_KANA_HANGUL}]|(?:(?![{_CJK}])\\w)+|[^\\w\\s]"

_BR_RE = re.compile(r"<br\s*/?\s*>", re.IGNORECASE)
# C0/C1 controls except the whitespace ones (\t \n \v \f \r and NEL), zero-width space, word joiner, BOM and
# unpaired surrogates (which cannot reach the Rust side): all become spaces.
_INVISIBLE_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\u2060\ufeff\ud800-\udfff]")
# How far past ``max_length`` tokens' worth of characters a long text is cut before the Rust side sees it.
_CHARS_PER_TOKEN_BOUND = 16

ResolvedLevel = Literal["word", "char", "word-zh", "word-zh+char"]
Level = Literal["word", "char", "word-zh", "word-zh+char", "auto"]
LEVELS: tuple[str, ...] = get_args(Level)
Truncation = Literal["head", "head+tail"]
TRUNCATIONS: tuple[str, ...] = get_args(Truncation)
#: Levels that segment Han runs into Chinese words.
CHINESE_WORD_LEVELS: tuple[str, ...] = ("word-zh", "word-zh+char")


@dataclass
class TokenizerConfig:
    """How to build a :class:`TextTokenizer`.

    Attributes:
        level: ``word``, ``char`` (CJK characters as tokens), ``word-zh`` (Chinese words), ``word-zh+char``
            (Chinese words, unknown ones as characters) or ``auto`` (decided from the training texts).
        vocab_size: maximum vocabulary size, including ``[PAD]`` and ``[UNK]``; the most frequent tokens win.
        min_freq: tokens seen fewer times in the training texts map to ``[UNK]``.
        lowercase: lowercase before lookup (offsets still point into the original text).
        max_length: encodings are truncated to this many tokens.
        truncation: which tokens a longer text keeps: ``head`` (the first ``max_length``) or ``head+tail``
            (the first ``max_length // 4`` and the last ``max_length - max_length // 4``).
    """

    level: Level = "auto"
    vocab_size: int = 10000
    min_freq: int = 1
    lowercase: bool = True
    max_length: int = 500
    truncation: Truncation = "head"

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}; got {self.truncation!r}")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {self.level!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 3:
            raise ValueError(
                f"vocab_size must be an integer >= 3 ([PAD], [UNK] and a token), got {self.vocab_size}"
            )
        if not isinstance(self.min_freq, int) or self.min_freq < 1:
            raise ValueError(f"min_freq must be an integer >= 1, got {self.min_freq}")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise ValueError(f"max_length must be an integer >= 1, got {self.max_length}")
        if not isinstance(self.lowercase, bool):
            raise ValueError(f"lowercase must be true or false, got {self.lowercase!r}")


@dataclass(frozen=True)
class Encoding:
    """One encoded text.

    Attributes:
        ids: ``(T,)`` token ids, ``T <= max_length``; ``[UNK]`` (1) for out-of-vocabulary tokens, never
            ``[PAD]`` (0).
        offsets: ``(T,)`` ``(start, end)`` character offsets into the original text: ``text[start:end]`` is
            the token as written.
        text: the original text.
    """

    ids: list[int]
    offsets: list[tuple[int, int]]
    text: str = field(repr=False)

    @property
    def tokens(self) -> list[str]:
        """The tokens as written in the original text (case and accents kept)."""
        return [self.text[s:e] for s, e in self.offsets]

    def __len__(self) -> int:
        return len(self.ids)


def _script_counts(texts: Sequence[str], max_texts: int, max_chars: int) -> tuple[int, int, int]:
    """(CJK, kana + Hangul, non-space) character counts over an evenly spaced sample of ``texts``."""
    if not texts:
        return 0, 0, 0
    step = max(1, math.ceil(len(texts) / max_texts))
    cjk = kana_hangul = visible = 0
    for text in texts[::step]:
        head = text[:max_chars]
        cjk += len(_CJK_RE.findall(head))
        kana_hangul += len(_KANA_HANGUL_RE.findall(head))
        visible += sum(1 for c in head if not c.isspace())
    return cjk, kana_hangul, visible


def cjk_fraction(texts: Sequence[str], max_texts: int = 2000, max_chars: int = 2000) -> float:
    """Fraction of CJK characters among the non-space characters of an evenly spaced sample of ``texts``.

    Args:
        texts: the corpus.
        max_texts: at most this many texts are looked at, evenly spaced through the corpus.
        max_chars: at most this many leading characters of each sampled text are looked at.
    """
    cjk, _, visible = _script_counts(texts, max_texts, max_chars)
    return cjk / visible if visible else 0.0


def detect_level(texts: Sequence[str]) -> ResolvedLevel:
    """The level ``auto`` resolves to for these training texts.

    ``word`` unless :func:`cjk_fraction` is at least :data:`CJK_THRESHOLD`; then ``word-zh`` for Chinese (kana
    and Hangul under :data:`KANA_HANGUL_SHARE` of the CJK characters), else ``char``.
    """
    cjk, kana_hangul, visible = _script_counts(texts, 2000, 2000)
    if not visible or cjk / visible < CJK_THRESHOLD:
        return "word"
    return "word-zh" if kana_hangul < KANA_HANGUL_SHARE * cjk else "char"


def _pre_tokenizer(level: ResolvedLevel) -> pre_tokenizers.PreTokenizer:
    if level == "word":
        pattern = _WORD_PATTERN
    elif level == "char":
        pattern = _CHAR_PATTERN
    else:
        pattern = _HAN_RUN_PATTERN
    # invert=True: the pattern's matches are the tokens and everything between them (whitespace) is dropped.
    return pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)


@cache
def _segmenter() -> rjieba.Jieba:
    """A private jieba-rs instance: the module-level one of ``rjieba`` can be changed by ``rjieba.add_word``."""
    import rjieba

    return rjieba.Jieba()


def segment_chinese(run: str) -> list[str]:
    """jieba's words of ``run``, a string of Han characters (default dictionary, HMM for unknown words).

    The words concatenate back to ``run``; should the segmenter ever return anything else, ``run`` is split
    into its characters instead, so offsets computed from the word lengths stay exact.
    """
    words: list[str] = _segmenter().cut(run, True)
    return words if "".join(words) == run else list(run)


def clean_text(text: str) -> str:
    """``text`` with HTML line breaks and invisible characters replaced by as many spaces (same length)."""
    if "<" in text:
        text = _BR_RE.sub(lambda m: " " * (m.end() - m.start()), text)
    return _INVISIBLE_RE.sub(" ", text)


class TextTokenizer:
    """A word- or character-level tokenizer with a learned vocabulary (see the module docstring).

    Build one with :meth:`fit`, or :meth:`load` a saved one. Encodings carry character offsets into the
    original text, which the explanation tools use to map attention back onto the words.
    """

    def __init__(self, tokenizer: Tokenizer, config: TokenizerConfig, level: ResolvedLevel) -> None:
        """Wrap a built Hugging Face ``tokenizer``; use :meth:`fit` or :meth:`load` rather than this."""
        if level not in get_args(ResolvedLevel):
            raise ValueError(
                f"level must be resolved to one of {', '.join(get_args(ResolvedLevel))}, got {level!r}"
            )
        self.config = config
        self.level: ResolvedLevel = level
        self._hf = tokenizer
        self._hf.no_padding()
        self._hf.enable_truncation(config.max_length)
        self._vocab: dict[str, int] = tokenizer.get_vocab()
        self._id_to_token = [""] * len(self._vocab)
        for token, i in self._vocab.items():
            self._id_to_token[i] = token
        if self._vocab.get(PAD_TOKEN) != PAD_ID or self._vocab.get(UNK_TOKEN) != UNK_ID:
            raise ValueError(f"vocabulary must map {PAD_TOKEN} to {PAD_ID} and {UNK_TOKEN} to {UNK_ID}")
        self._pre = _pre_tokenizer(level)
        self._hf_whole: Tokenizer | None = None

    # ------------------------------------------------------------------------------------------------
    # Building.

    @classmethod
    def fit(cls, texts: Iterable[str], config: TokenizerConfig | None = None) -> TextTokenizer:
        """Learn a vocabulary from ``texts``.

        Args:
            texts: training texts (not validation or test texts, to keep them unseen).
            config: options; default :class:`TokenizerConfig()`.

        Returns:
            The tokenizer; ``config.level == "auto"`` is resolved into :attr:`level`.

        Raises:
            ValueError: no texts.
        """
        config = config or TokenizerConfig()
        texts = list(texts)
        if not texts:
            raise ValueError("cannot fit a tokenizer on zero texts")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(
                f"texts[{bad}] is {type(texts[bad]).__name__}; fit takes strings ([ex.text for ex in ...])"
            )
        level: ResolvedLevel = detect_level(texts) if config.level == "auto" else config.level
        pre = _pre_tokenizer(level)
        if level in CHINESE_WORD_LEVELS:
            return cls(_fit_chinese_words(texts, config, level, pre), config, level)
        counter = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
        counter.pre_tokenizer = pre
        trainer = trainers.WordLevelTrainer(
            vocab_size=config.vocab_size - 2,
            min_frequency=config.min_freq,
            special_tokens=[],
            show_progress=False,
        )
        # Ties in frequency are broken by the trainer in token order, so the vocabulary is deterministic.
        counter.train_from_iterator(
            (_training_form(t, config.lowercase, pre) for t in texts), trainer=trainer, length=len(texts)
        )
        learned = counter.get_vocab()
        vocab = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}
        for token in sorted(learned, key=learned.__getitem__):
            vocab.setdefault(token, len(vocab))
        hf = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
        hf.pre_tokenizer = _pre_tokenizer(level)
        return cls(hf, config, level)

    def with_max_length(self, max_length: int) -> TextTokenizer:
        """The same tokenizer truncating at ``max_length`` tokens instead."""
        config = TokenizerConfig(**{**asdict(self.config), "max_length": max_length})
        return TextTokenizer(Tokenizer.from_str(self._hf.to_str()), config, self.level)

    # ------------------------------------------------------------------------------------------------
    # Vocabulary.

    @property
    def vocab_size(self) -> int:
        """Number of ids, including ``[PAD]`` and ``[UNK]``."""
        return len(self._id_to_token)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def id_to_token(self, index: int) -> str:
        """The vocabulary entry (normalized, e.g. lowercased) of ``index``."""
        if not 0 <= index < len(self._id_to_token):
            raise IndexError(f"token id {index} out of range [0, {len(self._id_to_token)})")
        return self._id_to_token[index]

    def token_to_id(self, token: str) -> int:
        """The id of a token as written (normalized here), or ``unk_id``."""
        return self._vocab.get(token.lower() if self.config.lowercase else token, UNK_ID)

    def get_vocab(self) -> dict[str, int]:
        """A copy of the vocabulary (normalized token -> id)."""
        return dict(self._vocab)

    # ------------------------------------------------------------------------------------------------
    # Encoding.

    def encode(self, text: str) -> Encoding:
        """Tokenize one text: ids, and character offsets into ``text``, truncated to ``max_length``."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[Encoding]:
        """Tokenize many texts at once through the parallel Rust batch API; same result as :meth:`encode`."""
        return [
            Encoding(ids=ids, offsets=offsets, text=text)
            for text, (ids, offsets) in zip(texts, self._encode_many(texts, with_offsets=True), strict=True)
        ]

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids only (no offsets): the fastest path, for building training data."""
        return [ids for ids, _ in self._encode_many(texts, with_offsets=False)]

    def _encode_many(
        self, texts: Sequence[str], with_offsets: bool
    ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got one str; use encode() for a single text")
        max_length = self.config.max_length
        if self.config.truncation == "head+tail":
            return self._encode_head_and_tail(texts, with_offsets)
        if self.level in CHINESE_WORD_LEVELS:
            return [self._encode_chinese(text, i) for i, text in enumerate(texts)]
        results: list[tuple[list[int], list[tuple[int, int]]]] = [([], [])] * len(texts)
        fast_inputs: list[str] = []
        fast_index: list[tuple[int, bool]] = []  # (position, whether the text was cut)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
            cleaned = clean_text(text)
            cut = _cut_point(cleaned, max_length * _CHARS_PER_TOKEN_BOUND)
            head = cleaned[:cut]
            lowered = _lower_in_place(head) if self.config.lowercase else head
            if lowered is None:
                results[i] = self._encode_split(cleaned)
            else:
                fast_inputs.append(lowered)
                fast_index.append((i, cut < len(cleaned)))
        if fast_inputs:
            if with_offsets:
                encodings = self._hf.encode_batch(fast_inputs, add_special_tokens=False)
            else:
                encodings = self._hf.encode_batch_fast(fast_inputs, add_special_tokens=False)
            for (i, was_cut), enc in zip(fast_index, encodings, strict=True):
                ids = enc.ids
                if was_cut and len(ids) < max_length:
                    # The cut kept too few tokens (very long words); redo this one on the whole text.
                    results[i] = self._encode_whole(texts[i])
                else:
                    results[i] = (ids, enc.offsets if with_offsets else [])
        return results

    def _encode_head_and_tail(
        self, texts: Sequence[str], with_offsets: bool
    ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """``head+tail`` truncation: the first quarter and the last three quarters of a long text's tokens.

        A long text is tokenized as two pieces, its first and its last ``max_length * 16`` characters, each cut
        at whitespace (no token spans whitespace, so the head piece's first tokens are the text's first tokens
        and the tail piece's last tokens its last ones); when a piece yields too few tokens (very long words)
        the whole text is tokenized instead.
        """
        limit = self.config.max_length * _CHARS_PER_TOKEN_BOUND
        keep_head, keep_tail = self._head_and_tail_sizes()
        whole = self._untruncated()
        results: list[tuple[list[int], list[tuple[int, int]]]] = [([], [])] * len(texts)
        pieces: list[str] = []
        # (position, piece index of the head, the tail's start in the text or -1 for a whole text)
        plans: list[tuple[int, int, int]] = []
        whole_texts: dict[int, str] = {}  # the lowered text of each two-piece plan, for the rare fallback
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
            cleaned = clean_text(text)
            if self.level in CHINESE_WORD_LEVELS:
                results[i] = self._ends(*self._chinese_tokens(cleaned, capped=False))
                continue
            lowered = _lower_in_place(cleaned) if self.config.lowercase else cleaned
            if lowered is None:
                results[i] = self._ends(*self._encode_split(cleaned, capped=False))
                continue
            head_end = _cut_point(lowered, limit)
            tail_start = _tail_cut_point(lowered, len(lowered) - limit) if head_end < len(lowered) else -1
            if tail_start <= head_end:  # short enough to tokenize whole
                plans.append((i, len(pieces), -1))
                pieces.append(lowered)
            else:
                plans.append((i, len(pieces), tail_start))
                pieces += [lowered[:head_end], lowered[tail_start:]]
                whole_texts[i] = lowered
        encode = whole.encode_batch if with_offsets else whole.encode_batch_fast
        encodings = encode(pieces, add_special_tokens=False) if pieces else []
        for i, first, tail_start in plans:
            head = encodings[first]
            if tail_start < 0:
                results[i] = self._ends(head.ids, head.offsets if with_offsets else [])
                continue
            tail = encodings[first + 1]
            if len(head.ids) < keep_head or len(tail.ids) < keep_tail:  # very long words: the whole text
                enc = whole.encode(whole_texts[i], add_special_tokens=False)
                results[i] = self._ends(enc.ids, enc.offsets if with_offsets else [])
                continue
            ids = head.ids[:keep_head] + tail.ids[len(tail.ids) - keep_tail :]
            offsets: list[tuple[int, int]] = []
            if with_offsets:
                offsets = head.offsets[:keep_head] + [
                    (start + tail_start, end + tail_start)
                    for start, end in tail.offsets[len(tail.ids) - keep_tail :]
                ]
            results[i] = (ids, offsets)
        return results

    def _ends(
        self, ids: list[int], offsets: list[tuple[int, int]]
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """All of a text's tokens cut to their head and tail (:meth:`_head_and_tail_sizes`)."""
        if len(ids) <= self.config.max_length:
            return ids, offsets
        keep_head, keep_tail = self._head_and_tail_sizes()
        tail = len(ids) - keep_tail
        return ids[:keep_head] + ids[tail:], offsets[:keep_head] + offsets[tail:] if offsets else offsets

    def _head_and_tail_sizes(self) -> tuple[int, int]:
        """Tokens ``head+tail`` keeps of a longer text: the first ``max_length // 4`` and the last rest."""
        keep_head = self.config.max_length // 4
        return keep_head, self.config.max_length - keep_head

    def _untruncated(self) -> Tokenizer:
        """A copy of the Rust tokenizer that does not truncate (``head+tail`` cuts the tokens itself)."""
        if self._hf_whole is None:
            self._hf_whole = Tokenizer.from_str(self._hf.to_str())
            self._hf_whole.no_truncation()
        return self._hf_whole

    def _encode_whole(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        cleaned = clean_text(text)
        lowered = _lower_in_place(cleaned) if self.config.lowercase else cleaned
        if lowered is None:
            return self._encode_split(cleaned)
        enc = self._hf.encode(lowered, add_special_tokens=False)
        return enc.ids, enc.offsets

    def _encode_chinese(self, text: str, position: int) -> tuple[list[int], list[tuple[int, int]]]:
        """Chinese word levels: segment in Python, look each piece up, stop at ``max_length`` tokens."""
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
        cleaned = clean_text(text)
        max_length = self.config.max_length
        cut = _cut_point(cleaned, max_length * _CHARS_PER_TOKEN_BOUND)
        ids, offsets = self._chinese_tokens(cleaned[:cut])
        if cut < len(cleaned) and len(ids) < max_length:
            # The cut kept too few tokens (very long words); redo this one on the whole text.
            ids, offsets = self._chinese_tokens(cleaned)
        return ids, offsets

    def _chinese_tokens(
        self, cleaned: str, *, capped: bool = True
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """The tokens of ``cleaned``: the first ``max_length``, or all of them with ``capped=False``."""
        max_length = self.config.max_length if capped else len(cleaned) + 1
        fallback = self.level == "word-zh+char"
        lower = self.config.lowercase
        vocab = self._vocab
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for piece, (start, end) in self._pre.pre_tokenize_str(cleaned):
            if not _HAN_RE.match(piece):
                ids.append(vocab.get(piece.lower() if lower else piece, UNK_ID))
                offsets.append((start, end))
            else:
                for word in segment_chinese(piece):
                    stop = start + len(word)
                    index = vocab.get(word)  # Han characters have no case
                    if index is not None or not fallback or len(word) == 1:
                        ids.append(UNK_ID if index is None else index)
                        offsets.append((start, stop))
                    else:
                        ids += [vocab.get(c, UNK_ID) for c in word]
                        offsets += [(i, i + 1) for i in range(start, stop)]
                    start = stop
            if len(ids) >= max_length:
                break
        return ids[:max_length], offsets[:max_length]

    def _encode_split(self, cleaned: str, *, capped: bool = True) -> tuple[list[int], list[tuple[int, int]]]:
        """Slow path: split the un-lowercased text, then lowercase and look up each piece on its own (the first
        ``max_length`` pieces, or all of them with ``capped=False``)."""
        pieces = self._pre.pre_tokenize_str(cleaned)
        pieces = pieces[: self.config.max_length] if capped else pieces
        lower = self.config.lowercase
        ids = [self._vocab.get(p.lower() if lower else p, UNK_ID) for p, _ in pieces]
        return ids, [offsets for _, offsets in pieces]

    # ------------------------------------------------------------------------------------------------
    # Persistence.

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``tokenizer.json`` (the Hugging Face tokenizer) and ``tokenizer_config.json`` to a directory.

        ``tokenizer.json`` alone expects text already normalized as described in the module docstring; load
        both with :meth:`load`.

        Returns:
            The directory.
        """
        from attnkit.atomic import atomic_write, write_text

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / TOKENIZER_FILE, lambda tmp: self._hf.save(str(tmp)))
        config = asdict(self.config)
        # The default truncation is left out, so that older attnkit versions still load the file.
        if config["truncation"] == "head":
            del config["truncation"]
        meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "level": self.level, "config": config}
        write_text(out / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TextTokenizer:
        """Load a tokenizer written by :meth:`save`.

        Raises:
            DataError: missing or unreadable files.
        """
        src = Path(directory)
        for name in (TOKENIZER_FILE, CONFIG_FILE):
            if not (src / name).is_file():
                raise DataError(
                    f"{src / name}: not found; expected a directory written by TextTokenizer.save"
                )
        try:
            meta = json.loads((src / CONFIG_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"format is {meta.get('format')!r}, not {_FORMAT!r}")
            config = TokenizerConfig(**meta["config"])
            hf = Tokenizer.from_file(str(src / TOKENIZER_FILE))
            return cls(hf, config, meta["level"])
        except Exception as e:  # tokenizers raises plain Exception for bad JSON
            raise DataError(f"{src}: cannot load tokenizer ({e})") from None

    def __repr__(self) -> str:
        return (
            f"TextTokenizer(level={self.level!r}, vocab_size={self.vocab_size}, "
            f"lowercase={self.config.lowercase}, max_length={self.config.max_length})"
        )


def _lower_in_place(text: str) -> str | None:
    """``text.lower()`` when it maps one character to one character with no context, else ``None``."""
    lowered = text.lower()
    if len(lowered) != len(text) or "\u03a3" in text:  # final sigma depends on its neighbours
        return None
    return lowered


def _cut_point(text: str, limit: int) -> int:
    """A whitespace position at or before ``limit`` to cut a long text at (``len(text)`` if not needed).

    No token contains whitespace, so the tokens of ``text[:cut]`` are the first tokens of ``text``.
    """
    if len(text) <= limit:
        return len(text)
    cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
    return cut if cut > 0 else len(text)


def _tail_cut_point(text: str, start: int) -> int:
    """A whitespace position at or after ``start`` (``-1`` if none): the tokens of ``text[cut:]`` are the last
    tokens of ``text``."""
    found = [i for i in (text.find(" ", max(start, 0)), text.find("\n", max(start, 0))) if i >= 0]
    return min(found) if found else -1


def _fit_chinese_words(
    texts: list[str], config: TokenizerConfig, level: ResolvedLevel, pre: pre_tokenizers.PreTokenizer
) -> Tokenizer:
    """The vocabulary of a Chinese word level: the most frequent pieces, ties broken by the piece itself.

    ``word-zh+char`` also counts every character of each multi-character Han word, so that the characters an
    unknown word falls back to are in the vocabulary too.
    """
    counts: Counter[str] = Counter()
    with_chars = level == "word-zh+char"
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(clean_text(text)):
            if not _HAN_RE.match(piece):
                counts[piece.lower() if config.lowercase else piece] += 1
                continue
            for word in segment_chinese(piece):
                counts[word] += 1
                if with_chars and len(word) > 1:
                    counts.update(word)
    kept = sorted((t for t, n in counts.items() if n >= config.min_freq), key=lambda t: (-counts[t], t))
    vocab = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}
    for token in kept[: config.vocab_size - 2]:
        vocab.setdefault(token, len(vocab))
    hf = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # Encoding segments in Python; on its own, tokenizer.json takes the pieces separated by spaces.
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return hf


def _training_form(text: str, lowercase: bool, pre: pre_tokenizers.PreTokenizer) -> str:
    """What the vocabulary trainer sees for ``text``: its normalized pieces, as encoding will look them up."""
    cleaned = clean_text(text)
    if not lowercase:
        return cleaned
    lowered = _lower_in_place(cleaned)
    if lowered is not None:
        return lowered
    return " ".join(piece.lower() for piece, _ in pre.pre_tokenize_str(cleaned))
