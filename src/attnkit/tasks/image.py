"""Image classification: images normalized with the training split's per-channel statistics; units are pixel
boxes of the model's unit grid (ViT patches, CNN feature-map cells).

Dimension legend: ``N`` images, ``B`` batch, ``C`` channels, ``H`` / ``W`` height / width.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from attnkit.data import BucketBatchSampler
from attnkit.data.errors import DataError
from attnkit.data.vision import (
    IMAGE_SUFFIXES,
    AugmentConfig,
    ImageSet,
    augment_batch,
    channel_stats,
    decode_image,
    load_image_folder,
    load_vision_dataset,
    normalize,
    pad_value,
    parse_vision_name,
)
from attnkit.tasks.base import Batch, BatchSampler, Task

if TYPE_CHECKING:
    from attnkit.train.config import RunConfig

#: Where an image run keeps how its inputs are prepared.
PREPARATION_FILE = "image_preparation.json"
#: The default mode of each built-in (``image.mode: auto``); folders default to RGB.
BUILTIN_MODES = {"fashion-mnist": "L"}
#: The official held-out split of each built-in, the test set when ``data.test`` is not given.
OFFICIAL_TEST_SPLITS = {"fashion-mnist": "test"}


@dataclass(frozen=True)
class ImagePreparation:
    """How raw images become model inputs: size, mode and the training split's per-channel statistics.

    Attributes:
        size: ``(H, W)`` every image is resized to.
        mode: ``L`` (1 channel) or ``RGB`` (3 channels).
        mean: per-channel mean of the training pixels, in ``[0, 1]`` units.
        std: per-channel standard deviation of the training pixels (> 0).
    """

    size: tuple[int, int]
    mode: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def to_json(self) -> str:
        return json.dumps(
            {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}, indent=2
        )

    @classmethod
    def from_json_dict(cls, raw: Any, where: Path) -> ImagePreparation:
        """Checked: a one-line ``ValueError`` naming ``where`` for anything missing or out of range."""
        try:
            size = tuple(int(v) for v in raw["size"])
            mode = str(raw["mode"])
            mean = tuple(float(v) for v in raw["mean"])
            std = tuple(float(v) for v in raw["std"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: not an image preparation (size, mode, mean, std)") from None
        channels = 1 if mode == "L" else 3
        if (
            len(size) != 2
            or min(size) < 1
            or mode not in ("L", "RGB")
            or len(mean) != channels
            or len(std) != channels
            or not all(math.isfinite(v) for v in (*mean, *std))
            or min(std) <= 0
        ):
            raise ValueError(f"{where}: damaged image preparation {raw!r}")
        return cls((size[0], size[1]), mode, mean, std)


@dataclass
class ImageDataset:
    """Normalized images ``pixels (N, C, H, W)`` float32 and their class ids."""

    pixels: Tensor
    labels: list[int] | None

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def carve_validation(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """``(train, val)``: ``round(fraction * n_c)`` images of each class ``c`` for validation, drawn with ``seed``.

    Each part keeps the input order; the same seed and input always give the same parts.
    """
    labels = np.asarray(images.labels)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(images), dtype=bool)
    for label in sorted(set(images.labels)):
        members = np.flatnonzero(labels == label)
        chosen = rng.permutation(members)[: round(fraction * len(members))]
        is_val[chosen] = True
    return images.subset(~is_val), images.subset(is_val)


class ImageClassificationTask(Task):
    """Classify images: built-ins (``fashion-mnist``) or a folder of class folders, normalized on train only.

    Args:
        config: the run's config (``data``, ``image``, ``optim`` sections).
    """

    modality: ClassVar[str] = "image"
    input_name: ClassVar[str] = "images"
    input_suffixes: ClassVar[frozenset[str] | None] = IMAGE_SUFFIXES
    preparation_name: ClassVar[str] = "image preparation"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self._preparation: ImagePreparation | None = None
        # Images declaring more pixels are refused before decoding; predict and explain may raise it.
        self.max_pixels = config.image.max_pixels

    @property
    def preparation(self) -> ImagePreparation:
        if self._preparation is None:
            raise RuntimeError("the task's image preparation is not fitted or loaded yet")
        return self._preparation

    # -- data -------------------------------------------------------------------------------------------

    def mode(self) -> str:
        """``L`` or ``RGB``: ``image.mode``, or for ``auto`` the built-in's mode (RGB for folders)."""
        if self.config.image.mode != "auto":
            return self.config.image.mode
        parsed = parse_vision_name(self.config.data.train)
        if parsed is not None and not Path(self.config.data.train).exists():
            return BUILTIN_MODES.get(parsed[0], "RGB")
        return "RGB"

    def read_source(self, source: str) -> ImageSet:
        """A built-in name (``fashion-mnist:test``) or a folder of class folders, in the run's size and mode."""
        size = self.config.image.size
        if self._preparation is not None:  # a trained run reads new data in its own size and mode
            size, mode = list(self._preparation.size), self._preparation.mode
        else:
            mode = self.mode()
        parsed = parse_vision_name(source)
        if parsed is not None and not Path(source).exists():
            images = load_vision_dataset(source)
            return self._converted(images, size, mode, source)
        path = Path(source)
        if not path.is_dir():
            raise DataError(
                f"{source}: not an image dataset; give a folder with one sub-folder of images per class, or a "
                "built-in name (fashion-mnist)"
            )
        images, _report = load_image_folder(
            path,
            size=tuple(size) if size else None,  # type: ignore[arg-type]
            mode=mode,  # type: ignore[arg-type]
            max_pixels=self.max_pixels,
        )
        return images

    def _converted(self, images: ImageSet, size: list[int] | None, mode: str, source: str) -> ImageSet:
        """A built-in's images in ``mode`` and ``size`` (Pillow, the folders' conversion)."""
        height, width, channels = images.image_shape
        want_channels = 1 if mode == "L" else 3
        if (size is None or tuple(size) == (height, width)) and channels == want_channels:
            return images
        from PIL import Image

        target = (size[0], size[1]) if size else (height, width)
        converted = np.stack(
            [
                np.asarray(
                    Image.fromarray(image[..., 0] if channels == 1 else image)
                    .convert(mode)
                    .resize((target[1], target[0]), Image.Resampling.BILINEAR)
                ).reshape(target[0], target[1], want_channels)
                for image in images.pixels
            ]
        )
        return ImageSet(converted, images.labels, images.sources, images.classes)

    def read_splits(self) -> tuple[ImageSet, ImageSet, ImageSet | None]:
        data = self.config.data
        train = self.read_source(data.train)
        if len(set(train.labels)) < 2:
            raise DataError(f"{data.train}: all {len(train)} images are of one class; a classifier needs two")
        test_source = data.test
        parsed = parse_vision_name(data.train)
        if test_source is None and parsed is not None and not Path(data.train).exists():
            official = OFFICIAL_TEST_SPLITS.get(parsed[0])
            if official is not None and parsed[1] in (None, "train"):
                test_source = f"{parsed[0]}:{official}"
        test = self.read_source(test_source) if test_source else None
        if data.val:
            val = self.read_source(data.val)
        else:
            train, val = carve_validation(train, data.val_fraction, data.split_seed)
        return train, val, test

    def labels_in(self, examples: ImageSet) -> list[str]:
        return list(examples.labels)

    def label_names(self, train: ImageSet) -> list[str]:
        """The classes in the data's canonical order (Fashion-MNIST's official ids; a folder's natural order)."""
        present = set(train.labels)
        return [name for name in (train.classes or sorted(present)) if name in present]

    def fit_preparation(self, train: ImageSet) -> None:
        mean, std = channel_stats(train.pixels)
        height, width, channels = train.image_shape
        std = tuple(max(s, 1e-3) for s in std)  # a constant channel would divide by 0
        self._preparation = ImagePreparation((height, width), "L" if channels == 1 else "RGB", mean, std)

    def encode(self, examples: ImageSet, labels: list[str]) -> ImageDataset:
        prep = self.preparation
        height, width, channels = examples.image_shape if len(examples) else (*prep.size, prep.channels)
        if (height, width) != prep.size or channels != prep.channels:
            raise DataError(
                f"images of {height}x{width}x{channels} do not match the run's {prep.size[0]}x{prep.size[1]}x"
                f"{prep.channels}; set image.size and image.mode"
            )
        index = {label: i for i, label in enumerate(labels)}
        unknown = sorted(set(examples.labels) - set(index))
        if unknown:
            raise ValueError(
                f"labels {', '.join(unknown[:5])} do not occur in the training data (known: {', '.join(labels)})"
            )
        pixels = normalize(examples.pixels, prep.mean, prep.std)  # (N, C, H, W)
        return ImageDataset(pixels, [index[label] for label in examples.labels])

    def train_sampler(self, dataset: ImageDataset, batch_size: int, seed: int) -> BatchSampler:
        # Equal "lengths": the bucket sampler is then a plain seeded shuffle into batches.
        return BucketBatchSampler([1] * len(dataset), batch_size, shuffle=True, seed=seed)

    def eval_batches(self, dataset: ImageDataset, batch_size: int) -> Iterable[list[int]]:
        return (
            list(range(start, min(start + batch_size, len(dataset))))
            for start in range(0, len(dataset), batch_size)
        )

    def collate(
        self,
        dataset: ImageDataset,
        indices: Sequence[int],
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Batch:
        pixels = dataset.pixels[torch.as_tensor(list(indices), dtype=torch.long)]  # (B, C, H, W)
        image = self.config.image
        if train and generator is not None:
            augment = AugmentConfig(
                crop_padding=image.random_crop_padding,
                hflip_p=0.5 if image.horizontal_flip else 0.0,
                erase_p=image.random_erasing,
            )
            # Crops pad with black, as the raw images would; erased boxes take the mean colour (0.0).
            fill = pad_value(self.preparation.mean, self.preparation.std) if augment.crop_padding else 0.0
            pixels = augment_batch(pixels, augment, generator, fill=fill)
        targets = None if dataset.labels is None else torch.as_tensor([dataset.labels[i] for i in indices])
        return Batch(pixels, None, targets)

    # -- the run directory ------------------------------------------------------------------------------

    def save_preparation(self, run_dir: Path) -> None:
        from attnkit.atomic import write_text

        write_text(run_dir / PREPARATION_FILE, self.preparation.to_json())

    def load_preparation(self, run_dir: Path) -> None:
        from attnkit.runs import RunError, RunNotFoundError

        path = Path(run_dir) / PREPARATION_FILE
        if not path.is_file():
            raise RunNotFoundError(f"{path}: not found; an image run keeps its input preparation there")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._preparation = ImagePreparation.from_json_dict(raw, path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RunError(f"{path}: cannot be read ({type(err).__name__}); train the run again") from None
        except ValueError as err:
            raise RunError(str(err)) from None

    def adopt_preparation(self, other: Task) -> None:
        if not isinstance(other, ImageClassificationTask):
            raise ValueError(f"an image task cannot prepare inputs like a {other.modality} task")
        self._preparation = other.preparation

    def same_preparation(self, other: Task) -> bool:
        return isinstance(other, ImageClassificationTask) and other.preparation == self.preparation

    # -- the model --------------------------------------------------------------------------------------

    def model_fields(self, num_classes: int) -> dict[str, Any]:
        prep = self.preparation
        return {"num_classes": num_classes, "image_size": prep.size, "channels": prep.channels}

    # -- raw inputs -------------------------------------------------------------------------------------

    def encode_inputs(self, items: Sequence[Any]) -> tuple[Tensor, Tensor | None]:
        """Images (encoded bytes, or ``(H, W, C)`` / ``(H, W)`` uint8 arrays) -> ``pixels (B, C, H, W)``.

        Bytes are decoded and arrays of another size resized as the training images were (aspect kept, centre
        crop); the unit mask is the model's (all units), so None.
        """
        prep = self.preparation
        arrays = [self.to_array(item) for item in items]
        if not arrays:
            return torch.zeros(0, prep.channels, *prep.size), None
        return normalize(np.stack(arrays), prep.mean, prep.std), None

    def to_array(self, item: Any, *, where: str = "image") -> np.ndarray:
        """One image as ``(H, W, C)`` uint8 in the run's size and mode; ``where`` names it in errors."""
        prep = self.preparation
        if isinstance(item, (bytes, bytearray, memoryview)):
            return decode_image(
                bytes(item),
                size=prep.size,
                mode=prep.mode,  # type: ignore[arg-type]
                max_pixels=self.max_pixels,
                where=where,
            )
        array = np.asarray(item)
        if array.ndim == 2:
            array = array[..., None]
        if array.dtype != np.uint8 or array.ndim != 3:
            raise ValueError(
                f"{where}: an image must be encoded bytes or a (H, W, C) uint8 array, got {array.dtype} "
                f"{array.shape}"
            )
        if array.shape[2] not in (1, 3, 4) or min(array.shape[:2]) < 1:
            hint = " (channels first? give array.transpose(1, 2, 0))" if array.shape[0] in (1, 3, 4) else ""
            raise ValueError(
                f"{where}: an image array must be (H, W, C) with H, W >= 1 and C = 1 (grayscale), 3 (RGB) or 4 "
                f"(RGBA), channels last; got shape {array.shape}{hint}"
            )
        if array.shape[:2] == prep.size and array.shape[2] == prep.channels:
            return array
        from io import BytesIO

        from PIL import Image

        buffer = BytesIO()
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
        return decode_image(buffer.getvalue(), size=prep.size, mode=prep.mode, max_pixels=self.max_pixels)  # type: ignore[arg-type]
