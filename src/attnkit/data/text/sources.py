"""Where labelled texts come from: a file, a folder or a built-in name, resolved to :class:`TextExample` lists.

Supported sources (see :func:`load_source`):

- built-in names: ``imdb``, ``20newsgroups``, ``sst2``, ``ag_news``, ``mr`` and ``embedded``, optionally
  with a split as ``name:split`` (``imdb:test``) (:mod:`attnkit.data.text.builtin`,
  :mod:`attnkit.data.text.embedded`);
- files and folders (:mod:`attnkit.data.text.files`).

The readers of files know nothing of the built-ins; this module sits above both, so nothing imports back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from attnkit.data.errors import DataError
from attnkit.data.splits import label_vocab
from attnkit.data.text.builtin import DATASETS, load_builtin_with_report
from attnkit.data.text.embedded import EMBEDDED_SPLITS, load_embedded

# The file readers' public names, so that one module answers for text sources.
from attnkit.data.text.files import (
    FILE_FIELD as FILE_FIELD,
)
from attnkit.data.text.files import (
    LABEL_FIELD_CANDIDATES as LABEL_FIELD_CANDIDATES,
)
from attnkit.data.text.files import (
    NUMBER_PATTERN,
)
from attnkit.data.text.files import (
    PLAIN_TEXT_FIELD as PLAIN_TEXT_FIELD,
)
from attnkit.data.text.files import (
    RATING_FIELD as RATING_FIELD,
)
from attnkit.data.text.files import (
    TEXT_FIELD_CANDIDATES as TEXT_FIELD_CANDIDATES,
)
from attnkit.data.text.files import (
    InputRows as InputRows,
)
from attnkit.data.text.files import (
    LoadReport as LoadReport,
)
from attnkit.data.text.files import (
    SkippedRow as SkippedRow,
)
from attnkit.data.text.files import (
    TextExample as TextExample,
)
from attnkit.data.text.files import (
    decode_utf8 as decode_utf8,
)
from attnkit.data.text.files import (
    label_name as label_name,
)
from attnkit.data.text.files import (
    load_file_with_report as load_file_with_report,
)
from attnkit.data.text.files import (
    load_jsonl as load_jsonl,
)
from attnkit.data.text.files import (
    read_rows as read_rows,
)


def parse_source_name(source: str) -> tuple[str, str | None] | None:
    """``"imdb:test"`` -> ``("imdb", "test")``, ``"IMDb"`` -> ``("imdb", None)``; ``None`` if not built-in."""
    name, sep, split = source.partition(":")
    key = name.strip().lower()
    if key in DATASETS or key == "embedded":
        return key, (split.strip() if sep else None)
    return None


def load_source_with_report(
    source: str | os.PathLike[str],
    *,
    text_field: str | None = None,
    label_field: str | None = None,
    split: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[TextExample], LoadReport]:
    """Like :func:`load_source`, also returning the :class:`LoadReport` (kept and skipped counts)."""
    path = Path(os.fspath(source)).expanduser()
    if path.exists():
        if split is not None:
            raise DataError(f"{source}: split={split!r} only applies to built-in datasets, not to files")
        return load_file_with_report(path, text_field=text_field, label_field=label_field)
    parsed = parse_source_name(str(source)) if isinstance(source, str) else None
    if parsed is None:
        names = ", ".join([*DATASETS, "embedded"])
        raise DataError(f"{source}: no such file or directory, and not a built-in dataset ({names})")
    name, name_split = parsed
    if name_split is not None and split is not None and name_split != split:
        raise DataError(f"{source}: conflicting splits {name_split!r} (in the name) and split={split!r}")
    chosen = name_split if name_split is not None else split
    if name == "embedded":
        if text_field is not None or label_field is not None:
            raise DataError("embedded: text_field/label_field do not apply to the embedded corpus")
        chosen = chosen or "train"
        if chosen not in EMBEDDED_SPLITS:
            raise DataError(f"embedded: unknown split {chosen!r}; valid splits: {', '.join(EMBEDDED_SPLITS)}")
        examples = load_embedded().as_dict()[chosen]
        return examples, LoadReport(source=f"embedded:{chosen}", kept=len(examples))
    return load_builtin_with_report(
        name,
        chosen,
        data_dir=data_dir,
        allow_download=allow_download,
        cache_dir=cache_dir,
        text_field=text_field,
        label_field=label_field,
    )


def load_source(
    source: str | os.PathLike[str],
    *,
    text_field: str | None = None,
    label_field: str | None = None,
    split: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[TextExample]:
    """Load labelled examples from a file, a label directory or a built-in dataset.

    An existing path always wins over a built-in name of the same spelling.

    Args:
        source: a path (see :func:`load_file_with_report` for formats) or a built-in name, optionally with a
            split: ``imdb``, ``imdb:test``, ``sst2:dev``, ``mr:all``, ``embedded:val``.
        text_field: text column for files (and for built-ins: e.g. ``"title"`` of ``ag_news``).
        label_field: label column for files.
        split: split of a built-in dataset; ``None`` means ``train`` (``all`` for ``mr``). Giving a split
            for a file is an error.
        data_dir: root holding ``<name>/<split>.jsonl.gz`` copies of the built-ins; default ``$ATTNKIT_DATA``.
        allow_download: fetch a missing built-in split from its official source.
        cache_dir: where downloads are cached; default ``$ATTNKIT_CACHE`` or ``~/.cache/attnkit``.

    Returns:
        The examples in source order. Skipped rows are counted and logged (see
        :func:`load_source_with_report`).

    Raises:
        DataError: for anything wrong with the source (the message names the file and line).
    """
    examples, _ = load_source_with_report(
        source,
        text_field=text_field,
        label_field=label_field,
        split=split,
        data_dir=data_dir,
        allow_download=allow_download,
        cache_dir=cache_dir,
    )
    return examples


#: Integer labels with more distinct values than this and fewer than :data:`MIN_EXAMPLES_PER_INTEGER_LABEL`
#: examples per value on average look like a regression target, not classes.
MANY_INTEGER_LABELS = 20
MIN_EXAMPLES_PER_INTEGER_LABEL = 10


def regression_reason(examples: Sequence[TextExample]) -> str | None:
    """Why the labels of ``examples`` look like a regression target rather than classes, or ``None``.

    They do when every label is a number and either some are fractional (``1.25``, ``3.5``), or there are
    more than :data:`MANY_INTEGER_LABELS` distinct integers with fewer than
    :data:`MIN_EXAMPLES_PER_INTEGER_LABEL` examples each on average (prices, counts, years of a small sample).
    Star ratings such as 1..5 or 0..10 stay classes.
    """
    counts: dict[str, int] = {}
    for ex in examples:
        counts[ex.label] = counts.get(ex.label, 0) + 1
    if not counts or not all(NUMBER_PATTERN.fullmatch(label) for label in counts):
        return None
    fractional = [label for label in counts if not float(label).is_integer()]
    if fractional:
        shown = ", ".join(sorted(fractional, key=float)[:3]) + (", ..." if len(fractional) > 3 else "")
        return f"{len(fractional)} of the {len(counts)} distinct labels are fractional numbers: {shown}"
    per_value = len(examples) / len(counts)
    if len(counts) > MANY_INTEGER_LABELS and per_value < MIN_EXAMPLES_PER_INTEGER_LABEL:
        return (
            f"{len(counts)} distinct integer labels for {len(examples)} examples, {per_value:.1f} per value; "
            f"integer classes are at most {MANY_INTEGER_LABELS} values or {MIN_EXAMPLES_PER_INTEGER_LABEL} "
            "examples per value on average"
        )
    return None


def check_trainable(examples: Sequence[TextExample], source_name: str) -> list[str]:
    """Check that ``examples`` can train a classifier and return its sorted label names.

    Raises:
        DataError: if there are no examples, fewer than two distinct labels, or labels that look like a
            regression target (see :func:`regression_reason`): attnkit classifies, it does not regress.
    """
    if not examples:
        raise DataError(f"{source_name}: no examples to train on")
    labels = label_vocab(examples)
    if len(labels) < 2:
        found = f"only the label {labels[0]!r}" if labels else "no labels"
        raise DataError(
            f"{source_name}: found {found} in {len(examples)} examples; a classifier needs at least 2 classes"
        )
    reason = regression_reason(examples)
    if reason is not None:
        raise DataError(
            f"{source_name}: the labels look like a regression target ({reason}); attnkit trains classifiers: "
            "bin the values into classes first (e.g. round them, or map ranges to names such as low/medium/high) "
            "and train on those"
        )
    return labels
