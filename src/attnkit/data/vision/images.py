"""An in-memory set of labelled images: the one type every vision loader returns.

Dimensions: ``N`` images, ``H`` height and ``W`` width in pixels, ``C`` channels (1 grayscale, 3 RGB).
Pixels are ``uint8`` in ``[0, 255]``, channels last, exactly as decoded; conversion to float ``(N, C, H, W)``
batches happens later (:func:`attnkit.data.vision.augment.normalize`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageSet:
    """Labelled images of one size.

    Attributes:
        pixels: ``uint8`` array ``(N, H, W, C)`` with ``C`` 1 (grayscale) or 3 (RGB).
        labels: ``N`` class names (``"Trouser"``, or a folder's name).
        sources: ``N`` places the images came from: a file path, or ``fashion-mnist:train#123`` (0-based
            index in the official file).
        classes: the class names in their canonical order (Fashion-MNIST: the official label ids 0-9; a
            folder: its class folders in natural order). Empty means the sorted distinct labels. Every label
            is one of them; a class may have no image in a subset.
    """

    pixels: np.ndarray
    labels: list[str]
    sources: list[str]
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.pixels, np.ndarray) or self.pixels.dtype != np.uint8 or self.pixels.ndim != 4:
            shape = getattr(self.pixels, "shape", None)
            dtype = getattr(self.pixels, "dtype", type(self.pixels).__name__)
            raise ValueError(
                f"ImageSet.pixels must be a uint8 array (N, H, W, C), got {dtype} of shape {shape}"
            )
        if self.pixels.shape[3] not in (1, 3):
            raise ValueError(
                f"ImageSet.pixels must have 1 (grayscale) or 3 (RGB) channels last, got shape {self.pixels.shape}"
            )
        n = self.pixels.shape[0]
        if len(self.labels) != n or len(self.sources) != n:
            raise ValueError(
                f"ImageSet: {n} images but {len(self.labels)} labels and {len(self.sources)} sources; "
                "give one label and one source per image"
            )
        distinct = set(self.labels)
        if not self.classes:
            self.classes = tuple(sorted(distinct))
        else:
            self.classes = tuple(self.classes)
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"ImageSet.classes has duplicates: {self.classes}")
            unknown = distinct - set(self.classes)
            if unknown:
                raise ValueError(
                    f"ImageSet: labels {sorted(unknown)[:5]} are not in classes {self.classes}; add them"
                )

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image."""
        _, h, w, c = self.pixels.shape
        return int(h), int(w), int(c)

    def label_ids(self) -> np.ndarray:
        """``int64`` array ``(N,)``: each label's position in :attr:`classes`."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.fromiter((index[label] for label in self.labels), dtype=np.int64, count=len(self.labels))

    def class_counts(self) -> dict[str, int]:
        """Images per class, in :attr:`classes` order (zero counts included)."""
        counts = np.bincount(self.label_ids(), minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts, strict=True)}

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """The images at ``indices`` (integer positions, in that order, repeats allowed; or a boolean mask
        of length ``N``), as a new set with copied pixels and the same :attr:`classes`.

        Raises:
            IndexError: a position is out of range, or a mask has the wrong length.
        """
        idx = np.asarray(indices)
        if idx.dtype == np.bool_:
            if idx.shape != (len(self),):
                raise IndexError(f"a boolean mask over {len(self)} images must have shape ({len(self)},)")
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"subset takes integer positions or a boolean mask, got {idx.dtype}")
        idx = idx.reshape(-1)
        pixels = self.pixels[idx]  # (len(idx), H, W, C); raises IndexError when out of range
        positions = idx.tolist()
        return ImageSet(
            pixels=pixels,
            labels=[self.labels[i] for i in positions],
            sources=[self.sources[i] for i in positions],
            classes=self.classes,
        )
