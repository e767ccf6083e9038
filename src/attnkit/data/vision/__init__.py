"""Image data: labelled image sets, IDX files, Fashion-MNIST, image folders, decoding and augmentation.

- :class:`ImageSet`: uint8 pixels ``(N, H, W, C)`` with string labels and sources; every loader returns one.
- :func:`load_fashion_mnist` / :func:`load_vision_dataset` (``"fashion-mnist:test"``): verified built-ins,
  registered in :data:`VISION_DATASETS`.
- :func:`load_image_folder`: ``<root>/<class>/<image>``; :func:`is_image_folder` tells one from a text folder.
- :func:`decode_image`: one image's bytes -> pixels, the conversion shared by folders and uploads.
- :func:`channel_stats`, :func:`normalize`, :func:`random_crop`, :func:`random_hflip`, :func:`random_erase`: float batches.
"""

from attnkit.data.vision.augment import (
    AugmentConfig,
    augment_batch,
    channel_stats,
    normalize,
    pad_value,
    random_crop,
    random_erase,
    random_hflip,
)
from attnkit.data.vision.builtin import (
    VISION_DATASETS,
    VisionDataset,
    get_vision_dataset,
    load_vision_dataset,
    parse_vision_name,
)
from attnkit.data.vision.decode import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    DecodeOptions,
    ImageError,
    decode_image,
)
from attnkit.data.vision.fashion_mnist import load_fashion_mnist
from attnkit.data.vision.folder import ImageFolderReport, is_image_folder, load_image_folder
from attnkit.data.vision.idx import parse_idx, read_idx
from attnkit.data.vision.images import ImageSet

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "VISION_DATASETS",
    "AugmentConfig",
    "DecodeOptions",
    "ImageError",
    "ImageFolderReport",
    "ImageSet",
    "VisionDataset",
    "augment_batch",
    "channel_stats",
    "decode_image",
    "get_vision_dataset",
    "is_image_folder",
    "load_fashion_mnist",
    "load_image_folder",
    "load_vision_dataset",
    "normalize",
    "pad_value",
    "parse_idx",
    "parse_vision_name",
    "random_crop",
    "random_erase",
    "random_hflip",
    "read_idx",
]
