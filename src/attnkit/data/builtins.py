"""The ``<name>[:<split>]`` registries of built-in image and audio datasets: name lookup, parsing and splits.

Dimensions: none; names and split names only.

A name is read case-insensitively with ``_`` as ``-`` (``Fashion_MNIST`` is ``fashion-mnist``); a name without
a split means the dataset's first split. :mod:`attnkit.data.vision.builtin` and
:mod:`attnkit.data.audio.builtin` hold the registries and their loaders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from attnkit.data.errors import DataError


@dataclass(frozen=True)
class RegisteredDataset:
    """What every built-in image or audio dataset has (the modality's class adds its loader and details).

    Attributes:
        name: registry name (``fashion-mnist``, ``fsdd``).
        splits: the official split names; the first is the default.
        classes: class names in label-id order.
    """

    name: str
    splits: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def default_split(self) -> str:
        return self.splits[0]

    def checked_split(self, split: str | None) -> str:
        """``split``, or :attr:`default_split` for ``None``.

        Raises:
            DataError: an unknown split, listing the valid ones.
        """
        split = self.default_split if split is None else split
        if split not in self.splits:
            raise DataError(f"{self.name}: unknown split {split!r}; valid splits: {', '.join(self.splits)}")
        return split


Dataset = TypeVar("Dataset", bound=RegisteredDataset)


def registry_key(name: str) -> str:
    """The registry spelling of ``name``: stripped, lower case, ``_`` as ``-``."""
    return name.strip().lower().replace("_", "-")


def split_source(source: str) -> tuple[str, str | None]:
    """``"fsdd:test"`` -> ``("fsdd", "test")``, ``"fsdd"`` -> ``("fsdd", None)`` (the split stripped)."""
    name, sep, split = str(source).partition(":")
    return name, (split.strip() if sep else None)


def parse_registered_name(source: str, registry: Mapping[str, object]) -> tuple[str, str | None] | None:
    """``(key, split or None)`` of ``<name>[:<split>]``; ``None`` when the name is not in ``registry`` (the
    split is not checked)."""
    name, split = split_source(source)
    key = registry_key(name)
    if key not in registry:
        return None
    return key, split


def get_registered(name: str, registry: Mapping[str, Dataset], what: str) -> Dataset:
    """The entry of ``registry`` for ``name`` (case-insensitive, ``_`` read as ``-``).

    Raises:
        DataError: an unknown name, listing the known ones (``what``: ``"image"``, ``"audio"``).
    """
    key = registry_key(name)
    if key not in registry:
        raise DataError(f"unknown built-in {what} dataset {name!r}; choose from {', '.join(registry)}")
    return registry[key]
