"""Train/validation/test splits: seeded, stratified by label, duplicate-aware; test is never touched."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from attnkit.data.errors import DataError

if TYPE_CHECKING:  # for annotations only: the splits serve every task, text examples are one kind
    from attnkit.data.text.files import TextExample


@dataclass
class Splits:
    """The examples of one experiment.

    Attributes:
        train: examples to fit on.
        val: validation examples carved from the training data (may be empty).
        test: held-out examples, or ``None`` when the source has no test split.
    """

    train: list[TextExample]
    val: list[TextExample]
    test: list[TextExample] | None = None

    def as_dict(self) -> dict[str, list[TextExample]]:
        """``{"train": ..., "val": ..., "test": ...}`` without ``test`` when it is ``None``."""
        out = {"train": self.train, "val": self.val}
        if self.test is not None:
            out["test"] = self.test
        return out

    def labels(self) -> list[str]:
        """The label vocabulary of the training split (see :func:`label_vocab`)."""
        return label_vocab(self.train)


def label_vocab(examples: Sequence[TextExample]) -> list[str]:
    """The distinct labels, sorted: numerically when every label is an integer string, else as strings.

    The order is deterministic, so label ids (positions in this list) are stable across runs.
    """
    labels = {ex.label for ex in examples}
    if labels and all(_is_int(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def stratified_partition(
    examples: Sequence[TextExample], fractions: Sequence[float], seed: int = 0
) -> list[list[TextExample]]:
    """Split ``examples`` into ``len(fractions) + 1`` parts, stratified by label.

    Examples whose stripped texts are identical are kept together, so a duplicated text never ends up in two
    parts. Per label, the groups of identical texts are shuffled with ``seed`` and part ``i + 1`` takes
    ``round(fractions[i] * n_groups)`` of them; part 0 gets the rest. Each part keeps the input order.

    Args:
        examples: the examples to split.
        fractions: fraction of each label's (distinct) texts for parts 1.. (part 0 is the remainder).
        seed: seed of the shuffle; the same seed and input always give the same parts.

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more.
    """
    if any(not 0 <= f < 1 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(f"split fractions must be in [0, 1) and sum to less than 1, got {list(fractions)}")
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.text.strip(), []).append(i)
    by_label: dict[str, list[list[int]]] = {}
    for members in groups.values():
        by_label.setdefault(examples[members[0]].label, []).append(members)
    rng = random.Random(seed)
    assignment = [0] * len(examples)
    for label in sorted(by_label):
        label_groups = by_label[label]
        rng.shuffle(label_groups)
        start = 0
        for part, fraction in enumerate(fractions, start=1):
            take = round(fraction * len(label_groups))
            for members in label_groups[start : start + take]:
                for i in members:
                    assignment[i] = part
            start += take
    parts: list[list[TextExample]] = [[] for _ in range(len(fractions) + 1)]
    for i, ex in enumerate(examples):
        parts[assignment[i]].append(ex)
    return parts


def make_splits(
    train_examples: Sequence[TextExample],
    test_examples: Sequence[TextExample] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Carve a validation split from the training examples; the test examples are passed through untouched.

    Args:
        train_examples: the source's training examples.
        test_examples: the source's test examples, or ``None``.
        val_fraction: fraction of each label's distinct training texts moved to validation (0 disables).
        seed: seed of the (stratified, duplicate-aware) shuffle; see :func:`stratified_partition`.

    Raises:
        DataError: no training examples.
        ValueError: ``val_fraction`` outside [0, 1).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not train_examples:
        raise DataError("no training examples to split")
    train, val = stratified_partition(train_examples, [val_fraction], seed=seed)
    return Splits(train=train, val=val, test=list(test_examples) if test_examples is not None else None)
