"""Decoding one image file's bytes into a ``uint8`` array: the one conversion every image path shares.

Dimensions: ``H`` height, ``W`` width (pixels), ``C`` channels (1 for ``mode="L"``, 3 for ``mode="RGB"``).

The folder reader and the HTTP server both call :func:`decode_image`, so a file becomes the same pixels
whichever way it arrives. The steps, in order:

1. **Refuse** more than ``max_bytes`` of input, anything Pillow does not identify as PNG, JPEG, BMP, GIF or
   WebP, and any image whose header declares more than ``max_pixels`` pixels (checked before decoding, so a
   decompression bomb costs nothing).
2. **Decode** the first frame (GIF, APNG and WebP animations give their first frame). A truncated or corrupt
   file is an :class:`ImageError`, never a partly grey image; a PNG's chunk checksums are verified first
   (Pillow's decoder does not check them, so damaged bytes would otherwise decode to garbage).
3. **Orient**: the EXIF orientation tag is applied (a portrait photo stored sideways comes out upright).
4. **Convert** to ``mode``:

   - 16-bit grayscale (PNG ``I;16``) is scaled to 8 bits, ``round(v * 255 / 65535)`` (Pillow's own
     conversion would clip everything above 255 to white);
   - transparency (RGBA, LA, palette or ``tRNS`` transparency) is **composited on white**, as a browser
     shows it on a white page (dropping alpha instead would show whatever colour hides under transparent
     pixels, often black);
   - everything else (palette, 1-bit, CMYK JPEG, ...) goes through Pillow's ``convert``; RGB to ``L`` is
     Pillow's ITU-R 601-2 luma, ``L = 0.299 R + 0.587 G + 0.114 B``.
5. **Resize** to ``size = (height, width)`` when given, keeping the aspect ratio: the image is scaled so that
   it covers the target (the short side, relative to the target's shape, fits exactly) and the overflow is
   cropped equally from both ends (centre crop), in one bilinear, antialiased resampling. Nothing is ever
   stretched; a photo wider than the target loses its left and right edges. Large JPEGs are decoded at a
   reduced scale first (JPEG "draft" mode: 1/2, 1/4 or 1/8, never below the size needed), which is much
   faster and changes pixels only slightly.
"""

from __future__ import annotations

import io
import logging
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from attnkit.data.errors import DataError

logger = logging.getLogger(__name__)

ImageMode = Literal["L", "RGB"]
#: The formats read (Pillow's names).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
#: File suffixes taken for images (lowercase).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".webp"})
#: Default pixel cap: 64 megapixels (8000 x 8000); decoding one as RGBA takes at most 256 MB.
DEFAULT_MAX_PIXELS = 64_000_000
#: Default input-size cap per image.
DEFAULT_MAX_BYTES = 64 << 20
MODES: tuple[str, ...] = ("L", "RGB")

# EXIF orientations 5-8 swap width and height.
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_ORIENTATION_TAG = 0x0112
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class ImageError(DataError):
    """One image could not be used.

    Attributes:
        reason: ``"too large"``, ``"not an image"``, ``"too many pixels"``, ``"truncated"`` or
            ``"corrupt"``; the folder reader counts skipped files by it.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DecodeOptions:
    """What :func:`decode_image` produces and what it refuses.

    Attributes:
        size: ``(height, width)`` in pixels, or ``None`` to keep each image's own size.
        mode: ``"L"`` (1 channel) or ``"RGB"`` (3 channels).
        max_pixels: images declaring more pixels (width x height) are refused before decoding.
        max_bytes: inputs longer than this are refused.
    """

    size: tuple[int, int] | None = None
    mode: ImageMode = "RGB"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "size", _check_size(self.size))
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'L' (grayscale) or 'RGB', got {self.mode!r}")
        if self.max_pixels <= 0 or self.max_bytes <= 0:
            raise ValueError(
                f"max_pixels and max_bytes must be > 0, got {self.max_pixels} and {self.max_bytes}"
            )

    @property
    def channels(self) -> int:
        """``C``: 1 for ``L``, 3 for ``RGB``."""
        return 1 if self.mode == "L" else 3


def _check_size(size: object) -> tuple[int, int]:
    values = tuple(size) if isinstance(size, tuple | list) else ()
    ints = [int(v) for v in values if isinstance(v, numbers.Integral) and not isinstance(v, bool)]
    if len(values) != 2 or len(ints) != 2 or min(ints) <= 0:
        raise ValueError(f"size must be (height, width) in positive pixels, or None; got {size!r}")
    return ints[0], ints[1]


def decode_image(
    data: bytes,
    *,
    size: tuple[int, int] | None = None,
    mode: ImageMode = "RGB",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    where: str = "image",
) -> np.ndarray:
    """Decode, orient, convert and resize one image (see the module docstring for each step).

    Args:
        data: the file's bytes (PNG, JPEG, BMP, GIF or WebP).
        size: ``(height, width)``; ``None`` keeps the image's size.
        mode: ``"L"`` or ``"RGB"``.
        max_pixels: refuse images declaring more pixels than this (decompression bombs).
        max_bytes: refuse inputs longer than this.
        where: the file name or upload for messages.

    Returns:
        ``uint8`` array ``(H, W, C)``, C-contiguous.

    Raises:
        ImageError: too large, not an image, too many pixels, truncated or corrupt (one line naming
            ``where``; :attr:`ImageError.reason` says which).
        ValueError: invalid options.
    """
    return decode_with(data, DecodeOptions(size, mode, max_pixels, max_bytes), where=where)


def decode_with(data: bytes, options: DecodeOptions, *, where: str = "image") -> np.ndarray:
    """:func:`decode_image` with validated :class:`DecodeOptions` (the folder reader checks them once)."""
    if len(data) > options.max_bytes:
        raise ImageError(
            f"{where}: too large ({len(data):,} bytes > {options.max_bytes:,}); use a smaller file",
            "too large",
        )
    try:
        # The cap below decides; Pillow's warning above half its own limit is noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(
            f"{where}: too many pixels (more than {limit:,}, the most Pillow decodes); shrink the image",
            "too many pixels",
        ) from None
    except Exception:  # UnidentifiedImageError, and whatever a damaged header makes a plugin raise
        raise ImageError(
            f"{where}: not an image (expected {', '.join(FORMATS[:-1])} or {FORMATS[-1]})", "not an image"
        ) from None
    with im:
        width, height = im.size
        if width * height > options.max_pixels:
            raise ImageError(
                f"{where}: too many pixels ({width}x{height} = {width * height:,} > the cap of "
                f"{options.max_pixels:,}); shrink the image, or raise the cap: image.max_pixels to train, "
                "--max-image-pixels for predict, explain and serve, max_image_pixels= in attnkit.load",
                "too many pixels",
            )
        if im.format == "PNG":
            _verify_png(data, where)
        orientation = _orientation(im)
        if options.size is not None and im.format in ("JPEG", "MPO"):  # MPO: a phone camera's JPEG
            _draft(im, options.size, orientation)
        try:
            im.load()
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, ... on bad data
            raise _damaged(e, where) from None
        out: Image.Image = im
        if orientation not in (None, 1):
            out = ImageOps.exif_transpose(out)
        out = convert_image(out, options.mode)
        if options.size is not None:
            out = _cover_resize(out, options.size)
        pixels = np.asarray(out, dtype=np.uint8)  # (H, W) for L, (H, W, 3) for RGB
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]  # (H, W, 1)
    return np.ascontiguousarray(pixels)


def _verify_png(data: bytes, where: str) -> None:
    """Check every PNG chunk's CRC (Pillow's decoder does not check the image data's): damaged bytes are
    refused instead of decoding to garbage. Costs a CRC pass over the file, no decompression."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as check:
            check.verify()
    except Exception as e:
        raise _damaged(e, where) from None


def _damaged(error: Exception, where: str) -> ImageError:
    """The :class:`ImageError` for a decoder failure: ``truncated`` when the data ends early, else ``corrupt``."""
    message = str(error) or type(error).__name__
    reason = "truncated" if isinstance(error, EOFError) or "truncated" in message.lower() else "corrupt"
    return ImageError(f"{where}: {reason} image ({message})", reason)


def _orientation(im: Image.Image) -> int | None:
    try:
        value = im.getexif().get(_ORIENTATION_TAG)
    except Exception:  # a damaged EXIF block: decode the image as stored
        logger.debug("unreadable EXIF data; ignoring its orientation")
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _draft(im: Image.Image, size: tuple[int, int], orientation: int | None) -> None:
    """Let the JPEG decoder downscale by 1/2, 1/4 or 1/8 where the result still covers ``size``."""
    target_h, target_w = size
    if orientation in _SWAPS_AXES:  # the target is upright; the stored image is sideways
        target_h, target_w = target_w, target_h
    width, height = im.size
    scale = max(target_w / width, target_h / height)
    if scale < 0.5:  # draft only ever reduces by powers of two from 1/2 on
        im.draft(im.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def convert_image(im: Image.Image, mode: str) -> Image.Image:
    """``im`` in ``mode`` (``L`` or ``RGB``) as the decoder converts every image: 16- and 32-bit grayscale
    scaled to 8 bits, transparency on white, other modes through RGB."""
    if im.mode in _SIXTEEN_BIT:
        values = np.asarray(im).astype(np.int64)  # (H, W)
        scaled = (np.clip(values, 0, 65535) * 255 + 32767) // 65535  # round(v * 255 / 65535)
        im = Image.fromarray(scaled.astype(np.uint8), "L")
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode == mode:
        return im
    if mode == "L" and im.mode not in ("RGB", "L", "1", "P"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, ...: through RGB, so L is always the same luma of RGB
    return im.convert(mode)


def _cover_resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale ``im`` to cover ``size = (height, width)`` and crop the centre, in one resampling."""
    target_h, target_w = size
    width, height = im.size
    if (height, width) == (target_h, target_w):
        return im
    scale = max(target_w / width, target_h / height)
    # The source region that becomes the output. On the side that fits, target / scale is the full side only up
    # to rounding (49 / (32 / 49) is 49.000000000000007), and Pillow refuses a box a hair outside the image.
    box_w, box_h = min(target_w / scale, width), min(target_h / scale, height)
    left, top = (width - box_w) / 2, (height - box_h) / 2
    return im.resize(
        (target_w, target_h), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
    )
