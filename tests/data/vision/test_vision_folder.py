"""Image folders (attnkit.data.vision.folder) on trees written here with Pillow: every mode, skipped and
ignored files counted, and one-line errors for unusable layouts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnkit.data.errors import DataError
from attnkit.data.vision import decode_image, is_image_folder, load_image_folder


def encode(im: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def noise(h: int, w: int, c: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def mixed_tree(root: Path) -> dict[str, Path]:
    """``cat/`` with one file of every mode and size plus bad, hidden and stray entries; ``dog/`` with three."""
    palette = Image.new("P", (9, 5))
    palette.putpalette(list(range(256)) * 3)
    palette.putdata([i * 20 for i in range(45)])
    good = noise(12, 16, 3, 1)
    png = encode(Image.fromarray(good))
    files = {
        "gray": write(root / "cat" / "img2.png", encode(Image.fromarray(noise(8, 8, 1, 0)[..., 0], "L"))),
        "rgb": write(root / "cat" / "img10.png", png),
        "rgba": write(root / "cat" / "img3.PNG", encode(Image.fromarray(noise(6, 10, 4, 2), "RGBA"))),
        "palette": write(root / "cat" / "p.gif", encode(palette, "GIF")),
        "sixteen": write(
            root / "cat" / "deep.png", encode(Image.fromarray(np.full((7, 7), 40000, np.uint16)))
        ),
        "cmyk": write(
            root / "cat" / "print.jpg", encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG")
        ),
        "truncated": write(root / "cat" / "broken.png", png[: len(png) // 2]),
        "text": write(root / "cat" / "notes.png", b"this is a text file renamed .png\n"),
        "dog_bmp": write(root / "dog" / "a.bmp", encode(Image.fromarray(noise(9, 9, 3, 3)), "BMP")),
        "dog_webp": write(
            root / "dog" / "b.webp", encode(Image.fromarray(noise(9, 9, 3, 4)), "WEBP", lossless=True)
        ),
        "dog_jpeg": write(root / "dog" / "c.jpeg", encode(Image.fromarray(noise(30, 20, 3, 5)), "JPEG")),
    }
    write(root / "cat" / ".DS_Store", b"\0\0")
    write(root / "cat" / ".hidden.png", png)
    write(root / "cat" / "README.md", b"# cats")
    (root / "cat" / "nested").mkdir()
    write(root / "cat" / "nested" / "x.png", png)
    write(root / "labels.csv", b"a,b\n")
    (root / ".cache").mkdir()
    return files


def test_mixed_folder(tmp_path: Path) -> None:
    files = mixed_tree(tmp_path)
    images, report = load_image_folder(tmp_path, size=(8, 8), mode="RGB")
    assert images.classes == ("cat", "dog")
    names = [Path(s).name for s in images.sources]
    # Natural order within a class: deep, img2, img3, img10, p, print.
    assert names == [
        "deep.png",
        "img2.png",
        "img3.PNG",
        "img10.png",
        "p.gif",
        "print.jpg",
        "a.bmp",
        "b.webp",
        "c.jpeg",
    ]
    assert images.labels == ["cat"] * 6 + ["dog"] * 3
    assert images.pixels.shape == (9, 8, 8, 3) and images.pixels.dtype == np.uint8
    # Each image is exactly what decode_image makes of its bytes (the shared conversion).
    for source, pixels in zip(images.sources, images.pixels, strict=True):
        np.testing.assert_array_equal(
            pixels, decode_image(Path(source).read_bytes(), size=(8, 8), mode="RGB")
        )
    np.testing.assert_array_equal(images.pixels[0], np.full((8, 8, 3), round(40000 * 255 / 65535), np.uint8))
    assert report.kept == 9 and report.skipped == 2 and report.total == 11
    assert report.skipped_by_reason() == {"truncated": 1, "not an image": 1}
    assert len(report.skipped_files) == 2
    assert report.skipped_files[0].startswith(f"{files['truncated']}: truncated image (")
    assert report.skipped_files[1] == f"{files['text']}: not an image (expected PNG, JPEG, BMP, GIF or WEBP)"
    assert report.ignored_files == 3  # README.md, nested/, labels.csv
    assert report.hidden_files == 3  # .DS_Store, .hidden.png, .cache
    assert report.per_class == {"cat": 6, "dog": 3}
    assert report.summary() == f"skipped 2 of 11 images in {tmp_path} (kept 9): 1 truncated, 1 not an image"
    assert report.to_dict()["skipped"] == 2
    # The warning names each skipped file (it used to give only the counts at the default verbosity).
    assert report.skipped_lines().splitlines() == [
        report.summary(),
        *(f"  {n}" for n in report.skipped_files),
    ]

    gray, _ = load_image_folder(tmp_path, size=(5, 6), mode="L")
    assert gray.pixels.shape == (9, 5, 6, 1)


def test_same_size_folder_needs_no_size(tmp_path: Path) -> None:
    arrays = {name: noise(4, 5, 3, i) for i, name in enumerate(["b/1.png", "a/2.png", "a/10.png"])}
    for name, arr in arrays.items():
        write(tmp_path / name, encode(Image.fromarray(arr)))
    images, report = load_image_folder(tmp_path)
    assert report.summary() == f"kept all 3 images in {tmp_path}"
    assert images.labels == ["a", "a", "b"]
    np.testing.assert_array_equal(
        images.pixels, np.stack([arrays["a/2.png"], arrays["a/10.png"], arrays["b/1.png"]])
    )
    write(tmp_path / "b" / "big.png", encode(Image.fromarray(noise(6, 5, 3, 9))))
    with pytest.raises(DataError, match=r"big\.png: 6x5 pixels, but .*2\.png is 4x5; resize images of different "
                       r"sizes with image\.size \(--set 'image\.size=\[H, W\]', or size=\(H, W\) here\)$"):  # fmt: skip
        load_image_folder(tmp_path)


def test_natural_class_order(tmp_path: Path) -> None:
    for name in ["10", "2", "1"]:
        write(tmp_path / name / "x.png", encode(Image.new("L", (2, 2), int(name))))
    images, _ = load_image_folder(tmp_path, mode="L")
    assert images.classes == ("1", "2", "10")
    assert images.pixels[:, 0, 0, 0].tolist() == [1, 2, 10]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda r: write(r / "a.png", b"x"),
            r"no class folders; expected one sub-folder per class holding images",
        ),
        (lambda r: (r / ".git").mkdir(), r"no class folders"),
        (
            lambda r: write(r / "only" / "a.png", b"x"),
            r"only one class folder \(only\); a classifier needs at least two",
        ),
    ],
)
def test_layout_errors(tmp_path: Path, build: object, match: str) -> None:
    build(tmp_path)  # type: ignore[operator]
    with pytest.raises(DataError, match=match) as e:
        load_image_folder(tmp_path)
    assert "\n" not in str(e.value)


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    write(tmp_path / "a" / "x.png", encode(Image.new("L", (2, 2))))
    write(tmp_path / "b" / "notes.txt", b"not an image")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'b'}: no image files \(PNG, JPEG, BMP, GIF or WEBP\); add "
                       r"images or remove the folder$"):  # fmt: skip
        load_image_folder(tmp_path)


def test_unreadable_class_and_unreadable_folder(tmp_path: Path) -> None:
    write(tmp_path / "a" / "x.png", encode(Image.new("L", (2, 2))))
    write(tmp_path / "b" / "y.png", b"garbage")
    write(tmp_path / "b" / "z.jpg", b"garbage")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'b'}: none of its 2 image files could be read \(e\.g\. "
                       rf"{tmp_path / 'b' / 'y.png'}: not an image"):  # fmt: skip
        load_image_folder(tmp_path)
    write(tmp_path / "a" / "x.png", b"garbage too")
    with pytest.raises(DataError, match=rf"^{tmp_path}: none of the 3 image files could be read \(e\.g\. "):
        load_image_folder(tmp_path)


def test_not_a_folder_and_caps(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing: not a folder; expected one sub-folder per class"):
        load_image_folder(tmp_path / "missing")
    write(tmp_path / "a" / "small.png", encode(Image.new("L", (4, 4))))
    huge = write(tmp_path / "a" / "huge.png", encode(Image.fromarray(noise(100, 100, 1, 0)[..., 0], "L")))
    assert huge.stat().st_size > 10_000
    write(tmp_path / "b" / "small.png", encode(Image.new("L", (4, 4))))
    images, report = load_image_folder(tmp_path, max_pixels=1000)
    assert len(images) == 2 and report.skipped_by_reason() == {"too many pixels": 1}
    _, report = load_image_folder(tmp_path, max_bytes=1000, size=(4, 4))
    assert report.skipped_by_reason() == {"too large": 1}
    assert report.skipped_files[0].startswith(f"{tmp_path / 'a' / 'huge.png'}: too large (")
    with pytest.raises(ValueError, match="mode must be"):
        load_image_folder(tmp_path, mode="CMYK")  # type: ignore[arg-type]


def test_is_image_folder(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write(images / "cat" / "a.JPG", b"x")
    write(images / "dog" / "b.png", b"x")
    write(images / "dog" / "README.txt", b"x")  # a stray note does not make it a text folder
    texts = tmp_path / "texts"
    write(texts / "pos" / "1.txt", b"good")
    write(texts / "neg" / "2.txt", b"bad")
    write(texts / "neg" / "logo.png", b"x")
    assert is_image_folder(images) is True
    assert is_image_folder(texts) is False
    assert is_image_folder(images / "cat" / "a.JPG") is False  # a file
    assert is_image_folder(tmp_path / "missing") is False
    (tmp_path / "empty").mkdir()
    assert is_image_folder(tmp_path / "empty") is False
    write(tmp_path / "flat" / "a.png", b"x")  # images but no class folders
    assert is_image_folder(tmp_path / "flat") is False
    write(tmp_path / "hidden" / ".x" / "a.png", b"x")
    assert is_image_folder(tmp_path / "hidden") is False


def test_the_skip_warning_names_the_first_files_and_counts_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seven broken images: the warning of a default-verbosity run names five, then says how many more."""
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, format="PNG")
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "ok.png").write_bytes(png.getvalue())
    for i in range(7):
        (tmp_path / "a" / f"broken{i}.png").write_bytes(b"not an image")
    with caplog.at_level("WARNING"):
        _, report = load_image_folder(tmp_path, mode="L")
    (message,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    lines = message.splitlines()
    assert lines[0] == report.summary() and report.skipped == 7
    assert lines[1:6] == [f"  {named}" for named in report.skipped_files]
    assert all("broken" in line and ": not an image" in line for line in lines[1:6])
    assert lines[6] == "  ... and 2 more (attnkit -v names every one)"


def test_folders_named_by_one_number_are_one_class(tmp_path: Path) -> None:
    """``1/`` and ``1.0/`` are the class ``"1"``, as the values 1 and 1.0 are in a CSV column and as label folders
    of texts are (they were two classes); when that leaves one class, a one-line error says why."""
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, format="PNG")
    for folder, n in (("1", 2), ("1.0", 3), (" x ", 1)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            (tmp_path / folder / f"{i}.png").write_bytes(png.getvalue())
    images, report = load_image_folder(tmp_path, mode="L")
    assert images.classes == ("1", "x")
    assert images.labels == ["1"] * 5 + ["x"]
    assert report.per_class == {"1": 5, "x": 1}
    (tmp_path / " x " / "0.png").unlink()
    (tmp_path / " x ").rmdir()
    with pytest.raises(DataError, match=r"the class folders 1, 1\.0 all name the class '1'"):
        load_image_folder(tmp_path, mode="L")
