"""Batch sampling shared by every task: seeded shuffles, length buckets, batches dealt to distributed ranks.

A task with inputs of one size (images) passes equal lengths and gets a plain seeded shuffle into batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


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
