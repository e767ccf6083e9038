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
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnkit.data.errors import DataError
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

logger = logging.getLogger(__name__)

#: How many skipped files a report names.
MAX_NAMED = 5
_KINDS = f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}"


@dataclass
class ImageFolderReport:
    """What happened while reading one image folder.

    Attributes:
        source: the folder.
        kept: images returned.
        reasons: images skipped, by reason (``"not an image"``, ``"truncated"``, ``"corrupt"``,
            ``"too many pixels"``, ``"too large"``, ``"unreadable file"``).
        skipped_files: the first :data:`MAX_NAMED` skipped files, each ``"<path>: <what is wrong>"``.
        ignored_files: entries that are not images by name (other suffixes, nested folders, files beside
            the class folders); not counted as skipped.
        hidden_files: entries whose name starts with ``.``, ignored.
        per_class: images kept per class, in class order.
    """

    source: str
    kept: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)
    ignored_files: int = 0
    hidden_files: int = 0
    per_class: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """Image files skipped for any reason."""
        return sum(self.reasons.values())

    @property
    def total(self) -> int:
        """Image files seen: kept plus skipped."""
        return self.kept + self.skipped

    def skipped_by_reason(self) -> dict[str, int]:
        """Non-zero skip counts keyed by reason, e.g. ``{"truncated": 2, "not an image": 1}``."""
        return {reason: n for reason, n in self.reasons.items() if n}

    def summary(self) -> str:
        """One line, e.g. ``skipped 3 of 120 images in pets/ (kept 117): 2 truncated, 1 not an image``."""
        if not self.skipped:
            return f"kept all {self.kept} images in {self.source}"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason().items())
        return f"skipped {self.skipped} of {self.total} images in {self.source} (kept {self.kept}): {reasons}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable fields plus ``skipped``."""
        return {**asdict(self), "skipped": self.skipped}

    def _skip(self, path: Path, error: ImageError) -> None:
        self.reasons[error.reason] = self.reasons.get(error.reason, 0) + 1
        if len(self.skipped_files) < MAX_NAMED:
            self.skipped_files.append(str(error))
        logger.debug("skipping %s: %s", path, error)


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``img2.png`` before ``img10.png`` (str and int pieces alternate, never compared)."""
    return [int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", name))]


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: natural_key(e.name))
    except OSError as e:
        raise DataError(f"{folder}: cannot list the folder ({e.strerror or e})") from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def is_image_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like an image folder rather than a text one.

    True when ``path`` is a folder whose (non-hidden) sub-folders hold more image files (by suffix, see the
    module docstring) than ``.txt`` files, and at least one. A text folder (``<label>/<name>.txt``) is
    False; so is a file, a missing path, or a folder without sub-folders. Only names are looked at.
    """
    p = Path(path)
    if not p.is_dir():
        return False
    images = texts = 0
    try:
        for sub in _entries(p):
            if sub.name.startswith(".") or not _is_dir(sub):
                continue
            for entry in _entries(Path(sub.path)):
                if entry.name.startswith("."):
                    continue
                if _is_image_name(entry.name):
                    images += 1
                elif entry.name.lower().endswith(".txt"):
                    texts += 1
    except DataError:
        return False
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
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base}: not a folder; expected one sub-folder per class holding images")
    report = ImageFolderReport(source=str(base))
    class_dirs: list[Path] = []
    for entry in _entries(base):
        if entry.name.startswith("."):
            report.hidden_files += 1
        elif _is_dir(entry):
            class_dirs.append(Path(entry.path))
        else:
            report.ignored_files += 1
    layout = f"{base}/<class>/<image>"
    if not class_dirs:
        raise DataError(
            f"{base}: no class folders; expected one sub-folder per class holding images ({layout})"
        )
    if len(class_dirs) == 1:
        raise DataError(
            f"{base}: only one class folder ({class_dirs[0].name}); a classifier needs at least two classes, "
            f"one sub-folder each ({layout})"
        )

    files: list[tuple[Path, str]] = []  # (image file, class)
    for class_dir in class_dirs:
        found = 0
        for entry in _entries(class_dir):
            if entry.name.startswith("."):
                report.hidden_files += 1
            elif _is_dir(entry) or not _is_image_name(entry.name):
                report.ignored_files += 1
            else:
                files.append((Path(entry.path), class_dir.name))
                found += 1
        if not found:
            raise DataError(f"{class_dir}: no image files ({_KINDS}); add images or remove the folder")
    if report.ignored_files:
        logger.info("%s: ignoring %d entries that are not image files", base, report.ignored_files)

    pixels: np.ndarray | None = None  # (len(files), H, W, C), filled as images decode
    first: Path | None = None
    labels: list[str] = []
    sources: list[str] = []
    seen = dict.fromkeys((d.name for d in class_dirs), 0)  # image files per class
    first_error: dict[str, str] = {}  # class -> its first skipped file's message
    for path, label in files:
        seen[label] += 1
        try:
            image = decode_with(_read(path, options.max_bytes), options, where=str(path))  # (H, W, C)
        except ImageError as e:
            report._skip(path, e)
            first_error.setdefault(label, str(e))
            continue
        if pixels is None:
            pixels = np.empty((len(files), *image.shape), dtype=np.uint8)
            first = path
        elif image.shape != pixels.shape[1:]:
            h, w, _ = image.shape
            raise DataError(
                f"{path}: {h}x{w} pixels, but {first} is {pixels.shape[1]}x{pixels.shape[2]}; pass "
                "size=(height, width) to resize images of different sizes"
            )
        pixels[len(labels)] = image
        labels.append(label)
        sources.append(str(path))
        report.per_class[label] = report.per_class.get(label, 0) + 1

    if pixels is None:
        raise DataError(
            f"{base}: none of the {len(files)} image files could be read (e.g. {report.skipped_files[0]})"
        )
    for class_dir in class_dirs:
        if not report.per_class.get(class_dir.name):
            raise DataError(
                f"{class_dir}: none of its {seen[class_dir.name]} image files could be read "
                f"(e.g. {first_error[class_dir.name]})"
            )
    report.per_class = {d.name: report.per_class[d.name] for d in class_dirs}
    report.kept = len(labels)
    if report.skipped:
        logger.warning("%s", report.summary())
    kept = pixels if len(labels) == len(files) else pixels[: len(labels)].copy()
    return ImageSet(kept, labels, sources, classes=tuple(d.name for d in class_dirs)), report


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
