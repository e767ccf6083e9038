"""Encoded datasets, length-bucketed (and distributed) batch sampling, and padding into tensors.

Dimension legend: ``B`` batch, ``T`` tokens (the longest sequence of the batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from attnkit.data.errors import DataError
from attnkit.data.sources import TextExample
from attnkit.data.tokenizer import PAD_ID, TextTokenizer


@dataclass
class Batch:
    """A padded batch.

    Attributes:
        input_ids: ``(B, T)`` long token ids, padded with ``pad_id`` (0) on the right.
        attention_mask: ``(B, T)`` bool, True at real tokens, False at padding.
        labels: ``(B,)`` long label ids, or ``None`` for unlabelled batches.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch with every tensor moved to ``device``."""
        return Batch(
            input_ids=self.input_ids.to(device, non_blocking=non_blocking),
            attention_mask=self.attention_mask.to(device, non_blocking=non_blocking),
            labels=None if self.labels is None else self.labels.to(device, non_blocking=non_blocking),
        )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def collate(
    encodings_ids: Sequence[Sequence[int]],
    labels: Sequence[int] | torch.Tensor | None = None,
    *,
    pad_id: int = PAD_ID,
    pad_to_multiple_of: int | None = None,
) -> Batch:
    """Pad token id lists into a :class:`Batch`.

    Args:
        encodings_ids: ``B`` lists of token ids.
        labels: ``B`` label ids, or ``None``.
        pad_id: id written at padded positions.
        pad_to_multiple_of: round ``T`` up to a multiple of this (e.g. 8 for tensor cores).

    Returns:
        ``input_ids (B, T)``, ``attention_mask (B, T)`` and ``labels (B,)`` where ``T`` is the longest
        sequence (at least 1, so a batch of empty texts still has one, fully masked, position).

    Raises:
        ValueError: an empty batch, or a labels count different from ``B``.
    """
    batch_size = len(encodings_ids)
    if batch_size == 0:
        raise ValueError("cannot collate an empty batch")
    lengths = [len(ids) for ids in encodings_ids]
    max_len = max(1, *lengths)
    if pad_to_multiple_of:
        max_len = math.ceil(max_len / pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((batch_size, max_len), pad_id, dtype=torch.long)  # (B, T)
    for row, ids in enumerate(encodings_ids):
        if ids:
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    positions = torch.arange(max_len)  # (T,)
    attention_mask = positions[None, :] < torch.as_tensor(lengths)[:, None]  # (B, T)
    label_tensor = None
    if labels is not None:
        label_tensor = torch.as_tensor(labels, dtype=torch.long).reshape(-1)  # (B,)
        if label_tensor.shape[0] != batch_size:
            raise ValueError(f"got {label_tensor.shape[0]} labels for a batch of {batch_size}")
    return Batch(input_ids=input_ids, attention_mask=attention_mask, labels=label_tensor)


class EncodedDataset(Dataset[tuple[list[int], int | None]]):
    """Token id lists and their label ids; items are ``(ids, label_id)`` (``label_id`` None if unlabelled).

    Use :meth:`collate_fn` as the DataLoader ``collate_fn`` and :attr:`lengths` for
    :class:`BucketBatchSampler`.
    """

    def __init__(self, ids: Sequence[list[int]], labels: Sequence[int] | None = None) -> None:
        if labels is not None and len(labels) != len(ids):
            raise ValueError(f"got {len(labels)} labels for {len(ids)} sequences")
        self.ids = list(ids)
        self.labels = None if labels is None else [int(y) for y in labels]

    @classmethod
    def from_examples(
        cls, examples: Sequence[TextExample], tokenizer: TextTokenizer, label_names: Sequence[str] | None
    ) -> EncodedDataset:
        """Encode ``examples`` and map their labels to positions in ``label_names``.

        Args:
            examples: the examples to encode.
            tokenizer: a fitted tokenizer.
            label_names: the label vocabulary (usually ``label_vocab(train)``); ``None`` for unlabelled data.

        Raises:
            DataError: an example's label is not in ``label_names`` (e.g. a class missing from training).
        """
        ids = tokenizer.encode_ids([ex.text for ex in examples])
        if label_names is None:
            return cls(ids)
        index = {name: i for i, name in enumerate(label_names)}
        unknown = sorted({ex.label for ex in examples if ex.label not in index})
        if unknown:
            raise DataError(
                f"labels {unknown[:5]} are not in the label vocabulary {list(label_names)[:20]}; "
                "every class must appear in the training split"
            )
        return cls(ids, [index[ex.label] for ex in examples])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[list[int], int | None]:
        return self.ids[index], None if self.labels is None else self.labels[index]

    @property
    def lengths(self) -> list[int]:
        """Token count of every item (for :class:`BucketBatchSampler`)."""
        return [len(ids) for ids in self.ids]

    @staticmethod
    def collate_fn(items: Sequence[tuple[list[int], int | None]]) -> Batch:
        """DataLoader ``collate_fn``: pads a list of items into a :class:`Batch`."""
        ids = [item[0] for item in items]
        labels = [item[1] for item in items]
        if any(y is None for y in labels):
            return collate(ids, None)
        return collate(ids, [int(y) for y in labels if y is not None])


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, shuffled, optionally split across distributed ranks.

    Per epoch: shuffle all indices with ``(seed, epoch)``; sort each pool of ``pool_size`` consecutive indices
    by length (stable, so ties keep the shuffled order); cut the result into batches; shuffle the batch order.
    Batches are therefore nearly length-homogeneous (little padding) while the data order still changes every
    epoch. With ``shuffle=False`` the indices stay in order and only the within-pool sort happens.

    Distributed: every rank builds the same global batch list and takes batches ``rank, rank + R, ...``.
    Unless ``drop_last``, the list is padded by repeating its first batches so every rank gets the same number
    of batches (DDP needs equal step counts) and the ranks together cover every index.

    Args:
        lengths: token count of every item.
        batch_size: items per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: shuffle items and batches each epoch.
        seed: base seed (>= 0); the epoch's order depends only on ``seed`` and :meth:`set_epoch`.
        pool_size: items sorted together; default ``50 * batch_size``.
        drop_last: drop the final incomplete batch, and with several ranks the batches beyond a multiple of
            ``num_replicas``.
        num_replicas: number of distributed ranks ``R``.
        rank: this process's rank in ``[0, R)``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pool_size: int | None = None,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        pool_size = 50 * batch_size if pool_size is None else pool_size
        if pool_size < batch_size:
            raise ValueError(f"pool_size ({pool_size}) must be at least batch_size ({batch_size})")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_size = pool_size
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` for the next iteration (call before each epoch, on every rank)."""
        self.epoch = epoch

    def _num_global_batches(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        total = self._num_global_batches()
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(total / self.num_replicas)

    def global_batches(self) -> list[list[int]]:
        """All batches of the current epoch, before they are dealt to ranks (same on every rank)."""
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.pool_size):
            pool = order[start : start + self.pool_size]
            order[start : start + self.pool_size] = pool[np.argsort(self.lengths[pool], kind="stable")]
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()
        replicas = self.num_replicas
        if self.drop_last:
            batches = batches[: len(batches) - len(batches) % replicas]
        elif batches and len(batches) % replicas:
            missing = replicas - len(batches) % replicas
            batches += [batches[i % len(batches)] for i in range(missing)]
        yield from batches[self.rank :: replicas]
