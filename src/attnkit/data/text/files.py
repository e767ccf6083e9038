"""Read labelled texts from files and folders into :class:`TextExample` lists, and unlabelled input rows.

Supported files (:func:`load_file_with_report`; :mod:`attnkit.data.text.sources` adds the built-in names):

- JSON Lines (``.jsonl``, ``.jsonl.gz``), ``.json`` (JSON Lines, or one JSON array of objects);
- ``.csv`` / ``.tsv`` with a header row (optionally ``.gz``);
- ``.parquet``;
- a directory with one subfolder per label holding ``.txt`` files (one example per file).

Rows whose text is empty or whitespace, or whose label is missing, are skipped; every skip is counted in a
:class:`LoadReport` and logged as a warning, so nothing is dropped silently. Everything else that is wrong
(a missing file or column, bytes that are not UTF-8, a line that is not JSON) raises :class:`DataError` naming
the file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from attnkit.data.errors import DataError
from attnkit.data.labels import label_name as label_name
from attnkit.data.labels import label_to_str as _label_to_str

logger = logging.getLogger(__name__)

#: Default text column: the first of these present in the file.
TEXT_FIELD_CANDIDATES: tuple[str, ...] = ("text", "sentence", "review", "content", "document")
#: Default label column: the first of these present in the file.
LABEL_FIELD_CANDIDATES: tuple[str, ...] = ("label", "labels", "class", "category", "sentiment", "target")
#: Optional integer column copied into :attr:`TextExample.rating` when present.
RATING_FIELD = "rating"

FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".csv.gz", ".tsv")
FILE_SUFFIXES += (".tsv.gz", ".parquet")

# csv's default field limit (128 KiB) is too small for long documents; raised only while reading.
_CSV_FIELD_LIMIT = 1 << 30


@dataclass(frozen=True)
class TextExample:
    """One labelled text.

    Attributes:
        text: the text as stored in the source (not stripped or cleaned).
        label: the class name as a string (integer labels become ``"0"``, ``"1"``, ...). Unlabelled built-in
            splits (``imdb:unsup``) use ``""``.
        rating: an integer rating when the source has one (IMDb stars), else ``None``.
    """

    text: str
    label: str
    rating: int | None = None


@dataclass
class LoadReport:
    """What happened while loading one source.

    Attributes:
        source: the file, folder or built-in name that was loaded.
        kept: rows returned.
        empty_text: rows skipped because the text was missing, empty or only whitespace.
        missing_label: rows skipped because the label was missing or empty (a row with both problems counts
            as ``empty_text``).
        invalid_rating: kept rows whose rating column held something other than an integer (rating set to
            ``None``).
        blank_lines: blank lines in line-based files (not rows, not counted as skipped).
        ignored_files: files in a label directory that are not ``.txt`` (or sit outside the label folders).
    """

    source: str
    kept: int = 0
    empty_text: int = 0
    missing_label: int = 0
    invalid_rating: int = 0
    blank_lines: int = 0
    ignored_files: int = 0

    @property
    def skipped(self) -> int:
        """Rows skipped for any reason."""
        return self.empty_text + self.missing_label

    @property
    def total(self) -> int:
        """Rows seen: kept plus skipped."""
        return self.kept + self.skipped

    def skipped_by_reason(self) -> dict[str, int]:
        """Non-zero skip counts keyed by reason, e.g. ``{"empty text": 2, "missing label": 1}``."""
        reasons = {"empty text": self.empty_text, "missing label": self.missing_label}
        return {reason: n for reason, n in reasons.items() if n}

    def summary(self) -> str:
        """One line, e.g. ``skipped 3 rows of data.csv (kept 97): 2 empty text, 1 missing label``."""
        if not self.skipped:
            return f"kept all {self.kept} rows of {self.source}"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason().items())
        return f"skipped {self.skipped} rows of {self.source} (kept {self.kept}): {reasons}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable fields plus ``skipped``."""
        return {**asdict(self), "skipped": self.skipped}


class _Collector:
    """Turns raw (text, label, rating) values into examples, counting what it skips."""

    def __init__(self, source: str, *, require_label: bool = True) -> None:
        self.report = LoadReport(source=source)
        self.examples: list[TextExample] = []
        self.require_label = require_label
        # First (value, location) of each label kind (number, boolean, string), to refuse typed mixtures.
        self.label_kinds: dict[str, tuple[Any, str]] = {}
        self.typed_labels = False

    def add(self, text: Any, label: Any, rating: Any, where: str, text_field: str) -> None:
        if text is not None and not isinstance(text, str):
            raise DataError(f"{where}: field {text_field!r} is {type(text).__name__}, expected a string")
        if text is None or not text.strip():
            self.report.empty_text += 1
            return
        label_str = _label_to_str(label, where)
        if label_str is None:
            if self.require_label:
                self.report.missing_label += 1
                return
            label_str = ""
        else:
            self._note_label_kind(label, where)
        self.examples.append(TextExample(text=text, label=label_str, rating=self._rating(rating)))
        self.report.kept += 1

    def _note_label_kind(self, label: Any, where: str) -> None:
        if not isinstance(label, str):
            self.typed_labels = True
        self.label_kinds.setdefault(_label_kind(label), (label, where))

    def _check_label_kinds(self) -> None:
        """Refuse a JSON/Parquet label column holding both numbers (or booleans) and other strings.

        ``1`` and ``"1"`` mean the same class and both become ``"1"``; ``1`` beside ``"pos"`` is almost always a
        mistake (two encodings of the labels mixed in one file), so it is an error rather than a third class.
        In CSV/TSV every cell is a string and the kinds are not checked.
        """
        if not self.typed_labels or len(self.label_kinds) < 2:
            return
        source = self.report.source
        examples = [
            f"{value!r} ({where.removeprefix(source + ': ')})"
            for value, where in sorted(self.label_kinds.values(), key=lambda vw: _label_kind(vw[0]))
        ]
        kinds = " and ".join(f"{kind}s" for kind in sorted(self.label_kinds))
        raise DataError(
            f"{source}: the labels mix {kinds}, e.g. {' and '.join(examples)}; write every label the same way "
            "(all class names, or all integers)"
        )

    def _rating(self, value: Any) -> int | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        parsed = _to_int(value)
        if parsed is None:
            self.report.invalid_rating += 1
        return parsed

    def finish(self) -> tuple[list[TextExample], LoadReport]:
        report = self.report
        self._check_label_kinds()
        if report.skipped:
            logger.warning(report.summary())
        if report.invalid_rating:
            logger.warning(
                "%s: %d rows have a non-integer %r value; their rating is None",
                report.source,
                report.invalid_rating,
                RATING_FIELD,
            )
        if not report.kept:
            if report.skipped:
                raise DataError(f"{report.source}: every row was skipped ({report.summary()})")
            raise DataError(f"{report.source}: no rows found")
        return self.examples, report


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        s = value.strip()
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s)
        if re.fullmatch(r"[+-]?\d+\.0*", s):
            return int(float(s))
    return None


# A number as text: "3", "-1", "2.5", ".5", "1e3".
NUMBER_PATTERN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _label_kind(value: Any) -> str:
    """``"number"``, ``"boolean"`` or ``"string"``; a string that spells a number or a boolean counts as one."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    s = str(value).strip()
    if NUMBER_PATTERN.fullmatch(s):
        return "number"
    return "boolean" if s.lower() in ("true", "false") else "string"


# ----------------------------------------------------------------------------------------------------
# Reading bytes and text.


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror or e})") from None
    if path.name.lower().endswith(".gz"):
        if not data:
            raise DataError(f"{path}: file is empty")
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
    if not data.strip():
        raise DataError(f"{path}: file is empty")
    return data


def decode_utf8(data: bytes, where: str | os.PathLike[str]) -> str:
    """Decode ``data`` as strict UTF-8 (a leading BOM is dropped).

    Raises:
        DataError: naming ``where``, the 1-based line and the offending byte when the bytes are not UTF-8.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"{where}: line {line}: invalid UTF-8 byte 0x{data[e.start]:02x} at byte {column} of the line; "
            "save the file as UTF-8"
        ) from None


def _pick_field(
    available: Sequence[str], requested: str | None, candidates: Sequence[str], kind: str, where: str
) -> str:
    """The column to use for ``kind`` (``text`` or ``label``)."""
    shown = ", ".join(repr(a) for a in available) or "none"
    if requested is not None:
        if requested in available:
            return requested
        raise DataError(f"{where}: no {kind} column {requested!r}; available columns: {shown}")
    for name in candidates:
        if name in available:
            return name
    lowered = {a.lower(): a for a in reversed(available)}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    option = f"{kind}_field" if kind == "text" else "label_field"
    where_else = "; predict and explain take --text-field NAME" if kind == "text" else ""
    separator = next(
        (sep for sep in (";", "|", "\t", ",") if len(available) == 1 and sep in available[0]), None
    )
    hint = (
        f"; the header {available[0]!r} looks separated by {separator!r}: a .csv file needs commas, a .tsv "
        "file tabs"
        if separator
        else ""
    )
    raise DataError(
        f"{where}: no {kind} column found (looked for {', '.join(candidates)}); available columns: {shown}; "
        f"choose one with data.{option} (--set data.{option}=NAME{where_else}){hint}"
    )


# ----------------------------------------------------------------------------------------------------
# Format readers. Each returns (examples, report).


def _load_records(
    records: Iterator[tuple[str, Any]],
    text_field: str | None,
    label_field: str | None,
    collector: _Collector,
) -> tuple[list[TextExample], LoadReport]:
    """Shared by JSON Lines and JSON arrays: ``records`` yields (location, decoded value)."""
    text_key: str | None = None
    label_key: str | None = None
    for location, obj in records:
        where = f"{collector.report.source}: {location}"
        if not isinstance(obj, dict):
            raise DataError(
                f"{where}: expected a JSON object with a text and a label, got {type(obj).__name__}"
            )
        if text_key is None:
            keys = list(obj)
            text_key = _pick_field(keys, text_field, TEXT_FIELD_CANDIDATES, "text", where)
            if collector.require_label or label_field is not None:
                label_key = _pick_field(keys, label_field, LABEL_FIELD_CANDIDATES, "label", where)
        collector.add(
            obj.get(text_key),
            obj.get(label_key) if label_key else None,
            obj.get(RATING_FIELD),
            where,
            text_key,
        )
    return collector.finish()


def _jsonl_records(
    text: str, path: Path, report: LoadReport, skip: SkipRow | None = None
) -> Iterator[tuple[str, Any]]:
    """(``"line N"``, decoded value) per non-blank line; an invalid line raises, or goes to ``skip``."""
    # Split on "\n" only: JSON strings may hold raw U+2028 and friends, which str.splitlines would cut.
    body = text[:-1] if text.endswith("\n") else text
    for number, line in enumerate(body.split("\n"), start=1):
        if not line.strip():
            report.blank_lines += 1
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            reason = f"invalid JSON ({e.msg} at column {e.colno})"
            if skip is None:
                raise DataError(f"{path}: line {number}: {reason}") from None
            skip(f"line {number}", reason)
            continue
        yield f"line {number}", obj


def _json_records(
    path: Path, report: LoadReport, skip: SkipRow | None = None, *, allow_array: bool
) -> Iterator[tuple[str, Any]]:
    """The values of a JSON Lines file or, with ``allow_array``, of a ``.json`` array (``"item N"``)."""
    text = decode_utf8(_read_bytes(path), path)
    if not (allow_array and text.lstrip().startswith("[")):
        yield from _jsonl_records(text, path, report, skip)
        return
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    for i, obj in enumerate(items, start=1):
        yield f"item {i}", obj


def load_jsonl(
    path: str | os.PathLike[str],
    *,
    text_field: str | None = None,
    label_field: str | None = None,
    require_label: bool = True,
) -> tuple[list[TextExample], LoadReport]:
    """Read JSON Lines (optionally gzip'd): one object per ``\\n``-separated line; blank lines are ignored.

    Field names are chosen from the first object (see :data:`TEXT_FIELD_CANDIDATES`).
    """
    path = Path(path)
    collector = _Collector(str(path), require_label=require_label)
    records = _json_records(path, collector.report, allow_array=False)
    return _load_records(records, text_field, label_field, collector)


def _load_json(
    path: Path, text_field: str | None, label_field: str | None, require_label: bool
) -> tuple[list[TextExample], LoadReport]:
    """``.json``: a JSON array of objects, or JSON Lines under a ``.json`` name."""
    collector = _Collector(str(path), require_label=require_label)
    records = _json_records(path, collector.report, allow_array=True)
    return _load_records(records, text_field, label_field, collector)


@contextmanager
def _csv_field_limit() -> Iterator[None]:
    old = csv.field_size_limit()
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(old)


# Called with (location, reason) for a row that cannot be read; ``None`` makes such a row an error instead.
SkipRow = Callable[[str, str], None]


def _parse_csv(
    path: Path, delimiter: str, report: LoadReport, skip: SkipRow | None = None
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Parse CSV (RFC 4180 quoting) or TSV (no quoting, as GLUE writes it) with a header row.

    Returns:
        The stripped header and the data rows as ``(first line number, cells)``; blank rows are counted in
        ``report.blank_lines``. A row with another number of fields than the header (trailing empty fields
        aside) raises :class:`DataError`, or is passed to ``skip`` when given.
    """
    text = decode_utf8(_read_bytes(path), path)
    stream = io.StringIO(text, newline="")
    if delimiter == "\t":
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
    rows: list[tuple[int, list[str]]] = []
    with _csv_field_limit():
        try:
            header = [h.strip() for h in next(reader)]
            previous_line = reader.line_num
            for row in reader:
                start, previous_line = previous_line + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    report.blank_lines += 1
                    continue
                if len(row) != len(header) and not (
                    len(row) > len(header) and not "".join(row[len(header) :])
                ):
                    reason = (
                        f"{len(row)} fields but the header has {len(header)}; check the quoting "
                        f"and the delimiter ({'tab' if delimiter == chr(9) else repr(delimiter)})"
                    )
                    if skip is None:
                        raise DataError(f"{path}: line {start}: {reason}")
                    skip(f"line {start}", reason)
                    continue
                rows.append((start, row[: len(header)]))
        except StopIteration:
            raise DataError(f"{path}: file is empty") from None
        except csv.Error as e:
            raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({e})") from None
    return header, rows


def _load_csv(
    path: Path, text_field: str | None, label_field: str | None, require_label: bool, delimiter: str
) -> tuple[list[TextExample], LoadReport]:
    """CSV or TSV with a header row (see :func:`_parse_csv`)."""
    collector = _Collector(str(path), require_label=require_label)
    header, rows = _parse_csv(path, delimiter, collector.report)
    text_key = _pick_field(header, text_field, TEXT_FIELD_CANDIDATES, "text", f"{path}: header")
    label_key = None
    if require_label or label_field is not None:
        label_key = _pick_field(header, label_field, LABEL_FIELD_CANDIDATES, "label", f"{path}: header")
    text_i = header.index(text_key)
    label_i = header.index(label_key) if label_key is not None else None
    rating_i = header.index(RATING_FIELD) if RATING_FIELD in header else None
    for start, row in rows:
        collector.add(
            row[text_i],
            row[label_i] if label_i is not None else None,
            row[rating_i] if rating_i is not None else None,
            f"{path}: line {start}",
            text_key,
        )
    if collector.report.total == 0:
        raise DataError(f"{path}: has a header but no data rows")
    return collector.finish()


def _open_parquet(path: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile``, or a :class:`DataError` for a missing, empty or unreadable file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None


def _check_parquet_text(parquet: Any, text_key: str, path: Path) -> None:
    import pyarrow as pa

    text_type = parquet.schema_arrow.field(text_key).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise DataError(f"{path}: text column {text_key!r} has type {text_type}, expected strings")


def _load_parquet(
    path: Path, text_field: str | None, label_field: str | None, require_label: bool
) -> tuple[list[TextExample], LoadReport]:
    import pyarrow as pa

    parquet = _open_parquet(path)
    names = list(parquet.schema_arrow.names)
    text_key = _pick_field(names, text_field, TEXT_FIELD_CANDIDATES, "text", str(path))
    label_key = None
    if require_label or label_field is not None:
        label_key = _pick_field(names, label_field, LABEL_FIELD_CANDIDATES, "label", str(path))
    _check_parquet_text(parquet, text_key, path)
    columns = [c for c in dict.fromkeys([text_key, label_key, RATING_FIELD]) if c is not None and c in names]
    try:
        table = parquet.read(columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read Parquet data ({e})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: file has no rows")
    texts = table.column(text_key).to_pylist()
    labels = table.column(label_key).to_pylist() if label_key else [None] * len(texts)
    ratings = table.column(RATING_FIELD).to_pylist() if RATING_FIELD in columns else [None] * len(texts)
    collector = _Collector(str(path), require_label=require_label)
    for i, (t, y, r) in enumerate(zip(texts, labels, ratings, strict=True), start=1):
        collector.add(t, y, r, f"{path}: row {i}", text_key)
    return collector.finish()


def _natural_key(name: str) -> list[Any]:
    # "2.txt" before "10.txt"; the split alternates str/int pieces so comparisons never mix types.
    return [int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", name))]


def _load_directory(path: Path, require_label: bool) -> tuple[list[TextExample], LoadReport]:
    """``<path>/<label>/*.txt``: the folder name is the label, each file one example (UTF-8)."""
    entries = sorted(
        (p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: _natural_key(p.name)
    )
    label_dirs = [p for p in entries if p.is_dir()]
    stray = [p for p in entries if not p.is_dir()]
    if not label_dirs:
        raise DataError(
            f"{path}: no label subfolders; expected one folder per label holding .txt files "
            f"({path}/<label>/<name>.txt)"
        )
    collector = _Collector(str(path), require_label=require_label)
    if stray:
        collector.report.ignored_files += len(stray)
        logger.warning(
            "%s: ignoring %d files outside the label folders (e.g. %s)", path, len(stray), stray[0].name
        )
    for label_dir in label_dirs:
        files = sorted(
            (p for p in label_dir.iterdir() if p.is_file() and not p.name.startswith(".")),
            key=lambda p: _natural_key(p.name),
        )
        texts = [p for p in files if p.suffix.lower() == ".txt"]
        if len(texts) < len(files):
            collector.report.ignored_files += len(files) - len(texts)
            logger.warning("%s: ignoring %d files not ending in .txt", label_dir, len(files) - len(texts))
        if not texts:
            raise DataError(
                f"{label_dir}: no .txt files; a label directory holds one example per file "
                f"({path}/<label>/<name>.txt)"
            )
        for file in texts:
            try:
                data = file.read_bytes()
            except OSError as e:
                raise DataError(f"{file}: cannot read file ({e.strerror or e})") from None
            collector.add(decode_utf8(data, file), label_dir.name, None, str(file), "text")
    return collector.finish()


def load_file_with_report(
    path: str | os.PathLike[str],
    *,
    text_field: str | None = None,
    label_field: str | None = None,
    require_label: bool = True,
) -> tuple[list[TextExample], LoadReport]:
    """Load one file or label directory, choosing the reader by suffix.

    Args:
        path: a ``.jsonl``/``.jsonl.gz``/``.json``, ``.csv``/``.tsv`` (optionally ``.gz``), ``.parquet`` file,
            or a directory of label folders.
        text_field: column holding the text; default: the first of :data:`TEXT_FIELD_CANDIDATES` present.
        label_field: column holding the label; default: the first of :data:`LABEL_FIELD_CANDIDATES` present.
        require_label: when False, rows without a label are kept with label ``""`` (unlabelled data).

    Raises:
        DataError: missing or empty file, unknown format, missing column, undecodable bytes, invalid JSON.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        if text_field is not None or label_field is not None:
            raise DataError(f"{p}: text_field/label_field do not apply to a directory of label folders")
        return _load_directory(p, require_label)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return load_jsonl(p, text_field=text_field, label_field=label_field, require_label=require_label)
    if name.endswith((".json", ".json.gz")):
        return _load_json(p, text_field, label_field, require_label)
    if name.endswith((".csv", ".csv.gz")):
        return _load_csv(p, text_field, label_field, require_label, ",")
    if name.endswith((".tsv", ".tsv.gz")):
        return _load_csv(p, text_field, label_field, require_label, "\t")
    if name.endswith(".parquet"):
        return _load_parquet(p, text_field, label_field, require_label)
    raise DataError(
        f"{p}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)} or a directory of label folders"
    )


# ----------------------------------------------------------------------------------------------------
# Unlabelled rows for prediction, every column kept.

#: Files :func:`read_rows` reads: those of :func:`load_file_with_report` plus plain text (one text per line).
ROW_FILE_SUFFIXES: tuple[str, ...] = (*FILE_SUFFIXES, ".txt", ".txt.gz")
#: The column name of a text read from a plain-text line, a file in a folder, an argument or standard input.
PLAIN_TEXT_FIELD = "text"
#: The column holding a file's path (relative to the folder) when :func:`read_rows` reads a folder.
FILE_FIELD = "file"


@dataclass(frozen=True)
class SkippedRow:
    """A row that could not be read.

    Attributes:
        location: where it is in its source, e.g. ``"line 7"``, ``"row 3"``, ``"item 2"`` or ``"neg/1.txt"``.
        reason: why it was skipped, e.g. ``"empty text"``.
    """

    location: str
    reason: str


@dataclass
class InputRows:
    """Unlabelled rows to predict, in source order, each with all of its original columns.

    Attributes:
        source: the file or folder read (or ``"<arguments>"``, ``"<stdin>"``).
        text_field: the column the texts come from.
        rows: one dict per readable row: column name -> value as read (strings for CSV/TSV; JSON or Arrow
            values for JSON Lines and Parquet). Other columns, a label column included, are kept as they are
            and never read as text.
        texts: ``rows[i][text_field]``: the text the model reads, unchanged.
        locations: where each row came from, e.g. ``"line 12"`` (the first line of a multi-line CSV record).
        skipped: rows that could not be read (empty or non-string text, invalid JSON, a CSV row with the
            wrong number of fields), in source order.
        blank_lines: blank lines of line-based files (not rows, not counted as skipped).
    """

    source: str
    text_field: str
    rows: list[dict[str, Any]]
    texts: list[str]
    locations: list[str]
    skipped: list[SkippedRow]
    blank_lines: int = 0

    @classmethod
    def from_texts(cls, texts: Sequence[str], source: str = "<arguments>") -> InputRows:
        """Rows of one ``text`` column from texts given directly; empty or whitespace-only texts are skipped."""
        rows = _RowCollector(source)
        for i, text in enumerate(texts, start=1):
            rows.add(f"text {i}", {PLAIN_TEXT_FIELD: text}, PLAIN_TEXT_FIELD)
        return rows.finish(PLAIN_TEXT_FIELD)

    @property
    def columns(self) -> list[str]:
        """Every column of :attr:`rows`, in the order first seen (rows of JSON Lines may differ)."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def skipped_summary(self, limit: int = 5) -> str:
        """One line, e.g. ``skipped 2 of 10 rows of data.csv: line 4 (empty text), line 9 (invalid JSON ...)``."""
        if not self.skipped:
            return f"read all {len(self.rows)} rows of {self.source}"
        shown = ", ".join(f"{s.location} ({s.reason})" for s in self.skipped[:limit])
        more = f", and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        total = len(self.rows) + len(self.skipped)
        return f"skipped {len(self.skipped)} of {total} rows of {self.source}: {shown}{more}"


class _RowCollector:
    """Keeps the rows whose text is a non-empty string, records the others as :class:`SkippedRow`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.report = LoadReport(source=source)  # only its blank-line count is used
        self.rows: list[dict[str, Any]] = []
        self.texts: list[str] = []
        self.locations: list[str] = []
        self.skipped: list[SkippedRow] = []

    def skip(self, location: str, reason: str) -> None:
        self.skipped.append(SkippedRow(location, reason))

    def add(self, location: str, row: dict[str, Any], text_key: str) -> None:
        text = row.get(text_key)
        if text is None and text_key not in row:
            self.skip(location, f"no {text_key!r} field")
        elif text is not None and not isinstance(text, str):
            self.skip(location, f"field {text_key!r} is {type(text).__name__}, expected a string")
        elif text is None or not text.strip():
            self.skip(location, "empty text")
        else:
            self.rows.append(row)
            self.texts.append(text)
            self.locations.append(location)

    def finish(self, text_key: str) -> InputRows:
        result = InputRows(
            source=self.source,
            text_field=text_key,
            rows=self.rows,
            texts=self.texts,
            locations=self.locations,
            skipped=self.skipped,
            blank_lines=self.report.blank_lines,
        )
        if not self.rows:
            if self.skipped:
                raise DataError(f"{self.source}: no row could be read ({result.skipped_summary()})")
            raise DataError(f"{self.source}: no rows found")
        return result


def _json_rows(path: Path, text_field: str | None, rows: _RowCollector, *, allow_array: bool) -> str:
    text_key: str | None = None
    for location, obj in _json_records(path, rows.report, rows.skip, allow_array=allow_array):
        if not isinstance(obj, dict):
            rows.skip(location, f"expected a JSON object, got {type(obj).__name__}")
            continue
        if text_key is None:
            text_key = _pick_field(
                list(obj), text_field, TEXT_FIELD_CANDIDATES, "text", f"{path}: {location}"
            )
        rows.add(location, obj, text_key)
    return text_key or PLAIN_TEXT_FIELD


def _csv_rows(path: Path, text_field: str | None, rows: _RowCollector, delimiter: str) -> str:
    header, records = _parse_csv(path, delimiter, rows.report, rows.skip)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(
            f"{path}: header: column {repeated[0]!r} appears more than once; give every column its own name"
        )
    try:
        text_key = _pick_field(header, text_field, TEXT_FIELD_CANDIDATES, "text", f"{path}: header")
    except DataError as e:
        raise DataError(
            f"{e} (the first line must be a header; for one text per line use a .txt file)"
        ) from None
    if not records and not rows.skipped:
        raise DataError(f"{path}: has a header but no data rows")
    for start, cells in records:
        rows.add(f"line {start}", dict(zip(header, cells, strict=True)), text_key)
    return text_key


def _parquet_rows(path: Path, text_field: str | None, rows: _RowCollector) -> str:
    import pyarrow as pa

    parquet = _open_parquet(path)
    text_key = _pick_field(
        list(parquet.schema_arrow.names), text_field, TEXT_FIELD_CANDIDATES, "text", str(path)
    )
    _check_parquet_text(parquet, text_key, path)
    try:
        table = parquet.read()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read Parquet data ({e})") from None
    for i, row in enumerate(table.to_pylist(), start=1):
        rows.add(f"row {i}", row, text_key)
    return text_key


def _text_lines(path: Path, rows: _RowCollector) -> str:
    text = decode_utf8(_read_bytes(path), path)
    body = text[:-1] if text.endswith("\n") else text
    for number, line in enumerate(body.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            rows.report.blank_lines += 1
            continue
        rows.add(f"line {number}", {PLAIN_TEXT_FIELD: line}, PLAIN_TEXT_FIELD)
    return PLAIN_TEXT_FIELD


def _folder_rows(path: Path, rows: _RowCollector) -> str:
    files = [
        p
        for p in path.rglob("*.txt")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    if not files:
        raise DataError(f"{path}: no .txt files in this folder or its subfolders (one text per file)")
    files.sort(key=lambda p: [_natural_key(part) for part in p.relative_to(path).parts])
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as e:
            raise DataError(f"{file}: cannot read file ({e.strerror or e})") from None
        name = file.relative_to(path).as_posix()
        rows.add(name, {FILE_FIELD: name, PLAIN_TEXT_FIELD: decode_utf8(data, file)}, PLAIN_TEXT_FIELD)
    return PLAIN_TEXT_FIELD


def read_rows(path: str | os.PathLike[str], *, text_field: str | None = None) -> InputRows:
    """Read unlabelled rows to predict, keeping every column of every row.

    Formats and text-column choice are those of :func:`load_file_with_report` (the same parsers): JSON Lines
    (``.gz`` too) and ``.json``, CSV/TSV with a header (quoted multi-line fields are one row), Parquet; plus
    plain text (``.txt``, ``.txt.gz`` or no suffix: one text per line, blank lines ignored) and a folder (every
    ``.txt`` file below it is one text; columns ``file`` and ``text``). A label column may be present; it is
    kept as a column and never read as text.

    Args:
        path: the file or folder.
        text_field: the text column; default: the first of :data:`TEXT_FIELD_CANDIDATES` present. Ignored for
            plain text and folders, which have one text per line or file.

    Returns:
        The readable rows in source order and the rows that were skipped (empty or non-string text, invalid
        JSON lines, non-object JSON values, CSV rows with the wrong number of fields), with their locations.

    Raises:
        DataError: a missing or empty file, an unknown suffix, a missing text column, bytes that are not UTF-8
            (naming the file and line), or no readable row at all.
    """
    p = Path(path).expanduser()
    rows = _RowCollector(str(p))
    if p.is_dir():
        return rows.finish(_folder_rows(p, rows))
    if not p.exists():
        raise DataError(f"{p}: file not found")
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        text_key = _json_rows(p, text_field, rows, allow_array=False)
    elif name.endswith((".json", ".json.gz")):
        text_key = _json_rows(p, text_field, rows, allow_array=True)
    elif name.endswith((".csv", ".csv.gz")):
        text_key = _csv_rows(p, text_field, rows, ",")
    elif name.endswith((".tsv", ".tsv.gz")):
        text_key = _csv_rows(p, text_field, rows, "\t")
    elif name.endswith(".parquet"):
        text_key = _parquet_rows(p, text_field, rows)
    elif name.endswith((".txt", ".txt.gz")) or not p.suffix:
        text_key = _text_lines(p, rows)
    else:
        raise DataError(
            f"{p}: unsupported file type; use one of {', '.join(ROW_FILE_SUFFIXES)}, a file without a suffix "
            "(one text per line) or a folder of .txt files"
        )
    return rows.finish(text_key)
