"""Shared fixtures: a tiny synthetic sentiment dataset written in the formats users bring."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

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


@pytest.fixture
def tiny_data(tmp_path: Path) -> tuple[Path, Path]:
    """(train.jsonl, test.jsonl) with 400 and 100 rows."""
    train = write_jsonl(tmp_path / "train.jsonl", synthetic_rows(400, seed=1))
    test = write_jsonl(tmp_path / "test.jsonl", synthetic_rows(100, seed=2))
    return train, test
