"""Batch prediction: ``predict --file`` reads files like training does, ``--out`` writes the rows back with their
predictions; ``explain --out`` names every file it writes."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from attnkit.batch_predict import output_columns, predict_file
from attnkit.cli import main
from attnkit.predictor import Predictor

TrainedRuns = Callable[..., Path]
N = 12


@pytest.fixture(scope="module")
def run(trained_run: TrainedRuns) -> Path:
    return trained_run("bag-attn")


@pytest.fixture(scope="module")
def predictor(run: Path) -> Predictor:
    return Predictor(run)


def input_rows() -> list[dict[str, Any]]:
    """N rows with an id, a label column and texts holding newlines, commas and quotes."""
    cues = ["great", "awful", "wonderful", "boring"]
    rows = []
    for i in range(N):
        text = f"the film was {cues[i % 4]} and the plot {i}."
        if i % 3 == 0:
            text = text.replace(" ", '\n"quoted", ', 1)
        rows.append({"id": i, "review": text, "label": "pos" if i % 2 == 0 else "neg"})
    return rows


def write_input(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` in the format of ``path``'s suffix, written by the reference encoders (csv, json, pyarrow)."""
    if path.suffix == ".csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(out.getvalue(), encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return pq.read_table(path).to_pylist()


def test_predict_file_prints_one_line_per_row_in_order(
    run: Path, predictor: Predictor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = input_rows()
    path = write_input(tmp_path / "in.csv", rows)
    assert path.read_text().count("\n") > N + 1  # the multi-line fields span several physical lines
    assert main(["predict", str(run), "--file", str(path)]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    texts = [r["review"] for r in rows]
    assert [line["text"] for line in lines] == texts  # the header is not a text, the label column is not read
    reference = predictor.predict(texts)
    assert [line["label"] for line in lines] == [p.label for p in reference]
    assert [line["probabilities"] for line in lines] == [p.probabilities for p in reference]
    assert captured.err == ""


@pytest.mark.parametrize("source", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("target", ["csv", "jsonl", "parquet"])
def test_out_round_trip(
    run: Path,
    predictor: Predictor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    source: str,
    target: str,
) -> None:
    rows = input_rows()
    path = write_input(tmp_path / f"in.{source}", rows)
    out = tmp_path / f"out.{target}"
    assert main(["predict", str(run), "--file", str(path), "--out", str(out)]) == 0
    assert capsys.readouterr().err.strip() == f"wrote {out} ({N} rows)"
    got = read_output(out)
    labels = predictor.labels
    assert list(got[0]) == ["id", "review", "label", "predicted_label", *(f"prob_{y}" for y in labels)]
    # Input columns untouched (CSV in or out: every cell is a string), in input order.
    as_text = source == "csv" or target == "csv"
    for want, have in zip(rows, got, strict=True):
        for column in ("id", "review", "label"):
            assert have[column] == (str(want[column]) if as_text else want[column])
    texts = [r["review"] for r in rows]
    probabilities = torch.tensor([[float(r[f"prob_{y}"]) for y in labels] for r in got])
    torch.testing.assert_close(probabilities, predictor.predict_proba(texts), atol=1e-6, rtol=0)
    assert [r["predicted_label"] for r in got] == [
        labels[i] for i in predictor.predict_proba(texts).argmax(1)
    ]


def test_skipped_rows_are_reported_and_left_out(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ['{"text": "a great film"}', "not json", '{"text": ""}', '{"text": "an awful film", "label": 3}']
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(run), "--file", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"attnkit predict: skipped 2 of 4 rows of {path}: line 2 (invalid JSON (Expecting value at column 1)), "
        "line 3 (empty text)"
    )
    assert err[1] == f"wrote {out} (2 rows)"
    got = read_output(out)
    assert [(r["text"], r.get("label")) for r in got] == [("a great film", None), ("an awful film", 3)]


def test_column_names_never_collide(predictor: Predictor, tmp_path: Path) -> None:
    labels = predictor.labels
    assert output_columns(["text"], labels) == ("predicted_label", {y: f"prob_{y}" for y in labels})
    taken = ["text", "predicted_label", f"prob_{labels[0]}_2"]
    assert output_columns(taken, labels) == ("predicted_label_3", {y: f"prob_{y}_3" for y in labels})
    # Predicting the output of an earlier prediction keeps both sets of columns.
    first = tmp_path / "first.csv"
    predict_file(predictor, write_input(tmp_path / "in.csv", input_rows()), first)
    second = predict_file(predictor, first, tmp_path / "second.csv")
    assert second.label_column == "predicted_label_2"
    got = read_output(tmp_path / "second.csv")
    assert [r["predicted_label"] for r in got] == [r["predicted_label_2"] for r in got]


def test_text_column_comes_from_the_flag(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "in.csv"
    path.write_text("title,body\nignored,a great film\nalso ignored,an awful film\n", encoding="utf-8")
    assert main(["predict", str(run), "--file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no text column found" in err and "'title', 'body'" in err
    assert main(["predict", str(run), "--file", str(path), "--text-field", "body"]) == 0
    assert [json.loads(x)["text"] for x in capsys.readouterr().out.splitlines()] == [
        "a great film",
        "an awful film",
    ]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"text\ngood\ncaf\xe9\n", [], r"in\.csv: line 3: invalid UTF-8 byte 0xe9"),
        (b"text\ngood\n", ["--out", "p.xlsx"], r"--out p\.xlsx: the output format comes from the suffix"),
        (b"text\ngood\n", ["extra text"], "not both"),
        (b"text\n\n", [], r"in\.csv: has a header but no data rows"),
    ],
    ids=["invalid-utf8", "out-suffix", "file-and-texts", "no-rows"],
)
def test_predict_errors_are_one_line(
    run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    args: list[str],
    message: str,
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    assert main(["predict", str(run), *args, "--file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(message, err), err


def test_predict_refuses_to_overwrite_its_input(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_input(tmp_path / "in.csv", input_rows())
    before = path.read_bytes()
    assert main(["predict", str(run), "--file", str(path), "--out", str(path)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_explain_file_uses_the_reader_and_png_prints_every_path(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = input_rows()[:2]
    path = write_input(tmp_path / "in.csv", rows)
    assert main(["explain", str(run), "--file", str(path), "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [item["text"] for item in payload] == [r["review"] for r in rows]

    out = tmp_path / "why.png"
    assert main(["explain", str(run), "--file", str(path), "--format", "png", "--out", str(out)]) == 0
    written = [tmp_path / "why-0.png", tmp_path / "why-1.png"]
    assert capsys.readouterr().err.splitlines() == [f"wrote {p}" for p in written]
    assert all(p.stat().st_size > 1_000 for p in written) and not out.exists()
