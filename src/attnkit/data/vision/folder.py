"""Image folders: ``<root>/<class>/<image>``, one sub-folder per class, its name the label.

Dimensions: ``N`` images, ``H`` height, ``W`` width (pixels), ``C`` channels (1 for ``L``, 3 for ``RGB``).

Every file is decoded by :func:`attnkit.data.vision.decode.decode_image` (the same conversion the server
applies to uploads: EXIF orientation, 16-bit scaled to 8, transparency composited on white, resize that keeps
the aspect ratio and crops the centre). What is read and what is not:

- images are files ending in ``.png``, ``.jpg``/``.jpeg``/``.jpe``, ``.bmp``, ``.gif`` or ``.webp`` (any case)
  directly inside a class folder; other files, folders nested inside class folders and files beside the class
  folders are ignored and counted, and so are hidden names (starting with ``.``);
- an image that cannot be used (not an image, truncated, corrupt, too many pixels, too large, unreadable) is
  skipped and counted by reason in the :class:`ImageFolderReport`, the first few named; loading fails only
  when a class (or the whole folder) is left with none;
- a class folder with no image file, a single class, or no class folder at all are errors naming the
  folder, and so are images of different sizes when ``size`` is ``None``.

Classes are the folder names in natural order (``2`` before ``10``), images within a class likewise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from attnkit.data.errors import DataError
from attnkit.data.folders import (
    MAX_NAMED,
    FolderKind,
    FolderReport,
    class_folder_entries,
    has_suffix,
    natural_key,
    scan_class_folders,
)
from attnkit.data.vision.decode import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    FORMATS,
    IMAGE_SUFFIXES,
    DecodeOptions,
    ImageError,
    ImageMode,
    decode_with,
)
from attnkit.data.vision.images import ImageSet

__all__ = ["MAX_NAMED", "ImageFolderReport", "is_image_folder", "load_image_folder", "natural_key"]

logger = logging.getLogger(__name__)

_KIND = FolderKind(
    files="image files",
    holding="images",
    leaf="<image>",
    kinds=f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}",
    add="images",
    suffixes=IMAGE_SUFFIXES,
    logger=logger,
)


class ImageFolderReport(FolderReport):
    """What happened while reading one image folder (the fields: :class:`~attnkit.data.folders.FolderReport`).

    ``reasons`` counts images by reason (``"not an image"``, ``"truncated"``, ``"corrupt"``,
    ``"too many pixels"``, ``"too large"``, ``"unreadable file"``). :meth:`summary` reads e.g. ``skipped 3 of
    120 images in pets/ (kept 117): 2 truncated, 1 not an image``.
    """

    noun = "images"


def is_image_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like an image folder rather than a text one.

    True when ``path`` is a folder whose (non-hidden) sub-folders hold more image files (by suffix, see the
    module docstring) than ``.txt`` files, and at least one. A text folder (``<label>/<name>.txt``) is
    False; so is a file, a missing path, or a folder without sub-folders. Only names are looked at.
    """
    entries = class_folder_entries(path)
    if entries is None:
        return False
    images = sum(has_suffix(entry.name, IMAGE_SUFFIXES) for entry in entries)
    texts = sum(entry.name.lower().endswith(".txt") for entry in entries)
    return images > texts


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    mode: ImageMode = "RGB",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[ImageSet, ImageFolderReport]:
    """Read ``<root>/<class>/<image>`` into an :class:`ImageSet` (see the module docstring for the rules).

    Args:
        root: the folder holding one sub-folder per class.
        size: ``(height, width)`` every image is resized to (aspect kept, centre crop); ``None`` requires
            all images to have one size already.
        mode: ``"L"`` (grayscale, ``C = 1``) or ``"RGB"`` (``C = 3``).
        max_pixels: images declaring more pixels are skipped (decompression bombs).
        max_bytes: image files longer than this are skipped.

    Returns:
        ``(images, report)``: ``images.pixels`` is ``(N, H, W, C)`` uint8, ``images.sources`` the file paths,
        ``images.classes`` the class folder names; ``report`` counts what was skipped or ignored.

    Raises:
        DataError: ``root`` is not a folder, has no class folders or only one, a class folder has no image
            files or none readable, or (``size=None``) two images differ in size. One line naming the
            folder or file.
        ValueError: invalid options.
    """
    options = DecodeOptions(size, mode, max_pixels, max_bytes)
    report = ImageFolderReport(source=str(Path(root)))
    tally = scan_class_folders(root, _KIND, report)
    pixels: np.ndarray | None = None  # (len(files), H, W, C), filled as images decode
    first: Path | None = None
    for path, label in tally.files:
        try:
            image = decode_with(_read(path, options.max_bytes), options, where=str(path))  # (H, W, C)
        except ImageError as e:
            tally.skip(label, e)
            continue
        if pixels is None:
            pixels = np.empty((len(tally.files), *image.shape), dtype=np.uint8)
            first = path
        elif image.shape != pixels.shape[1:]:
            h, w, _ = image.shape
            raise DataError(
                f"{path}: {h}x{w} pixels, but {first} is {pixels.shape[1]}x{pixels.shape[2]}; resize images of "
                "different sizes with image.size (--set 'image.size=[H, W]', or size=(H, W) here)"
            )
        pixels[len(tally.labels)] = image
        tally.keep(path, label)
    classes = tally.finish()
    assert pixels is not None  # finish() fails when no image was kept
    kept = pixels if len(tally.labels) == len(tally.files) else pixels[: len(tally.labels)].copy()
    return ImageSet(kept, tally.labels, tally.sources, classes=classes), report


def _read(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; a file over ``max_bytes`` or one that cannot be read is an :class:`ImageError`."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(
                f"{path}: too large ({size:,} bytes > {max_bytes:,}); use a smaller file", "too large"
            )
        return path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the file ({e.strerror or e})", "unreadable file") from None
