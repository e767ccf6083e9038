"""Verified, bounded downloads and safe archive reading, shared by every built-in dataset (any modality).

Three guarantees, each enforced, never only logged:

1. **HTTPS only.** :func:`fetch_url` refuses any other scheme, also when a server redirects elsewhere.
2. **Bounded.** A download stops past its byte cap (``Content-Length`` is checked before reading) or past its
   wall-clock limit; an archive is read member by member, in chunks, under :class:`ArchiveLimits` (member
   count, bytes per member read, total bytes decompressed, header size), so a small file that expands
   enormously (a "zip bomb") fails after reading at most the caps, with bounded memory.
3. **Pinned.** Every :class:`RemoteFile` carries the sha256 of the known-good file. A mismatch deletes the
   file and raises :class:`ChecksumError` naming the dataset, the expected and the actual digest.

Archive members that are not plain files or directories (symbolic or hard links, devices, fifos, sockets,
sparse files), names that are absolute, contain ``..`` or a NUL byte, and duplicate names reject the whole
archive: an official archive has none of them. Nothing is ever extracted to disk; members are returned as
bytes.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.client
import io
import logging
import lzma
import re
import stat
import tarfile
import time
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from attnkit.atomic import atomic_write
from attnkit.data.errors import DataError

logger = logging.getLogger(__name__)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
#: Bytes read per call, from the network and from archive members.
CHUNK_BYTES = 1 * MiB
#: No single tar header (pax or GNU long-name data) may be larger than this; real ones are a few hundred bytes.
MAX_HEADER_BYTES = 1 * MiB
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_SECONDS = 3600.0

_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadError(DataError):
    """A download or an archive was refused: not HTTPS, over a cap, or an unsafe archive member."""


class UnsafeArchiveError(DownloadError):
    """An archive member is unsafe (link, device, absolute or ``..`` path) or over the archive's limits."""


class ChecksumError(DownloadError):
    """A file's sha256 is not the pinned one (the file has been deleted)."""


def require_https(url: str) -> None:
    """Raise :class:`DownloadError` unless ``url`` is an ``https://`` URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise DownloadError(f"{url}: only https:// URLs are downloaded")


@dataclass(frozen=True)
class RemoteFile:
    """A file to download.

    Attributes:
        url: an ``https://`` URL.
        filename: the plain file name it is saved under.
        sha256: lowercase hex sha256 of the known-good file; a download with another digest is deleted.
        max_bytes: the download is refused past this many bytes (the file's size where it is known: a
            longer file cannot have the pinned digest).
    """

    url: str
    filename: str
    sha256: str
    max_bytes: int

    def __post_init__(self) -> None:
        require_https(self.url)
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"{self.url}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if not self.filename or Path(self.filename).name != self.filename or self.filename in (".", ".."):
            raise ValueError(f"{self.url}: filename must be a plain file name, got {self.filename!r}")
        if self.max_bytes <= 0:
            raise ValueError(f"{self.url}: max_bytes must be > 0, got {self.max_bytes}")


# ----------------------------------------------------------------------------------------------------
# Fetching.


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to ``https://`` URLs (urllib would follow one down to plain http)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme != "https":
            raise DownloadError(f"{req.full_url}: redirected to {newurl}, which is not https; refusing it")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    desc: str | None = None,
) -> int:
    """Stream ``url`` into ``dest`` in chunks, with a tqdm progress bar on terminals.

    Args:
        url: an ``https://`` URL; redirects are followed only to ``https://`` URLs.
        dest: the file to write (created or truncated). On an error it may hold a partial download: callers
            write to a temporary file (see :func:`download`).
        max_bytes: refuse a ``Content-Length`` above this before reading, and stop once more arrive.
        timeout: seconds a connect or a single read may block.
        max_seconds: wall-clock limit for the whole transfer (a server trickling bytes never ends otherwise).
        desc: label of the progress bar.

    Returns:
        The number of bytes written.

    Raises:
        DownloadError: not https, or over ``max_bytes``.
        OSError: the transfer failed, was cut short (``Content-Length`` not reached) or took longer than
            ``max_seconds`` (``TimeoutError``).
    """
    from tqdm.auto import tqdm

    from attnkit import __version__

    require_https(url)
    request = urllib.request.Request(url, headers={"User-Agent": f"attnkit/{__version__}"})
    opener = urllib.request.build_opener(_HttpsOnlyRedirects)
    start = time.monotonic()
    written = 0
    try:
        with opener.open(request, timeout=timeout) as response, dest.open("wb") as out:
            declared_text = response.headers.get("Content-Length")
            declared = int(declared_text) if declared_text and declared_text.isdigit() else None
            if declared is not None and declared > max_bytes:
                raise DownloadError(
                    f"{url}: the server announces {declared:,} bytes, over the cap of {max_bytes:,}; refusing it"
                )
            with tqdm(
                total=declared, unit="B", unit_scale=True, unit_divisor=1024, desc=desc or url, disable=None
            ) as bar:
                # read1: at most one recv per call, so a trickling server cannot hold a call for a whole
                # chunk; the deadline is checked after every return and bounds each recv's timeout.
                read = getattr(response, "read1", response.read)
                deadline = start + max_seconds
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"{url}: not finished after {max_seconds:.0f} s")
                    _limit_socket_timeout(response, min(timeout, left))
                    try:
                        chunk = read(CHUNK_BYTES)
                    except TimeoutError:
                        if time.monotonic() >= deadline:
                            raise TimeoutError(f"{url}: not finished after {max_seconds:.0f} s") from None
                        raise
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > max_bytes:
                        raise DownloadError(f"{url}: more than the cap of {max_bytes:,} bytes; refusing it")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url}: not finished after {max_seconds:.0f} s")
                    out.write(chunk)
                    bar.update(len(chunk))
            if declared is not None and written != declared:
                raise OSError(f"{url}: connection closed after {written:,} of {declared:,} bytes")
    except http.client.HTTPException as e:  # e.g. IncompleteRead: not an OSError
        raise OSError(f"{url}: {type(e).__name__}: {e}") from None
    return written


def _limit_socket_timeout(response: Any, seconds: float) -> None:
    """Set the timeout of ``response``'s socket (an :class:`http.client.HTTPResponse`) where it can be reached.

    ``urlopen``'s timeout applies to each recv; lowering it to the time left keeps a single blocking recv
    from outlasting ``max_seconds``. Responses without a reachable socket (tests' fakes) are left alone.
    """
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    settimeout = getattr(sock, "settimeout", None)
    if callable(settimeout):
        settimeout(max(seconds, 0.001))


class Fetch(Protocol):
    """The signature of :func:`fetch_url` that :func:`download` calls (tests substitute their own)."""

    def __call__(self, url: str, dest: Path, *, max_bytes: int, desc: str | None = ...) -> Any: ...


# ----------------------------------------------------------------------------------------------------
# Checksums.


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, remote: RemoteFile, *, what: str) -> None:
    """Check ``path`` against ``remote.sha256``; on a mismatch delete ``path`` and raise.

    Args:
        path: the downloaded (or placed) file.
        remote: what it should be.
        what: the dataset it belongs to, for the message (``20newsgroups``).

    Raises:
        ChecksumError: the digests differ (``path`` no longer exists).
    """
    actual = sha256_file(path)
    if actual == remote.sha256:
        logger.info("%s: %s sha256 ok", what, remote.filename)
        return
    path.unlink(missing_ok=True)
    raise ChecksumError(
        f"{what}: {remote.filename} is not the known-good file (sha256 expected {remote.sha256}, got "
        f"{actual}); deleted {path}. The download was corrupt or the file changed at {remote.url}: "
        "retry, or place the data files by hand"
    )


def download(remote: RemoteFile, dest_dir: Path, *, what: str, fetch: Fetch = fetch_url) -> Path:
    """Download ``remote`` into ``dest_dir``: stream to a temporary file, verify, then rename atomically.

    Args:
        remote: the file, its pinned sha256 and byte cap.
        dest_dir: where ``remote.filename`` ends up.
        what: the dataset name, for messages.
        fetch: the fetching function (:func:`fetch_url`).

    Returns:
        ``dest_dir / remote.filename``, verified.

    Raises:
        OSError: fetching failed (callers turn it into guidance).
        DownloadError: over the cap, not https, or :class:`ChecksumError`. Nothing is left behind.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename

    def write(tmp: Path) -> None:  # a mismatch raises here: the temporary file is removed, nothing is cached
        logger.info("downloading %s", remote.url)
        fetch(remote.url, tmp, max_bytes=remote.max_bytes, desc=remote.filename)
        verify_sha256(tmp, remote, what=what)

    # The cached file gets a plain write's mode (0666 & ~umask), not mkstemp's 0600.
    atomic_write(final, write)
    return final


# ----------------------------------------------------------------------------------------------------
# Safe archive reading.


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on reading one archive. Each is checked before the bytes are read where the archive says sizes.

    Attributes:
        max_members: entries of any kind (files, directories).
        max_member_bytes: uncompressed size of one member that is returned.
        max_total_bytes: uncompressed bytes decompressed in all (returned members, and in a tar also the
            members read past and the headers).
    """

    max_members: int = 10_000
    max_member_bytes: int = 64 * MiB
    max_total_bytes: int = 1 * GiB

    def __post_init__(self) -> None:
        for name in ("max_members", "max_member_bytes", "max_total_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ArchiveLimits.{name} must be > 0, got {getattr(self, name)}")


Select = Callable[[str], bool]

_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_name_reason(name: str) -> str | None:
    """Why an archive member name is unsafe to use as a relative path, or ``None`` when it is safe."""
    if not name:
        return "an empty name"
    if "\0" in name:
        return "a NUL byte in its name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "a '..' component"
    return None


def _refuse(path: Path, name: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{path}: member {name[:200]!r}: {why}; refusing the archive")


class _CappedReader(io.RawIOBase):
    """A seekable view of a decompressed stream that stops past a total byte budget and refuses huge reads.

    tarfile reads pax and GNU long-name headers in one ``read(size)`` call, whatever ``size`` the archive
    says; capping single reads keeps those bounded too. Seeking forward decompresses and discards in small
    blocks (the decompressor's own), so memory stays bounded while the position is checked against the
    budget.
    """

    def __init__(self, inner: io.BufferedIOBase, path: Path, limits: ArchiveLimits) -> None:
        super().__init__()
        self._inner = inner
        self._path = path
        self._limits = limits

    def _check_position(self) -> None:
        if self._inner.tell() > self._limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{self._path}: expands past {self._limits.max_total_bytes:,} bytes; refusing the archive"
            )

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > max(CHUNK_BYTES, MAX_HEADER_BYTES):
            raise UnsafeArchiveError(
                f"{self._path}: a header or read of {size} bytes, over {MAX_HEADER_BYTES:,}; refusing the archive"
            )
        data = self._inner.read(size)
        self._check_position()
        return data

    def readinto(self, buffer: Any) -> int:  # pragma: no cover - tarfile calls read()
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._inner.tell() + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target > self._limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{self._path}: expands past {self._limits.max_total_bytes:,} bytes; refusing the archive"
            )
        return self._inner.seek(target)

    def tell(self) -> int:
        return self._inner.tell()


def _decompressed(path: Path) -> io.BufferedIOBase:
    """``path`` opened through the decompressor its magic bytes name (gzip, bzip2, xz), else as is."""
    with path.open("rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(path, "rb")
    return path.open("rb")


def _read_capped(handle: IO[bytes], path: Path, name: str, limit: int) -> bytes:
    """All of ``handle`` in chunks, refusing it once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    while chunk := handle.read(CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            raise _refuse(path, name, f"larger than the cap of {limit:,} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _tar_type_reason(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a fifo"
    if member.issparse():
        return "a sparse file"
    if member.isdir() or member.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return None
    return f"an entry of tar type {member.type!r}"


def iter_tar(path: Path, limits: ArchiveLimits, select: Select) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the regular files of a tar archive (plain, gzip, bzip2 or xz) that ``select`` keeps.

    Every member is checked (name, type, count, size) before its data is read; see the module docstring.

    Raises:
        UnsafeArchiveError: an unsafe member or a limit passed (nothing after it is returned).
        DataError: not a readable tar archive, or corrupt / truncated.
    """
    seen: set[str] = set()
    try:
        with _decompressed(path) as raw, _CappedReader(raw, path, limits) as capped:
            try:
                tar = tarfile.open(fileobj=capped, mode="r:")  # noqa: SIM115 - closed by the with below
            except tarfile.ReadError as e:
                raise DataError(f"{path}: not a readable tar archive ({e})") from None
            with tar:
                count = 0
                for member in tar:
                    tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header otherwise
                    count += 1
                    if count > limits.max_members:
                        raise _refuse(path, member.name, f"more than {limits.max_members:,} members")
                    why = unsafe_name_reason(member.name) or _tar_type_reason(member)
                    if why is not None:
                        raise _refuse(path, member.name, why)
                    if member.offset_data + member.size > limits.max_total_bytes:
                        raise UnsafeArchiveError(
                            f"{path}: expands past {limits.max_total_bytes:,} bytes; refusing the archive"
                        )
                    if member.isdir():
                        continue
                    if member.name in seen:
                        raise _refuse(path, member.name, "a second member with the same name")
                    seen.add(member.name)
                    if not select(member.name):
                        continue
                    if member.size > limits.max_member_bytes:
                        raise _refuse(
                            path,
                            member.name,
                            f"{member.size:,} bytes, over the cap of {limits.max_member_bytes:,}",
                        )
                    handle = tar.extractfile(member)
                    if handle is None:  # pragma: no cover - regular members always have data
                        continue
                    with handle:
                        yield member.name, _read_capped(handle, path, member.name, limits.max_member_bytes)
    except DataError:
        raise
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated archive ({e})") from None


def _zip_type_reason(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & 0x1:
        return "encrypted"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.create_system != 3 or kind == 0 or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None  # no unix mode recorded (DOS attributes), or a plain file / directory
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    return f"a special file (mode {oct(mode)})"


def iter_zip(path: Path, limits: ArchiveLimits, select: Select) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the files of a zip archive that ``select`` keeps, checked like :func:`iter_tar`.

    A zip's central directory is read whole when the archive is opened (its size is bounded by the file's,
    which the download cap bounds); the counts and names are checked before any member is decompressed.

    Raises:
        UnsafeArchiveError: an unsafe member or a limit passed.
        DataError: not a readable zip archive, or corrupt (a bad CRC, a truncated member).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip archive ({e})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise UnsafeArchiveError(
                f"{path}: {len(infos):,} members, more than {limits.max_members:,}; refusing the archive"
            )
        seen: set[str] = set()
        chosen: list[zipfile.ZipInfo] = []
        for info in infos:
            why = unsafe_name_reason(info.filename) or _zip_type_reason(info)
            if why is not None:
                raise _refuse(path, info.filename, why)
            if info.is_dir():
                continue
            if info.filename in seen:
                raise _refuse(path, info.filename, "a second member with the same name")
            seen.add(info.filename)
            if select(info.filename):
                if info.file_size > limits.max_member_bytes:
                    raise _refuse(
                        path,
                        info.filename,
                        f"{info.file_size:,} bytes, over the cap of {limits.max_member_bytes:,}",
                    )
                chosen.append(info)
        if sum(i.file_size for i in chosen) > limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{path}: expands past {limits.max_total_bytes:,} bytes; refusing the archive"
            )
        total = 0
        for info in chosen:
            try:
                with archive.open(info) as handle:
                    data = _read_capped(handle, path, info.filename, limits.max_member_bytes)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
                raise DataError(f"{path}: {info.filename}: corrupt member ({e})") from None
            total += len(data)
            if total > limits.max_total_bytes:
                raise UnsafeArchiveError(
                    f"{path}: expands past {limits.max_total_bytes:,} bytes; refusing the archive"
                )
            yield info.filename, data


def iter_archive(
    path: Path, limits: ArchiveLimits, select: Select = lambda name: True
) -> Iterator[tuple[str, bytes]]:
    """:func:`iter_zip` for a file that starts like a zip archive, else :func:`iter_tar`."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic in (b"PK\x03\x04", b"PK\x05\x06"):  # a local file header, or the end record of an empty zip
        return iter_zip(path, limits, select)
    return iter_tar(path, limits, select)
