"""Padding into tensors, the encoded dataset, and the length-bucketed (distributed) batch sampler."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from attnkit.data import (
    Batch,
    BucketBatchSampler,
    DataError,
    EncodedDataset,
    TextExample,
    TextTokenizer,
    TokenizerConfig,
    collate,
)


def test_collate_pads_and_masks() -> None:
    batch = collate([[5, 6, 7], [8], []], [1, 0, 2])
    assert batch.input_ids.dtype == torch.long and batch.attention_mask.dtype == torch.bool
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert batch.attention_mask.tolist() == [[True, True, True], [True, False, False], [False, False, False]]
    assert (
        batch.labels is not None and batch.labels.tolist() == [1, 0, 2] and batch.labels.dtype == torch.long
    )
    assert len(batch) == 3


def test_collate_edge_cases() -> None:
    empty = collate([[], []])
    assert empty.input_ids.shape == (2, 1) and not empty.attention_mask.any() and empty.labels is None
    rounded = collate([[1, 2, 3]], [0], pad_to_multiple_of=8)
    assert rounded.input_ids.shape == (1, 8) and rounded.attention_mask.sum().item() == 3
    with pytest.raises(ValueError, match="empty batch"):
        collate([])
    with pytest.raises(ValueError, match="got 1 labels for a batch of 2"):
        collate([[1], [2]], [0])


def test_batch_to_device() -> None:
    moved = collate([[1, 2]], [1]).to("cpu")
    assert isinstance(moved, Batch) and moved.input_ids.device.type == "cpu"


def test_encoded_dataset_from_examples_and_dataloader() -> None:
    train = [TextExample("good good film", "pos"), TextExample("bad film", "neg"), TextExample("film", "neg")]
    tok = TextTokenizer.fit([e.text for e in train], TokenizerConfig(level="word"))
    data = EncodedDataset.from_examples(train, tok, ["neg", "pos"])
    good, film = tok.token_to_id("good"), tok.token_to_id("film")
    assert data[0] == ([good, good, film], 1)
    assert data.lengths == [3, 2, 1] and len(data) == 3
    loader = DataLoader(
        data, batch_sampler=BucketBatchSampler(data.lengths, 2, shuffle=False), collate_fn=data.collate_fn
    )
    batches = list(loader)
    # shuffle=False: indices in order, sorted by length within the pool -> [2, 1], [0].
    assert [b.labels.tolist() for b in batches if b.labels is not None] == [[0, 0], [1]]
    assert batches[0].input_ids.tolist() == [[film, 0], [tok.token_to_id("bad"), film]]
    with pytest.raises(DataError, match=r"labels \['neg'\] are not in the label vocabulary \['pos'\]"):
        EncodedDataset.from_examples(train, tok, ["pos"])
    unlabelled = EncodedDataset.from_examples(train, tok, None)
    assert unlabelled[1][1] is None and unlabelled.collate_fn([unlabelled[1]]).labels is None


def lengths_fixture(n: int = 1000, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in np.clip(rng.lognormal(4.5, 0.8, n), 1, 2000)]


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - real / padded


def test_every_index_once_per_epoch_and_epochs_differ() -> None:
    lengths = lengths_fixture(1003)
    sampler = BucketBatchSampler(lengths, 16, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 63  # ceil(1003 / 16)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1003))
        assert sorted(len(b) for b in batches)[0] == 1003 - 62 * 16  # one partial batch
        orders.append(flat)
    assert orders[0] != orders[1] != orders[2]


def test_deterministic_for_seed_and_epoch() -> None:
    lengths = lengths_fixture()
    a = BucketBatchSampler(lengths, 32, seed=7)
    b = BucketBatchSampler(lengths, 32, seed=7)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again repeats the epoch
    c = BucketBatchSampler(lengths, 32, seed=8)
    c.set_epoch(4)
    assert list(c) != list(a)


def test_batches_are_length_homogeneous() -> None:
    lengths = lengths_fixture(4000)
    bucketed = list(BucketBatchSampler(lengths, 32, seed=0))
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    random_batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    bucket_pad, random_pad = padding_fraction(bucketed, lengths), padding_fraction(random_batches, lengths)
    # Lognormal lengths: random batches are 75% padding, 50-batch pools about 10%, a global sort 4.8%.
    assert random_pad > 0.7
    assert bucket_pad < 0.12 and bucket_pad < random_pad / 6
    # A pool of one batch is random batching; larger pools pad less.
    by_pool = [
        padding_fraction(list(BucketBatchSampler(lengths, 32, pool_size=32 * k)), lengths)
        for k in (1, 10, 50)
    ]
    assert by_pool[0] > 0.7 and by_pool[0] > by_pool[1] > by_pool[2]


@pytest.mark.parametrize(("n", "batch_size", "replicas"), [(103, 8, 4), (100, 10, 3), (7, 4, 4), (64, 8, 2)])
def test_distributed_ranks_equal_disjoint_batches_covering_data(
    n: int, batch_size: int, replicas: int
) -> None:
    lengths = lengths_fixture(n, seed=n)
    samplers = [
        BucketBatchSampler(lengths, batch_size, seed=1, num_replicas=replicas, rank=r)
        for r in range(replicas)
    ]
    per_rank = [list(s) for s in samplers]
    global_batches = samplers[0].global_batches()
    expected = -(-len(global_batches) // replicas)
    assert all(len(batches) == len(s) == expected for batches, s in zip(per_rank, samplers, strict=True))
    seen = Counter(i for batches in per_rank for b in batches for i in b)
    assert set(seen) == set(range(n))  # the union covers the data
    repeats = expected * replicas - len(global_batches)  # padding repeats whole batches
    assert sum(seen.values()) - n == sum(len(global_batches[k]) for k in range(repeats))
    if repeats == 0:
        assert set(seen.values()) == {1}  # disjoint
    # Without padding the ranks are disjoint: batch k of the global list goes to rank k % R.
    for r, batches in enumerate(per_rank):
        assert batches[: len(global_batches[r::replicas])] == global_batches[r::replicas]


def test_distributed_drop_last() -> None:
    lengths = lengths_fixture(103)
    samplers = [BucketBatchSampler(lengths, 8, num_replicas=4, rank=r, drop_last=True) for r in range(4)]
    per_rank = [list(s) for s in samplers]
    assert [len(b) for b in per_rank] == [3, 3, 3, 3] == [len(s) for s in samplers]  # 12 full batches of 8
    flat = [i for batches in per_rank for b in batches for i in b]
    assert len(flat) == len(set(flat)) == 96 and all(len(b) == 8 for batches in per_rank for b in batches)


def test_sampler_validation() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler([1], 0)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1], 1, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="pool_size"):
        BucketBatchSampler([1], 4, pool_size=2)
    assert list(BucketBatchSampler([], 4)) == [] and len(BucketBatchSampler([], 4)) == 0
