"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 grayscale 28x28 images of 10 clothing classes.

The four official IDX files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``) are looked up, each on its own:

1. in ``data_dir`` (default ``$ATTNKIT_DATA``) under ``fashion-mnist/``, e.g. a shared copy;
2. in the download cache (``$ATTNKIT_CACHE`` or ``~/.cache/attnkit``) under ``fashion-mnist/``;
3. otherwise, if downloads are allowed, fetched over HTTPS from the official repository
   (github.com/zalandoresearch/fashion-mnist, ``data/fashion/``; the zalando S3 site serves plain http
   only) with :func:`attnkit.data.download.download`, its byte cap and pinned sha256, into the cache.

Every file is verified against its pinned sha256 on every load, the local copies too: the bytes are read
once, hashed, then parsed from memory, so the file checked is the file parsed. (Hashing the 26 MB train
images takes about 0.02 s here, under a tenth of the 0.35 s that decompressing them takes, so no
verification result is cached.) A gunzipped copy (the name without ``.gz``) is accepted too, checked against
the digest of the decompressed file. A copy in ``data_dir`` with another digest is refused (not deleted: it
is not ours); one in the cache is deleted and downloaded again.

The manifest of the shared copy (``MANIFEST-media.md``, section 3) records the sizes and digests pinned here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from attnkit.data.download import ChecksumError, RemoteFile, download, fetch_url
from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.text.builtin import DATA_ENV, cache_root, data_root
from attnkit.data.vision.idx import parse_idx
from attnkit.data.vision.images import ImageSet

logger = logging.getLogger(__name__)

NAME = "fashion-mnist"
#: Label id -> class name, in the official order.
CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SPLITS: tuple[str, ...] = ("train", "test")
COUNTS = {"train": 60_000, "test": 10_000}
IMAGE_SHAPE = (28, 28)
Split = Literal["train", "test"]

# The official files as committed to the upstream repository (unchanged since 2017; the shared copy's blob ids
# match commit b2617bb6d3ffa2e429640350f613e3291e10b141).
_BASE = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion"


@dataclass(frozen=True)
class IdxFile:
    """One official file.

    Attributes:
        remote: the ``.gz`` file (URL, name, pinned sha256, exact size as the byte cap).
        raw_sha256: sha256 of the decompressed file, for a copy stored gunzipped.
        raw_bytes: size of the decompressed file.
    """

    remote: RemoteFile
    raw_sha256: str
    raw_bytes: int

    @property
    def raw_name(self) -> str:
        return self.remote.filename.removesuffix(".gz")


def _file(name: str, sha256: str, size: int, raw_sha256: str, raw_bytes: int) -> IdxFile:
    return IdxFile(RemoteFile(f"{_BASE}/{name}", name, sha256, max_bytes=size), raw_sha256, raw_bytes)


#: split -> (images, labels). Sizes and sha256s of MANIFEST-media.md (the MD5s equal upstream's README's).
FILES: dict[str, tuple[IdxFile, IdxFile]] = {
    "train": (
        _file(
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            26_421_880,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            16 + 60_000 * 28 * 28,
        ),
        _file(
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            29_515,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            8 + 60_000,
        ),
    ),
    "test": (
        _file(
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            4_422_102,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            16 + 10_000 * 28 * 28,
        ),
        _file(
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            5_148,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            8 + 10_000,
        ),
    ),
}


def _check_split(split: str) -> Split:
    if split not in SPLITS:
        raise DataError(f"{NAME}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split  # type: ignore[return-value]


def _read_if_official(path: Path, sha256: str, size: int) -> tuple[bytes | None, str]:
    """``(bytes, "")`` when ``path`` holds the file with this digest, else ``(None, why not)``."""
    try:
        actual_size = path.stat().st_size
        if actual_size != size:
            return None, f"{actual_size:,} bytes, expected {size:,}"
        data = path.read_bytes()
    except OSError as e:
        return None, f"cannot read it ({e.strerror or e})"
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        return None, f"sha256 expected {sha256}, got {actual}"
    return data, ""


def _candidates(folder: Path, file: IdxFile) -> list[tuple[Path, str, int]]:
    """The ``.gz`` and the gunzipped name in ``folder`` that exist, with the digest and size each must have."""
    names = [
        (folder / file.remote.filename, file.remote.sha256, file.remote.max_bytes),
        (folder / file.raw_name, file.raw_sha256, file.raw_bytes),
    ]
    return [entry for entry in names if entry[0].is_file()]


def _not_found(split: str, roots: list[Path], cache: Path, why: str) -> DatasetNotFoundError:
    data = data_root()
    places = [f"${DATA_ENV}/{NAME}/ ({DATA_ENV} is {'unset' if data is None else data})"]
    places += [str(root / NAME) + "/" for root in roots if root != data]
    places.append(f"{cache / NAME}/")
    names = ", ".join(f.remote.filename for f in FILES[split])
    return DatasetNotFoundError(
        f"{NAME}:{split} is not available: {why}. Put {names} (from {_BASE}/) in {' or '.join(places)}"
    )


def _fetch_verified(
    file: IdxFile, split: str, roots: list[Path], cache: Path, allow_download: bool
) -> tuple[bytes, Path]:
    """The verified bytes of one official file and where they came from (see the module docstring)."""
    for root in roots:
        for path, sha256, size in _candidates(root / NAME, file):
            data, why = _read_if_official(path, sha256, size)
            if data is not None:
                return data, path
            raise ChecksumError(
                f"{NAME}: {path} is not the official {path.name} ({why}); replace it with "
                f"{file.remote.url} or remove it"
            )
    folder = cache / NAME
    for path, sha256, size in _candidates(folder, file):
        data, why = _read_if_official(path, sha256, size)
        if data is not None:
            return data, path
        logger.warning("%s: %s is not the official file (%s); deleting it", NAME, path, why)
        path.unlink(missing_ok=True)
    if not allow_download:
        raise _not_found(split, roots, cache, "downloads are disabled")
    try:
        # fetch_url is looked up here, at call time, so tests can replace it on this module.
        path = download(file.remote, folder, what=NAME, fetch=fetch_url)
    except OSError as e:
        reason = getattr(e, "reason", None) or e.strerror or e
        raise _not_found(split, roots, cache, f"downloading {file.remote.url} failed ({reason})") from None
    data, why = _read_if_official(path, file.remote.sha256, file.remote.max_bytes)
    if data is None:  # pragma: no cover - download() verified it; only a concurrent writer gets here
        raise ChecksumError(f"{NAME}: {path} changed after it was verified ({why}); load again")
    return data, path


def load_fashion_mnist(
    split: Split = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ImageSet:
    """Load one official Fashion-MNIST split.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (the official 10,000, files ``t10k-*``).
        data_dir: root of local copies (holding ``fashion-mnist/``); default ``$ATTNKIT_DATA``.
        allow_download: fetch missing files from the official repository over HTTPS.
        cache_dir: download cache; default ``$ATTNKIT_CACHE`` or ``~/.cache/attnkit``.

    Returns:
        An :class:`ImageSet`: ``pixels`` uint8 ``(N, 28, 28, 1)`` (0 background, 255 ink), ``labels`` the
        class names, ``classes`` :data:`CLASSES` (label id order), ``sources`` ``fashion-mnist:<split>#<i>``
        in file order.

    Raises:
        DataError: an unknown split, or a file that parses to the wrong counts.
        ChecksumError: a local copy in ``data_dir`` that is not the official file, or a bad download.
        DatasetNotFoundError: a file is missing locally and downloads are disabled or failed; the message
            says where to put it and where to get it.
    """
    split = _check_split(split)
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    env_root = data_root()
    if env_root is not None and env_root not in roots:
        roots.append(env_root)
    cache = cache_root(cache_dir)
    start = time.perf_counter()
    images_file, labels_file = FILES[split]
    images_data, images_path = _fetch_verified(images_file, split, roots, cache, allow_download)
    labels_data, labels_path = _fetch_verified(labels_file, split, roots, cache, allow_download)
    images = parse_idx(images_data, where=str(images_path))  # (N, 28, 28)
    labels = parse_idx(labels_data, where=str(labels_path))  # (N,)
    del images_data, labels_data
    n = COUNTS[split]
    if images.shape != (n, *IMAGE_SHAPE) or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected {n} uint8 images of 28x28, got {images.dtype} {images.shape}"
        )
    if labels.shape != (n,) or labels.dtype != np.uint8 or int(labels.max()) >= len(CLASSES):
        raise DataError(f"{labels_path}: expected {n} uint8 labels in 0-9, got {labels.dtype} {labels.shape}")
    names = np.asarray(CLASSES, dtype=object)[labels].tolist()
    result = ImageSet(
        pixels=images[:, :, :, None],  # (N, 28, 28, 1)
        labels=names,
        sources=[f"{NAME}:{split}#{i}" for i in range(n)],
        classes=CLASSES,
    )
    logger.info(
        "%s:%s: %d images from %s in %.2f s", NAME, split, n, images_path.parent, time.perf_counter() - start
    )
    return result
