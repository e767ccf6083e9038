"""Shared fixtures: a tiny synthetic sentiment dataset, tiny configs for every registered model and
right-padded batch builders."""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from attnkit.models import TextClassifier, build_model

POSITIVE = ["great", "wonderful", "excellent", "superb", "loved"]
NEGATIVE = ["awful", "terrible", "boring", "worst", "hated"]
FILLER = [
    "the",
    "a",
    "film",
    "movie",
    "plot",
    "actor",
    "scene",
    "story",
    "it",
    "was",
    "and",
    "but",
    "very",
    "quite",
    "really",
    "some",
]


def synthetic_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Texts whose label is decided by one planted cue word among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(6, 30))]
        cue = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words.insert(rng.randint(0, len(words)), cue)
        rows.append({"text": " ".join(words) + ".", "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def make_rows() -> Callable[[int, int], list[dict[str, str]]]:
    """:func:`synthetic_rows` as a fixture, for tests that build their own data."""
    return synthetic_rows


@pytest.fixture
def tiny_data(tmp_path: Path) -> tuple[Path, Path]:
    """(train.jsonl, test.jsonl) with 400 and 100 rows."""
    train = write_jsonl(tmp_path / "train.jsonl", synthetic_rows(400, seed=1))
    test = write_jsonl(tmp_path / "test.jsonl", synthetic_rows(100, seed=2))
    return train, test


@pytest.fixture(scope="session")
def shared_tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """:func:`tiny_data`'s two files (the same rows), written once per session, for runs that several tests
    share (a run's saved config names its data files, so a shared run and its tests' runs must read the same
    paths). Read only."""
    root = tmp_path_factory.mktemp("shared-data")
    train = write_jsonl(root / "train.jsonl", synthetic_rows(400, seed=1))
    test = write_jsonl(root / "test.jsonl", synthetic_rows(100, seed=2))
    return train, test


QuickWrites = Callable[[], contextlib.AbstractContextManager[None]]


@pytest.fixture(scope="session")
def quick_writes_patch() -> QuickWrites:
    """A context manager under which training writes its plots as tiny placeholder files (through the same atomic
    write points, without matplotlib's time: a third of a tiny run) and skips ``os.fsync`` (it matters after a
    power loss, not for the files a test reads back). For runs whose tests never read the plots; usable from
    fixtures of any scope (:func:`quick_writes` is the function-scoped form)."""

    @contextlib.contextmanager
    def patched() -> Iterator[None]:
        import attnkit.train.plots as plots
        from attnkit.atomic import atomic_write

        def placeholder(path: Path) -> None:
            atomic_write(path, lambda tmp: tmp.write_bytes(b"png"))

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(plots, "plot_curves", lambda history, path: placeholder(path))
            mp.setattr(plots, "plot_confusion", lambda matrix, labels, path: placeholder(path))
            mp.setattr(os, "fsync", lambda fd: None)
            yield

    return patched


@pytest.fixture
def quick_writes(quick_writes_patch: QuickWrites) -> Iterator[None]:
    """:func:`quick_writes_patch` for the duration of one test."""
    with quick_writes_patch():
        yield


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

# Variants of registered models that the contract and explanation tests also cover: name -> (model, options).
TINY_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "nb-attn+chars": (
        "nb-attn",
        {
            "char_buckets": 61,
            "char_max_n": 4,
            "char_max_word_length": 8,
            "gate_init": 0.5,
            "char_gate_init": 0.3,
        },
    ),
}
_SYLLABLES = ["ka", "ro", "mi", "ta", "ne", "su", "lo"]
# Strings of the ids 0..VOCAB-1 for models that read them: "" for [PAD] and [UNK], two-syllable words sharing
# character n-grams, and one word longer than the variant's char_max_word_length.
TINY_WORDS = ["", "", *(_SYLLABLES[i % 7] + _SYLLABLES[i // 7] for i in range(2, VOCAB - 1)), "karomitanesu"]


def tiny_model(name: str, seed: int = 0, **overrides: Any) -> TextClassifier:
    """A tiny registered model, or a variant of :data:`TINY_VARIANTS` (given its vocabulary and, for nb-attn,
    Naive-Bayes ratios counted on random texts, so its evidence path is not all zeros)."""
    torch.manual_seed(seed)
    if name not in TINY_VARIANTS:
        return build_model(name, **{**COMMON, **TINY[name], **overrides})
    base, options = TINY_VARIANTS[name]
    model = build_model(base, **{**COMMON, **TINY[base], **options, **overrides})
    model.set_vocabulary(TINY_WORDS)
    gen = torch.Generator().manual_seed(seed)
    texts = [torch.randint(2, VOCAB, (20,), generator=gen).tolist() for _ in range(30)]
    model.init_from_data(texts, [i % 3 for i in range(30)])
    return model


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


@pytest.fixture
def tiny_variants() -> dict[str, tuple[str, dict[str, Any]]]:
    return TINY_VARIANTS


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


TrainedRuns = Callable[..., Path]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRuns:
    """``trained_run(model, **options)``: a run directory trained (once per session) on the cue-word data."""
    from attnkit.cli import main

    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("runs")
    train = write_jsonl(root / "train.jsonl", synthetic_rows(400, seed=1))
    test = write_jsonl(root / "test.jsonl", synthetic_rows(100, seed=2))

    def build(model: str = "bag-attn", *extra: str) -> Path:
        key = " ".join([model, *extra])
        if key not in cache:
            out = root / f"run{len(cache)}"
            code = main(
                ["train", "--data", str(train), "--test", str(test), "--model", model, "--out", str(out),
                 "--epochs", "4", "--no-progress", "--set", "tokenizer.vocab_size=200", "--set", "optim.lr=0.01",
                 "--set", "train.threads=1", *extra]
            )  # fmt: skip
            assert code == 0
            cache[key] = out
        return cache[key]

    return build
