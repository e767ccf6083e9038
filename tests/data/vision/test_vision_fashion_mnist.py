"""Fashion-MNIST: the real shared files when present, and the lookup / download / verification paths on
small stand-in files whose digests the tests pin in place of the official ones. No test uses the network."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from attnkit.data.download import ChecksumError, DownloadError, RemoteFile
from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.text import builtin
from attnkit.data.vision import (
    VISION_DATASETS,
    fashion_mnist,
    get_vision_dataset,
    load_fashion_mnist,
    load_vision_dataset,
    parse_vision_name,
)
from attnkit.data.vision.fashion_mnist import CLASSES, FILES, IdxFile

MANIFEST_CLASSES = (
    "0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot"
)


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 IDX file written by hand (magic 0x0000 08 <ndim>, big-endian sizes, the bytes)."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


# ----------------------------------------------------------------------------------------------------
# The real files.


def test_classes_are_the_manifests() -> None:
    assert ", ".join(f"{i} {name}" for i, name in enumerate(CLASSES)) == MANIFEST_CLASSES


def test_pins_are_the_manifests(fashion_root: Path) -> None:
    manifest = (fashion_root / "MANIFEST-media.md").read_text(encoding="utf-8")
    for pair in FILES.values():
        for file in pair:
            remote = file.remote
            row = re.search(
                rf"`fashion-mnist/{re.escape(remote.filename)}` \| ([\d,]+) \| `\w+` \| `(\w+)`", manifest
            )
            assert row is not None, remote.filename
            assert int(row.group(1).replace(",", "")) == remote.max_bytes
            assert row.group(2) == remote.sha256
            assert remote.url.startswith("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/")
            assert remote.url.endswith(f"/data/fashion/{remote.filename}")
            assert file.raw_sha256 in manifest
            local = fashion_root / "fashion-mnist" / remote.filename
            assert local.stat().st_size == remote.max_bytes
            assert len(gzip.decompress(local.read_bytes())) == file.raw_bytes


@pytest.mark.parametrize(("split", "n"), [("train", 60_000), ("test", 10_000)])
def test_real_splits(fashion_root: Path, split: str, n: int) -> None:
    images = load_fashion_mnist(split, data_dir=fashion_root, allow_download=False)  # type: ignore[arg-type]
    assert len(images) == n and images.pixels.shape == (n, 28, 28, 1) and images.pixels.dtype == np.uint8
    assert images.classes == CLASSES
    assert images.class_counts() == dict.fromkeys(CLASSES, n // 10)  # balanced: 6,000 / 1,000 per class
    assert (
        images.sources[0] == f"fashion-mnist:{split}#0"
        and images.sources[-1] == f"fashion-mnist:{split}#{n - 1}"
    )
    # The parse is exact: the decompressed file rebuilt from the arrays has the manifest's sha256.
    images_file, labels_file = FILES[split]
    header = b"\x00\x00\x08\x03" + struct.pack(">3I", n, 28, 28)
    rebuilt = header + np.ascontiguousarray(images.pixels[..., 0]).tobytes()
    assert hashlib.sha256(rebuilt).hexdigest() == images_file.raw_sha256
    ids = images.label_ids().astype(np.uint8)
    rebuilt_labels = b"\x00\x00\x08\x01" + struct.pack(">I", n) + ids.tobytes()
    assert hashlib.sha256(rebuilt_labels).hexdigest() == labels_file.raw_sha256
    assert images.pixels.min() == 0 and images.pixels.max() == 255


def test_real_test_split_through_the_registry_and_env(
    fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(builtin.DATA_ENV, str(fashion_root))
    direct = load_fashion_mnist("test", allow_download=False)
    named = load_vision_dataset("Fashion-MNIST:test", allow_download=False)
    np.testing.assert_array_equal(named.pixels, direct.pixels)
    assert named.labels == direct.labels
    assert named.labels[:3] == ["Ankle boot", "Pullover", "Trouser"]  # the official file's first labels


# ----------------------------------------------------------------------------------------------------
# The registry.


def test_registry_names() -> None:
    entry = VISION_DATASETS["fashion-mnist"]
    assert entry.splits == ("train", "test") and entry.default_split == "train"
    assert entry.classes == CLASSES and entry.image_shape == (28, 28, 1)
    assert parse_vision_name("fashion-mnist") == ("fashion-mnist", None)
    assert parse_vision_name("fashion-mnist:train") == ("fashion-mnist", "train")
    assert parse_vision_name(" Fashion_MNIST:test ") == ("fashion-mnist", "test")
    assert parse_vision_name("imdb:test") is None and parse_vision_name("reviews.csv") is None
    assert get_vision_dataset("FASHION-MNIST") is entry
    with pytest.raises(DataError, match=r"unknown built-in image dataset 'mnist'; choose from fashion-mnist"):
        load_vision_dataset("mnist:train")
    with pytest.raises(DataError, match=r"fashion-mnist: unknown split 't10k'; valid splits: train, test"):
        load_vision_dataset("fashion-mnist:t10k")
    with pytest.raises(DataError, match=r"fashion-mnist: unknown split 'dev'"):
        load_fashion_mnist("dev")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# Lookup, download and verification, on stand-in files.

N_TEST = fashion_mnist.COUNTS["test"]


class StandIn:
    """A test split of 10,000 patterned images and labels, pinned in place of the official files."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images = (np.arange(N_TEST * 784, dtype=np.int64) % 251).astype(np.uint8).reshape(N_TEST, 28, 28)
        self.labels = ((np.arange(N_TEST) * 7) % 10).astype(np.uint8)
        self.raw = {"images": idx_bytes(self.images), "labels": idx_bytes(self.labels)}
        self.gz = {k: gzip.compress(v, compresslevel=1, mtime=0) for k, v in self.raw.items()}
        official = FILES["test"]
        self.files = tuple(
            IdxFile(
                RemoteFile(
                    f.remote.url, f.remote.filename, hashlib.sha256(self.gz[k]).hexdigest(), len(self.gz[k])
                ),
                hashlib.sha256(self.raw[k]).hexdigest(),
                len(self.raw[k]),
            )
            for k, f in zip(("images", "labels"), official, strict=True)
        )
        monkeypatch.setitem(FILES, "test", self.files)
        self.bodies = {
            f.remote.url: self.gz[k] for k, f in zip(("images", "labels"), self.files, strict=True)
        }
        self.calls: list[str] = []
        monkeypatch.setattr(fashion_mnist, "fetch_url", self.fetch)

    def fetch(self, url: str, dest: Path, *, max_bytes: int, desc: str | None = None) -> int:
        """Serves :attr:`bodies` like :func:`attnkit.data.download.fetch_url` (byte cap included)."""
        self.calls.append(url)
        body = self.bodies[url]
        if len(body) > max_bytes:
            raise DownloadError(f"{url}: more than the cap of {max_bytes:,} bytes; refusing it")
        dest.write_bytes(body)
        return len(body)

    def place(self, folder: Path, *, raw: bool = False) -> None:
        (folder / "fashion-mnist").mkdir(parents=True, exist_ok=True)
        for k, f in zip(("images", "labels"), self.files, strict=True):
            name = f.raw_name if raw else f.remote.filename
            (folder / "fashion-mnist" / name).write_bytes(self.raw[k] if raw else self.gz[k])

    def check(self, loaded: object) -> None:
        from attnkit.data.vision import ImageSet

        assert isinstance(loaded, ImageSet)
        np.testing.assert_array_equal(loaded.pixels[..., 0], self.images)
        assert loaded.labels == [CLASSES[i] for i in self.labels]


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    return StandIn(monkeypatch)


def test_download_goes_to_the_cache_once(stand_in: StandIn, isolated_data_env: Path) -> None:
    stand_in.check(load_fashion_mnist("test"))
    assert stand_in.calls == [f.remote.url for f in stand_in.files]
    cached = sorted(p.name for p in (isolated_data_env / "fashion-mnist").iterdir())
    assert cached == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    stand_in.check(load_fashion_mnist("test"))  # from the cache, verified again, nothing fetched
    assert len(stand_in.calls) == 2


def test_a_download_with_the_wrong_digest_is_refused_and_not_kept(
    stand_in: StandIn, isolated_data_env: Path
) -> None:
    images_url = stand_in.files[0].remote.url
    body = bytearray(stand_in.bodies[images_url])
    body[100] ^= 1
    stand_in.bodies[images_url] = bytes(body)  # same size, one bit different
    with pytest.raises(ChecksumError, match=r"^fashion-mnist: t10k-images-idx3-ubyte\.gz is not the known-good file "
                       r"\(sha256 expected [0-9a-f]{64}, got [0-9a-f]{64}\); deleted "):  # fmt: skip
        load_fashion_mnist("test")
    assert list((isolated_data_env / "fashion-mnist").iterdir()) == []


def test_the_official_pins_refuse_a_stand_in(
    isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []

    def fetch(url: str, dest: Path, *, max_bytes: int, desc: str | None = None) -> int:
        served.append(url)
        dest.write_bytes(gzip.compress(idx_bytes(np.zeros(10, dtype=np.uint8))))
        return dest.stat().st_size

    monkeypatch.setattr(fashion_mnist, "fetch_url", fetch)
    expected = FILES["train"][0].remote.sha256
    with pytest.raises(
        ChecksumError,
        match=rf"train-images-idx3-ubyte\.gz is not the known-good file \(sha256 expected {expected}",
    ):
        load_fashion_mnist("train")
    assert served == [
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/train-images-idx3-ubyte.gz"
    ]
    assert list((isolated_data_env / "fashion-mnist").iterdir()) == []


def test_data_root_copies_are_used_then_verified(stand_in: StandIn, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    stand_in.place(root)
    stand_in.check(load_fashion_mnist("test", data_dir=root, allow_download=False))
    assert stand_in.calls == []
    images = root / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    data = bytearray(images.read_bytes())
    data[100] ^= 1
    images.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=rf"^fashion-mnist: {re.escape(str(images))} is not the official "
                       r"t10k-images-idx3-ubyte\.gz \(sha256 expected \w+, got \w+\); replace it with https://") as e:  # fmt: skip
        load_fashion_mnist("test", data_dir=root)
    assert "\n" not in str(e.value)
    assert images.exists()  # not ours: left alone
    images.write_bytes(bytes(data[:-1]))
    with pytest.raises(
        ChecksumError, match=r"is not the official t10k-images-idx3-ubyte\.gz \([\d,]+ bytes, expected "
    ):
        load_fashion_mnist("test", data_dir=root)
    assert stand_in.calls == []


def test_gunzipped_copies_are_accepted(
    stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in.place(tmp_path / "data", raw=True)
    monkeypatch.setenv(builtin.DATA_ENV, str(tmp_path / "data"))
    stand_in.check(load_fashion_mnist("test", allow_download=False))


def test_a_damaged_cache_copy_is_replaced(stand_in: StandIn, isolated_data_env: Path) -> None:
    stand_in.place(isolated_data_env)
    labels = isolated_data_env / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(b"damaged")
    stand_in.check(load_fashion_mnist("test"))
    assert stand_in.calls == [stand_in.files[1].remote.url]  # only the damaged file is fetched again
    assert labels.read_bytes() == stand_in.gz["labels"]


def test_missing_files_say_where_to_put_them(
    stand_in: StandIn, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        load_fashion_mnist("test", allow_download=False)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("fashion-mnist:test is not available: downloads are disabled. Put ")
    assert (
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (from https://raw.githubusercontent.com/"
        in message
    )
    assert "$ATTNKIT_DATA/fashion-mnist/ (ATTNKIT_DATA is unset)" in message
    assert f"{isolated_data_env / 'fashion-mnist'}/" in message
    assert stand_in.calls == []

    def offline(url: str, dest: Path, **kwargs: object) -> int:
        raise OSError("Name or service not known")

    monkeypatch.setattr(fashion_mnist, "fetch_url", offline)
    with pytest.raises(DatasetNotFoundError, match=r"downloading https://\S+t10k-images-idx3-ubyte\.gz failed "
                       r"\(Name or service not known\)"):  # fmt: skip
        load_fashion_mnist("test")


def test_wrong_counts_are_refused(
    stand_in: StandIn, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    few = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))
    gz = gzip.compress(few, mtime=0)
    images = IdxFile(
        RemoteFile(
            stand_in.files[0].remote.url,
            stand_in.files[0].remote.filename,
            hashlib.sha256(gz).hexdigest(),
            len(gz),
        ),
        hashlib.sha256(few).hexdigest(),
        len(few),
    )
    monkeypatch.setitem(FILES, "test", (images, stand_in.files[1]))
    stand_in.bodies[images.remote.url] = gz
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: expected 10000 uint8 images of 28x28, got "
                       r"uint8 \(5, 28, 28\)"):  # fmt: skip
        load_fashion_mnist("test")
