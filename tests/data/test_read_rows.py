"""read_rows: unlabelled rows for prediction through the training parsers, every column kept, skips reported."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attnkit.data import DataError, load_source
from attnkit.data.text.sources import InputRows, SkippedRow, read_rows


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    """CSV as the csv module writes it (quoting multi-line and comma fields), the reference encoder."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def test_csv_header_multiline_fields_and_label_column(tmp_path: Path) -> None:
    # 1,000 rows, every third text spanning lines and holding commas and quotes: exactly 1,000 rows come back.
    rows = [
        [str(i), f'text {i}, "quoted"\nsecond line' if i % 3 == 0 else f"text {i}", "pos" if i % 2 else "neg"]
        for i in range(1000)
    ]
    path = write(tmp_path / "d.csv", csv_text(["id", "review", "label"], rows))
    got = read_rows(path)
    assert got.text_field == "review"
    assert len(got.rows) == 1000 and not got.skipped
    assert got.texts == [r[1] for r in rows]
    assert got.rows == [{"id": r[0], "review": r[1], "label": r[2]} for r in rows]
    assert got.columns == ["id", "review", "label"]
    # A multi-line record is located by its first line: 2 (header is line 1), then each record's line count.
    assert got.locations[:3] == ["line 2", "line 4", "line 5"]
    # The same parser as training: the texts equal what load_source reads from the same file.
    assert got.texts == [e.text for e in load_source(path)]


def test_tsv_and_explicit_text_field(tmp_path: Path) -> None:
    path = write(tmp_path / "s.tsv", 'title\tbody\tlabel\nT1\the said "hi" \t1\nT2\tB2\t0\n')
    got = read_rows(path, text_field="body")
    assert got.texts == ['he said "hi" ', "B2"]
    assert got.rows[0] == {"title": "T1", "body": 'he said "hi" ', "label": "1"}
    with pytest.raises(DataError, match=r"s\.tsv: header: no text column 'x'; available columns: 'title'"):
        read_rows(path, text_field="x")


def test_jsonl_keeps_types_and_skips_unreadable_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": 1, "text": "first", "label": 1, "meta": {"a": [1, 2]}}),
        "",
        '{"id": 2, "text": }',
        json.dumps([1, 2]),
        json.dumps({"id": 3, "text": "   "}),
        json.dumps({"id": 4, "text": 5}),
        json.dumps({"id": 5}),
        json.dumps({"id": 6, "text": "last\u2028one", "extra": None}),
    ]
    path = write(tmp_path / "r.jsonl.gz", gzip.compress("\n".join(lines).encode()))
    got = read_rows(path)
    assert got.rows == [json.loads(lines[0]), json.loads(lines[-1])]
    assert got.texts == ["first", "last\u2028one"]
    assert got.locations == ["line 1", "line 8"]
    assert got.columns == ["id", "text", "label", "meta", "extra"]
    assert got.blank_lines == 1
    assert got.skipped == [
        SkippedRow("line 3", "invalid JSON (Expecting value at column 19)"),
        SkippedRow("line 4", "expected a JSON object, got list"),
        SkippedRow("line 5", "empty text"),
        SkippedRow("line 6", "field 'text' is int, expected a string"),
        SkippedRow("line 7", "no 'text' field"),
    ]
    summary = got.skipped_summary(limit=2)
    assert summary.startswith(f"skipped 5 of 7 rows of {path}: line 3 (invalid JSON")
    assert summary.endswith("line 4 (expected a JSON object, got list), and 3 more")


def test_json_array(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", json.dumps([{"sentence": "x", "y": 1}, {"sentence": "y", "y": 2}]))
    got = read_rows(path)
    assert (got.text_field, got.texts, got.locations) == ("sentence", ["x", "y"], ["item 1", "item 2"])


def test_parquet_keeps_every_column(tmp_path: Path) -> None:
    table = pa.table({"id": [7, 8, 9], "content": ["one", None, "three"], "score": [0.5, 1.5, None]})
    pq.write_table(table, tmp_path / "p.parquet")
    got = read_rows(tmp_path / "p.parquet")
    assert got.rows == [table.to_pylist()[0], table.to_pylist()[2]]
    assert got.skipped == [SkippedRow("row 2", "empty text")]
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"n\.parquet: text column 'text' has type int64"):
        read_rows(tmp_path / "n.parquet")


def test_plain_text_one_per_line(tmp_path: Path) -> None:
    # text_field (e.g. from the run's config) does not apply to plain text.
    for name in ("t.txt", "no_suffix"):
        got = read_rows(
            write(tmp_path / name, "first one\r\n\n  \nsecond, with a comma\nlast"), text_field="x"
        )
        assert got.texts == ["first one", "second, with a comma", "last"]
        assert got.rows[1] == {"text": "second, with a comma"}
        assert got.locations == ["line 1", "line 4", "line 5"]
        assert (got.blank_lines, got.skipped) == (2, [])


def test_folder_of_text_files(tmp_path: Path) -> None:
    write(tmp_path / "d" / "b" / "10.txt", "ten")
    write(tmp_path / "d" / "b" / "2.txt", "two")
    write(tmp_path / "d" / "a.txt", "top")
    write(tmp_path / "d" / "empty.txt", " ")
    write(tmp_path / "d" / "notes.md", "ignored")
    write(tmp_path / "d" / ".hidden" / "x.txt", "ignored")
    got = read_rows(tmp_path / "d")
    assert got.rows == [
        {"file": "a.txt", "text": "top"},
        {"file": "b/2.txt", "text": "two"},
        {"file": "b/10.txt", "text": "ten"},
    ]
    assert got.skipped == [SkippedRow("empty.txt", "empty text")]
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match=r"e: no \.txt files"):
        read_rows(tmp_path / "e")


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    cases = {
        "x.csv": b"text,label\nfine,1\ncaf\xe9,1\n",
        "x.jsonl": b'{"text": "fine"}\n{"text": "caf\xe9"}\n',
        "x.txt": b"fine\ncaf\xe9\n",
    }
    for name, data in cases.items():
        line = 3 if name == "x.csv" else 2
        with pytest.raises(DataError, match=rf"{name}: line {line}: invalid UTF-8 byte 0xe9"):
            read_rows(write(tmp_path / name, data))


def test_ragged_csv_rows_are_skipped_not_fatal(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "text,label\na,1\nb,1,extra\nc,0,,\n,1\n")
    got = read_rows(path)
    assert got.texts == ["a", "c"]  # trailing empty fields are fine, as in training
    assert got.rows[1] == {"text": "c", "label": "0"}
    assert [s.location for s in got.skipped] == ["line 3", "line 5"]
    assert got.skipped[0].reason.startswith("3 fields but the header has 2")
    with pytest.raises(
        DataError, match=r"r2\.csv: no row could be read \(skipped 2 of 2 rows .*line 2 \(empty"
    ):
        read_rows(write(tmp_path / "r2.csv", "text,label\n,1\n  ,0\n"))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_rows(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"u\.xlsx: unsupported file type; use one of .*\.txt"):
        read_rows(write(tmp_path / "u.xlsx", "x"))
    with pytest.raises(DataError, match=r"h\.csv: has a header but no data rows"):
        read_rows(write(tmp_path / "h.csv", "text,label\n"))
    with pytest.raises(DataError, match=r"dup\.csv: header: column 'text' appears more than once"):
        read_rows(write(tmp_path / "dup.csv", "text,text\na,b\n"))
    with pytest.raises(
        DataError, match=r"nh\.csv: header: no text column found .*for one text per line use a \.txt"
    ):
        read_rows(write(tmp_path / "nh.csv", "I loved it\nboring\n"))
    with pytest.raises(DataError, match=r"e\.txt: file is empty"):
        read_rows(write(tmp_path / "e.txt", "\n\n"))


def test_from_texts() -> None:
    got = InputRows.from_texts(["a", "  ", "b"])
    assert (got.texts, got.rows, got.text_field) == (["a", "b"], [{"text": "a"}, {"text": "b"}], "text")
    assert got.skipped == [SkippedRow("text 2", "empty text")]
    with pytest.raises(DataError, match="<stdin>: no row could be read"):
        InputRows.from_texts([""], source="<stdin>")
