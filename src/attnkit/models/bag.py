"""A non-contextual bag of words and hashed bigrams with attention pooling (fastText bigrams + attention).

Dimension legend: ``B`` batch, ``T`` tokens, ``E`` embedding size, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnkit.models.base import ClassifierConfig, TextClassifier

#: Multiplier of the bigram hash (a prime larger than any realistic vocabulary).
BIGRAM_HASH_PRIME = 1_000_003


def bigram_buckets(input_ids: Tensor, *, pad_id: int, num_buckets: int) -> Tensor:
    """Hash the bigram ending at each position into ``[1, num_buckets)``; 0 means "no bigram".

    The bigram at position ``i`` is ``(ids[i-1], ids[i])`` with bucket
    ``1 + (ids[i-1] * BIGRAM_HASH_PRIME + ids[i]) % (num_buckets - 1)``. Position 0 has no bigram, and neither
    does any position where ``ids[i-1]`` or ``ids[i]`` is ``pad_id``, so padding never creates bigrams.

    Args:
        input_ids: ``(B, T)`` token ids.
        pad_id: the padding id.
        num_buckets: size of the bigram table, bucket 0 included.

    Returns:
        ``(B, T)`` long bucket ids.
    """
    ids = input_ids.long()
    prev, cur = ids[:, :-1], ids[:, 1:]  # (B, T-1)
    hashed = 1 + (prev * BIGRAM_HASH_PRIME + cur) % (num_buckets - 1)  # (B, T-1)
    real = (prev != pad_id) & (cur != pad_id)  # (B, T-1)
    first = torch.zeros_like(ids[:, :1])  # (B, 1): nothing precedes position 0
    return torch.cat([first, torch.where(real, hashed, 0)], dim=1)  # (B, T)


def bigram_table(num_buckets: int, dim: int, *, std: float) -> nn.Embedding | None:
    """The hashed bigram embedding (row 0, "no bigram", fixed at zero), or ``None`` for ``num_buckets = 0``."""
    if not num_buckets:
        return None
    table = nn.Embedding(num_buckets, dim, padding_idx=0)
    nn.init.normal_(table.weight, std=std)
    with torch.no_grad():
        table.weight[0].zero_()
    return table


def with_bigrams(words: Tensor, input_ids: Tensor, table: nn.Embedding | None, *, pad_id: int) -> Tensor:
    """``words (B, T, E)`` plus the embedding of the bigram each token closes (unchanged without a table)."""
    if table is None:
        return words
    buckets = bigram_buckets(input_ids, pad_id=pad_id, num_buckets=table.num_embeddings)  # (B, T)
    return words + table(buckets)  # (B, T, E)


@dataclass(frozen=True)
class BagAttnConfig(ClassifierConfig):
    """Config of :class:`BagAttnClassifier`.

    Attributes:
        bigram_buckets: rows of the hashed bigram table (row 0 is the "no bigram" zero vector); 0 disables
            bigrams. The default ``2**17`` rows cost ``2**17 * embed_dim`` parameters (4.2M at ``E = 32``).

    Defaults from short IMDb runs (top-10k words, 256 tokens, 3 epochs, one seed): bigrams add about 1.7
    points over words alone (88.0% vs 86.2% test accuracy); ``E = 32`` matches ``E = 64`` in half the time;
    ``2**18`` buckets gain about 0.3 points in twice the time; ``dropout = 0.3`` keeps the best accuracy and
    overfits more slowly.
    """

    embed_dim: int = 32
    dropout: float = 0.3
    bigram_buckets: int = 2**17

    def _validate_model(self) -> None:
        if self.bigram_buckets != 0 and self.bigram_buckets < 2:
            raise ValueError(
                f"{self._name}.bigram_buckets must be 0 (no bigrams) or >= 2, got {self.bigram_buckets}"
            )


class BagAttnClassifier(TextClassifier):
    """Each token is ``word_emb(ids[i]) + bigram_emb(hash(ids[i-1], ids[i]))``; attention pooling -> Dense.

    ``embed`` includes the bigram term, so gradient attributions of token ``i`` cover its word and the bigram
    it closes.
    """

    config: BagAttnConfig

    def __init__(self, config: BagAttnConfig | None = None) -> None:
        config = config or BagAttnConfig()
        super().__init__(config)
        self.bigram_embedding = bigram_table(config.bigram_buckets, config.embed_dim, std=0.1)
        self.pooling = self._make_pooling(config.embed_dim)
        self.head = nn.Linear(self.pooling.output_dim, config.num_classes)
        self._init_embedding(std=0.1)

    def embed(self, input_ids: Tensor) -> Tensor:
        return with_bigrams(
            self.embedding(input_ids), input_ids, self.bigram_embedding, pad_id=self.config.pad_id
        )

    def forward_features(
        self, embeddings: Tensor, attention_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        return self.dropout(embeddings), None  # (B, T, E): no context, the pooling does all the work
