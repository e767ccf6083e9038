"""Encoded text datasets and padding token ids into tensors (the batch sampler is :mod:`attnkit.data.sampling`).

Dimension legend: ``B`` batch, ``T`` tokens (the longest sequence of the batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from attnkit.data.errors import DataError
from attnkit.data.text.files import TextExample
from attnkit.data.text.tokenizer import PAD_ID, TextTokenizer


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
