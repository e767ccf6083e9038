"""Naive-Bayes-scaled n-gram attention: hashed uni..K-gram evidence pooled by attention over word keys.

Each token position ``t`` closes up to ``K`` n-grams (the word itself, the bigram ending at ``t``, the trigram
ending at ``t``...). Every n-gram ``g`` has a row in one shared table of ``vocab_size + ngram_buckets`` rows
(unigrams by word id, longer n-grams by hash) holding:

- ``r_g`` ``(C,)``: its Naive-Bayes log-count ratios, one-vs-rest per class, counted on the training split by
  :meth:`NBAttnClassifier.init_from_data` (binarized document counts, as in NBSVM, Wang & Manning 2012). A
  buffer: saved with the weights, never trained.
- ``w_g`` ``(C,)``: learned gates (initialised to ``gate_init``), so the n-gram's evidence is ``r_g * w_g``: a
  learned weight per n-gram and class in the NB-scaled feature space, as NBSVM learns one.

Each word also has a learned key ``k_t`` ``(E,)``. The token state is ``[k_t ; sum_g r_g * w_g]``
``(E + C,)``, where the sum runs over the n-grams ending at ``t`` (with ``binary``, only those seen for the
first time in the text). Attention pooling scores the tokens from their keys only, and the same weights average
the keys and the evidence; the pooled evidence is scaled by ``T ** length_power``. A linear head maps the pooled
vector to the logits; it starts as ``nb_scale`` times the identity on the evidence block.

Optional sub-word evidence (``char_buckets > 0``): every vocabulary word also owns the character n-grams of
``<word>`` (lengths ``char_min_n..char_max_n``, ``<`` and ``>`` marking the word's boundaries, as in
fastText), hashed into ``char_buckets`` further rows of the same table with their own NB ratios and gates. A
word's sub-word evidence ``sum_g r_g * w_g`` over its character n-grams depends on the word id only, so it is
computed once per distinct id of the batch and added to the word's evidence at its first occurrence (every
occurrence without ``binary``). The model needs the vocabulary's strings for this: :meth:`set_vocabulary`
(which :func:`attnkit.runs.build_run_model` calls with the tokenizer's vocabulary) builds the
word -> character-n-gram rows, a buffer that is not saved with the weights since the tokenizer determines it.

Why scores from keys only: on IMDb, scoring from the full state (evidence included) let the attention latch
onto the memorized n-grams of the training split (validation up, test down).

Dimension legend: ``B`` batch, ``T`` tokens, ``K`` n-gram orders, ``E`` key embedding size, ``C`` classes,
``S = E + C`` token state size, ``N`` rows of the n-gram table, ``U`` distinct word ids of a batch, ``G``
character n-grams of those words (all of them, concatenated).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.data.text.batching import collate
from attnkit.layers.pooling import AttentionPooling, PoolingOutput
from attnkit.models.base import ClassifierConfig, TextClassifier

#: Multiplier of the n-gram hash (a prime larger than any realistic vocabulary).
NGRAM_HASH_PRIME = 1_000_003
#: Boundary markers put around a word before its character n-grams are taken.
WORD_START, WORD_END = "<", ">"


def ngram_rows(
    input_ids: Tensor, *, pad_id: int, vocab_size: int, num_buckets: int, max_order: int
) -> Tensor:
    """Rows of the shared n-gram table for the n-grams that end at each position.

    Order 1 is the word itself (row ``input_ids[b, t]``). Order ``n >= 2`` is the n-gram
    ``ids[t-n+1 .. t]``, hashed to ``vocab_size + bucket`` with ``bucket`` in ``[1, num_buckets)``:
    ``h = n; for each id: h = (h * NGRAM_HASH_PRIME + id) % (num_buckets - 1); bucket = 1 + h``.
    An n-gram that would start before position 0 or include padding does not exist and gets row ``pad_id``
    (the zero row), so padding never creates n-grams and a position's rows do not depend on what follows it.

    Args:
        input_ids: ``(B, T)`` token ids, right-padded with ``pad_id``.
        pad_id: the padding id.
        vocab_size: number of word ids (rows ``[0, vocab_size)`` are the unigrams).
        num_buckets: hashed rows for n-grams of order >= 2, bucket 0 unused (0 when ``max_order == 1``).
        max_order: longest n-gram ``K``.

    Returns:
        ``(B, T, K)`` long rows in ``[0, vocab_size + num_buckets)``.
    """
    ids = input_ids.long()  # (B, T)
    real = ids != pad_id  # (B, T)
    rows = [ids]
    length = ids.shape[1]
    modulus = num_buckets - 1
    for order in range(2, max_order + 1):
        # Left-pad by order - 1 so that every position t reads the n-gram ids[t-order+1 .. t] at a fixed
        # shape (no branch on T: the same graph serves any length, as ONNX export needs); an n-gram that
        # reaches into the left padding is not real and is dropped below.
        padded_ids = F.pad(ids, (order - 1, 0), value=pad_id)  # (B, T + order - 1)
        padded_real = F.pad(real, (order - 1, 0), value=False)  # (B, T + order - 1)
        hashed = torch.full_like(ids, order)  # (B, T)
        valid = torch.ones_like(real)  # (B, T)
        for offset in range(order):
            piece = padded_ids[:, offset : offset + length]  # (B, T): the offset-th word of each n-gram
            hashed = (hashed * NGRAM_HASH_PRIME + piece) % modulus
            valid = valid & padded_real[:, offset : offset + length]
        rows.append(torch.where(valid, vocab_size + 1 + hashed, pad_id))  # (B, T)
    return torch.stack(rows, dim=-1)  # (B, T, K)


def char_ngrams(word: str, *, min_n: int, max_n: int) -> list[str]:
    """The distinct character n-grams of ``<word>`` with ``min_n <= n <= max_n``, shortest first, then by position.

    ``char_ngrams("cat", min_n=2, max_n=3)`` is ``["<c", "ca", "at", "t>", "<ca", "cat", "at>"]``. An n-gram
    that occurs twice in a word is listed once. The empty string (how special tokens are passed) has none.
    """
    if not word:
        return []
    marked = f"{WORD_START}{word}{WORD_END}"
    grams: dict[str, None] = {}  # insertion-ordered set
    for n in range(min_n, min(max_n, len(marked)) + 1):
        for start in range(len(marked) - n + 1):
            grams.setdefault(marked[start : start + n])
    return list(grams)


def char_ngram_bucket(gram: str, num_buckets: int) -> int:
    """Bucket of a character n-gram in ``[1, num_buckets)``: ``1 + crc32(utf-8 bytes) % (num_buckets - 1)``.

    CRC-32 rather than Python's ``hash``, which is salted per process.
    """
    return 1 + zlib.crc32(gram.encode("utf-8")) % (num_buckets - 1)


def char_ngram_table(
    tokens: Sequence[str], *, min_n: int, max_n: int, num_buckets: int, first_row: int, max_word_length: int
) -> tuple[Tensor, Tensor]:
    """Word id -> rows of its character n-grams, as a flat list with offsets (compressed sparse rows).

    The rows of word ``i`` are ``rows[offsets[i] : offsets[i + 1]]``: ``first_row + bucket`` for each of its
    :func:`char_ngrams` (distinct buckets, in the order of the n-grams). Words longer than ``max_word_length``
    characters (in 20 Newsgroups mostly uuencoded or hex lines) and empty strings get no rows.

    Args:
        tokens: ``tokens[i]`` is the vocabulary entry of id ``i`` ("" for special tokens).
        min_n: shortest character n-gram (boundary markers count as characters).
        max_n: longest character n-gram.
        num_buckets: hashed rows, bucket 0 unused.
        first_row: table row of bucket 0.
        max_word_length: longer words get no character n-grams.

    Returns:
        ``rows (G_total,)`` long and ``offsets (V + 1,)`` long.
    """
    rows: list[int] = []
    offsets = [0]
    buckets: dict[str, int] = {}  # many words share their n-grams: hash each once
    for word in tokens:
        if len(word) <= max_word_length:
            seen: dict[int, None] = {}
            for gram in char_ngrams(word, min_n=min_n, max_n=max_n):
                bucket = buckets.get(gram)
                if bucket is None:
                    bucket = buckets[gram] = char_ngram_bucket(gram, num_buckets)
                seen.setdefault(first_row + bucket)
            rows.extend(seen)
        offsets.append(len(rows))
    return torch.tensor(rows, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


def gather_segments(values: Tensor, offsets: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """The concatenated segments ``values[offsets[i] : offsets[i + 1]]`` of every ``i`` in ``index``.

    Args:
        values: ``(G_total,)`` flat values.
        offsets: ``(V + 1,)`` segment boundaries.
        index: ``(U,)`` segments to gather.

    Returns:
        ``(G,)`` the gathered values and ``(G,)`` the position in ``index`` each one came from.
    """
    starts = offsets[index]  # (U,)
    lengths = offsets[index + 1] - starts  # (U,)
    owner = torch.repeat_interleave(torch.arange(index.numel(), device=index.device), lengths)  # (G,)
    out_starts = torch.cumsum(lengths, dim=0) - lengths  # (U,) where each segment begins in the output
    within = torch.arange(owner.numel(), device=index.device) - out_starts[owner]  # (G,) rank in its segment
    return values[starts[owner] + within], owner


def first_occurrences(rows: Tensor, *, pad_id: int) -> Tensor:
    """``rows (B, T, K)`` -> bool ``(B, T, K)``: True where a row appears for the first time in its text.

    Padding rows (``pad_id``) are never first occurrences. Whether a position is a first occurrence depends
    only on earlier positions, so extra right padding changes nothing.
    """
    batch, length, orders = rows.shape
    flat = rows.reshape(batch, length * orders)  # (B, T*K), position-major: earlier tokens first
    # Sort on (row, position) packed into one int64 key: keys are unique, so any sort keeps equal rows in
    # position order (no stable sort needed, which ONNX export lacks). Rows < 2^40, positions < 2^23.
    positions = torch.arange(flat.shape[1], device=flat.device)  # (T*K,)
    order = torch.argsort(flat * (1 << 23) + positions, dim=1)  # (B, T*K)
    sorted_rows = torch.gather(flat, 1, order)  # (B, T*K)
    new = torch.ones_like(sorted_rows, dtype=torch.bool)  # (B, T*K)
    new[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    first = torch.zeros_like(new).scatter_(1, order, new)  # (B, T*K) back in position order
    return (first & (flat != pad_id)).reshape(batch, length, orders)


def nb_log_count_ratios(counts: Tensor, *, alpha: float) -> Tensor:
    """One-vs-rest Naive-Bayes log-count ratios from per-class document counts.

    For class ``c`` and row ``g``: ``p = alpha + counts[g, c]`` (documents of class ``c`` containing ``g``),
    ``q = alpha + sum_{c' != c} counts[g, c']``, and ``r[g, c] = log(p / |p|_1) - log(q / |q|_1)`` with the
    norms summed over the rows seen at least once. Rows never seen get 0 (no evidence).

    Args:
        counts: ``(N, C)`` document counts, ``C >= 2``.
        alpha: additive smoothing (> 0).

    Returns:
        ``(N, C)`` float32 ratios.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if counts.dim() != 2 or counts.shape[1] < 2:
        raise ValueError(f"counts must have shape (rows, classes >= 2), got {tuple(counts.shape)}")
    counts = counts.double()
    seen = counts.sum(dim=1) > 0  # (N,)
    positive = counts + alpha  # (N, C)
    negative = counts.sum(dim=1, keepdim=True) - counts + alpha  # (N, C)
    p = positive / positive[seen].sum(dim=0)  # (N, C)
    q = negative / negative[seen].sum(dim=0)  # (N, C)
    return torch.where(seen.unsqueeze(1), p.log() - q.log(), 0.0).float()  # (N, C)


@dataclass(frozen=True)
class NBAttnConfig(ClassifierConfig):
    """Config of :class:`NBAttnClassifier`.

    Attributes:
        embed_dim: size ``E`` of the learned key embedding the attention scores come from.
        max_order: longest n-gram ``K`` (1 = words only, 3 = words, bigrams and trigrams).
        ngram_buckets: hashed rows for n-grams of order 2..K (row 0 unused); the table has
            ``vocab_size + ngram_buckets`` rows.
        nb_alpha: smoothing of the Naive-Bayes counts.
        nb_scale: initial weight of the NB block in the head (logit of class ``c`` starts at ``nb_scale``
            times the attention-weighted mean of ``r_c``).
        gate_init: initial value of every gate ``w_g``: 0 starts from no evidence and learns each n-gram's
            weight in the NB-scaled feature space (NBSVM-like; starting at the NB classifier, 1, memorizes the
            training split, since its ratios were counted on it); larger values start closer to Naive Bayes.
        binary: count each n-gram once per text (its first occurrence), as NBSVM's binarized features do.
        length_power: the pooled evidence is multiplied by ``T_real ** length_power``: 0 keeps the attention
            average, 1 turns it into an attention-weighted sum (with uniform weights, a linear model's score),
            0.5 sits between. On IMDb with a linear model on the same features 0.5 did best (sqrt > binary sum
            > mean, 91.7 / 91.6 / 90.9%).
        key_std: standard deviation of the key embedding's initialisation.
        char_buckets: hashed rows for the words' character n-grams (row 0 unused); 0 (the default) turns
            sub-word evidence off. The model then needs :meth:`NBAttnClassifier.set_vocabulary`.
        char_min_n: shortest character n-gram of ``<word>`` (the markers count).
        char_max_n: longest character n-gram.
        char_max_word_length: words longer than this many characters get no character n-grams.
        char_gate_init: initial value of the character n-grams' gates (a word has tens of them, so starting
            them at ``gate_init`` would outweigh the word's own evidence).
        char_norm_power: a word's summed character evidence is divided by ``M ** char_norm_power``, ``M`` the
            number of its character n-grams: 0 keeps the sum, 1 gives their mean (as fastText averages a word's
            sub-word vectors).
    """

    embed_dim: int = 16
    dropout: float = 0.3
    max_order: int = 3
    ngram_buckets: int = 2**21
    nb_alpha: float = 1.0
    nb_scale: float = 1.0
    gate_init: float = 0.0
    binary: bool = True
    length_power: float = 0.5
    key_std: float = 0.1
    char_buckets: int = 0
    char_min_n: int = 2
    char_max_n: int = 5
    char_max_word_length: int = 24
    char_gate_init: float = 0.0
    char_norm_power: float = 0.0

    def _validate_model(self) -> None:
        self._require_min("max_order", 1)
        if self.max_order > 1 and self.ngram_buckets < 2:
            raise ValueError(
                f"{self._name}.ngram_buckets must be >= 2 when max_order > 1, got {self.ngram_buckets}"
            )
        if self.nb_alpha <= 0:
            raise ValueError(f"{self._name}.nb_alpha must be > 0, got {self.nb_alpha}")
        if not isinstance(self.binary, bool):
            raise ValueError(f"{self._name}.binary must be true or false, got {self.binary!r}")
        if self.max_length * self.max_order >= 1 << 23:  # first_occurrences packs positions into 23 bits
            raise ValueError(
                f"{self._name}: max_length * max_order must be < {1 << 23}, got {self.max_length * self.max_order}"
            )
        if self.length_power < 0:
            raise ValueError(f"{self._name}.length_power must be >= 0, got {self.length_power}")
        if self.char_buckets == 1 or self.char_buckets < 0:
            raise ValueError(
                f"{self._name}.char_buckets must be 0 (no character n-grams) or >= 2, got {self.char_buckets}"
            )
        self._require_min("char_min_n", 1)
        if self.char_max_n < self.char_min_n:
            raise ValueError(
                f"{self._name}.char_max_n must be >= char_min_n={self.char_min_n}, got {self.char_max_n}"
            )
        self._require_min("char_max_word_length", 1)
        if self.char_norm_power < 0:
            raise ValueError(f"{self._name}.char_norm_power must be >= 0, got {self.char_norm_power}")

    @property
    def word_rows(self) -> int:
        """Rows of the word n-grams (unigrams, then the hashed longer n-grams); the character n-grams follow."""
        return self.vocab_size + (self.ngram_buckets if self.max_order > 1 else 0)

    @property
    def num_rows(self) -> int:
        """Rows of the shared n-gram table."""
        return self.word_rows + self.char_buckets

    @property
    def state_dim(self) -> int:
        """Size ``S = E + C`` of a token state (and of what :meth:`NBAttnClassifier.embed` returns)."""
        return self.embed_dim + self.num_classes

    def pooling_dims(self) -> tuple[int, ...]:
        return (self.embed_dim,)

    def token_input_dim(self) -> int:
        return self.state_dim


class NBAttnClassifier(TextClassifier):
    """Hashed n-grams with Naive-Bayes evidence, attention pooling, linear head.

    ``embed`` returns the full token state ``(B, T, E + C)`` (keys and gated NB evidence), so gradient and
    Integrated-Gradients attributions cover everything a token contributes. Call :meth:`init_from_data` with
    the training split before training (the training loop does); until then the NB evidence is zero.
    """

    config: NBAttnConfig

    def __init__(self, config: NBAttnConfig | None = None) -> None:
        config = config or NBAttnConfig()
        super().__init__(config)
        # Keys: the base class's word embedding (vocab_size, E). Evidence: one row per n-gram of the table.
        self.gate = nn.Embedding(config.num_rows, config.num_classes, padding_idx=config.pad_id)  # w_g (N, C)
        self.register_buffer("nb_ratios", torch.zeros(config.num_rows, config.num_classes))  # r_g (N, C)
        self.nb_ratios: Tensor
        self._init_embedding(std=config.key_std)
        nn.init.constant_(self.gate.weight, config.gate_init)
        with torch.no_grad():
            self.gate.weight[config.word_rows :].fill_(config.char_gate_init)
            self.gate.weight[config.pad_id].zero_()
        # Word id -> character n-gram rows (see char_ngram_table); rebuilt from the tokenizer, never saved.
        self.register_buffer("char_rows", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer(
            "char_offsets", torch.zeros(config.vocab_size + 1, dtype=torch.long), persistent=False
        )
        self.char_rows: Tensor
        self.char_offsets: Tensor
        self._has_vocabulary = False
        self.pooling: AttentionPooling = self._make_pooling(config.embed_dim)
        self.head = nn.Linear(config.pooling_queries * config.state_dim, config.num_classes)
        self._init_head()

    def _init_head(self) -> None:
        cfg = self.config
        with torch.no_grad():  # the key block keeps nn.Linear's default initialisation
            self.head.bias.zero_()
            start = cfg.pooling_queries * cfg.embed_dim  # pooled = [keys (R*E) ; evidence (R*C)]
            for query in range(cfg.pooling_queries):  # the evidence block of every query
                block = self.head.weight[
                    :, start + query * cfg.num_classes : start + (query + 1) * cfg.num_classes
                ]
                block.copy_(torch.eye(cfg.num_classes) * cfg.nb_scale / cfg.pooling_queries)

    def rows(self, input_ids: Tensor) -> Tensor:
        """``input_ids (B, T)`` -> ``(B, T, K)`` rows of the n-gram table (see :func:`ngram_rows`)."""
        cfg = self.config
        return ngram_rows(
            input_ids,
            pad_id=cfg.pad_id,
            vocab_size=cfg.vocab_size,
            num_buckets=cfg.ngram_buckets,
            max_order=cfg.max_order,
        )

    @property
    def uses_chars(self) -> bool:
        """Whether the model has character n-gram evidence (``char_buckets > 0``)."""
        return self.config.char_buckets > 0

    def set_vocabulary(self, tokens: Sequence[str]) -> None:
        """Build the word -> character n-gram rows from the vocabulary (nothing to do without ``char_buckets``).

        Args:
            tokens: ``tokens[i]`` is the (normalized) vocabulary entry of id ``i``; "" for special tokens.
        """
        cfg = self.config
        if len(tokens) != cfg.vocab_size:
            raise ValueError(f"got {len(tokens)} vocabulary entries for vocab_size={cfg.vocab_size}")
        if not self.uses_chars:
            return
        rows, offsets = char_ngram_table(
            tokens,
            min_n=cfg.char_min_n,
            max_n=cfg.char_max_n,
            num_buckets=cfg.char_buckets,
            first_row=cfg.word_rows,
            max_word_length=cfg.char_max_word_length,
        )
        device = self.char_offsets.device
        self.char_rows = rows.to(device)
        self.char_offsets = offsets.to(device)
        self._has_vocabulary = True

    def _check_vocabulary(self) -> None:
        if not self._has_vocabulary:
            raise ValueError(
                "nb-attn with char_buckets > 0 needs the vocabulary's strings: call "
                "model.set_vocabulary(tokens) first (attnkit.runs.build_run_model does)"
            )

    def char_rows_of(self, words: Tensor) -> tuple[Tensor, Tensor]:
        """``words (U,)`` word ids -> ``(G,)`` rows of their character n-grams and ``(G,)`` each row's word index."""
        self._check_vocabulary()
        return gather_segments(self.char_rows, self.char_offsets, words.long())

    def char_evidence(self, input_ids: Tensor) -> Tensor:
        """``input_ids (B, T)`` -> ``(B, T, C)``: each word's ``sum_g r_g * w_g`` over its ``M`` character n-grams
        (divided by ``M ** char_norm_power``).

        Computed once per distinct word id of the batch, then indexed back to the positions.
        """
        words, where = torch.unique(input_ids, return_inverse=True)  # (U,), (B, T)
        rows, owner = self.char_rows_of(words)  # (G,), (G,)
        per_gram = F.embedding(rows, self.nb_ratios) * self.gate(rows)  # (G, C)
        per_word = per_gram.new_zeros(words.numel(), self.config.num_classes)  # (U, C)
        per_word = per_word.index_add(0, owner, per_gram)  # (U, C)
        if self.config.char_norm_power:
            grams = torch.bincount(owner, minlength=words.numel()).clamp(min=1).to(per_word.dtype)  # (U,)
            per_word = per_word / grams.pow(self.config.char_norm_power).unsqueeze(1)  # (U, C)
        return per_word[where]  # (B, T, C)

    @torch.no_grad()
    def document_counts(
        self, ids: Sequence[Sequence[int]], labels: Sequence[int], *, batch_size: int = 256
    ) -> Tensor:
        """``(N, max(C, 2))`` float64: for each table row and class, how many texts of that class contain it.

        A character n-gram is contained in a text if one of the text's words has it.
        """
        if len(ids) != len(labels):
            raise ValueError(f"got {len(ids)} texts but {len(labels)} labels")
        cfg = self.config
        counts = torch.zeros(cfg.num_rows, max(cfg.num_classes, 2), dtype=torch.float64)  # (N, C')
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths: little padding
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = collate([list(ids[i]) for i in index], pad_id=cfg.pad_id)
            rows = self.rows(batch.input_ids)  # (B, T, K)
            first = first_occurrences(rows, pad_id=cfg.pad_id)  # (B, T, K): each n-gram once per text
            label = torch.as_tensor([labels[i] for i in index]).view(-1, 1, 1).expand_as(rows)  # (B, T, K)
            ones = torch.ones(int(first.sum()), dtype=torch.float64)
            counts.index_put_((rows[first], label[first]), ones, accumulate=True)
            if self.uses_chars:  # each character n-gram once per text, whichever of its words it came from
                words = rows[..., 0]  # (B, T)
                text = torch.arange(words.shape[0]).view(-1, 1).expand_as(words)  # (B, T)
                unique_words = first[..., 0]  # (B, T)
                char_rows, owner = self.char_rows_of(words[unique_words])  # (G,), (G,)
                text_of_row = text[unique_words][owner]  # (G,)
                pairs = torch.unique(text_of_row * cfg.num_rows + char_rows)  # (P,) distinct (text, row)
                pair_rows, pair_texts = pairs % cfg.num_rows, pairs // cfg.num_rows
                pair_labels = label[:, 0, 0][pair_texts]  # (P,)
                ones = torch.ones(pairs.numel(), dtype=torch.float64)
                counts.index_put_((pair_rows, pair_labels), ones, accumulate=True)
        return counts

    @torch.no_grad()
    def init_from_data(self, ids: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        """Set the Naive-Bayes ratios from the training split (token id lists and their class ids).

        With a single logit (``num_classes = 1``) the ratio is that of label 1 against label 0.
        """
        if len(ids) == 0:
            raise ValueError("init_from_data needs at least one training text")
        ratios = nb_log_count_ratios(self.document_counts(ids, labels), alpha=self.config.nb_alpha)  # (N, C')
        if self.config.num_classes == 1:
            ratios = ratios[:, 1:]
        ratios[self.config.pad_id] = 0.0
        self.nb_ratios.copy_(ratios)

    def embed(self, input_ids: Tensor) -> Tensor:
        rows = self.rows(input_ids)  # (B, T, K)
        keys = self.embedding(input_ids)  # (B, T, E)
        evidence = F.embedding(rows, self.nb_ratios) * self.gate(rows)  # (B, T, K, C)
        if self.uses_chars:  # the word's character n-grams join its unigram (padding has none)
            evidence = torch.cat(
                [evidence, self.char_evidence(input_ids).unsqueeze(2)], dim=2
            )  # (B, T, K+1, C)
        if self.config.binary:
            first = first_occurrences(rows, pad_id=self.config.pad_id)  # (B, T, K)
            if self.uses_chars:
                first = torch.cat(
                    [first, first[..., :1]], dim=2
                )  # (B, T, K+1): with the word's first occurrence
            evidence = evidence * first.unsqueeze(-1)
        return torch.cat([keys, evidence.sum(dim=2)], dim=-1)  # (B, T, E + C)

    def pool(self, states: Tensor, attention_mask: Tensor) -> PoolingOutput:
        """Attention scores from the keys only; the weights pool both the keys and the evidence.

        ``states (B, T, E + C)`` -> ``pooled (B, R*E + R*C)``, ``weights (B, [H,] R, T)``.
        """
        keys, evidence = states.split([self.config.embed_dim, self.config.num_classes], dim=-1)
        out = self.pooling(keys, attention_mask)  # pooled (B, R*E), weights (B, [H,] R, T)
        weights = out.weights if out.weights.dim() == 3 else out.weights.mean(dim=1)  # (B, R, T)
        pooled_evidence = torch.bmm(weights, evidence).flatten(1)  # (B, R*C)
        if self.config.length_power:
            lengths = attention_mask.sum(dim=1, keepdim=True).clamp(min=1).to(pooled_evidence.dtype)  # (B, 1)
            pooled_evidence = pooled_evidence * lengths.pow(self.config.length_power)  # (B, R*C)
        return PoolingOutput(pooled=torch.cat([out.pooled, pooled_evidence], dim=-1), weights=out.weights)

    def token_contributions(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``(B, T, C)`` each token's share of the logits: its pooled key and its pooled (length-scaled) evidence."""
        states, _ = self.forward_features(self.embed(input_ids), attention_mask)  # (B, T, E + C)
        keys, evidence = states.split([self.config.embed_dim, self.config.num_classes], dim=-1)
        key_parts = self.pooling.token_contributions(keys, attention_mask)  # (B, R, T, E)
        weights = self.pooling(keys, attention_mask).weights  # (B, [H,] R, T)
        weights = weights if weights.dim() == 3 else weights.mean(dim=1)  # (B, R, T)
        evidence_parts = weights[..., None] * evidence[:, None, :, :]  # (B, R, T, C)
        if self.config.length_power:
            lengths = attention_mask.sum(dim=1).clamp(min=1).to(evidence_parts.dtype)  # (B,)
            evidence_parts = evidence_parts * lengths.pow(self.config.length_power)[:, None, None, None]
        queries = key_parts.shape[1]
        key_weight, evidence_weight = self.head.weight.split(
            [queries * self.config.embed_dim, queries * self.config.num_classes], dim=1
        )  # (C, R*E), (C, R*C)
        from_keys = torch.einsum(
            "brte,cre->btc", key_parts, key_weight.view(-1, queries, self.config.embed_dim)
        )
        from_evidence = torch.einsum(
            "brtk,crk->btc", evidence_parts, evidence_weight.view(-1, queries, self.config.num_classes)
        )
        return from_keys + from_evidence  # (B, T, C)

    def forward_features(
        self, embeddings: Tensor, attention_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        return self.dropout(embeddings), None  # (B, T, S): no context, the pooling does all the work
