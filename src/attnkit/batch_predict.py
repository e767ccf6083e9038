"""Predict every row of a file and write the rows back with their predictions (``attnkit predict --file``).

The input is read by :func:`attnkit.data.text.sources.read_rows` (the parsers ``train`` and ``evaluate`` use), so a
CSV header is a header, a quoted multi-line field is one text and a label column is kept but never classified.
The output keeps every input column and adds ``predicted_label`` and one ``prob_<label>`` column per class
(in the run's label order), one row per readable input row, in input order.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnkit.atomic import atomic_write
from attnkit.data.text.sources import InputRows, read_rows

if TYPE_CHECKING:
    from attnkit.predictor import Prediction, Predictor

logger = logging.getLogger(__name__)

#: The column of the predicted label.
PREDICTED_LABEL = "predicted_label"
#: Prefix of the probability columns: ``prob_<label>``.
PROBABILITY_PREFIX = "prob_"
#: Output formats, chosen by the output file's suffix.
OUTPUT_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl", ".parquet")


@dataclass
class BatchPredictions:
    """The predictions of a batch of input rows.

    Attributes:
        inputs: the rows read, with every original column.
        predictions: one per row of ``inputs.rows``, in the same order.
        label_column: the name of the predicted-label column (``predicted_label`` unless an input column
            already has that name; see :func:`output_columns`).
        probability_columns: class label -> the name of its probability column, in the run's label order.
    """

    inputs: InputRows
    predictions: list[Prediction]
    label_column: str
    probability_columns: dict[str, str]

    @property
    def columns(self) -> list[str]:
        """Output columns: the input columns, the predicted label, then one probability per class."""
        return [*self.inputs.columns, self.label_column, *self.probability_columns.values()]

    def output_rows(self) -> list[dict[str, Any]]:
        """Each input row (its own columns, unchanged) with the predicted label and probabilities added."""
        out = []
        for row, prediction in zip(self.inputs.rows, self.predictions, strict=True):
            added: dict[str, Any] = {self.label_column: prediction.label}
            for label, column in self.probability_columns.items():
                added[column] = prediction.probabilities[label]
            out.append({**row, **added})
        return out


def output_columns(input_columns: list[str], labels: list[str]) -> tuple[str, dict[str, str]]:
    """Names of the predicted-label and probability columns that no input column already uses.

    ``predicted_label`` and ``prob_<label>``; if any of them is taken (e.g. predicting a file written by an
    earlier prediction), all of them get the first free suffix ``_2``, ``_3``, ... so they stay together.

    Returns:
        ``(label_column, {label: probability_column})``.
    """
    taken = set(input_columns)
    for attempt in itertools.count(1):
        suffix = "" if attempt == 1 else f"_{attempt}"
        label_column = PREDICTED_LABEL + suffix
        probabilities = {label: f"{PROBABILITY_PREFIX}{label}{suffix}" for label in labels}
        if label_column not in taken and taken.isdisjoint(probabilities.values()):
            break
    if suffix:
        logger.warning(
            "the input already has columns named like the predictions; writing %r and %s",
            label_column,
            ", ".join(repr(c) for c in probabilities.values()),
        )
    return label_column, probabilities


def check_output_path(out: str | os.PathLike[str]) -> Path:
    """``out`` as a path, checked before any work is done.

    Raises:
        ValueError: the suffix is not one of :data:`OUTPUT_SUFFIXES`, or ``out`` is a directory.
    """
    path = Path(out).expanduser()
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"--out {path}: the output format comes from the suffix: use {', '.join(OUTPUT_SUFFIXES)}"
        )
    if path.is_dir():
        raise ValueError(f"--out {path}: is a directory; give a file name")
    return path


def predict_rows(predictor: Predictor, inputs: InputRows, *, batch_size: int = 64) -> BatchPredictions:
    """Predict the text of every row of ``inputs`` (see :meth:`Predictor.predict`)."""
    label_column, probability_columns = output_columns(inputs.columns, list(predictor.labels))
    predictions = predictor.predict(inputs.texts, batch_size=batch_size)
    return BatchPredictions(inputs, predictions, label_column, probability_columns)


def _cell(value: Any) -> str:
    """A value as one CSV cell: strings unchanged, ``None`` empty, nested JSON values as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def _write_parquet(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for column in columns:
        try:
            arrays[column] = pa.array([row.get(column) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(
                f"--out {path.name}: column {column!r} mixes value types that Parquet cannot store in one "
                f"column ({e}); write .jsonl or .csv instead"
            ) from None
    pq.write_table(pa.table(arrays), path)


def write_predictions(batch: BatchPredictions, out: str | os.PathLike[str]) -> Path:
    """Write ``batch`` to ``out`` (atomically), in the format of its suffix: ``.csv``, ``.jsonl`` or ``.parquet``.

    CSV cells are strings (nested JSON values as JSON, missing values empty); JSON Lines keeps each row's
    own keys and value types; Parquet infers one type per column.

    Returns:
        The path written.
    """
    path = check_output_path(out)
    columns, rows = batch.columns, batch.output_rows()
    suffix = path.suffix.lower()
    if suffix == ".csv":
        atomic_write(path, lambda tmp: _write_csv(tmp, columns, rows))
    elif suffix == ".jsonl":
        atomic_write(path, lambda tmp: _write_jsonl(tmp, rows))
    else:
        atomic_write(path, lambda tmp: _write_parquet(tmp, columns, rows))
    return path


def predict_file(
    predictor: Predictor,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    text_field: str | None = None,
    batch_size: int = 64,
) -> BatchPredictions:
    """Read ``source`` with :func:`read_rows`, predict every readable row and optionally write the result.

    Args:
        predictor: the trained run.
        source: a CSV/TSV (with a header), JSON Lines, ``.json``, Parquet or plain-text file, or a folder of
            ``.txt`` files.
        out: where to write the rows with their predictions (``.csv``, ``.jsonl``, ``.parquet``); ``None``
            writes nothing.
        text_field: the text column; default: the run's ``data.text_field``, else the usual auto-detection.
        batch_size: texts per model call.

    Returns:
        The predictions; rows that could not be read are in ``result.inputs.skipped`` (not predicted, not
        written), for the caller to report.

    Raises:
        DataError: the source cannot be read (see :func:`read_rows`).
        ValueError: an unsupported output suffix (checked before reading).
    """
    if out is not None:
        check_output_path(out)
    inputs = read_rows(source, text_field=text_field or predictor.config.data.text_field)
    batch = predict_rows(predictor, inputs, batch_size=batch_size)
    if out is not None:
        write_predictions(batch, out)
    return batch


#: The column that names each image file in image predictions.
FILE_COLUMN = "file"


def image_files(paths: list[str]) -> list[Path]:
    """The image files of ``paths``: files as given, folders searched recursively (image suffixes, natural order).

    Raises:
        ValueError: a path does not exist, or a folder holds no image file.
    """
    from attnkit.data.vision import IMAGE_SUFFIXES
    from attnkit.data.vision.folder import natural_key

    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            inside = sorted(
                (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                key=lambda p: natural_key(str(p.relative_to(path))),
            )
            if not inside:
                raise ValueError(
                    f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder"
                )
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return found


def predict_images(predictor: Predictor, paths: list[str], *, batch_size: int = 64) -> BatchPredictions:
    """Predict every image file of ``paths`` (see :func:`image_files`); unreadable images are skipped and listed.

    Each image is decoded and resized as the run's training images were (:meth:`ImageClassificationTask.to_array`);
    the rows have one column, ``file``.
    """
    from attnkit.data.errors import DataError
    from attnkit.data.text.files import SkippedRow

    files = image_files(paths)
    to_array = getattr(predictor.task, "to_array")  # noqa: B009 - image tasks only
    rows: list[dict[str, Any]] = []
    arrays = []
    skipped: list[SkippedRow] = []
    for path in files:
        try:
            arrays.append(to_array(path.read_bytes()))
        except (DataError, OSError) as err:
            skipped.append(SkippedRow(str(path), str(err).split(": ", 1)[-1]))
            continue
        rows.append({FILE_COLUMN: str(path)})
    source = paths[0] if len(paths) == 1 else "<arguments>"
    inputs = InputRows(source, FILE_COLUMN, rows, [row[FILE_COLUMN] for row in rows], [], skipped)
    label_column, probability_columns = output_columns(
        inputs.columns or [FILE_COLUMN], list(predictor.labels)
    )
    probabilities = predictor.predict_proba(arrays, batch_size=batch_size)  # (N, C)
    predictions = [
        predictor.prediction(row[FILE_COLUMN], p) for row, p in zip(rows, probabilities, strict=True)
    ]
    return BatchPredictions(inputs, predictions, label_column, probability_columns)
