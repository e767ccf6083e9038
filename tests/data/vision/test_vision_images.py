"""ImageSet (attnkit.data.vision.images): validation, subsets, label ids and counts."""

from __future__ import annotations

import numpy as np
import pytest

from attnkit.data.vision import ImageSet


def make(n: int = 5, c: int = 1) -> ImageSet:
    pixels = np.arange(n * 2 * 3 * c, dtype=np.uint8).reshape(n, 2, 3, c)
    labels = ["b", "a", "b", "c", "b"][:n]
    return ImageSet(pixels, labels, [f"x#{i}" for i in range(n)])


def test_fields_and_defaults() -> None:
    images = make()
    assert len(images) == 5 and images.image_shape == (2, 3, 1)
    assert images.classes == ("a", "b", "c")  # sorted distinct labels by default
    assert images.label_ids().tolist() == [1, 0, 1, 2, 1]
    assert images.class_counts() == {"a": 1, "b": 3, "c": 1}
    ordered = ImageSet(images.pixels, images.labels, images.sources, classes=("c", "b", "a", "d"))
    assert ordered.label_ids().tolist() == [1, 2, 1, 0, 1]
    assert ordered.class_counts() == {"c": 1, "b": 3, "a": 1, "d": 0}


def test_subset_by_positions_and_mask() -> None:
    images = make(c=3)
    sub = images.subset([3, 0, 0])
    np.testing.assert_array_equal(sub.pixels, images.pixels[[3, 0, 0]])
    assert sub.labels == ["c", "b", "b"] and sub.sources == ["x#3", "x#0", "x#0"]
    assert sub.classes == images.classes  # kept even though "a" is absent
    sub.pixels[0] = 0
    assert images.pixels[3].any()  # a copy
    mask = np.array([True, False, True, False, False])
    assert images.subset(mask).sources == ["x#0", "x#2"]
    assert len(images.subset([])) == 0 and images.subset(np.array([], dtype=np.int64)).pixels.shape == (
        0,
        2,
        3,
        3,
    )
    with pytest.raises(IndexError):
        images.subset([5])
    with pytest.raises(IndexError, match="boolean mask over 5 images"):
        images.subset(np.array([True, False]))
    with pytest.raises(IndexError, match="integer positions or a boolean mask"):
        images.subset(np.array([0.5]))


@pytest.mark.parametrize(
    ("pixels", "labels", "match"),
    [
        (np.zeros((2, 2, 2, 1), np.float32), ["a", "b"], r"uint8 array \(N, H, W, C\), got float32"),
        (np.zeros((2, 2, 2), np.uint8), ["a", "b"], r"got uint8 of shape \(2, 2, 2\)"),
        (np.zeros((2, 2, 2, 4), np.uint8), ["a", "b"], r"1 \(grayscale\) or 3 \(RGB\) channels"),
        (np.zeros((2, 2, 2, 1), np.uint8), ["a"], r"2 images but 1 labels and 2 sources"),
    ],
)
def test_validation(pixels: np.ndarray, labels: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ImageSet(pixels, labels, ["s1", "s2"])


def test_classes_must_cover_labels() -> None:
    with pytest.raises(ValueError, match=r"labels \['z'\] are not in classes \('a',\); add them"):
        ImageSet(np.zeros((1, 1, 1, 1), np.uint8), ["z"], ["s"], classes=("a",))
    with pytest.raises(ValueError, match="duplicates"):
        ImageSet(np.zeros((1, 1, 1, 1), np.uint8), ["a"], ["s"], classes=("a", "a"))
