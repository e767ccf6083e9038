"""``attnkit data inspect`` on images and recordings: counts, sizes, duplicates and overlap against values
written by hand into folders the tests make (and the real Fashion-MNIST and FSDD where present)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from attnkit.cli import main
from attnkit.data.errors import DataError
from attnkit.data.inspect_media import inspect_media
from attnkit.data.modality import source_modality


def png(height: int, width: int, value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width), value, np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def image_tree(root: Path) -> Path:
    """cat: 10x20, 30x40 and a copy of dog's first image; dog: 10x20 (value 9), 50x60; one broken file; a
    stray .txt (a text folder's file, which an image folder ignores)."""
    files = {
        "cat/a.png": png(10, 20, 1),
        "cat/b.png": png(30, 40, 2),
        "cat/c.png": png(10, 20, 9),  # the same bytes as dog/a.png: a duplicate with conflicting labels
        "cat/broken.png": b"not an image",
        "cat/notes.txt": b"a stray text file",
        "dog/a.png": png(10, 20, 9),
        "dog/b.png": png(50, 60, 3),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_an_image_folder_by_hand(tmp_path: Path) -> None:
    root = image_tree(tmp_path / "pets")
    report = inspect_media(str(root))
    assert report["modality"] == "image" and list(report["splits"]) == ["train"]
    train = report["splits"]["train"]
    assert train["rows"] == 5 and train["labels"] == {"cat": 3, "dog": 2}
    heights, widths = [10, 30, 10, 10, 50], [20, 40, 20, 20, 60]
    assert train["sizes"]["height"]["max"] == 50 and train["sizes"]["height"]["mean"] == pytest.approx(
        np.mean(heights)
    )
    assert train["sizes"]["width"]["median"] == pytest.approx(np.median(widths))
    assert train["duplicates"] == {"rows": 1, "distinct": 1, "conflicting_labels": 1}
    folder = report["load"]["train"]
    assert folder["skipped"] == 1 and folder["reasons"] == {"not an image": 1}
    assert folder["skipped_files"][0].startswith(f"{root / 'cat' / 'broken.png'}: not an image")
    test = tmp_path / "held-out"
    (test / "cat").mkdir(parents=True)
    (test / "dog").mkdir()
    (test / "cat" / "x.png").write_bytes(png(30, 40, 2))  # cat/b.png again
    (test / "dog" / "y.png").write_bytes(png(7, 7, 200))
    with_test = inspect_media(str(root), test=str(test))
    assert with_test["splits"]["test"]["rows"] == 2
    assert with_test["overlap"] == [{"a": "train", "b": "test", "shared": 1}]
    with pytest.raises(
        DataError, match="compare a folder with a folder"
    ):  # bytes against pixels: never equal
        inspect_media(str(root), test="fashion-mnist:test")


def test_the_command_reads_an_image_folder_as_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It read the stray .txt files as a text dataset (2 rows), or refused audio folders and built-ins."""
    root = image_tree(tmp_path / "pets")
    assert main(["data", "inspect", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"source: {root} (images)" in out
    assert re.search(r"^train +5 +1 +2$", out, re.MULTILINE)  # images, skipped, classes
    assert "cat/broken.png: not an image" in out
    assert main(["data", "inspect", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["train"]["labels"] == {"cat": 3, "dog": 2}


def test_an_audio_folder_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "words"
    rng = np.random.default_rng(0)
    for label, seconds in (("no", (0.5, 1.0)), ("yes", (0.25, 2.0))):
        (root / label).mkdir(parents=True)
        for i, length in enumerate(seconds):
            samples = (0.1 * rng.standard_normal(int(8000 * length))).astype(np.float32)
            soundfile.write(root / label / f"{i}.wav", samples, 8000, subtype="PCM_16")
    (root / "yes" / "copy.wav").write_bytes((root / "no" / "0.wav").read_bytes())
    assert source_modality(str(root)) == "audio"
    report = inspect_media(str(root))
    train = report["splits"]["train"]
    assert train["labels"] == {"no": 2, "yes": 3}
    seconds = train["sizes"]["seconds"]
    assert seconds["min"] == pytest.approx(0.25) and seconds["max"] == pytest.approx(2.0)
    assert seconds["mean"] == pytest.approx(np.mean([0.5, 1.0, 0.25, 2.0, 0.5]))
    assert train["duplicates"] == {"rows": 1, "distinct": 1, "conflicting_labels": 1}
    assert main(["data", "inspect", str(root)]) == 0
    assert "duration in seconds" in capsys.readouterr().out


def test_what_is_not_an_image_or_audio_source(tmp_path: Path) -> None:
    texts = tmp_path / "texts"
    for label in ("a", "b"):
        (texts / label).mkdir(parents=True)
        (texts / label / "1.txt").write_text("words")
    assert source_modality(str(texts)) is None
    assert source_modality("imdb") is None and source_modality("fashion-mnist:test") == "image"
    assert source_modality("FSDD") == "audio"
    with pytest.raises(DataError, match="not an image or audio dataset or folder"):
        inspect_media(str(texts))


def test_the_real_fashion_mnist(fashion_root: Path) -> None:
    report = inspect_media("fashion-mnist", data_dir=str(fashion_root), allow_download=False)
    assert [(name, s["rows"]) for name, s in report["splits"].items()] == [
        ("train", 60_000),
        ("test", 10_000),
    ]
    assert set(report["splits"]["test"]["labels"].values()) == {1_000}
    assert report["splits"]["train"]["sizes"]["height"]["max"] == 28
