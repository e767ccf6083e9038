"""IDX reading (attnkit.data.vision.idx) on files written here byte by byte, raw and gzip'd."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from attnkit.data.errors import DataError
from attnkit.data.vision.idx import gunzip, parse_idx, read_idx

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    """The IDX encoding of ``array``, written by hand: magic, big-endian uint32 sizes, big-endian values."""
    code = CODES[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def one_line_error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("compress", [False, True])
def test_uint8_images_round_trip(tmp_path: Path, compress: bool) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4  # (N, H, W)
    data = idx_bytes(images)
    assert data[:4] == b"\x00\x00\x08\x03" and data[4:8] == b"\x00\x00\x00\x03"  # the format, as specified
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (3, 4, 5) and got.flags.writeable
    np.testing.assert_array_equal(got, images)


def test_gzip_is_detected_by_magic_not_name(tmp_path: Path) -> None:
    labels = np.array([9, 0, 3], dtype=np.uint8)
    (tmp_path / "labels").write_bytes(gzip.compress(idx_bytes(labels)))  # gzip'd, no .gz suffix
    (tmp_path / "labels.gz").write_bytes(idx_bytes(labels))  # raw, with a .gz suffix
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.gz"), labels)


@pytest.mark.parametrize(
    "values",
    [
        np.array([[-128, 0, 127], [1, -1, 2]], dtype=np.int8),
        np.array([[-32768, 0, 32767], [258, -2, 3]], dtype=np.int16),
        np.array([[-(2**31), 0, 2**31 - 1], [65536, -3, 4]], dtype=np.int32),
        np.array([[-1.5, 0.0, 3.25e38], [1e-40, np.inf, -0.0]], dtype=np.float32),
        np.array([[-1.5, 0.0, 1e308], [5e-324, -np.inf, 2.0]], dtype=np.float64),
    ],
    ids=lambda v: str(v.dtype),
)
def test_every_idx_type_code(values: np.ndarray) -> None:
    got = parse_idx(idx_bytes(values), where="v.idx")
    assert got.dtype == values.dtype and got.dtype.isnative and got.flags.writeable
    np.testing.assert_array_equal(got, values)


def test_big_endian_sizes_and_values_hand_computed() -> None:
    # One int16 of value 0x0102 = 258 in a 1-D file of one element.
    data = b"\x00\x00\x0b\x01" + b"\x00\x00\x00\x01" + b"\x01\x02"
    assert parse_idx(data, where="h").tolist() == [258]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", r"^f\.idx: not an IDX file \(magic 0x01000801; an IDX"),
        (b"PK\x03\x04rest", r"not an IDX file \(magic 0x504b0304"),
        (
            b"\x00\x00\x07\x01\x00\x00\x00\x01\x05",
            r"unknown IDX type code 0x07 \(known: 0x08 uint8, 0x09 int8",
        ),
        (b"\x00\x00\x08\x00", r"an IDX header with 0 dimensions"),
        (b"\x00\x00", r"2 bytes, too short for an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", r"truncated header \(10 bytes; 3 dimensions need 16"),
    ],
)
def test_bad_headers_are_one_line_errors(data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match) as excinfo:
        parse_idx(data, where="f.idx")
    one_line_error(excinfo)


def test_truncated_and_overlong_data_name_the_counts(tmp_path: Path) -> None:
    images = np.zeros((2, 3, 4), dtype=np.uint8)
    good = idx_bytes(images)
    (tmp_path / "short.idx").write_bytes(good[:-5])
    with pytest.raises(DataError, match=r"short\.idx: truncated: the header says 2x3x4 uint8 \(24 bytes of data\), "
                       r"the file holds 19; download the file again$") as excinfo:  # fmt: skip
        read_idx(tmp_path / "short.idx")
    one_line_error(excinfo)
    (tmp_path / "long.idx").write_bytes(good + b"\x00\x00")
    with pytest.raises(DataError, match=r"long\.idx: 2 extra bytes after the 24 bytes of data the header declares "
                       r"\(2x3x4 uint8\)"):  # fmt: skip
        read_idx(tmp_path / "long.idx")
    # Sizes that disagree with the data (a count written wrong): 3 images declared, 2 present.
    wrong = good[:4] + struct.pack(">3I", 3, 3, 4) + good[16:]
    with pytest.raises(
        DataError, match=r"the header says 3x3x4 uint8 \(36 bytes of data\), the file holds 24"
    ):
        parse_idx(gzip.compress(wrong), where="count.gz")
    int32 = idx_bytes(np.arange(4, dtype=np.int32))
    with pytest.raises(DataError, match=r"the header says 4 int32 \(16 bytes of data\), the file holds 15"):
        parse_idx(int32[:-1], where="i")


def test_gzip_problems_are_data_errors(tmp_path: Path) -> None:
    data = idx_bytes(np.arange(4000, dtype=np.int32).reshape(40, 100))
    packed = gzip.compress(data)
    with pytest.raises(DataError, match=r"^t\.gz: truncated gzip file") as excinfo:
        parse_idx(packed[: len(packed) // 2], where="t.gz")
    one_line_error(excinfo)
    with pytest.raises(DataError, match=r"^t\.gz: truncated gzip file"):
        parse_idx(packed[:-4], where="t.gz")  # the trailer's length field cut off
    corrupt = bytearray(packed)
    corrupt[-8] ^= 0xFF  # the CRC32 in the trailer
    with pytest.raises(DataError, match=r"^c\.gz: corrupt gzip data \(.*\); download the file again$"):
        parse_idx(bytes(corrupt), where="c.gz")
    with pytest.raises(DataError, match=r"3 bytes of garbage after the gzip data"):
        parse_idx(packed + b"xyz", where="g.gz")
    path = tmp_path / "missing.gz"
    with pytest.raises(DataError, match=r"missing\.gz: cannot read the file"):
        read_idx(path)


def test_multi_member_gzip_is_one_file() -> None:
    data = idx_bytes(np.arange(100, dtype=np.uint8))
    two_members = gzip.compress(data[:30]) + gzip.compress(data[30:])
    np.testing.assert_array_equal(parse_idx(two_members, where="m"), np.arange(100, dtype=np.uint8))


def test_a_gzip_bomb_stops_at_the_cap_in_bounded_memory() -> None:
    header = b"\x00\x00\x08\x01" + struct.pack(">I", 20_000_000)
    bomb = gzip.compress(header + bytes(20_000_000), compresslevel=9)  # about 20 KB
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"decompresses to more than 1,000,000 bytes; refusing it"):
            parse_idx(bomb, where="bomb.gz", max_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000  # never the 20 MB it declares
    assert len(gunzip(bomb, where="bomb.gz", max_bytes=20_000_008)) == 20_000_008  # exactly at the cap: fine


def test_raw_file_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.idx"
    path.write_bytes(idx_bytes(np.zeros(100, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"big\.idx: 108 bytes, over the cap of 50; refusing it"):
        read_idx(path, max_bytes=50)
