"""decode_image (attnkit.data.vision.decode): every mode converted as documented, resize with centre crop,
EXIF orientation, and one-line errors for bad inputs. Images are written here with Pillow."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from attnkit.data.errors import DataError
from attnkit.data.vision import DecodeOptions, ImageError, decode_image


def encode(im: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def gradient(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)  # (H, W, C)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of uint8 RGB, as float (the documented RGB -> L)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# ----------------------------------------------------------------------------------------------------
# Modes.


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP"])
def test_lossless_grayscale_and_rgb_are_exact(fmt: str) -> None:
    gray = gradient(5, 7, 1)[..., 0]
    rgb = gradient(5, 7, 3, seed=1)
    params = {"lossless": True} if fmt == "WEBP" else {}
    got = decode_image(encode(Image.fromarray(gray, "L"), fmt, **params), mode="L")
    assert got.shape == (5, 7, 1) and got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got[..., 0], gray)
    np.testing.assert_array_equal(decode_image(encode(Image.fromarray(rgb, "RGB"), fmt, **params)), rgb)
    # L -> RGB repeats the gray value in the three channels.
    np.testing.assert_array_equal(
        decode_image(encode(Image.fromarray(gray, "L"), fmt, **params), mode="RGB"),
        np.repeat(gray[..., None], 3, 2),
    )


def test_rgb_to_l_is_the_601_luma() -> None:
    rgb = gradient(6, 6)
    got = decode_image(encode(Image.fromarray(rgb, "RGB")), mode="L")[..., 0].astype(float)
    assert np.abs(got - luma(rgb)).max() <= 1.0  # Pillow's integer arithmetic rounds within one level
    assert decode_image(encode(Image.new("RGB", (1, 1), (255, 0, 0))), mode="L")[0, 0, 0] == 76  # 0.299 * 255


def test_transparency_is_composited_on_white() -> None:
    rgba = np.zeros((1, 4, 4), dtype=np.uint8)
    rgba[0, :, :3] = (200, 100, 0)  # one colour, four alphas
    rgba[0, :, 3] = (0, 255, 128, 64)
    got = decode_image(encode(Image.fromarray(rgba, "RGBA")))[0].astype(int)  # (4, 3)
    a = rgba[0, :, 3:4].astype(float) / 255
    expected = rgba[0, :, :3] * a + 255 * (1 - a)  # colour over white, hand-computed
    assert np.abs(got - expected).max() <= 1
    assert got[0].tolist() == [255, 255, 255] and got[1].tolist() == [200, 100, 0]
    # LA, and the same result in L mode.
    la = Image.fromarray(np.array([[[10, 0], [10, 255]]], dtype=np.uint8), "LA")
    assert decode_image(encode(la), mode="L")[0, :, 0].tolist() == [255, 10]


def test_palette_with_a_transparent_index() -> None:
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.putdata([0, 1, 2])
    got = decode_image(encode(im, transparency=1))  # index 1 (blue) is transparent
    assert got[0].tolist() == [[255, 0, 0], [255, 255, 255], [0, 255, 0]]
    gif = decode_image(encode(im, "GIF", transparency=1))
    assert gif[0].tolist() == [[255, 0, 0], [255, 255, 255], [0, 255, 0]]
    opaque = decode_image(encode(im), mode="L")[0, :, 0].astype(float)
    assert np.abs(opaque - luma(np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0]]))).max() <= 1


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    values = np.array(
        [[0, 1, 128, 129, 257, 32767], [32768, 65278, 65279, 65534, 65535, 1000]], dtype=np.uint16
    )
    im = Image.fromarray(values)
    assert im.mode == "I;16"
    got = decode_image(encode(im), mode="L")[..., 0]
    expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(
        np.uint8
    )  # round(v * 255 / 65535)
    np.testing.assert_array_equal(got, expected)
    assert got.tolist()[0][:4] == [0, 0, 0, 1]
    np.testing.assert_array_equal(decode_image(encode(im), mode="RGB"), np.repeat(expected[..., None], 3, 2))


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # full magenta + yellow: red
    got = decode_image(encode(cmyk, "JPEG", quality=95)).astype(int)
    assert np.abs(got - np.array([255, 0, 0])).max() <= 8
    assert abs(int(decode_image(encode(cmyk, "JPEG", quality=95), mode="L").mean()) - 76) <= 8


def test_one_bit_and_first_gif_frame() -> None:
    bits = Image.fromarray(np.array([[0, 255, 0]], dtype=np.uint8)).convert("1")
    assert decode_image(encode(bits), mode="L")[0, :, 0].tolist() == [0, 255, 0]
    frames = [Image.new("L", (2, 2), 30), Image.new("L", (2, 2), 220)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    np.testing.assert_array_equal(
        decode_image(buf.getvalue(), mode="L"), np.full((2, 2, 1), 30, dtype=np.uint8)
    )


# ----------------------------------------------------------------------------------------------------
# Orientation and resizing.


@pytest.mark.parametrize(("orientation", "turn"), [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(orientation: int, turn: int) -> None:
    stored = gradient(2, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    got = decode_image(encode(Image.fromarray(stored, "RGB"), exif=exif.tobytes()))
    np.testing.assert_array_equal(got, np.rot90(stored, k=turn))  # 6: turn clockwise, 8: counter-clockwise


def test_resize_covers_then_crops_the_centre() -> None:
    src = gradient(20, 40)  # (H, W): twice as wide as high
    im = Image.fromarray(src, "RGB")
    got = decode_image(encode(im), size=(10, 10))
    assert got.shape == (10, 10, 3)
    # Scale 1/2 so the height fits, then the centre 10 columns: the same as resizing the whole image to
    # 10x20 and cropping (the filter reads the source on both sides of the crop, no edge effects).
    reference = np.asarray(im.resize((20, 10), Image.Resampling.BILINEAR))[:, 5:15]
    np.testing.assert_array_equal(got, reference)
    # Rectangular target (height, width) = (5, 20) from 20x40: scale 1/2 fits the width, rows 2.5..7.5 of
    # the 10x20 resize; with a whole-pixel offset, (4, 20) is rows 3..7.
    assert decode_image(encode(im), size=(5, 20)).shape == (5, 20, 3)
    whole = np.asarray(im.resize((20, 10), Image.Resampling.BILINEAR))[3:7]
    np.testing.assert_array_equal(decode_image(encode(im), size=(4, 20)), whole)
    # Same size: untouched. Upscaling works too.
    np.testing.assert_array_equal(decode_image(encode(im), size=(20, 40)), src)
    assert decode_image(encode(im), size=(64, 64), mode="L").shape == (64, 64, 1)


def test_resize_accepts_every_source_size_whose_scale_does_not_round_exactly() -> None:
    # 49 -> 32 scales by 32 / 49, and 32 / (32 / 49) rounds to a hair over 49: the crop box must stay inside.
    # A square source is covered whole, so the result is Pillow's plain resize.
    im = Image.fromarray(gradient(49, 49), "RGB")
    reference = np.asarray(im.resize((32, 32), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(decode_image(encode(im), size=(32, 32)), reference)
    for height in range(1, 100):
        for width in (height, height + 7, 3 * height):
            image = Image.new("L", (width, height))
            assert decode_image(encode(image), size=(32, 32), mode="L").shape == (32, 32, 1)


def test_resize_keeps_the_aspect_a_circle_stays_round() -> None:
    yy, xx = np.mgrid[0:30, 0:90]
    disc = (((yy - 15) ** 2 + (xx - 45) ** 2) <= 10**2).astype(np.uint8) * 255  # radius 10 in a 30x90 image
    got = decode_image(encode(Image.fromarray(disc, "L")), size=(15, 15), mode="L")[..., 0] > 127
    rows, cols = np.nonzero(got)
    assert rows.max() - rows.min() == cols.max() - cols.min()  # as tall as wide: not stretched


def test_large_jpeg_draft_is_close_to_the_full_decode() -> None:
    yy, xx = np.mgrid[0:600, 0:800]
    smooth = np.stack([xx * 255 // 800, yy * 255 // 600, (xx + yy) * 255 // 1400], axis=-1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(smooth, "RGB"), "JPEG", quality=95, exif=exif.tobytes())
    got = decode_image(data, size=(40, 30)).astype(int)  # upright: 800 tall, 600 wide
    full = decode_image(data)  # no draft: (800, 600, 3)
    assert full.shape == (800, 600, 3)
    reference = np.asarray(
        Image.fromarray(full).resize((30, 40), Image.Resampling.BILINEAR, box=(0, 0, 600, 800))
    ).astype(int)
    assert got.shape == (40, 30, 3)
    assert np.abs(got - reference).mean() < 2.0


# ----------------------------------------------------------------------------------------------------
# Errors.


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` (8-bit gray) followed by a tiny IDAT: a bomb's header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )


def error_of(data: bytes, **kwargs: object) -> ImageError:
    with pytest.raises(ImageError) as e:
        decode_image(data, where="up.png", **kwargs)  # type: ignore[arg-type]
    assert isinstance(e.value, DataError) and "\n" not in str(e.value)
    return e.value


def test_errors_name_the_input_and_the_reason() -> None:
    e = error_of(b"just some text, renamed .png")
    assert e.reason == "not an image"
    assert str(e) == "up.png: not an image (expected PNG, JPEG, BMP, GIF or WEBP)"
    assert error_of(b"").reason == "not an image"
    tiff = encode(Image.new("L", (2, 2)), "TIFF")
    assert error_of(tiff).reason == "not an image"  # only the listed formats are read

    png = encode(Image.fromarray(gradient(64, 64)))
    e = error_of(png[: len(png) // 2])
    assert e.reason == "truncated" and str(e).startswith("up.png: truncated image (")
    jpeg = encode(Image.fromarray(gradient(64, 64)), "JPEG")
    assert error_of(jpeg[: len(jpeg) // 2]).reason == "truncated"

    e = error_of(png, max_bytes=100)
    assert e.reason == "too large"
    assert str(e) == f"up.png: too large ({len(png):,} bytes > 100); use a smaller file"

    e = error_of(png, max_pixels=4000)
    assert e.reason == "too many pixels"
    assert str(e) == (
        "up.png: too many pixels (64x64 = 4,096 > the cap of 4,000); shrink the image, or raise the cap: "
        "image.max_pixels to train, --max-image-pixels for predict, explain and serve, max_image_pixels= in "
        "attnkit.load"
    )


def test_decompression_bombs_are_refused_from_the_header() -> None:
    e = error_of(png_header_only(9000, 9000))  # 81 MP > the 64 MP default, under Pillow's own limit
    assert e.reason == "too many pixels" and "9000x9000 = 81,000,000 > the cap of 64,000,000" in str(e)
    e = error_of(png_header_only(30000, 30000))  # over twice Pillow's limit: Pillow refuses at open
    assert e.reason == "too many pixels"
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    assert (
        str(e) == f"up.png: too many pixels (more than {limit:,}, the most Pillow decodes); shrink the image"
    )
    # Between Pillow's warning and its limit, the cap decides and Pillow's warning stays quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        e = error_of(png_header_only(10000, 10000), max_pixels=200_000_000)
    assert e.reason != "too many pixels"  # read past the header (the header-only file then fails to decode)


def test_corrupt_data_is_an_image_error() -> None:
    png = bytearray(encode(Image.fromarray(gradient(32, 32))))
    idat = png.index(b"IDAT")
    png[idat + 20 : idat + 60] = bytes(40)  # deflate data overwritten (the chunk CRC now fails too)
    e = error_of(bytes(png))
    assert e.reason in ("corrupt", "truncated")
    assert str(e).startswith(f"up.png: {e.reason} image (")


def test_options_are_validated() -> None:
    data = encode(Image.new("L", (2, 2)))
    for size in [(0, 5), (5,), (2.0, 2), (True, 3), "28"]:
        with pytest.raises(ValueError, match=r"size must be \(height, width\) in positive pixels"):
            decode_image(data, size=size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mode must be 'L' \(grayscale\) or 'RGB', got 'RGBA'"):
        decode_image(data, mode="RGBA")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_pixels and max_bytes must be > 0"):
        decode_image(data, max_pixels=0)
    assert DecodeOptions(size=[3, 4]).size == (3, 4)  # type: ignore[arg-type]  # a YAML list is fine
    assert DecodeOptions(size=(np.int64(3), 4)).size == (3, 4)  # type: ignore[arg-type]
    assert DecodeOptions(mode="L").channels == 1 and DecodeOptions().channels == 3
