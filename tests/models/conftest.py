"""Tiny configs for every registered model and right-padded batch builders, exposed as fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

from attnkit.models import TextClassifier, build_model

VOCAB = 50
END_IDS = (3, 4)  # stand-ins for the ids of "." and "!"

# One tiny config per registered model; test_models_contract checks the keys equal the registry's names.
TINY: dict[str, dict[str, Any]] = {
    "bilstm-attn": {"embed_dim": 8, "hidden_size": 6},
    "cnn-attn": {"embed_dim": 8, "num_filters": 4, "kernel_sizes": (3, 5)},
    "transformer": {"embed_dim": 16, "num_heads": 2, "ff_dim": 32, "num_layers": 2},
    "bag-attn": {"embed_dim": 8, "bigram_buckets": 97},
    "nb-attn": {"embed_dim": 8, "ngram_buckets": 97},
    "han": {
        "embed_dim": 8,
        "word_hidden_size": 4,
        "sentence_hidden_size": 4,
        "sentence_end_ids": END_IDS,
        "max_sentence_length": 5,
        "max_sentences": 8,
    },
}
COMMON: dict[str, Any] = {"vocab_size": VOCAB, "num_classes": 3, "max_length": 64, "dropout": 0.1}


def tiny_model(name: str, seed: int = 0, **overrides: Any) -> TextClassifier:
    torch.manual_seed(seed)
    return build_model(name, **{**COMMON, **TINY[name], **overrides})


def make_batch(lengths: list[int], width: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Right-padded ``(ids, mask)`` of shape ``(len(lengths), width)``, with sentence ends among the ids."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (len(lengths), width), generator=gen)
    ends = torch.rand(len(lengths), width, generator=gen) < 0.15
    ids = torch.where(ends, torch.randint(3, 5, (len(lengths), width), generator=gen), ids)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return ids.masked_fill(~mask, 0), mask


def repad(ids: Tensor, mask: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """The same rows padded (or trimmed of padding) to ``width``."""
    out_ids = torch.zeros(ids.shape[0], width, dtype=ids.dtype)
    out_mask = torch.zeros(ids.shape[0], width, dtype=torch.bool)
    keep = min(width, ids.shape[1])
    out_ids[:, :keep] = ids[:, :keep]
    out_mask[:, :keep] = mask[:, :keep]
    assert int(mask.sum()) == int(out_mask.sum()), "repad would drop real tokens"
    return out_ids, out_mask


@pytest.fixture
def tiny_configs() -> dict[str, dict[str, Any]]:
    return TINY


@pytest.fixture(name="tiny_model")
def tiny_model_fixture() -> Callable[..., TextClassifier]:
    return tiny_model


@pytest.fixture(name="make_batch")
def make_batch_fixture() -> Callable[..., tuple[Tensor, Tensor]]:
    return make_batch


@pytest.fixture(name="repad")
def repad_fixture() -> Callable[..., tuple[Tensor, Tensor]]:
    return repad


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models run faster on one thread, and the machine is shared.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
