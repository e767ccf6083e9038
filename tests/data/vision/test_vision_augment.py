"""Normalization, channel statistics and batch augmentation (attnkit.data.vision.augment), against numpy and
naive per-image loops that draw the same random numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import attnkit.data.vision.augment as aug
from attnkit.data.vision import (
    AugmentConfig,
    augment_batch,
    channel_stats,
    normalize,
    pad_value,
    random_crop,
    random_erase,
    random_hflip,
)


def pixels(n: int, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)  # (N, H, W, C)


def batch(b: int = 6, c: int = 3, h: int = 5, w: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))  # (B, C, H, W)


# ----------------------------------------------------------------------------------------------------
# Statistics and normalization.


@pytest.mark.parametrize("c", [1, 3])
def test_channel_stats_match_numpy(c: int, monkeypatch: pytest.MonkeyPatch) -> None:
    x = pixels(7, 9, 11, c)
    x[..., 0] //= 3  # channels with different statistics
    reference = x.astype(np.float64) / 255
    monkeypatch.setattr(aug, "_STATS_CHUNK", 50)  # many chunks, a partial last one
    mean, std = channel_stats(x)
    assert len(mean) == len(std) == c
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, reference.std(axis=(0, 1, 2)), rtol=0, atol=1e-12)  # ddof=0
    assert channel_stats(torch.from_numpy(x)) == (mean, std)  # a tensor works too


def test_channel_stats_hand_computed() -> None:
    x = np.array([0, 255, 0, 255], dtype=np.uint8).reshape(1, 2, 2, 1)
    assert channel_stats(x) == ((0.5,), (0.5,))
    with pytest.raises(ValueError, match=r"channel_stats takes uint8 pixels \(N, H, W, C\), got float32"):
        channel_stats(x.astype(np.float32))
    with pytest.raises(ValueError, match="at least one pixel"):
        channel_stats(np.zeros((0, 2, 2, 1), dtype=np.uint8))


@pytest.mark.parametrize("c", [1, 3])
def test_normalize_matches_the_formula(c: int) -> None:
    x = pixels(4, 5, 6, c, seed=c)
    mean = [0.1, 0.5, 0.9][:c]
    std = [0.2, 0.3, 0.4][:c]
    got = normalize(x, mean, std)
    assert got.shape == (4, c, 5, 6) and got.dtype == torch.float32 and got.is_contiguous()
    reference = (x.astype(np.float64) / 255 - np.array(mean)) / np.array(std)  # (N, H, W, C)
    np.testing.assert_allclose(got.numpy(), reference.transpose(0, 3, 1, 2), rtol=0, atol=1e-5)
    double = normalize(x, mean, std, dtype=torch.float64)
    np.testing.assert_allclose(double.numpy(), reference.transpose(0, 3, 1, 2), rtol=0, atol=1e-12)


def test_normalized_training_set_has_zero_mean_unit_std() -> None:
    x = pixels(50, 8, 8, 3)
    mean, std = channel_stats(x)
    z = normalize(x, mean, std, dtype=torch.float64)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        z.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_normalize_read_only_input_and_errors() -> None:
    x = pixels(2, 3, 3, 1)
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's warning about non-writable arrays would fail here
        out = normalize(x, [0.5], [0.5])
    assert out.shape == (2, 1, 3, 3)
    with pytest.raises(ValueError, match=r"mean must be one finite number or one per channel \(3\)"):
        normalize(pixels(1, 2, 2, 3), [0.1, 0.2], [0.3, 0.3, 0.3])
    with pytest.raises(ValueError, match=r"std must be > 0 for every channel"):
        normalize(x, [0.5], [0.0])
    with pytest.raises(ValueError, match=r"normalize takes uint8 pixels \(N, H, W, C\)"):
        normalize(np.zeros((2, 3, 3), dtype=np.uint8), [0.5], [0.5])


def test_pad_value_is_normalized_black() -> None:
    mean, std = (0.2, 0.4, 0.6), (0.1, 0.2, 0.3)
    black = normalize(np.zeros((1, 1, 1, 3), dtype=np.uint8), mean, std, dtype=torch.float64)[0, :, 0, 0]
    np.testing.assert_allclose(pad_value(mean, std), black.numpy(), rtol=0, atol=1e-12)
    assert pad_value([0.5], [0.25], raw=255) == pytest.approx((2.0,))


# ----------------------------------------------------------------------------------------------------
# Augmentation against per-image loops.


def naive_crop(x: torch.Tensor, padding: int, generator: torch.Generator, fill: list[float]) -> torch.Tensor:
    b, c, h, w = x.shape
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)  # the documented draws, in order
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    out = torch.empty_like(x)
    for i in range(b):
        for ch in range(c):
            padded = F.pad(x[i, ch], (padding, padding, padding, padding), value=fill[ch])  # (H+2P, W+2P)
            out[i, ch] = padded[int(dy[i]) : int(dy[i]) + h, int(dx[i]) : int(dx[i]) + w]
    return out


@pytest.mark.parametrize(("padding", "fill"), [(1, [0.0, 0.0, 0.0]), (3, [-1.5, 0.25, 2.0]), (8, [7.0] * 3)])
def test_random_crop_equals_a_per_image_loop(padding: int, fill: list[float]) -> None:
    x = batch(b=40)
    got = random_crop(x, padding, torch.Generator().manual_seed(3), fill=fill)
    expected = naive_crop(x, padding, torch.Generator().manual_seed(3), fill)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.shape == x.shape


def test_random_crop_offsets_cover_every_shift_and_keep_content() -> None:
    # One-hot images: the position of the 1 tells each image's offset; all (2P+1)^2 offsets occur.
    x = torch.zeros(2000, 1, 3, 3)
    x[:, 0, 1, 1] = 1.0
    out = random_crop(x, 1, torch.Generator().manual_seed(0))
    found = out.flatten(1).argmax(dim=1)  # where the centre pixel went (every offset keeps it in view)
    assert torch.all(out.flatten(1).sum(dim=1) == 1)
    assert set(found.tolist()) == set(range(9))
    counts = torch.bincount(found, minlength=9).float()
    assert counts.min() > 150  # about 222 each


def test_random_crop_scalar_fill_and_no_padding() -> None:
    x = batch(b=4)
    g = torch.Generator().manual_seed(5)
    same = random_crop(x, 0, g)
    assert torch.equal(same, x) and same is not x
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(5).get_state())  # nothing drawn
    a = random_crop(x, 2, torch.Generator().manual_seed(1), fill=-0.5)
    b = random_crop(x, 2, torch.Generator().manual_seed(1), fill=[-0.5] * 3)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"padding must be an integer >= 0"):
        random_crop(x, -1, g)
    with pytest.raises(ValueError, match=r"fill must be one finite number or one per channel \(3\)"):
        random_crop(x, 1, g, fill=[0.0, 1.0])
    with pytest.raises(ValueError, match=r"random_crop takes a float batch \(B, C, H, W\)"):
        random_crop(x[0], 1, g)


def test_random_hflip_equals_a_per_image_loop() -> None:
    x = batch(b=50)
    got = random_hflip(x, 0.3, torch.Generator().manual_seed(9))
    draws = torch.rand(50, generator=torch.Generator().manual_seed(9))
    expected = torch.stack([x[i].flip(-1) if draws[i] < 0.3 else x[i] for i in range(50)])
    assert torch.equal(got, expected)
    assert 5 < int((draws < 0.3).sum()) < 25
    assert torch.equal(random_hflip(x, 0.0, torch.Generator()), x)
    assert torch.equal(random_hflip(x, 1.0, torch.Generator()), x.flip(3))
    assert torch.equal(random_hflip(x, 1.0, torch.Generator())[0, 0, 0], x[0, 0, 0].flip(0))
    with pytest.raises(ValueError, match=r"flip probability must be in \[0, 1\], got 1.5"):
        random_hflip(x, 1.5, torch.Generator())


def test_augment_is_deterministic_for_a_generator_state() -> None:
    x = batch(b=16)
    config = AugmentConfig(crop_padding=2, hflip_p=0.5)
    fill = [-1.0, 0.0, 1.0]
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    first = augment_batch(x, config, g1, fill=fill)
    assert torch.equal(first, augment_batch(x, config, g2, fill=fill))
    assert torch.equal(g1.get_state(), g2.get_state())
    assert not torch.equal(first, augment_batch(x, config, g1, fill=fill))  # the next batch draws anew
    # augment = crop then flip with the same generator.
    g3 = torch.Generator().manual_seed(11)
    assert torch.equal(first, random_hflip(random_crop(x, 2, g3, fill=fill), 0.5, g3))
    assert augment_batch(x, AugmentConfig(), torch.Generator()) is x and not AugmentConfig().active
    for bad in [{"crop_padding": -1}, {"crop_padding": 1.5}, {"hflip_p": 2.0}]:
        with pytest.raises(
            ValueError, match=r"crop_padding must be an integer|hflip_p must be a probability"
        ):
            AugmentConfig(**bad)  # type: ignore[arg-type]


def naive_erase(
    x: torch.Tensor,
    p: float,
    generator: torch.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    fill: list[float],
) -> torch.Tensor:
    """One image at a time, with plain Python arithmetic on the documented draws."""
    import math

    b, c, h, w = x.shape
    draws = [torch.rand(b, generator=generator, dtype=torch.float64).tolist() for _ in range(5)]
    out = x.clone()
    for i in range(b):
        chance, s, log_r, top_u, left_u = (d[i] for d in draws)
        if chance >= p:
            continue
        area = (scale[0] + (scale[1] - scale[0]) * s) * h * w
        r = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * log_r)
        eh = min(max(round(math.sqrt(area * r)), 1), h)
        ew = min(max(round(math.sqrt(area / r)), 1), w)
        top = min(int(top_u * (h - eh + 1)), h - eh)
        left = min(int(left_u * (w - ew + 1)), w - ew)
        for ch in range(c):
            out[i, ch, top : top + eh, left : left + ew] = fill[ch]
    return out


@pytest.mark.parametrize(
    ("p", "scale", "ratio"),
    [(0.5, (0.02, 0.33), (0.3, 3.3)), (1.0, (0.5, 1.0), (0.1, 10.0)), (0.8, (0.1, 0.1), (1, 1))],
)
def test_random_erase_equals_a_per_image_loop(
    p: float, scale: tuple[float, float], ratio: tuple[float, float]
) -> None:
    x = batch(b=60, h=28, w=20)
    fill = [-1.0, 0.5, 3.0]
    got = random_erase(x, p, torch.Generator().manual_seed(4), scale=scale, ratio=ratio, fill=fill)
    expected = naive_erase(x, p, torch.Generator().manual_seed(4), scale, ratio, fill)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_random_erase_boxes_have_the_drawn_area_and_stay_inside() -> None:
    # Constant images: the erased pixels are exactly the zeros; each box is one full rectangle.
    x = torch.ones(3000, 1, 28, 28)
    out = random_erase(x, 0.5, torch.Generator().manual_seed(0))
    erased = out[:, 0] == 0  # (B, H, W)
    count = erased.flatten(1).sum(dim=1)  # (B,)
    hit = count > 0
    assert 0.46 < hit.float().mean() < 0.54  # p = 0.5
    fractions = count[hit].double() / (28 * 28)
    # Area fraction ~ U(0.02, 0.33) before rounding and clamping: mean 0.175, all within rounding of the range.
    assert 0.15 < float(fractions.mean()) < 0.19
    assert float(fractions.min()) >= 0.01 and float(fractions.max()) <= 0.45
    for i in torch.nonzero(hit).flatten()[:200].tolist():
        rows = torch.nonzero(erased[i].any(dim=1)).flatten()
        cols = torch.nonzero(erased[i].any(dim=0)).flatten()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert int(box) == int(count[i])  # a filled rectangle, nothing outside it
    # Boxes reach every edge of the image somewhere.
    assert (
        erased[:, 0, :].any() and erased[:, -1, :].any() and erased[:, :, 0].any() and erased[:, :, -1].any()
    )


def test_random_erase_draws_and_errors() -> None:
    x = batch(b=8)
    g_zero, g_one = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    assert torch.equal(random_erase(x, 0.0, g_zero), x)
    random_erase(x, 1.0, g_one)
    assert torch.equal(g_zero.get_state(), g_one.get_state())  # the same draws whatever p is
    # The whole area at aspect 5/7 is the whole (5 x 7) image; at aspect 1 a 6 x 6 box is clamped to 5 x 6.
    everything = random_erase(x, 1.0, torch.Generator(), scale=(1.0, 1.0), ratio=(5 / 7, 5 / 7), fill=2.0)
    assert torch.equal(everything, torch.full_like(x, 2.0))
    square = random_erase(x, 1.0, torch.Generator(), scale=(1.0, 1.0), ratio=(1.0, 1.0), fill=2.0)
    assert torch.equal((square == 2.0).flatten(1).sum(dim=1), torch.full((8,), 3 * 5 * 6))
    for kwargs, message in [
        ({"p": 1.5}, r"erase probability must be in \[0, 1\]"),
        ({"p": 0.5, "scale": (0.0, 0.3)}, r"erase scale must be"),
        ({"p": 0.5, "scale": (0.4, 0.3)}, r"erase scale must be"),
        ({"p": 0.5, "ratio": (2.0, 1.0)}, r"erase ratio must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            random_erase(x, generator=torch.Generator(), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"random_erase takes a float batch"):
        random_erase(x[0], 0.5, torch.Generator())


def test_augment_batch_erases_after_crop_and_flip() -> None:
    x = batch(b=16)
    config = AugmentConfig(crop_padding=1, hflip_p=0.5, erase_p=0.7)
    assert config.active and AugmentConfig(erase_p=0.1).active
    got = augment_batch(x, config, torch.Generator().manual_seed(6), fill=-2.0, erase_fill=9.0)
    g = torch.Generator().manual_seed(6)
    expected = random_erase(random_hflip(random_crop(x, 1, g, fill=-2.0), 0.5, g), 0.7, g, fill=9.0)
    assert torch.equal(got, expected) and bool((got == 9.0).any())
    with pytest.raises(ValueError, match=r"erase_p must be a probability"):
        AugmentConfig(erase_p=-0.1)
