"""IDX files (the MNIST / Fashion-MNIST format), raw or gzip'd, read with numpy.

An IDX file is a 4-byte magic ``00 00 <type> <ndim>``, then ``ndim`` big-endian ``uint32`` sizes, then the
values in C order, big-endian. Type codes: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
``0x0D`` float32, ``0x0E`` float64. Everything is checked (magic, type, sizes, that the data is exactly as
long as the sizes say); any problem is one :class:`~attnkit.data.errors.DataError` line naming the file.

A gzip'd file (detected by its magic bytes ``1f 8b``, whatever its name) is decompressed in memory, its CRC
checked, never to more than ``max_bytes``: a small file that would expand enormously is refused.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from attnkit.data.errors import DataError

#: IDX type code -> (big-endian numpy dtype, name).
IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "uint8"),
    0x09: (">i1", "int8"),
    0x0B: (">i2", "int16"),
    0x0C: (">i4", "int32"),
    0x0D: (">f4", "float32"),
    0x0E: (">f8", "float64"),
}
#: Default cap on a file's (decompressed) size: Fashion-MNIST's largest file is 47 MB.
DEFAULT_MAX_BYTES = 1 << 30
_GZIP_MAGIC = b"\x1f\x8b"


def _type_list() -> str:
    return ", ".join(f"0x{code:02X} {name}" for code, (_, name) in IDX_TYPES.items())


def gunzip(data: bytes, *, where: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Decompress gzip ``data`` (one or more members), refusing more than ``max_bytes`` of output.

    Args:
        data: the gzip file's bytes.
        where: the file, for messages.
        max_bytes: the most bytes the output may hold.

    Raises:
        DataError: corrupt (bad deflate data, a CRC or length mismatch), truncated, trailing bytes that are not
            another gzip member, or over ``max_bytes``.
    """
    parts: list[bytes] = []
    total = 0
    rest = data
    while True:
        decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing: the trailer's CRC is checked
        try:
            part = decomp.decompress(rest, max_bytes + 1 - total)  # output bounded: a bomb stops here
        except zlib.error as e:
            raise DataError(f"{where}: corrupt gzip data ({e}); download the file again") from None
        total += len(part)
        if total > max_bytes:
            raise DataError(
                f"{where}: decompresses to more than {max_bytes:,} bytes; refusing it (raise max_bytes if the "
                "file is genuine)"
            )
        parts.append(part)
        if not decomp.eof:
            raise DataError(
                f"{where}: truncated gzip file (the stream ends after {len(data):,} bytes before its end "
                "marker); download the file again"
            )
        rest = decomp.unused_data
        if not rest:
            break
        if not rest.startswith(_GZIP_MAGIC):
            raise DataError(f"{where}: {len(rest):,} bytes of garbage after the gzip data")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def parse_idx(data: bytes, *, where: str, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Parse the bytes of an IDX file (gzip'd or raw, told apart by the magic bytes).

    Args:
        data: the file's bytes.
        where: the file's name, for messages.
        max_bytes: cap on the decompressed size.

    Returns:
        A writable, native-endian array with the file's shape and type (``uint8`` for images and labels).

    Raises:
        DataError: a wrong magic or type code, a truncated header or data, trailing bytes, a corrupt gzip.
    """
    if data.startswith(_GZIP_MAGIC):
        data = gunzip(data, where=where, max_bytes=max_bytes)
    elif len(data) > max_bytes:
        raise DataError(f"{where}: {len(data):,} bytes, over the cap of {max_bytes:,}; refusing it")
    if len(data) < 4:
        raise DataError(f"{where}: {len(data)} bytes, too short for an IDX file (4-byte magic, sizes, data)")
    zero0, zero1, code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{where}: not an IDX file (magic 0x{data[:4].hex()}; an IDX file starts 0x0000, a type code "
            "and a dimension count)"
        )
    if code not in IDX_TYPES:
        raise DataError(f"{where}: unknown IDX type code 0x{code:02X} (known: {_type_list()})")
    if ndim == 0:
        raise DataError(f"{where}: an IDX header with 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{where}: truncated header ({len(data)} bytes; {ndim} dimensions need {header} bytes)"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype_code, dtype_name = IDX_TYPES[code]
    dtype = np.dtype(dtype_code)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    dims = "x".join(str(d) for d in shape)
    if got < expected:
        raise DataError(
            f"{where}: truncated: the header says {dims} {dtype_name} ({expected:,} bytes of data), the file "
            f"holds {got:,}; download the file again"
        )
    if got > expected:
        raise DataError(
            f"{where}: {got - expected:,} extra bytes after the {expected:,} bytes of data the header declares "
            f"({dims} {dtype_name}); not an IDX file of this shape"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # One copy: writable (torch.from_numpy refuses read-only buffers) and in native byte order.
    return values.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an IDX file, gzip'd or raw (see :func:`parse_idx`).

    Raises:
        DataError: the file is missing, unreadable, over ``max_bytes`` or not a valid IDX file.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise DataError(f"{p}: {size:,} bytes, over the cap of {max_bytes:,}; refusing it")
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read the file ({e.strerror or e})") from None
    return parse_idx(data, where=str(p), max_bytes=max_bytes)
