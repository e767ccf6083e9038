"""Dataset inspection report and its text rendering."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from attnkit.data import DataError, TextExample, format_report, inspect_examples, inspect_source
from attnkit.data.text.inspect import duplicate_stats, length_stats

TRAIN = [
    TextExample("a b c", "pos"),  # 5 chars, 3 tokens
    TextExample("a b c ", "neg"),  # duplicate after strip, other label
    TextExample("hello", "pos"),
    TextExample("hello", "pos"),
    TextExample("hello", "pos"),
    TextExample("unique text here now", "neg"),
]
TEST = [TextExample("hello ", "pos"), TextExample("new", "neg"), TextExample("a b c", "neg")]


def test_length_stats_hand_computed() -> None:
    # p95 interpolates linearly: position 0.95 * 4 = 3.8, so 4 + 0.8 * (100 - 4) = 80.8.
    expected = {"min": 1.0, "mean": 22.0, "median": 3.0, "p95": 80.8, "max": 100.0}
    assert length_stats([1, 2, 3, 4, 100]) == pytest.approx(expected)
    assert length_stats([]) == {"min": 0.0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}


def test_duplicate_stats() -> None:
    # "a b c" x2 (conflicting labels) and "hello" x3: 3 repeated rows, 2 duplicated texts, 1 conflicting.
    assert duplicate_stats(TRAIN) == {"rows": 3, "distinct_texts": 2, "conflicting_labels": 1}


def test_inspect_examples() -> None:
    report = inspect_examples({"train": TRAIN, "test": TEST})
    train = report["splits"]["train"]
    assert train["rows"] == 6 and train["labels"] == {"neg": 2, "pos": 4}
    assert train["chars"]["min"] == 5 and train["chars"]["max"] == 20
    assert train["tokens"] == length_stats([3, 3, 1, 1, 1, 4])
    assert report["splits"]["test"]["duplicates"] == {"rows": 0, "distinct_texts": 0, "conflicting_labels": 0}
    assert report["overlap"] == [{"a": "train", "b": "test", "shared_texts": 2}]  # "hello" and "a b c"
    json.dumps(report)  # serializable for --json


def test_format_report() -> None:
    text = format_report(inspect_examples({"train": TRAIN, "test": TEST}))
    lines = text.splitlines()
    assert lines[0].split() == ["split", "rows", "skipped", "classes"]
    assert lines[2].split() == ["train", "6", "0", "2"]
    assert "label  train  test" in text
    assert any(line.split() == ["train", "3", "2", "1"] for line in lines)  # duplicates table
    assert any(line.split() == ["train", "&", "test", "2"] for line in lines)  # overlap table


def write_gz(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))


def test_inspect_source_builtin_with_missing_split(tmp_path: Path) -> None:
    write_gz(tmp_path / "ag_news" / "test.jsonl.gz", [{"text": "t d", "label": "World"}] * 2)
    one = inspect_source("ag_news:test", data_dir=str(tmp_path), allow_download=False)
    assert list(one["splits"]) == ["test"] and one["missing"] == {}
    report = inspect_source("ag_news", data_dir=str(tmp_path), allow_download=False)
    assert list(report["splits"]) == ["test"]
    assert report["splits"]["test"]["duplicates"]["rows"] == 1
    assert report["missing"]["train"].startswith("ag_news:train is not available: downloads are disabled")
    assert "split train not inspected" in format_report(report)
    with pytest.raises(DataError, match="ag_news: no split is available"):
        inspect_source("ag_news", data_dir=str(tmp_path / "empty"), allow_download=False)


def test_inspect_source_file_with_test(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("text,label\nx,1\ny,0\n,1\n", encoding="utf-8")
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "x", "label": 1}\n', encoding="utf-8")
    report = inspect_source(str(train), test=str(test))
    assert report["load"]["train"]["skipped"] == 1 and report["load"]["train"]["empty_text"] == 1
    assert report["overlap"] == [{"a": "train", "b": "test", "shared_texts": 1}]
    assert report["test_source"] == str(test)
    with pytest.raises(DataError, match="already has a test split"):
        inspect_source("embedded", test=str(test))


def test_inspect_source_embedded() -> None:
    report = inspect_source("embedded")
    assert [o["shared_texts"] for o in report["overlap"]] == [0, 0, 0]
    assert {name: s["rows"] for name, s in report["splits"].items()} == {
        "train": 13891,
        "val": 1736,
        "test": 1736,
    }
