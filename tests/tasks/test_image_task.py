"""The image task: validation carved per class, statistics from train only, deterministic augmentation, the
run files, raw inputs encoded as the training images were, and the modality decided from the data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnkit.data.vision import ImageSet
from attnkit.runs import RunError, RunNotFoundError
from attnkit.tasks import task_for
from attnkit.tasks.image import PREPARATION_FILE, ImageClassificationTask, carve_validation
from attnkit.train.config import ConfigError, RunConfig


def _images(n_per_class: int = 20, size: int = 8, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (3 * n_per_class, size, size, 1), dtype=np.uint8)
    labels = [c for c in ("a", "b", "c") for _ in range(n_per_class)]
    return ImageSet(pixels, labels, [f"img{i}" for i in range(len(labels))], ("c", "a", "b"))


def _folder(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(1)
    for label, level in (("dark", 50), ("light", 200)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(rng.normal(level, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(arr, "L").save(root / label / f"{i}.png")
    return root


def _config(train: str, **image: object) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {"train": train, "val_fraction": 0.25},
            "image": {"mode": "L", **image},
            "model": {"name": "cnn-attn"},
        }
    )


def test_validation_is_carved_per_class_with_the_seed() -> None:
    images = _images()
    train, val = carve_validation(images, 0.25, seed=3)
    assert sorted(val.class_counts().values()) == [5, 5, 5]  # round(0.25 * 20) of every class
    assert len(train) + len(val) == len(images)
    assert set(train.sources).isdisjoint(val.sources)
    again_train, again_val = carve_validation(images, 0.25, seed=3)
    assert again_val.sources == val.sources and again_train.sources == train.sources
    assert carve_validation(images, 0.25, seed=4)[1].sources != val.sources


def test_label_order_is_the_datasets_canonical_order() -> None:
    task = ImageClassificationTask(_config("unused-folder"))
    assert task.label_names(_images()) == ["c", "a", "b"]  # classes order, not sorted


def test_statistics_come_from_the_training_split_only(tmp_path: Path) -> None:
    task = task_for(_config(str(_folder(tmp_path / "imgs"))))
    assert isinstance(task, ImageClassificationTask)
    train, val, test = task.read_splits()
    assert test is None and len(val) == 6 and len(train) == 18
    task.fit_preparation(train)
    prep = task.preparation
    expected = train.pixels.astype(np.float64) / 255.0
    assert prep.mean[0] == pytest.approx(expected.mean(), abs=1e-6)
    assert prep.std[0] == pytest.approx(expected.std(), abs=1e-6)
    both = np.concatenate([train.pixels, val.pixels]).astype(np.float64) / 255.0
    assert prep.mean[0] != pytest.approx(both.mean(), abs=1e-9)
    data = task.encode(val, task.label_names(train))
    reference = (
        torch.as_tensor(val.pixels, dtype=torch.float32).permute(0, 3, 1, 2) / 255 - prep.mean[0]
    ) / prep.std[0]
    torch.testing.assert_close(data.pixels, reference, atol=1e-5, rtol=0)


def test_augmentation_is_a_function_of_the_generator_and_off_at_evaluation(tmp_path: Path) -> None:
    task = task_for(_config(str(_folder(tmp_path / "imgs")), random_crop_padding=2, horizontal_flip=True))
    train, _, _ = task.read_splits()
    task.fit_preparation(train)
    data = task.encode(train, task.label_names(train))
    index = list(range(8))
    plain = task.collate(data, index).inputs
    torch.testing.assert_close(plain, data.pixels[:8])
    first = task.collate(data, index, train=True, generator=torch.Generator().manual_seed(5)).inputs
    second = task.collate(data, index, train=True, generator=torch.Generator().manual_seed(5)).inputs
    other = task.collate(data, index, train=True, generator=torch.Generator().manual_seed(6)).inputs
    torch.testing.assert_close(first, second)
    assert not torch.equal(first, other) and not torch.equal(first, plain)


def test_random_erasing_fills_boxes_with_the_training_mean_in_training_only(tmp_path: Path) -> None:
    task = task_for(_config(str(_folder(tmp_path / "imgs")), random_erasing=1.0))
    train, _, _ = task.read_splits()
    task.fit_preparation(train)
    data = task.encode(train, task.label_names(train))
    index = list(range(8))
    torch.testing.assert_close(task.collate(data, index).inputs, data.pixels[:8])
    erased = task.collate(data, index, train=True, generator=torch.Generator().manual_seed(5)).inputs
    # Against the augmentation function on the same draws: the fill is 0.0, the normalized training mean.
    from attnkit.data.vision import random_erase

    expected = random_erase(data.pixels[:8], 1.0, torch.Generator().manual_seed(5), fill=0.0)
    torch.testing.assert_close(erased, expected, rtol=0, atol=0)
    assert bool(((erased == 0) & (data.pixels[:8] != 0)).flatten(1).any(dim=1).all())  # every image got a box
    with pytest.raises(ConfigError, match=r"image.random_erasing must be <= 1, got 1.5"):
        _config("unused-folder", random_erasing=1.5)


def test_preparation_round_trip_and_damage(tmp_path: Path) -> None:
    task = task_for(_config(str(_folder(tmp_path / "imgs"))))
    train, _, _ = task.read_splits()
    task.fit_preparation(train)
    run = tmp_path / "run"
    run.mkdir()
    task.save_preparation(run)
    loaded = task_for(_config(str(tmp_path / "imgs")))
    loaded.load_preparation(run)
    assert loaded.same_preparation(task)
    (run / PREPARATION_FILE).write_text(
        json.dumps({"size": [8, 8], "mode": "L", "mean": [0.5], "std": [0.0]})
    )
    with pytest.raises(RunError, match=f"{PREPARATION_FILE}: damaged"):
        loaded.load_preparation(run)
    (run / PREPARATION_FILE).write_text("{not json")
    with pytest.raises(RunError, match="cannot be read"):
        loaded.load_preparation(run)
    (run / PREPARATION_FILE).unlink()
    with pytest.raises(RunNotFoundError, match="not found"):
        loaded.load_preparation(run)


def test_raw_images_are_encoded_like_the_training_images(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "imgs")
    task = task_for(_config(str(folder)))
    train, _, _ = task.read_splits()
    task.fit_preparation(train)
    path = folder / "dark" / "0.png"
    from_bytes, mask = task.encode_inputs([path.read_bytes()])
    assert mask is None
    array = np.asarray(Image.open(path))[..., None]
    from_array, _ = task.encode_inputs([array])
    torch.testing.assert_close(from_bytes, from_array)
    # A larger RGB image is converted and resized as the folder reader does.
    big = Image.fromarray(
        np.repeat(np.asarray(Image.open(path).resize((16, 16)))[..., None], 3, axis=2), "RGB"
    )
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    resized, _ = task.encode_inputs([buffer.getvalue()])
    assert resized.shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="uint8"):
        task.encode_inputs([np.zeros((8, 8, 1), dtype=np.float32)])


def test_the_modality_is_decided_from_the_data_and_saved(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "imgs")
    config = RunConfig.from_dict({"data": {"train": str(folder)}, "model": {"name": "cnn-attn"}})
    assert config.data.modality == "auto" and config.modality == "image"
    assert config.resolved().data.modality == "image"
    assert (
        RunConfig.from_dict({"data": {"train": "fashion-mnist"}, "model": {"name": "vit"}}).modality
        == "image"
    )
    assert RunConfig.from_dict({"data": {"train": "imdb"}, "model": {"name": "cnn-attn"}}).modality == "text"
    # A model only one modality has decides when the data cannot (not there yet).
    assert (
        RunConfig.from_dict({"data": {"train": str(tmp_path / "later")}, "model": {"name": "vit"}}).modality
        == "image"
    )
    with pytest.raises(ValueError, match="'nb-attn' is not an image model"):
        RunConfig.from_dict({"data": {"train": str(folder)}, "model": {"name": "nb-attn"}})
