"""Hierarchical attention network (Yang et al. 2016): words -> sentences -> document.

Each document is split into sentences (vectorized, from the token ids), a word-level BiGRU + attention pooling
turns each sentence into a vector, and a sentence-level BiGRU + attention pooling turns the sentences into the
document vector.

Dimension legend: ``B`` batch, ``T`` tokens, ``E`` embedding size, ``N`` sentences in the batch, ``S`` most
sentences in a document, ``L`` longest sentence, ``Hw``/``Hs`` word/sentence GRU units per direction,
``R`` pooling queries, ``H`` pooling heads, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnkit.models.base import ClassifierConfig, ClassifierOutput, TextClassifier
from attnkit.models.recurrent import BidirectionalRNN

#: Why HAN has no ONNX export, shown to the user.
NOT_EXPORTABLE_REASON = (
    "HAN splits documents into sentences on the token ids, so its intermediate shapes (sentences per "
    "document, longest sentence) depend on the token values; torch.export cannot trace that with dynamic "
    "shapes. Serve it with the PyTorch backend (attnkit serve RUN_DIR --backend torch)."
)


@dataclass
class SentenceSplit:
    """Where each token of a batch falls after splitting into sentences.

    Attributes:
        sentence_index: ``(B, T)`` long, the sentence of each token; -1 for padding and for real tokens past
            ``max_sentences`` (those are dropped).
        position: ``(B, T)`` long, the token's position in its sentence; -1 where ``sentence_index`` is -1.
        lengths: ``(B, S)`` long, tokens per sentence (0 past a document's last sentence); ``S >= 1`` is the
            batch's largest sentence count.
        num_sentences: ``(B,)`` long, sentences per document.
    """

    sentence_index: Tensor
    position: Tensor
    lengths: Tensor
    num_sentences: Tensor


def split_sentences(
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    sentence_end_ids: tuple[int, ...],
    max_sentence_length: int,
    max_sentences: int,
) -> SentenceSplit:
    """Split right-padded documents into sentences without a Python loop over tokens.

    A sentence ends after a run of sentence-end tokens (``"great !!!"`` is one sentence), and also once it has
    ``max_sentence_length`` tokens (the rest continues as the next sentence). Tokens of sentences past
    ``max_sentences`` are dropped.

    Args:
        input_ids: ``(B, T)`` token ids.
        attention_mask: ``(B, T)`` bool, True = real token, right-padded.
        sentence_end_ids: ids that end a sentence (e.g. those of ``.``, ``!``, ``?``); may be empty.
        max_sentence_length: most tokens per sentence.
        max_sentences: most sentences per document.
    """
    batch, length = input_ids.shape
    device = input_ids.device
    steps = torch.arange(length, device=device)  # (T,)
    if sentence_end_ids:
        end_ids = torch.tensor(sentence_end_ids, device=device, dtype=input_ids.dtype)
        is_end = torch.isin(input_ids, end_ids) & attention_mask  # (B, T)
    else:
        is_end = torch.zeros_like(attention_mask)
    starts = torch.zeros_like(attention_mask)  # (B, T): a sentence begins here
    starts[:, 0] = True
    starts[:, 1:] = is_end[:, :-1] & ~is_end[:, 1:]
    start_step = torch.cummax(torch.where(starts, steps, 0), dim=1).values  # (B, T): step its sentence began
    position = (steps - start_step) % max_sentence_length  # (B, T): long sentences wrap into the next one
    sentence = torch.cumsum((starts | (position == 0)).long(), dim=1) - 1  # (B, T)
    keep = attention_mask & (sentence < max_sentences)  # (B, T)
    sentence_index = torch.where(keep, sentence, -1)
    position = torch.where(keep, position, -1)
    num_sentences = (sentence_index + 1).amax(dim=1)  # (B,): indices grow along the row
    most = max(int(num_sentences.max()), 1) if batch else 1
    lengths = torch.zeros(batch, most, dtype=torch.long, device=device)
    lengths.scatter_add_(1, sentence_index.clamp(min=0), keep.long())  # (B, S)
    return SentenceSplit(sentence_index, position, lengths, num_sentences)


@dataclass(frozen=True)
class HANConfig(ClassifierConfig):
    """Config of :class:`HANClassifier`.

    Attributes:
        word_hidden_size: word-level GRU units per direction ``Hw``.
        sentence_hidden_size: sentence-level GRU units per direction ``Hs``.
        sentence_end_ids: token ids that end a sentence (the tokenizer's ids of ``.``, ``!``, ``?``, ...).
            Empty: documents are cut into chunks of ``max_sentence_length`` tokens.
        max_sentence_length: longer sentences continue as a new sentence.
        max_sentences: tokens past this many sentences are dropped.
    """

    embed_dim: int = 64
    word_hidden_size: int = 32
    sentence_hidden_size: int = 32
    sentence_end_ids: tuple[int, ...] = ()
    max_sentence_length: int = 50
    max_sentences: int = 50

    def _validate_model(self) -> None:
        self._require_min("word_hidden_size", 1)
        self._require_min("sentence_hidden_size", 1)
        self._require_min("max_sentence_length", 1)
        self._require_min("max_sentences", 1)
        bad = [i for i in self.sentence_end_ids if not 0 <= i < self.vocab_size or i == self.pad_id]
        if bad:
            raise ValueError(
                f"{self._name}.sentence_end_ids must be token ids in [0, vocab_size={self.vocab_size}) other "
                f"than pad_id={self.pad_id}; got {bad}"
            )

    def pooling_dims(self) -> tuple[int, ...]:
        return (2 * self.word_hidden_size, 2 * self.sentence_hidden_size)


class HANClassifier(TextClassifier):
    """Hierarchical attention network.

    ``token_attention`` is each token's word weight times the weight of its sentence (summing to 1 over the
    kept tokens); ``pooling_weights`` is that same ``(B, 1, T)``. ``extras`` holds ``sentence_index`` and
    ``sentence_position`` ``(B, T)``, ``word_attention`` ``(B, S, L)``, ``sentence_attention`` ``(B, S)``
    (both averaged over pooling heads and queries) and the raw ``word_pooling_weights`` ``(B, S, [H,] R, L)``
    and ``sentence_pooling_weights`` ``(B, [H,] R, S)``.

    ``forward_from_embeddings`` needs ``input_ids`` to split the sentences.
    """

    config: HANConfig

    def __init__(self, config: HANConfig | None = None) -> None:
        config = config or HANConfig()
        super().__init__(config)
        word_dim = 2 * config.word_hidden_size
        self.word_rnn = BidirectionalRNN(config.embed_dim, config.word_hidden_size)
        self.word_pooling = self._make_pooling(word_dim)
        self.sentence_rnn = BidirectionalRNN(self.word_pooling.output_dim, config.sentence_hidden_size)
        self.pooling = self._make_pooling(2 * config.sentence_hidden_size)
        self.head = nn.Linear(self.pooling.output_dim, config.num_classes)
        self._init_embedding(std=0.1)

    def export_module(self) -> nn.Module:
        raise ValueError(f"cannot export han to ONNX: {NOT_EXPORTABLE_REASON}")

    def split(self, input_ids: Tensor, attention_mask: Tensor) -> SentenceSplit:
        """:func:`split_sentences` with this model's settings."""
        cfg = self.config
        return split_sentences(
            input_ids,
            attention_mask,
            sentence_end_ids=cfg.sentence_end_ids,
            max_sentence_length=cfg.max_sentence_length,
            max_sentences=cfg.max_sentences,
        )

    def forward_from_embeddings(
        self,
        embeddings: Tensor,
        attention_mask: Tensor,
        input_ids: Tensor | None = None,
        *,
        need_layer_attentions: bool = False,
    ) -> ClassifierOutput:
        if input_ids is None or input_ids.shape != attention_mask.shape:
            raise ValueError(
                "HAN splits documents into sentences on the token ids: pass input_ids (batch, tokens) with "
                "the embeddings, e.g. model.forward_from_embeddings(emb, mask, input_ids=ids)"
            )
        self._check_embeddings(embeddings, attention_mask)
        split = self.split(input_ids, attention_mask)
        batch, length, _ = embeddings.shape
        x = self.dropout(embeddings)  # (B, T, E)

        # Gather the kept tokens into one row per sentence.
        kept_b, kept_t = (split.sentence_index >= 0).nonzero(as_tuple=True)  # (M,) each
        sent_of = split.sentence_index[kept_b, kept_t]  # (M,)
        pos_of = split.position[kept_b, kept_t]  # (M,)
        first = torch.cumsum(split.num_sentences, 0) - split.num_sentences  # (B,) first sentence of each doc
        row_of = first[kept_b] + sent_of  # (M,) sentence row in the batch
        word_lengths = split.lengths[split.lengths > 0]  # (N,) row-major = sentence row order
        num_rows = word_lengths.shape[0]
        longest = max(int(split.lengths.max()), 1)
        words = x.new_zeros(num_rows, longest, x.shape[-1])  # (N, L, E)
        words[row_of, pos_of] = x[kept_b, kept_t]
        word_mask = torch.arange(longest, device=x.device) < word_lengths.unsqueeze(1)  # (N, L)

        # Words -> sentence vectors.
        if num_rows:
            word_states = self.word_rnn(words, word_lengths)  # (N, L, 2 Hw)
        else:  # no document has a real token
            word_states = x.new_zeros(0, longest, 2 * self.config.word_hidden_size)
        word_pool = self.word_pooling(self.dropout(word_states), word_mask)  # (N, R 2Hw), (N, [H,] R, L)

        # Sentence vectors back into documents -> document vector.
        most = split.lengths.shape[1]
        doc_of = torch.repeat_interleave(torch.arange(batch, device=x.device), split.num_sentences)  # (N,)
        slot_of = torch.arange(num_rows, device=x.device) - first[doc_of]  # (N,)
        sentences = x.new_zeros(batch, most, word_pool.pooled.shape[-1])  # (B, S, R 2Hw)
        sentences[doc_of, slot_of] = word_pool.pooled
        sentence_mask = torch.arange(most, device=x.device) < split.num_sentences.unsqueeze(1)  # (B, S)
        sentence_states = self.sentence_rnn(sentences, split.num_sentences)  # (B, S, 2 Hs)
        doc_pool = self.pool(self.dropout(sentence_states), sentence_mask)  # (B, R 2Hs), (B, [H,] R, S)
        logits = self.forward_head(doc_pool.pooled)  # (B, C)

        word_weights = word_pool.token_weights()  # (N, L)
        sentence_weights = doc_pool.token_weights()  # (B, S)
        token_attention = x.new_zeros(batch, length)  # (B, T)
        token_attention[kept_b, kept_t] = word_weights[row_of, pos_of] * sentence_weights[kept_b, sent_of]
        word_attention = x.new_zeros(batch, most, longest)  # (B, S, L)
        word_attention[doc_of, slot_of] = word_weights
        raw_word = x.new_zeros(batch, most, *word_pool.weights.shape[1:])  # (B, S, [H,] R, L)
        raw_word[doc_of, slot_of] = word_pool.weights
        return ClassifierOutput(
            logits=logits,
            unit_attention=token_attention,
            pooling_weights=token_attention.unsqueeze(1),  # (B, 1, T)
            layer_attentions=None,
            extras={
                "sentence_index": split.sentence_index,
                "sentence_position": split.position,
                "word_attention": word_attention,
                "sentence_attention": sentence_weights,
                "word_pooling_weights": raw_word,
                "sentence_pooling_weights": doc_pool.weights,
            },
        )
