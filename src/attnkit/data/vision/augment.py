"""From uint8 images to float batches, and training-time augmentation of those batches.

Dimensions: ``N`` images, ``B`` batch, ``C`` channels, ``H`` height, ``W`` width (pixels), ``P`` padding.

- :func:`channel_stats` fits per-channel mean and standard deviation (in ``[0, 1]`` units, i.e. of
  ``pixel / 255``) on the training images only; :func:`normalize` maps uint8 ``(N, H, W, C)`` to float
  ``(N, C, H, W)`` as ``(pixel / 255 - mean) / std``.
- :func:`random_crop` (pad by ``P`` on every side, then crop ``H x W`` at a random offset per image) and
  :func:`random_hflip` work on whole float batches without a Python loop over images, drawing their random
  numbers from an explicit :class:`torch.Generator` only (the same generator state gives the same batch).

**Padding value.** The crop pads with ``fill``, in the batch's own units, default ``0.0``. On a normalized
batch ``0.0`` is the training mean colour. attnkit's choice for training is **black**, as torchvision's
``RandomCrop(padding=...)`` pads raw images before normalizing (and black is the background of MNIST-like
images, so a shifted image looks like a real one): pass ``fill=pad_value(mean, std)``, the normalized value
of raw 0 per channel. :func:`augment_batch` with :class:`AugmentConfig` takes the same ``fill``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Pixels counted per bincount call in channel_stats (bincount widens its input to int64: 32 MB a chunk).
_STATS_CHUNK = 1 << 22


def _as_uint8_array(pixels: np.ndarray | Tensor, what: str) -> np.ndarray:
    """``pixels`` as a uint8 numpy array ``(N, H, W, C)``, refusing anything else."""
    arr = pixels.detach().cpu().numpy() if isinstance(pixels, Tensor) else np.asarray(pixels)
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise ValueError(f"{what} takes uint8 pixels (N, H, W, C), got {arr.dtype} of shape {arr.shape}")
    return arr


def channel_stats(pixels: np.ndarray | Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population, ``ddof=0``) standard deviation of ``pixel / 255``.

    Exact: computed from the 256-bin histogram of each channel in float64, in bounded memory.

    Args:
        pixels: uint8 ``(N, H, W, C)``: the training images only (fitting on test images leaks them).

    Returns:
        ``(mean, std)``, each a tuple of ``C`` floats in ``[0, 1]``.

    Raises:
        ValueError: not uint8 ``(N, H, W, C)``, or no pixels.
    """
    arr = _as_uint8_array(pixels, "channel_stats")
    channels = arr.shape[3]
    flat = arr.reshape(-1, channels)  # (N*H*W, C); a view when arr is contiguous
    if flat.shape[0] == 0:
        raise ValueError("channel_stats needs at least one pixel")
    counts = np.zeros((channels, 256), dtype=np.int64)  # (C, 256)
    for start in range(0, flat.shape[0], _STATS_CHUNK):
        block = flat[start : start + _STATS_CHUNK]  # (chunk, C)
        for c in range(channels):
            counts[c] += np.bincount(block[:, c], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0  # (256,)
    n = float(flat.shape[0])
    mean = counts @ values / n  # (C,)
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / n  # (C,), two-pass: no cancellation
    return tuple(float(m) for m in mean), tuple(float(math.sqrt(v)) for v in var)


def _per_channel(values: float | Sequence[float], channels: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be one finite number or one per channel ({channels}), got {values!r}")
    return arr


def pad_value(mean: Sequence[float], std: Sequence[float], raw: int = 0) -> tuple[float, ...]:
    """The normalized value of raw pixel value ``raw`` per channel, ``(raw / 255 - mean) / std``.

    ``random_crop(x, P, g, fill=pad_value(mean, std))`` pads a normalized batch with black.
    """
    m = _per_channel(mean, len(mean), "mean")
    s = _per_channel(std, len(std), "std")
    if m.size != s.size:
        raise ValueError(f"mean and std must have one value per channel each, got {len(mean)} and {len(std)}")
    return tuple(float(v) for v in (raw / 255.0 - m) / s)


def normalize(
    pixels: np.ndarray | Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """uint8 ``(N, H, W, C)`` -> float ``(N, C, H, W)``: ``(pixel / 255 - mean[c]) / std[c]``.

    Args:
        pixels: uint8 images, channels last (an :class:`ImageSet`'s ``pixels``, or a slice of them).
        mean: ``C`` means of ``pixel / 255`` (from :func:`channel_stats` on the training images).
        std: ``C`` standard deviations, each > 0.
        dtype: a floating dtype for the result.

    Returns:
        A new, contiguous tensor ``(N, C, H, W)`` on the CPU.

    Raises:
        ValueError: not uint8 ``(N, H, W, C)``, or ``mean``/``std`` of the wrong length, or ``std <= 0``.
    """
    arr = _as_uint8_array(pixels, "normalize")
    n, h, w, c = arr.shape
    m = _per_channel(mean, c, "mean")
    s = _per_channel(std, c, "std")
    if np.any(s <= 0):
        raise ValueError(f"std must be > 0 for every channel, got {tuple(std)}")
    if not arr.flags.writeable:  # torch.from_numpy warns on read-only memory; a uint8 copy is cheap
        arr = arr.copy()
    src = torch.from_numpy(arr)  # (N, H, W, C) uint8, no copy
    out = torch.empty((n, c, h, w), dtype=dtype)  # (N, C, H, W)
    out.copy_(src.permute(0, 3, 1, 2))  # (N, C, H, W): the cast happens during the copy
    # One fused affine per element: x * (1 / (255 s)) - m / s, the scale and shift computed in float64.
    scale = torch.tensor(1.0 / (255.0 * s), dtype=dtype).view(1, c, 1, 1)  # (1, C, 1, 1)
    shift = torch.tensor(-m / s, dtype=dtype).view(1, c, 1, 1)  # (1, C, 1, 1)
    return out.mul_(scale).add_(shift)


def _check_batch(x: Tensor, what: str) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"{what} takes a float batch (B, C, H, W), got {x.dtype} of shape {tuple(x.shape)}")


def _draw_ints(high: int, count: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``count`` integers in ``[0, high)`` from ``generator`` (on its own device), moved to ``device``."""
    return torch.randint(0, high, (count,), generator=generator, device=generator.device).to(device)


def random_crop(
    x: Tensor, padding: int, generator: torch.Generator, *, fill: float | Sequence[float] = 0.0
) -> Tensor:
    """Pad every image by ``padding`` pixels on each side with ``fill``, then crop ``H x W`` at random.

    Each image's offset ``(dy, dx)`` is uniform in ``[0, 2 P]``; an offset of ``(P, P)`` returns the image
    unchanged. The draws are ``dy`` for the whole batch, then ``dx`` (``torch.randint`` on ``generator``).

    Args:
        x: float ``(B, C, H, W)``.
        padding: ``P >= 0``; ``0`` returns a copy of ``x`` and draws nothing.
        generator: the only source of randomness.
        fill: the padding value, one number or one per channel, in ``x``'s units (see the module docstring:
            ``pad_value(mean, std)`` pads a normalized batch with black).

    Returns:
        A new tensor ``(B, C, H, W)``: ``out[b, :, i, j] = padded[b, :, i + dy[b], j + dx[b]]``.
    """
    _check_batch(x, "random_crop")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    if padding == 0:
        return x.clone()
    b, c, h, w = x.shape
    p = padding
    values = torch.as_tensor(_per_channel(fill, c, "fill"), dtype=x.dtype, device=x.device)  # (C,)
    padded = values.view(1, c, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()  # (B, C, H+2P, W+2P)
    padded[:, :, p : p + h, p : p + w] = x
    dy = _draw_ints(2 * p + 1, b, generator, x.device)  # (B,)
    dx = _draw_ints(2 * p + 1, b, generator, x.device)  # (B,)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * p))  # (B, C, H, W+2P)
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))  # (B, C, H, W)


def random_hflip(x: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability ``p``.

    Draws ``torch.rand(B)`` on ``generator`` (image ``b`` flips when its draw is below ``p``), also when
    ``p`` is 0 or 1, so the generator advances the same way whatever ``p`` is.

    Args:
        x: float ``(B, C, H, W)``.
        p: probability in ``[0, 1]``.
        generator: the only source of randomness.

    Returns:
        A new tensor ``(B, C, H, W)``.
    """
    _check_batch(x, "random_hflip")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability must be in [0, 1], got {p}")
    flips = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device) < p  # (B,)
    return torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)  # (B, C, H, W)


def random_erase(
    x: Tensor,
    p: float,
    generator: torch.Generator,
    *,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    fill: float | Sequence[float] = 0.0,
) -> Tensor:
    """Random erasing (Zhong et al., 2017): with probability ``p``, fill one random rectangle of each image.

    Image ``b``'s rectangle covers a fraction ``s ~ U(scale)`` of its area with aspect ratio (height / width)
    ``r``, ``log r ~ U(log ratio)``: ``h = round(sqrt(s H W r))``, ``w = round(sqrt(s H W / r))``, each
    clamped to ``[1, H]`` / ``[1, W]``, at a uniform top-left corner that keeps it inside the image. Unlike
    torchvision's ``RandomErasing``, which retries a rectangle that does not fit, an oversized one is clamped,
    so every image costs the same fixed draws.

    The draws, in order, each for the whole batch: ``torch.rand(B)`` (erase when below ``p``), ``s``, ``log r``,
    then the top and left corners as fractions of the free room. They are made even when ``p`` is 0, so the
    generator advances the same way whatever ``p`` is.

    Args:
        x: float ``(B, C, H, W)``.
        p: probability in ``[0, 1]`` that an image gets a rectangle.
        generator: the only source of randomness.
        scale: ``(low, high)`` fractions of the image area, ``0 < low <= high <= 1``.
        ratio: ``(low, high)`` aspect ratios, ``0 < low <= high``.
        fill: the value of erased pixels, one number or one per channel, in ``x``'s units (``0.0`` on a
            normalized batch is the training mean colour, as torchvision's default on normalized tensors).

    Returns:
        A new tensor ``(B, C, H, W)``.
    """
    _check_batch(x, "random_erase")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"erase probability must be in [0, 1], got {p}")
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"erase scale must be (low, high) with 0 < low <= high <= 1, got {scale}")
    if not 0.0 < ratio[0] <= ratio[1]:
        raise ValueError(f"erase ratio must be (low, high) with 0 < low <= high, got {ratio}")
    b, c, h, w = x.shape

    def uniform(low: float, high: float) -> Tensor:  # (B,) float64 on x's device
        draws = torch.rand(b, generator=generator, device=generator.device, dtype=torch.float64)
        return (low + (high - low) * draws).to(x.device)

    erase = uniform(0.0, 1.0) < p  # (B,)
    area = uniform(*scale) * (h * w)  # (B,)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))  # (B,)
    heights = torch.sqrt(area * aspect).round().clamp(1, h).long()  # (B,)
    widths = torch.sqrt(area / aspect).round().clamp(1, w).long()  # (B,)
    tops = (uniform(0.0, 1.0) * (h - heights + 1)).long().clamp(max=h - heights)  # (B,)
    lefts = (uniform(0.0, 1.0) * (w - widths + 1)).long().clamp(max=w - widths)  # (B,)
    rows = torch.arange(h, device=x.device)  # (H,)
    cols = torch.arange(w, device=x.device)  # (W,)
    in_rows = (rows >= tops[:, None]) & (rows < (tops + heights)[:, None])  # (B, H)
    in_cols = (cols >= lefts[:, None]) & (cols < (lefts + widths)[:, None])  # (B, W)
    box = in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]  # (B, H, W)
    values = torch.as_tensor(_per_channel(fill, c, "fill"), dtype=x.dtype, device=x.device)  # (C,)
    return torch.where(box[:, None], values.view(1, c, 1, 1), x)  # (B, C, H, W)


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation of image batches (applied to training batches only).

    Attributes:
        crop_padding: pixels of padding for :func:`random_crop` (``0``: no crop). 4 is usual for 28-32 px.
        hflip_p: probability of :func:`random_hflip` (``0``: never; 0.5 is usual when mirror images keep
            their class, as clothes and animals do, digits and text do not).
        erase_p: probability of :func:`random_erase` (``0``: never), with its default scale and ratio.
    """

    crop_padding: int = 0
    hflip_p: float = 0.0
    erase_p: float = 0.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.crop_padding, bool)
            or not isinstance(self.crop_padding, int)
            or self.crop_padding < 0
        ):
            raise ValueError(f"crop_padding must be an integer >= 0, got {self.crop_padding!r}")
        if not 0.0 <= self.hflip_p <= 1.0:
            raise ValueError(f"hflip_p must be a probability in [0, 1], got {self.hflip_p}")
        if not 0.0 <= self.erase_p <= 1.0:
            raise ValueError(f"erase_p must be a probability in [0, 1], got {self.erase_p}")

    @property
    def active(self) -> bool:
        """Whether :func:`augment_batch` changes anything."""
        return self.crop_padding > 0 or self.hflip_p > 0 or self.erase_p > 0


def augment_batch(
    x: Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
    *,
    fill: float | Sequence[float] = 0.0,
    erase_fill: float | Sequence[float] = 0.0,
) -> Tensor:
    """:func:`random_crop` (when ``config.crop_padding > 0``, padding with ``fill``), then
    :func:`random_hflip` (when ``config.hflip_p > 0``), then :func:`random_erase` (when ``config.erase_p > 0``,
    filling with ``erase_fill``) on a float batch ``(B, C, H, W)``; returns ``x`` itself when none is on."""
    if config.crop_padding:
        x = random_crop(x, config.crop_padding, generator, fill=fill)
    if config.hflip_p:
        x = random_hflip(x, config.hflip_p, generator)
    if config.erase_p:
        x = random_erase(x, config.erase_p, generator, fill=erase_fill)
    return x
