"""Predict every row of a file, or every input file of an image or audio run, and write the rows back with their
predictions (``attnkit predict``).

The input is read by :func:`attnkit.data.text.sources.read_rows` (the parsers ``train`` and ``evaluate`` use), so a
CSV header is a header, a quoted multi-line field is one text and a label column is kept but never classified.
The output keeps every input column and adds ``predicted_label`` and one ``prob_<label>`` column per class
(in the run's label order), one row per readable input row, in input order. For runs whose inputs are files
(``Task.input_suffixes``: images, recordings) the rows are the files, with one column ``file``
(:func:`predict_files`); a file that cannot be decoded is skipped and listed, like an unreadable row.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnkit.atomic import atomic_write
from attnkit.data.text.sources import InputRows, read_rows

if TYPE_CHECKING:
    from attnkit.data.text.files import SkippedRow
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


#: The column that names each input file in file predictions (images, recordings).
FILE_COLUMN = "file"


def input_files(paths: list[str], suffixes: Iterable[str], kind: str = "input") -> list[Path]:
    """The input files of ``paths``: files as given, folders searched recursively for ``suffixes`` (lower-case,
    with the dot; matched case-insensitively), in natural order. Inside a folder, hidden entries (a name that
    starts with ``.``: ``.DS_Store``, macOS's ``._photo.png`` copies, ``.cache/``) are skipped, as training
    skips them.

    Raises:
        ValueError: a path does not exist, or a folder holds no file with one of ``suffixes`` (the message calls
            them ``kind`` files: ``image``, ``audio``).
    """
    from attnkit.data.vision.folder import natural_key

    wanted = frozenset(suffixes)
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            inside = sorted(
                (
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in wanted
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                ),
                key=lambda p: natural_key(str(p.relative_to(path))),
            )
            if not inside:
                raise ValueError(f"{path}: no {kind} files ({', '.join(sorted(wanted))}) in this folder")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return found


def image_files(paths: list[str]) -> list[Path]:
    """The image files of ``paths`` (:func:`input_files` with the image suffixes)."""
    from attnkit.data.vision import IMAGE_SUFFIXES

    return input_files(paths, IMAGE_SUFFIXES, "image")


def run_input_files(predictor: Predictor, paths: list[str]) -> list[Path]:
    """The files of ``paths`` the run's task reads its raw inputs from (its ``input_suffixes``).

    Raises:
        ValueError: the run classifies texts (they are not read from files this way), a path does not exist, or
            a folder holds no such file.
    """
    suffixes = predictor.task.input_suffixes
    if suffixes is None:
        raise ValueError(
            f"{predictor.run_dir} is a {predictor.modality} run: its inputs are texts, not files"
        )
    return input_files(paths, suffixes, predictor.modality)


def _skip_reason(err: Exception) -> str:
    """The reason of a decoding error without the name it starts with (``recording 0: empty`` -> ``empty``)."""
    if isinstance(err, OSError):
        return f"cannot be read ({err.strerror or type(err).__name__})"
    return str(err).split(": ", 1)[-1]


def read_input_files(
    predictor: Predictor, paths: list[str]
) -> tuple[list[bytes], list[str], list[SkippedRow]]:
    """Read the input files of ``paths`` (:func:`run_input_files`), each checked by encoding it as the run's task
    encodes raw inputs; a file that cannot be read or decoded is skipped and listed.

    Returns:
        ``(contents, names, skipped)``: the bytes of each readable file, its path as given, and the skipped files
        (location = path, reason) in input order.
    """
    from attnkit.data.text.files import SkippedRow

    contents: list[bytes] = []
    names: list[str] = []
    skipped: list[SkippedRow] = []
    for path in run_input_files(predictor, paths):
        try:
            data = path.read_bytes()
            predictor.task.encode_inputs([data])  # decoded as the training inputs were
        except (
            ValueError,
            OSError,
        ) as err:  # a DataError names the reason; OSError a permission, a folder...
            skipped.append(SkippedRow(str(path), _skip_reason(err)))
            continue
        contents.append(data)
        names.append(str(path))
    return contents, names, skipped


def predict_files(predictor: Predictor, paths: list[str], *, batch_size: int = 64) -> BatchPredictions:
    """Predict every input file of ``paths`` (:func:`run_input_files`: images of an image run, recordings of an
    audio run); files that cannot be read or decoded are skipped and listed in ``result.inputs.skipped``.

    Each file is decoded as the run's training inputs were (:meth:`Task.encode_inputs` on its bytes); the rows
    have one column, ``file``, in input order.
    """
    import torch

    from attnkit.data.text.files import SkippedRow

    files = run_input_files(predictor, paths)
    rows: list[dict[str, Any]] = []
    parts: list[Any] = []  # (b, C) probabilities of each chunk's readable files
    skipped: list[SkippedRow] = []
    for start in range(0, len(files), batch_size):
        readable: list[tuple[Path, bytes]] = []
        for path in files[start : start + batch_size]:
            try:
                readable.append((path, path.read_bytes()))
            except OSError as err:
                skipped.append(SkippedRow(str(path), _skip_reason(err)))
        if not readable:
            continue
        try:  # the whole chunk at once; only when a file of it is bad, one by one to find it
            parts.append(predictor.predict_proba([data for _, data in readable], batch_size=batch_size))
            rows += [{FILE_COLUMN: str(path)} for path, _ in readable]
        except ValueError:
            for path, data in readable:
                try:
                    parts.append(predictor.predict_proba([data], batch_size=1))
                except ValueError as err:
                    skipped.append(SkippedRow(str(path), _skip_reason(err)))
                    continue
                rows.append({FILE_COLUMN: str(path)})
    order = {str(path): i for i, path in enumerate(files)}
    skipped.sort(key=lambda s: order.get(s.location, 0))
    source = paths[0] if len(paths) == 1 else "<arguments>"
    inputs = InputRows(source, FILE_COLUMN, rows, [row[FILE_COLUMN] for row in rows], [], skipped)
    label_column, probability_columns = output_columns([FILE_COLUMN], list(predictor.labels))
    probabilities = torch.cat(parts) if parts else torch.zeros(0, len(predictor.labels))  # (N, C)
    predictions = [
        predictor.prediction(row[FILE_COLUMN], p) for row, p in zip(rows, probabilities, strict=True)
    ]
    return BatchPredictions(inputs, predictions, label_column, probability_columns)


def predict_images(predictor: Predictor, paths: list[str], *, batch_size: int = 64) -> BatchPredictions:
    """Predict every image file of ``paths``: :func:`predict_files` (its name for image runs)."""
    return predict_files(predictor, paths, batch_size=batch_size)
