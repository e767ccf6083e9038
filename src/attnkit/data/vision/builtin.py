"""Built-in image datasets by name: ``fashion-mnist``, ``fashion-mnist:train``, ``fashion-mnist:test``.

The same ``<name>[:<split>]`` spelling as the text built-ins (:mod:`attnkit.data.text.builtin`); a name without a
split means the dataset's first split (``train``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from attnkit.data.builtins import RegisteredDataset, get_registered, parse_registered_name, split_source
from attnkit.data.vision import fashion_mnist
from attnkit.data.vision.images import ImageSet


class SplitLoader(Protocol):
    """Loads one split of a built-in image dataset (e.g. :func:`~attnkit.data.vision.load_fashion_mnist`)."""

    def __call__(
        self,
        split: Any,
        *,
        data_dir: str | os.PathLike[str] | None = ...,
        allow_download: bool = ...,
        cache_dir: str | os.PathLike[str] | None = ...,
    ) -> ImageSet: ...


@dataclass(frozen=True)
class VisionDataset(RegisteredDataset):
    """One built-in image dataset.

    Attributes:
        name: registry name (``fashion-mnist``).
        splits: the official split names; the first is the default.
        classes: class names in label-id order.
        image_shape: ``(H, W, C)`` of every image.
        loader: loads one split.
        description: one line for listings and errors.
    """

    image_shape: tuple[int, int, int]
    loader: SplitLoader
    description: str

    def load(
        self,
        split: str | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        allow_download: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> ImageSet:
        """Load ``split`` (``None``: :attr:`default_split`); see the loader for where files are found.

        Raises:
            DataError: an unknown split (listing the valid ones), or the loader's errors.
        """
        return self.loader(
            self.checked_split(split), data_dir=data_dir, allow_download=allow_download, cache_dir=cache_dir
        )


VISION_DATASETS: dict[str, VisionDataset] = {
    "fashion-mnist": VisionDataset(
        name=fashion_mnist.NAME,
        splits=fashion_mnist.SPLITS,
        classes=fashion_mnist.CLASSES,
        image_shape=(*fashion_mnist.IMAGE_SHAPE, 1),
        loader=fashion_mnist.load_fashion_mnist,
        description="Fashion-MNIST (Zalando): 10 clothing classes, 28x28 grayscale, 60,000 train, 10,000 test",
    ),
}


def parse_vision_name(source: str) -> tuple[str, str | None] | None:
    """``"fashion-mnist:test"`` -> ``("fashion-mnist", "test")``, ``"Fashion_MNIST"`` -> ``("fashion-mnist",
    None)``; ``None`` when the name before ``:`` is not a built-in image dataset (the split is not checked)."""
    return parse_registered_name(source, VISION_DATASETS)


def get_vision_dataset(name: str) -> VisionDataset:
    """The registry entry for ``name`` (case-insensitive, ``_`` read as ``-``).

    Raises:
        DataError: an unknown name, listing the known ones.
    """
    return get_registered(name, VISION_DATASETS, "image")


def load_vision_dataset(
    source: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ImageSet:
    """Load ``<name>[:<split>]`` (``fashion-mnist:test``).

    Raises:
        DataError: unknown name or split, and the dataset loader's errors.
    """
    name, split = split_source(source)
    dataset = get_vision_dataset(name)
    return dataset.load(split, data_dir=data_dir, allow_download=allow_download, cache_dir=cache_dir)
