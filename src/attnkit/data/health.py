"""What every dataset health report shares (``attnkit data inspect`` on texts, images or recordings): summary
statistics of a size, exact duplicates and overlap between splits over content keys, and plain-text tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

STATS = ("min", "mean", "median", "p95", "max")


def length_stats(values: Sequence[float]) -> dict[str, float]:
    """``min``, ``mean``, ``median``, ``p95`` (linear interpolation), ``max`` (all zero if empty)."""
    if not values:
        return dict.fromkeys(STATS, 0.0)
    arr = np.asarray(values, dtype=np.float64)
    return {
        "min": float(arr.min()),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
    }


def duplicate_counts(keys: Sequence[str], labels: Sequence[str]) -> tuple[int, int, int]:
    """Exact duplicates of one split, each example given by its content ``key`` and its label: ``(rows that
    repeat an earlier example's key, keys that occur more than once, of those the keys seen with more than one
    label)``."""
    counts = Counter(keys)
    seen_with: dict[str, set[str]] = {}
    for key, label in zip(keys, labels, strict=True):
        if counts[key] > 1:
            seen_with.setdefault(key, set()).add(label)
    return (
        len(keys) - len(counts),
        sum(1 for c in counts.values() if c > 1),
        sum(1 for s in seen_with.values() if len(s) > 1),
    )


def shared_counts(keys: Mapping[str, set[str]]) -> list[tuple[str, str, int]]:
    """``(a, b, distinct keys in both)`` for every pair of the named splits, in order."""
    return [(a, b, len(keys[a] & keys[b])) for a, b in combinations(keys, 2)]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a plain-text table: the first column left-aligned, the others right-aligned, a rule under the
    header."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), "  ".join("-" * w for w in widths), *[line(row) for row in rows]]
