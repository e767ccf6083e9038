"""Verified, bounded downloads and safe archive reading (attnkit.data.download), on archives built here.

No test touches the network: ``urllib.request.build_opener`` is replaced by a fake that serves bytes.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import http.server
import io
import random
import stat
import struct
import tarfile
import threading
import time
import tracemalloc
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attnkit.data import DataError, load_builtin, parse_20newsgroups_archive
from attnkit.data import download as dl
from attnkit.data.download import (
    ArchiveLimits,
    ChecksumError,
    DownloadError,
    RemoteFile,
    UnsafeArchiveError,
    fetch_url,
    iter_archive,
)
from attnkit.data.text import builtin

MiB = 1 << 20
SHA = "0" * 64


class Zeros(io.RawIOBase):
    """``size`` zero bytes, produced on demand (a large member without holding it in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: Any) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def make_tar(path: Path, build: Callable[[tarfile.TarFile], None], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        build(tar)
    return path


def make_zip(path: Path, build: Callable[[zipfile.ZipFile], None]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        build(z)
    return path


def read_all(
    path: Path, limits: ArchiveLimits | None = None, select: Any = lambda n: True
) -> dict[str, bytes]:
    return dict(iter_archive(path, limits or ArchiveLimits(), select))


def peak_bytes_of_refusal(run: Callable[[], object], error: type[Exception], match: str) -> int:
    """Peak Python allocation while ``run`` runs and raises ``error`` matching ``match``."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match):
            run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


# ----------------------------------------------------------------------------------------------------
# Safe archives are read as they are.


@pytest.mark.parametrize("mode", ["w:", "w:gz", "w:bz2", "w:xz"])
def test_tar_members_are_returned_in_every_compression(tmp_path: Path, mode: str) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add(tar, "data", type=tarfile.DIRTYPE)
        add(tar, "data/a.txt", b"alpha")
        add(tar, "./data/b.txt", b"beta" * 1000)
        add(tar, "data/skip.bin", b"\0" * 5000)

    archive = make_tar(tmp_path / "a.tar", build, mode)
    magic = {"w:": b"data", "w:gz": b"\x1f\x8b", "w:bz2": b"BZh", "w:xz": b"\xfd7zXZ"}[mode]
    assert archive.read_bytes().startswith(magic)
    assert read_all(archive, select=lambda n: n.endswith(".txt")) == {
        "data/a.txt": b"alpha",
        "./data/b.txt": b"beta" * 1000,
    }


def test_zip_members_are_returned(tmp_path: Path) -> None:
    def build(z: zipfile.ZipFile) -> None:
        z.writestr("SST-2/", b"")
        z.writestr("SST-2/train.tsv", b"sentence\tlabel\n")
        z.writestr("SST-2/original/big.txt", b"x" * 10_000)

    archive = make_zip(tmp_path / "a.zip", build)
    assert read_all(archive, select=lambda n: n.endswith(".tsv")) == {"SST-2/train.tsv": b"sentence\tlabel\n"}


# ----------------------------------------------------------------------------------------------------
# Unsafe members reject the whole archive, whether or not they were selected.


@pytest.mark.parametrize(
    ("name", "data", "attrs", "why"),
    [
        ("/etc/cron.d/x", b"x", {}, "an absolute path"),
        ("../x", b"x", {}, r"a '\.\.' component"),
        ("aclImdb/../../x", b"x", {}, r"a '\.\.' component"),
        ("C:/Windows/x", b"x", {}, "an absolute path"),
        ("a\\..\\x", b"x", {}, r"a '\.\.' component"),
        ("link", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "a symbolic link"),
        ("hard", b"", {"type": tarfile.LNKTYPE, "linkname": "data/a.txt"}, "a hard link"),
        ("tty", b"", {"type": tarfile.CHRTYPE, "devmajor": 4, "devminor": 1}, "a device"),
        ("disk", b"", {"type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0}, "a device"),
        ("pipe", b"", {"type": tarfile.FIFOTYPE}, "a fifo"),
    ],
)
def test_unsafe_tar_members_are_refused(
    tmp_path: Path, name: str, data: bytes, attrs: dict[str, Any], why: str
) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add(tar, "data/a.txt", b"fine")
        add(tar, name, data, **attrs)

    archive = make_tar(tmp_path / "bad.tar.gz", build)
    with pytest.raises(
        UnsafeArchiveError, match=rf"bad\.tar\.gz: member '.*': {why}.*; refusing the archive$"
    ):
        read_all(archive, select=lambda n: n == "data/a.txt")


def test_duplicate_tar_member_is_refused(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add(tar, "data/a.txt", b"first")
        add(tar, "data/a.txt", b"second, overriding the first")

    with pytest.raises(UnsafeArchiveError, match="a second member with the same name"):
        read_all(make_tar(tmp_path / "dup.tar.gz", build))


def _zip_special(mode: int) -> Callable[[zipfile.ZipFile], None]:
    def build(z: zipfile.ZipFile) -> None:
        z.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo("special")
        info.create_system = 3  # unix: the mode bits in external_attr are honoured
        info.external_attr = mode << 16
        z.writestr(info, b"/etc/passwd")

    return build


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (lambda z: z.writestr("/abs.txt", b"x"), "an absolute path"),
        (lambda z: z.writestr("../up.txt", b"x"), r"a '\.\.' component"),
        (_zip_special(stat.S_IFLNK | 0o777), "a symbolic link"),
        (_zip_special(stat.S_IFIFO | 0o644), "a fifo"),
        (_zip_special(stat.S_IFCHR | 0o644), "a device"),
    ],
)
def test_unsafe_zip_members_are_refused(
    tmp_path: Path, build: Callable[[zipfile.ZipFile], None], why: str
) -> None:
    archive = make_zip(tmp_path / "bad.zip", build)
    with pytest.raises(UnsafeArchiveError, match=rf"bad\.zip: member '.*': {why}; refusing the archive$"):
        read_all(archive, select=lambda n: n == "ok.txt")


# ----------------------------------------------------------------------------------------------------
# Limits: member count, member size, total expansion, header size.


def test_too_many_members(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_members=10)
    tar = make_tar(tmp_path / "many.tar.gz", lambda t: [add(t, f"f{i}", b"x") for i in range(11)])
    zipped = make_zip(tmp_path / "many.zip", lambda z: [z.writestr(f"f{i}", b"x") for i in range(11)])
    assert (
        len(
            read_all(
                make_tar(tmp_path / "ten.tar.gz", lambda t: [add(t, f"f{i}") for i in range(10)]), limits
            )
        )
        == 10
    )
    with pytest.raises(UnsafeArchiveError, match="member 'f10': more than 10 members"):
        read_all(tar, limits)
    with pytest.raises(UnsafeArchiveError, match=r"many\.zip: 11 members, more than 10"):
        read_all(zipped, limits)


def test_member_over_the_size_cap(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_member_bytes=1000)
    tar = make_tar(
        tmp_path / "big.tar.gz", lambda t: (add(t, "small", b"x" * 1000), add(t, "big", b"x" * 1001))
    )
    zipped = make_zip(
        tmp_path / "big.zip", lambda z: (z.writestr("small", b"x" * 1000), z.writestr("big", b"x" * 1001))
    )
    for archive in (tar, zipped):
        assert read_all(archive, limits, select=lambda n: n == "small") == {"small": b"x" * 1000}
        with pytest.raises(UnsafeArchiveError, match="member 'big': 1,001 bytes, over the cap of 1,000"):
            read_all(archive, limits)


def test_gzip_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    """A 64 MiB member compresses to ~65 KB; it is refused from its header, nothing is decompressed."""

    def build(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("20news-bydate-train/sci.space/1")
        info.size = 64 * MiB
        tar.addfile(info, Zeros(info.size))  # type: ignore[arg-type]

    archive = make_tar(tmp_path / "bomb.tar.gz", build)
    assert archive.stat().st_size < 200_000
    peak = peak_bytes_of_refusal(  # the parser's own limits
        lambda: parse_20newsgroups_archive(archive),
        UnsafeArchiveError,
        r"member '20news-bydate-train/sci\.space/1': 67,108,864 bytes, over the cap of 4,194,304",
    )
    assert peak < 2 * MiB


def test_expansion_past_the_total_cap_stops_with_bounded_memory(tmp_path: Path) -> None:
    """64 members of 512 KiB (32 MiB in all, ~35 KB compressed), each under the member cap: read in chunks
    (returned one at a time, or read past) and refused once 8 MiB have been decompressed."""

    def build(tar: tarfile.TarFile) -> None:
        for i in range(64):
            info = tarfile.TarInfo(f"part/{i}")
            info.size = 512 * 1024
            tar.addfile(info, Zeros(info.size))  # type: ignore[arg-type]

    archive = make_tar(tmp_path / "wide.tar.gz", build)
    assert archive.stat().st_size < 200_000
    limits = ArchiveLimits(max_member_bytes=1 * MiB, max_total_bytes=8 * MiB)
    seen: list[str] = []

    def consume(select: Callable[[str], bool]) -> None:
        for name, data in iter_archive(archive, limits, select):
            assert data == bytes(512 * 1024)
            seen.append(name)

    for select, returned in ((lambda n: True, 15), (lambda n: False, 0)):  # returned, or only read past
        seen.clear()
        peak = peak_bytes_of_refusal(
            functools.partial(consume, select),
            UnsafeArchiveError,
            r"wide\.tar\.gz: expands past 8,388,608 bytes",
        )
        assert len(seen) == returned  # 16 x (512 KiB + a 512-byte header) crosses 8 MiB
        assert peak < 4 * MiB  # about a member and a chunk, not the 8 MiB decompressed


def test_oversized_tar_header_is_refused(tmp_path: Path) -> None:
    """tarfile reads a pax header in one read of the size it declares; that read is capped."""

    def build(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("data/a.txt")
        info.pax_headers = {"comment": "x" * (2 * MiB)}
        tar.addfile(info, io.BytesIO(b""))

    archive = make_tar(tmp_path / "pax.tar.gz", build)
    with tarfile.open(archive) as tar:  # the archive itself is valid
        assert tar.getnames() == ["data/a.txt"]
    with pytest.raises(UnsafeArchiveError, match=r"a header or read of \d+ bytes, over 1,048,576"):
        read_all(archive)


def test_zip_bomb_and_lying_sizes(tmp_path: Path) -> None:
    bomb = make_zip(tmp_path / "bomb.zip", lambda z: z.writestr("SST-2/train.tsv", bytes(16 * MiB)))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="16,777,216 bytes, over the cap of 1,048,576"):
        read_all(bomb, ArchiveLimits(max_member_bytes=1 * MiB))
    # The same member with its declared size rewritten to 1,000 bytes (local header and central directory):
    # reading stops at the declared size and the CRC no longer matches.
    raw = bytearray(bomb.read_bytes())
    struct.pack_into("<I", raw, 22, 1000)
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 1000)
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(raw))
    peak = peak_bytes_of_refusal(
        lambda: read_all(liar, ArchiveLimits(max_member_bytes=1 * MiB)),
        DataError,
        r"liar\.zip: SST-2/train\.tsv: corrupt member \(Bad CRC-32",
    )
    assert peak < 4 * MiB  # a read chunk or two, not the 16 MiB the member expands to


def test_corrupt_archives_are_data_errors(tmp_path: Path) -> None:
    noise = random.Random(0).randbytes(100_000)  # incompressible: the archive is ~100 KB
    archive = make_tar(tmp_path / "ok.tar.gz", lambda t: add(t, "a", noise))
    assert read_all(archive) == {"a": noise}
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:50_000])
    with pytest.raises(DataError, match=r"cut\.tar\.gz: (corrupt or truncated|not a readable tar)"):
        read_all(truncated)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an archive at all" * 100)
    with pytest.raises(DataError, match="not a readable tar archive"):
        read_all(junk)


# ----------------------------------------------------------------------------------------------------
# Fetching over (fake) HTTPS.


class FakeResponse:
    def __init__(self, body: bytes, headers: dict[str, str], delay: float = 0.0) -> None:
        self.stream = io.BytesIO(body)
        self.headers = headers
        self.delay = delay
        self.reads = 0

    def read(self, n: int) -> bytes:
        self.reads += 1
        time.sleep(self.delay)
        return self.stream.read(n)

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakeOpener:
    """Answers every request with a fresh copy of ``response`` (or raises it)."""

    def __init__(self, response: FakeResponse | Exception) -> None:
        self.response = response
        self.calls: list[tuple[str, float]] = []
        self.handlers: tuple[Any, ...] = ()

    def open(self, request: urllib.request.Request, timeout: float) -> FakeResponse:
        self.calls.append((request.full_url, timeout))
        if isinstance(self.response, Exception):
            raise self.response
        self.response.stream.seek(0)
        return self.response


def fake_network(
    monkeypatch: pytest.MonkeyPatch, body: bytes = b"", headers: dict[str, str] | None = None, **kwargs: Any
) -> FakeOpener:
    """Replace urllib's opener: every request gets ``body`` (with ``Content-Length`` unless ``headers``)."""
    response = kwargs.pop("error", None) or FakeResponse(
        body, {"Content-Length": str(len(body))} if headers is None else headers, **kwargs
    )
    opener = FakeOpener(response)

    def build_opener(*handlers: Any) -> FakeOpener:
        opener.handlers = handlers
        return opener

    monkeypatch.setattr(urllib.request, "build_opener", build_opener)
    return opener


def test_fetch_streams_over_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = bytes(range(256)) * 10_000  # 2.4 MiB: three chunks
    opener = fake_network(monkeypatch, body)
    dest = tmp_path / "out.bin"
    assert fetch_url("https://example.org/f", dest, max_bytes=len(body), timeout=7.5) == len(body)
    assert dest.read_bytes() == body
    assert opener.calls == [("https://example.org/f", 7.5)]
    assert any(h is dl._HttpsOnlyRedirects for h in opener.handlers)


@pytest.mark.parametrize(
    "url", ["http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz", "file:///etc/passwd", "ftp://x/y"]
)
def test_fetch_refuses_other_schemes_without_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    opener = fake_network(monkeypatch, b"data")
    with pytest.raises(DownloadError, match=r"only https:// URLs are downloaded"):
        fetch_url(url, tmp_path / "out", max_bytes=100)
    assert opener.calls == []


def test_redirects_only_to_https() -> None:
    handler = dl._HttpsOnlyRedirects()
    request = urllib.request.Request("https://example.org/a")
    follow = handler.redirect_request(request, io.BytesIO(), 302, "Found", {}, "https://mirror.example.org/a")
    assert follow is not None and follow.full_url == "https://mirror.example.org/a"
    with pytest.raises(DownloadError, match=r"redirected to http://example\.org/a, which is not https"):
        handler.redirect_request(request, io.BytesIO(), 301, "Moved", {}, "http://example.org/a")


def test_fetch_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out"
    # Announced too large: refused before any byte is read.
    opener = fake_network(monkeypatch, bytes(5 * MiB))
    with pytest.raises(DownloadError, match=r"announces 5,242,880 bytes, over the cap of 1,048,576"):
        fetch_url("https://example.org/f", dest, max_bytes=1 * MiB)
    assert isinstance(opener.response, FakeResponse) and opener.response.reads == 0
    # No Content-Length: stopped once past the cap.
    opener = fake_network(monkeypatch, bytes(5 * MiB), headers={})
    with pytest.raises(DownloadError, match=r"more than the cap of 1,048,576 bytes"):
        fetch_url("https://example.org/f", dest, max_bytes=1 * MiB)
    assert isinstance(opener.response, FakeResponse) and opener.response.reads <= 2


def test_fetch_failures_are_os_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out"
    fake_network(monkeypatch, b"short", headers={"Content-Length": "100"})
    with pytest.raises(OSError, match="connection closed after 5 of 100 bytes"):
        fetch_url("https://example.org/f", dest, max_bytes=1000)
    fake_network(monkeypatch, error=http.client.IncompleteRead(b"abc", 10))
    with pytest.raises(OSError, match="IncompleteRead"):
        fetch_url("https://example.org/f", dest, max_bytes=1000)
    fake_network(monkeypatch, bytes(3 * MiB), delay=0.01)
    with pytest.raises(TimeoutError, match=r"not finished after 0 s"):
        fetch_url("https://example.org/f", dest, max_bytes=10 * MiB, max_seconds=0.001)


# ----------------------------------------------------------------------------------------------------
# Pinned checksums.


def test_remote_files_must_be_https_and_pinned() -> None:
    with pytest.raises(DownloadError, match="only https:// URLs"):
        RemoteFile("http://qwone.com/x.tar.gz", "x.tar.gz", SHA, 100)
    with pytest.raises(ValueError, match="sha256 must be 64 lowercase hex digits"):
        RemoteFile("https://example.org/x", "x", "7c2ac02c03563afcf9b574c7e56c153a", 100)  # an md5
    with pytest.raises(ValueError, match="plain file name"):
        RemoteFile("https://example.org/x", "../x", SHA, 100)


def test_verify_deletes_a_mismatch_and_names_both_digests(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"not the file")
    got = hashlib.sha256(b"not the file").hexdigest()
    remote = RemoteFile("https://example.org/x.bin", "x.bin", SHA, 100)
    with pytest.raises(
        ChecksumError,
        match=rf"^mydata: x\.bin is not the known-good file \(sha256 expected {SHA}, got {got}\); deleted ",
    ):
        dl.verify_sha256(path, remote, what="mydata")
    assert not path.exists()
    path.write_bytes(b"not the file")
    dl.verify_sha256(path, RemoteFile("https://example.org/x.bin", "x.bin", got, 100), what="mydata")
    assert path.exists()


def _fabricated_news_archive(tmp_path: Path) -> bytes:
    """One message in the official layout: the archive that used to be accepted with only a warning."""

    def build(tar: tarfile.TarFile) -> None:
        add(tar, "20news-bydate-train/alt.atheism/1", b"From: x\n\nfabricated")
        add(tar, "20news-bydate-test/alt.atheism/2", b"From: y\n\nfabricated")

    return make_tar(tmp_path / "fake.tar.gz", build).read_bytes()


def test_fabricated_archive_is_refused_deleted_and_not_cached(
    tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _fabricated_news_archive(tmp_path)
    monkeypatch.setattr(builtin, "fetch_url", fetch_url)  # the real fetch, over the fake network
    opener = fake_network(monkeypatch, body)
    expected = builtin.DATASETS["20newsgroups"].remote["train"].sha256
    got = hashlib.sha256(body).hexdigest()
    for attempt in (1, 2):  # nothing was cached: the second load downloads (and refuses) again
        with pytest.raises(
            ChecksumError,
            match=rf"^20newsgroups: 20news-bydate\.tar\.gz is not the known-good file \(sha256 expected "
            rf"{expected}, got {got}\); deleted ",
        ):
            load_builtin("20newsgroups", "train")
        assert len(opener.calls) == attempt
        assert opener.calls[-1][0] == "https://ndownloader.figshare.com/files/5975967"
        assert list((isolated_data_env / "downloads").iterdir()) == []
        assert not (isolated_data_env / "20newsgroups").exists()


def test_download_over_the_byte_cap_leaves_nothing(
    tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builtin, "fetch_url", fetch_url)
    cap = builtin.DATASETS["mr"].remote["all"].max_bytes
    fake_network(monkeypatch, bytes(cap + 1), headers={})
    with pytest.raises(DownloadError, match=f"more than the cap of {cap:,} bytes"):
        load_builtin("mr")
    assert list((isolated_data_env / "downloads").iterdir()) == []
    assert not (isolated_data_env / "mr").exists()


def test_builtin_parsers_refuse_unsafe_archives(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add(tar, "20news-bydate-train/alt.atheism/1", b"ok")
        add(tar, "20news-bydate-test/alt.atheism/2", b"ok")
        add(tar, "20news-bydate-test/alt.atheism/3", type=tarfile.SYMTYPE, linkname="/home/user/.ssh/id_rsa")

    with pytest.raises(
        UnsafeArchiveError, match=r"member '20news-bydate-test/alt\.atheism/3': a symbolic link"
    ):
        parse_20newsgroups_archive(make_tar(tmp_path / "n.tar.gz", build))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_downloads_and_cached_splits_get_a_plain_writes_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    import os

    body = b"known-good bytes" * 100
    remote = dl.RemoteFile(
        url="https://example.org/data.bin",
        filename="data.bin",
        sha256=hashlib.sha256(body).hexdigest(),
        max_bytes=len(body),
    )
    fake_network(monkeypatch, body)
    old = os.umask(umask)
    try:
        path = dl.download(remote, tmp_path / "downloads", what="example")
        builtin.write_jsonl_gz(tmp_path / "cache" / "train.jsonl.gz", [{"text": "t", "label": "a"}])
    finally:
        os.umask(old)
    assert path.read_bytes() == body
    for written in (path, tmp_path / "cache" / "train.jsonl.gz"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask  # mkstemp gave 0o600
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["data.bin"]  # no temporary left


class _TrickleHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1,000 bytes, then sends one byte every ``server.gap`` seconds (never, when it is None)."""

    server: _TrickleServer

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.flush()
        try:
            for _ in range(1000):
                if self.server.stop.wait(self.server.gap if self.server.gap is not None else 30.0):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
        except OSError:  # the client gave up
            return

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _TrickleServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gap: float | None) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.gap = gap
        self.stop = threading.Event()


@pytest.mark.parametrize(("gap", "max_seconds"), [(0.2, 1.0), (None, 0.5)])
def test_time_limit_holds_against_a_trickling_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gap: float | None, max_seconds: float
) -> None:
    """A real local server: one byte per ``gap`` s (or none after the headers) never outlasts ``max_seconds``."""
    monkeypatch.setattr(dl, "require_https", lambda url: None)  # the local server speaks plain http
    server = _TrickleServer(gap)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/f"
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"not finished after"):
            fetch_url(url, tmp_path / "out", max_bytes=10_000, timeout=20.0, max_seconds=max_seconds)
        elapsed = time.monotonic() - start
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
    # Before read1 and the bounded socket timeout: 200 s (1,000 bytes at 0.2 s) or the 20 s socket timeout.
    assert elapsed < max_seconds + 0.6
