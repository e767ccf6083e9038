"""Loading files and folders: formats, field choice, validation messages and skip accounting."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attnkit.data import (
    DataError,
    LoadReport,
    TextExample,
    check_trainable,
    load_file_with_report,
    load_source,
    load_source_with_report,
)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


ROWS: list[dict[str, object]] = [
    {"text": "good film", "label": "pos", "rating": 9},
    {"text": "bad film", "label": "neg", "rating": 2},
    {"text": "Große Freude 😀", "label": "pos"},
]
EXPECTED = [
    TextExample("good film", "pos", 9),
    TextExample("bad film", "neg", 2),
    TextExample("Große Freude 😀", "pos", None),
]


def jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# ----------------------------------------------------------------------------------------------------
# Formats.


def test_jsonl_plain_and_gzip_and_json_array(tmp_path: Path) -> None:
    plain = write(tmp_path / "a.jsonl", jsonl(ROWS))
    gz = write(tmp_path / "a.jsonl.gz", gzip.compress(jsonl(ROWS).encode()))
    array = write(tmp_path / "a.json", json.dumps(ROWS, ensure_ascii=False))
    lines_as_json = write(tmp_path / "b.json", jsonl(ROWS))
    csv_gz = write(
        tmp_path / "c.csv.gz", gzip.compress(b"text,label,rating\ngood film,pos,9\nbad film,neg,2\n")
    )
    assert load_source(csv_gz) == EXPECTED[:2]
    for path in (plain, gz, array, lines_as_json):
        assert load_source(path) == EXPECTED, path


def test_jsonl_keeps_text_unchanged_and_splits_on_newline_only(tmp_path: Path) -> None:
    # A raw U+2028 inside a JSON string is legal; str.splitlines would cut the line there.
    rows = [{"text": "a\u2028b  ", "label": 1}, {"text": " x\ty ", "label": 0}]
    path = write(tmp_path / "u.jsonl", json.dumps(rows[0], ensure_ascii=False) + "\n\n" + json.dumps(rows[1]))
    examples, report = load_file_with_report(path)
    assert examples == [TextExample("a\u2028b  ", "1"), TextExample(" x\ty ", "0")]
    assert report.blank_lines == 1 and report.kept == 2


def test_csv_default_columns_int_labels_and_rating(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.csv",
        'id,Review,sentiment,rating\n1,"great, really",1,10\n2,"multi\nline",0,x\n3,meh,0,\n',
    )
    examples, report = load_file_with_report(path)
    assert examples == [
        TextExample("great, really", "1", 10),
        TextExample("multi\nline", "0", None),
        TextExample("meh", "0", None),
    ]
    assert report.invalid_rating == 1  # "x"; the empty rating is simply absent


def test_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "w.csv", b"\xef\xbb\xbftext,label\r\nhello,a\r\nworld,b\r\n")
    assert load_source(path) == [TextExample("hello", "a"), TextExample("world", "b")]


def test_tsv_has_no_quoting(tmp_path: Path) -> None:
    # GLUE-style TSV: quotes are literal characters, trailing spaces are kept.
    path = write(tmp_path / "s.tsv", 'sentence\tlabel\nhe said "hi" \t1\n"odd\t0\n')
    assert load_source(path) == [TextExample('he said "hi" ', "1"), TextExample('"odd', "0")]


def test_explicit_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "f.csv", "title,body,y\nT1,B1,a\nT2,B2,b\n")
    assert load_source(path, text_field="body", label_field="y") == [
        TextExample("B1", "a"),
        TextExample("B2", "b"),
    ]


def test_parquet(tmp_path: Path) -> None:
    table = pa.table({"content": ["one", "two", "  "], "class": [3, 4, 3], "rating": [1, None, 2]})
    pq.write_table(table, tmp_path / "p.parquet")
    examples, report = load_file_with_report(tmp_path / "p.parquet")
    assert examples == [TextExample("one", "3", 1), TextExample("two", "4", None)]
    assert (report.kept, report.empty_text) == (2, 1)


def test_parquet_non_string_text_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": [1, 2], "label": ["a", "b"]}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"n\.parquet: text column 'text' has type int64"):
        load_source(tmp_path / "n.parquet")


def test_label_directory_sorted_naturally(tmp_path: Path) -> None:
    write(tmp_path / "d" / "pos" / "10.txt", "ten")
    write(tmp_path / "d" / "pos" / "2.txt", "two")
    write(tmp_path / "d" / "neg" / "1.txt", "one")
    write(tmp_path / "d" / "neg" / "notes.md", "ignored")
    write(tmp_path / "d" / "README", "ignored too")
    examples, report = load_file_with_report(tmp_path / "d")
    assert examples == [TextExample("one", "neg"), TextExample("two", "pos"), TextExample("ten", "pos")]
    assert report.ignored_files == 2


def test_label_directory_errors(tmp_path: Path) -> None:
    write(tmp_path / "flat" / "a.txt", "x")
    with pytest.raises(DataError, match="no label subfolders"):
        load_source(tmp_path / "flat")
    (tmp_path / "nested" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(DataError, match=r"nested/train: no \.txt files"):
        load_source(tmp_path / "nested")
    write(tmp_path / "bad" / "pos" / "1.txt", b"ok\n\xff\n")
    with pytest.raises(DataError, match=r"bad/pos/1\.txt: line 2: invalid UTF-8 byte 0xff"):
        load_source(tmp_path / "bad")


# ----------------------------------------------------------------------------------------------------
# Validation.


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        load_source(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_file_with_report(tmp_path / "nope.csv")


@pytest.mark.parametrize("name", ["e.jsonl", "e.csv", "e.tsv", "e.json", "e.jsonl.gz"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    content = gzip.compress(b"") if name.endswith(".gz") else b"  \n"
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match=f"{name}: file is empty"):
        load_source(path)


def test_header_only_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"h\.csv: has a header but no data rows"):
        load_source(write(tmp_path / "h.csv", "text,label\n"))


def test_missing_column_lists_available(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "body,y\nx,1\n")
    with pytest.raises(
        DataError, match=r"c\.csv: header: no text column found .* available columns: 'body', 'y'"
    ):
        load_source(path)
    with pytest.raises(DataError, match=r"no label column 'lbl'; available columns: 'body', 'y'"):
        load_source(path, text_field="body", label_field="lbl")
    with pytest.raises(
        DataError,
        match=r"choose one with data\.text_field \(--set data\.text_field=NAME; predict and explain take "
        r"--text-field NAME\)$",
    ):
        load_source(path)
    semicolons = write(tmp_path / "s.csv", "text;label\nfine;1\n")
    with pytest.raises(
        DataError, match=r"the header 'text;label' looks separated by ';': a \.csv file needs commas"
    ):
        load_source(semicolons)
    jpath = write(tmp_path / "c.jsonl", jsonl([{"body": "x", "label": 1}]))
    with pytest.raises(DataError, match=r"c\.jsonl: line 1: no text column found .* 'body', 'label'"):
        load_source(jpath)


def test_undecodable_bytes_name_file_and_line(tmp_path: Path) -> None:
    data = jsonl(ROWS[:2]).encode() + b'{"text": "caf\xe9", "label": "x"}\n'
    with pytest.raises(DataError, match=r"x\.jsonl: line 3: invalid UTF-8 byte 0xe9"):
        load_source(write(tmp_path / "x.jsonl", data))
    with pytest.raises(DataError, match=r"x\.csv: line 2: invalid UTF-8 byte 0xe9"):
        load_source(write(tmp_path / "x.csv", b"text,label\ncaf\xe9,1\n"))


def test_invalid_json_line(tmp_path: Path) -> None:
    path = write(tmp_path / "j.jsonl", jsonl(ROWS[:2]) + '{"text": "x", "label": }\n')
    with pytest.raises(DataError, match=r"j\.jsonl: line 3: invalid JSON \(Expecting value at column 24\)"):
        load_source(path)
    with pytest.raises(DataError, match=r"k\.jsonl: line 1: expected a JSON object"):
        load_source(write(tmp_path / "k.jsonl", "[1, 2]\n"))


def test_ragged_csv_row(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "text,label\na,1\nb,1,extra\n")
    with pytest.raises(DataError, match=r"r\.csv: line 3: 3 fields but the header has 2"):
        load_source(path)
    # Trailing empty fields (spreadsheet exports) are fine.
    assert load_source(write(tmp_path / "t.csv", "text,label\na,1,,\n")) == [TextExample("a", "1")]


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"u\.xlsx: unsupported file type"):
        load_source(write(tmp_path / "u.xlsx", "x"))


def test_not_gzip(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"g\.jsonl\.gz: not a valid gzip file"):
        load_source(write(tmp_path / "g.jsonl.gz", "plain text"))


def test_multilabel_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"m\.jsonl: line 1: label is list"):
        load_source(write(tmp_path / "m.jsonl", jsonl([{"text": "x", "label": ["a", "b"]}])))


def test_non_string_text_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"n\.jsonl: line 2: field 'text' is int"):
        load_source(write(tmp_path / "n.jsonl", jsonl([{"text": "x", "label": 1}, {"text": 5, "label": 1}])))


# ----------------------------------------------------------------------------------------------------
# Skips are counted and logged, never silent.


def test_skips_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows: list[dict[str, object]] = [
        {"text": "kept", "label": "a"},
        {"text": "", "label": "a"},
        {"text": "  \n\t", "label": "b"},
        {"label": "b"},
        {"text": "no label"},
        {"text": "null label", "label": None},
        {"text": "blank label", "label": " "},
        {"text": "also kept", "label": "b "},
        {"text": "", "label": None},  # both problems: counted once, as empty text
    ]
    path = write(tmp_path / "s.jsonl", jsonl(rows))
    with caplog.at_level(logging.WARNING, logger="attnkit.data.text.sources"):
        examples, report = load_source_with_report(path)
    assert examples == [TextExample("kept", "a"), TextExample("also kept", "b")]
    assert (report.kept, report.empty_text, report.missing_label, report.skipped) == (2, 4, 3, 7)
    assert report.skipped_by_reason() == {"empty text": 4, "missing label": 3}
    message = f"skipped 7 rows of {path} (kept 2): 4 empty text, 3 missing label"
    assert report.summary() == message
    assert [r.getMessage() for r in caplog.records] == [message]


def test_csv_skips(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "text,label\nfine,1\n,1\n   ,0\nno label,\nfine too,0\n")
    examples, report = load_file_with_report(path)
    assert [e.text for e in examples] == ["fine", "fine too"]
    assert report.to_dict() == {
        "source": str(path),
        "kept": 2,
        "empty_text": 2,
        "missing_label": 1,
        "invalid_rating": 0,
        "blank_lines": 0,
        "ignored_files": 0,
        "skipped": 3,
    }


def test_all_rows_skipped_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", jsonl([{"text": " ", "label": 1}, {"text": "x"}]))
    with pytest.raises(
        DataError, match=r"every row was skipped \(skipped 2 rows .*1 empty text, 1 missing label"
    ):
        load_source(path)


# ----------------------------------------------------------------------------------------------------
# Dispatch and trainability.


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"imbd: no such file or directory, and not a built-in dataset \(imdb, "
    ):
        load_source("imbd")


def test_split_with_a_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", jsonl(ROWS))
    with pytest.raises(DataError, match="only applies to built-in datasets"):
        load_source(path, split="test")


def test_existing_path_wins_over_builtin_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "mr" / "pos" / "1.txt", "mine")
    write(tmp_path / "mr" / "neg" / "1.txt", "also mine")
    monkeypatch.chdir(tmp_path)
    assert load_source("mr") == [TextExample("also mine", "neg"), TextExample("mine", "pos")]


def test_check_trainable() -> None:
    assert check_trainable([TextExample("a", "y"), TextExample("b", "x")], "src") == ["x", "y"]
    with pytest.raises(DataError, match="src: no examples to train on"):
        check_trainable([], "src")
    with pytest.raises(
        DataError, match=r"src: found only the label 'pos' in 2 examples; .* at least 2 classes"
    ):
        check_trainable([TextExample("a", "pos"), TextExample("b", "pos")], "src")


def test_load_report_summary_without_skips() -> None:
    assert LoadReport(source="x", kept=3).summary() == "kept all 3 rows of x"


# ----------------------------------------------------------------------------------------------------
# Labels: classes only, one kind per file, the same names whatever the format.


def examples_with(labels: list[str]) -> list[TextExample]:
    return [TextExample(f"text {i}", label) for i, label in enumerate(labels)]


def test_fractional_labels_are_refused_as_regression() -> None:
    labels = ["1.25", "3.5", "2", "4.75"] * 5
    with pytest.raises(
        DataError, match=r"src: the labels look like a regression target \(3 of the 4 distinct labels are "
        r"fractional numbers: 1\.25, 3\.5, 4\.75\); attnkit trains classifiers: bin the values"
    ):  # fmt: skip
        check_trainable(examples_with(labels), "src")


def test_many_distinct_integers_are_refused_but_ratings_are_classes() -> None:
    prices = [str(100 + 7 * i) for i in range(200)] * 2  # 200 values, 2 examples each
    with pytest.raises(
        DataError, match=r"regression target \(200 distinct integer labels for 400 examples, 2\.0"
    ):
        check_trainable(examples_with(prices), "src")
    stars = [str(i % 11) for i in range(55)]  # 0..10 star ratings, 5 examples each: classes
    assert check_trainable(examples_with(stars), "src") == [str(i) for i in range(11)]
    many_classes = [str(i % 30) for i in range(300)]  # 30 integer classes, 10 examples each: classes
    assert len(check_trainable(examples_with(many_classes), "src")) == 30
    assert check_trainable(examples_with(["-1", "0", "1"]), "src") == ["-1", "0", "1"]


def test_train_refuses_regression_labels_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from attnkit.cli import main

    rows: list[dict[str, object]] = [{"text": f"review {i}", "label": 1 + (i % 8) / 4} for i in range(40)]
    path = write(tmp_path / "reg.jsonl", jsonl(rows))
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reg.jsonl: the labels look like a regression target" in err


def test_mixed_number_and_string_labels_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "mix.jsonl", jsonl([{"text": "a", "label": "pos"}, {"text": "b", "label": 1}]))
    with pytest.raises(
        DataError,
        match=r"mix\.jsonl: the labels mix numbers and strings, e\.g\. 1 \(line 2\) and 'pos' \(line 1\)",
    ):
        load_source(path)
    booleans = write(
        tmp_path / "b.jsonl", jsonl([{"text": "a", "label": True}, {"text": "b", "label": "no"}])
    )
    with pytest.raises(DataError, match=r"b\.jsonl: the labels mix booleans and strings"):
        load_source(booleans)
    # In CSV every cell is a string: "1" beside "pos" are two class names, not a type mixture.
    csv_path = write(tmp_path / "m.csv", "text,label\na,pos\nb,1\n")
    assert [e.label for e in load_source(csv_path)] == ["pos", "1"]


def test_integer_labels_have_one_name_in_every_format(tmp_path: Path) -> None:
    # 1, 1.0, "1" and "1.0" (a pandas float column written to CSV) are all the class "1", so a run trained on
    # one format evaluates on another.
    expected = ["1", "0", "1", "0"]
    sources = [
        write(
            tmp_path / "a.jsonl",
            jsonl([{"text": t, "label": y} for t, y in zip("abcd", [1, 0, 1.0, "0"], strict=True)]),
        ),
        write(tmp_path / "b.csv", "text,label\na,1.0\nb,0\nc, 1 \nd,0.00\n"),
        write(tmp_path / "c.tsv", "text\tlabel\na\t+1\nb\t-0\nc\t1.\nd\t0\n"),
    ]
    pq.write_table(pa.table({"text": list("abcd"), "label": [1.0, 0.0, 1.0, 0.0]}), tmp_path / "d.parquet")
    for source in [*sources, tmp_path / "d.parquet"]:
        assert [e.label for e in load_source(source)] == expected, source
    # Fractional numbers keep their spelling (and are refused for training as shown above).
    assert [e.label for e in load_source(write(tmp_path / "f.csv", "text,label\na,1.50\n"))] == ["1.50"]
    # Zero-padded codes are names, not numbers in another spelling.
    assert [e.label for e in load_source(write(tmp_path / "z.csv", "text,label\na,007\nb,0\n"))] == [
        "007",
        "0",
    ]
