"""Fixtures for the audio data tests: no network for FSDD, a small stand-in FSDD pinned in place of the real
one, and the shared real archive.

``tests/data/conftest.py`` already gives every test an empty cache and no ``$ATTNKIT_DATA``.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import os
import tarfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from attnkit.data.audio import fsdd
from attnkit.data.download import DownloadError
from attnkit.data.text import builtin

REPO = Path(__file__).resolve().parents[3]


def wav_bytes(samples: np.ndarray, rate: int, *, width: int = 2, channels: int = 1) -> bytes:
    """A PCM WAV written with the standard library's ``wave``: ``samples`` are the stored integers, ``(F,)`` or
    ``(F, C)`` (unsigned for ``width=1``, signed otherwise); 3-byte samples are packed by hand."""
    ints = np.asarray(samples, dtype=np.int64).reshape(len(samples), channels)  # (F, C)
    if width == 3:
        raw = (ints & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        dtype = {1: "u1", 2: "<i2", 4: "<i4"}[width]
        raw = ints.astype(dtype).tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def no_fsdd_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """FSDD downloads refuse the network; tests that exercise them patch ``fsdd.fetch_url`` again."""

    def no_network(url: str, dest: Path, **kwargs: object) -> None:
        raise OSError(f"network disabled in tests (tried {url})")

    monkeypatch.setattr(fsdd, "fetch_url", no_network)


#: Takes per (digit, speaker) of the stand-in: 0-4 are the official test split, 5-6 train.
STAND_IN_TAKES = 7


def stand_in_samples(name: str) -> np.ndarray:
    """The int16 samples of one stand-in recording: a short, distinct pattern per file name."""
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32768, size=40 + seed % 40, dtype=np.int64)


class StandIn:
    """A 420-file FSDD (10 digits x 6 speakers x 7 takes of 40-79 samples at 8 kHz), pinned in place of the
    real manifest (``MANIFEST_SHA256``, ``TAKES_PER_SPEAKER``), with archive writers and a fake GitHub."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        names = [
            f"recordings/{d}_{s}_{i}.wav"
            for d in fsdd.CLASSES
            for s in fsdd.SPEAKERS
            for i in range(STAND_IN_TAKES)
        ]
        self.members = {name: wav_bytes(stand_in_samples(name), 8000) for name in sorted(names)}
        self.listing = fsdd.canonical_manifest(
            (name, hashlib.sha256(data).hexdigest()) for name, data in self.members.items()
        )
        monkeypatch.setattr(fsdd, "MANIFEST_SHA256", hashlib.sha256(self.listing).hexdigest())
        monkeypatch.setattr(fsdd, "TAKES_PER_SPEAKER", STAND_IN_TAKES)
        self.github_body: bytes | None = None
        self.calls: list[str] = []
        monkeypatch.setattr(fsdd, "fetch_url", self.fetch)

    def changed(self, name: str, at: int = 60) -> dict[str, bytes]:
        """The members with one byte of ``name`` changed (inside its samples)."""
        data = bytearray(self.members[name])
        data[at] ^= 0x01
        return {**self.members, name: bytes(data)}

    def place(
        self,
        folder: Path,
        members: dict[str, bytes] | None = None,
        *,
        listing: bool = True,
        prefix: str = "",
        compression: str = "gz",
        extra: Callable[[tarfile.TarFile], None] | None = None,
    ) -> Path:
        """Write ``<folder>/fsdd/recordings.tar.gz`` (and ``recordings.sha256`` when ``listing``)."""
        target = folder / "fsdd" / fsdd.ARCHIVE_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(
            tar_bytes(
                self.members if members is None else members,
                prefix=prefix,
                compression=compression,
                extra=extra,
            )
        )
        if listing:
            (folder / "fsdd" / fsdd.LIST_NAME).write_bytes(self.listing)
        return target

    def fetch(self, url: str, dest: Path, *, max_bytes: int, desc: str | None = None) -> int:
        """Serves :attr:`github_body` like :func:`attnkit.data.download.fetch_url` (byte cap included)."""
        self.calls.append(url)
        if self.github_body is None:
            raise OSError(f"network disabled in tests (tried {url})")
        if len(self.github_body) > max_bytes:
            raise DownloadError(f"{url}: more than the cap of {max_bytes:,} bytes; refusing it")
        dest.write_bytes(self.github_body)
        return len(self.github_body)

    def github_tarball(self, members: dict[str, bytes] | None = None) -> bytes:
        """What GitHub's tag tarball looks like: a top folder, the repository's files, a pax global header."""

        def repository_files(tar: tarfile.TarFile) -> None:
            for name, body in [
                ("README.md", b"# Free Spoken Digit Dataset\n"),
                ("acquire_data/example.wav", wav_bytes(np.zeros(8, np.int64), 8000)),  # not a recording
                ("metadata.py", b"metadata = {}\n"),
            ]:
                add_member(tar, f"free-spoken-digit-dataset-1.0.10/{name}", body)

        return tar_bytes(
            self.members if members is None else members,
            prefix="free-spoken-digit-dataset-1.0.10/",
            extra=repository_files,
            pax_comment=True,
        )


def add_member(tar: tarfile.TarFile, name: str, body: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))


def tar_bytes(
    members: dict[str, bytes],
    *,
    prefix: str = "",
    compression: str = "gz",
    extra: Callable[[tarfile.TarFile], None] | None = None,
    pax_comment: bool = False,
) -> bytes:
    """A tar archive of ``members`` (names under ``prefix``), in reverse name order, gzip / bzip2 / plain."""
    raw = io.BytesIO()
    headers = {"comment": "0123456789abcdef"} if pax_comment else {}
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, pax_headers=headers) as tar:
        if extra is not None:
            extra(tar)
        for name in sorted(members, reverse=True):
            add_member(tar, prefix + name, members[name])
    data = raw.getvalue()
    if compression == "gz":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compression == "bz2":
        return bz2.compress(data)
    return data


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    return StandIn(monkeypatch)


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    """The data root holding the shared ``fsdd/recordings.tar.gz`` (``$ATTNKIT_DATA`` as set when the session
    started, else ``../shared/datasets``); skips, saying why, when it is not there."""
    value = os.environ.get(builtin.DATA_ENV, "").strip()
    root = Path(value) if value else REPO.parent / "shared" / "datasets"
    if not (root / "fsdd" / fsdd.ARCHIVE_NAME).is_file():
        pytest.skip(
            f"FSDD not found at {root}/fsdd/{fsdd.ARCHIVE_NAME}; set {builtin.DATA_ENV} to a root holding it to "
            "run the real-data tests"
        )
    return root


@pytest.fixture(scope="session")
def make_wav() -> Callable[..., bytes]:
    """:func:`wav_bytes` for the test modules."""
    return wav_bytes


@pytest.fixture(scope="session")
def make_tar() -> Callable[..., bytes]:
    """:func:`tar_bytes` for the test modules."""
    return tar_bytes


@pytest.fixture(scope="session")
def stand_in_samples_of() -> Callable[[str], np.ndarray]:
    """:func:`stand_in_samples` for the test modules."""
    return stand_in_samples
