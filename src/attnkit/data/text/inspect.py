"""Dataset health report: label balance, lengths, duplicates, overlap of splits (``attnkit data inspect``).

Texts are compared after :meth:`str.strip`, so two rows that differ only in surrounding whitespace count as
the same text.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.health import STATS, duplicate_counts, length_stats, shared_counts, table
from attnkit.data.text.sources import LoadReport, TextExample, load_source_with_report, parse_source_name

logger = logging.getLogger(__name__)


def duplicate_stats(examples: Sequence[TextExample]) -> dict[str, int]:
    """Exact duplicates (after strip) within one split.

    Returns:
        ``rows``: rows that repeat an earlier row's text (``len - distinct texts``); ``distinct_texts``: texts
        that occur more than once; ``conflicting_labels``: of those, texts seen with more than one label.
    """
    rows, distinct, conflicting = duplicate_counts(
        [ex.text.strip() for ex in examples], [ex.label for ex in examples]
    )
    return {"rows": rows, "distinct_texts": distinct, "conflicting_labels": conflicting}


def inspect_examples(splits: Mapping[str, Sequence[TextExample]]) -> dict[str, Any]:
    """Report on named splits (JSON-serializable).

    Args:
        splits: e.g. ``{"train": [...], "test": [...]}``, in display order.

    Returns:
        ``{"splits": {name: {"rows", "labels", "chars", "tokens", "duplicates"}}, "overlap": [...]}``:
        ``labels`` maps label -> count (sorted by label); ``chars``/``tokens`` are :func:`length_stats` of
        the length in characters and in whitespace-separated tokens; ``duplicates`` is
        :func:`duplicate_stats`; ``overlap`` lists ``{"a", "b", "shared_texts"}`` for every pair of splits,
        the number of distinct stripped texts present in both.
    """
    report: dict[str, Any] = {"splits": {}, "overlap": []}
    for name, examples in splits.items():
        label_counts = Counter(ex.label for ex in examples)
        report["splits"][name] = {
            "rows": len(examples),
            "labels": dict(sorted(label_counts.items())),
            "chars": length_stats([len(ex.text) for ex in examples]),
            "tokens": length_stats([len(ex.text.split()) for ex in examples]),
            "duplicates": duplicate_stats(examples),
        }
    texts = {name: {ex.text.strip() for ex in examples} for name, examples in splits.items()}
    report["overlap"] = [{"a": a, "b": b, "shared_texts": n} for a, b, n in shared_counts(texts)]
    return report


def inspect_source(
    source: str,
    test: str | None = None,
    *,
    data_dir: str | None = None,
    allow_download: bool = True,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Load a source and :func:`inspect_examples` it.

    A built-in name without a split (``imdb``) is inspected over all its splits; splits that are not available
    offline are listed under ``missing`` instead of failing (unless none is available). ``embedded`` gives its
    train/val/test, ``name:split`` that one split, and a file is reported as ``train``. ``test`` adds a
    ``test`` split.

    Returns:
        The :func:`inspect_examples` report plus ``source``, ``load`` (per split :class:`LoadReport` counts)
        and ``missing`` (split -> reason).

    Raises:
        DataError: the source cannot be loaded.
    """
    options: dict[str, Any] = {"data_dir": data_dir, "allow_download": allow_download, "cache_dir": cache_dir}
    loaded: dict[str, tuple[list[TextExample], LoadReport]] = {}
    missing: dict[str, str] = {}
    parsed = parse_source_name(source)
    if parsed is not None and parsed[1] is None and parsed[0] == "embedded":
        from attnkit.data.text.embedded import load_embedded

        for name, examples in load_embedded().as_dict().items():
            loaded[name] = (examples, LoadReport(source=f"embedded:{name}", kept=len(examples)))
    elif parsed is not None and parsed[1] is None:
        from attnkit.data.text.builtin import get_dataset

        for split in get_dataset(parsed[0]).splits:
            try:
                loaded[split] = load_source_with_report(f"{parsed[0]}:{split}", **options)
            except DatasetNotFoundError as e:
                missing[split] = str(e)
                logger.warning("%s", e)
        if not loaded:
            raise DataError(f"{source}: no split is available: {next(iter(missing.values()))}")
    else:
        # A file is reported as "train"; a built-in "name:split" under its split's name.
        loaded[parsed[1] if parsed is not None and parsed[1] else "train"] = load_source_with_report(
            source, **options
        )
    if test is not None:
        if "test" in loaded:
            raise DataError(f"{source} already has a test split; --test is for sources without one")
        loaded["test"] = load_source_with_report(test, **options)
    report = inspect_examples({name: examples for name, (examples, _) in loaded.items()})
    return {
        "source": source,
        **({"test_source": test} if test is not None else {}),
        **report,
        "load": {name: load_report.to_dict() for name, (_, load_report) in loaded.items()},
        "missing": missing,
    }


def _num(key: str, x: float) -> str:
    return f"{x:,.0f}" if key in ("min", "max") else f"{x:,.1f}"


def format_report(report: Mapping[str, Any]) -> str:
    """A plain-text rendering of an :func:`inspect_examples` / :func:`inspect_source` report."""
    splits: Mapping[str, Any] = report["splits"]
    names = list(splits)
    lines: list[str] = []
    if "source" in report:
        test = f"  (test: {report['test_source']})" if "test_source" in report else ""
        lines += [f"source: {report['source']}{test}", ""]
    load = report.get("load", {})
    lines += table(
        ["split", "rows", "skipped", "classes"],
        [
            [name, f"{s['rows']:,}", f"{load.get(name, {}).get('skipped', 0):,}", str(len(s["labels"]))]
            for name, s in splits.items()
        ],
    )
    labels = sorted({label for s in splits.values() for label in s["labels"]})
    lines += ["", "label counts"]
    lines += table(
        ["label", *names],
        [
            [label or "(unlabelled)", *[f"{s['labels'].get(label, 0):,}" for s in splits.values()]]
            for label in labels
        ],
    )
    for key, title in (("chars", "length in characters"), ("tokens", "length in whitespace tokens")):
        lines += ["", title]
        lines += table(
            ["split", *STATS], [[name, *[_num(k, s[key][k]) for k in STATS]] for name, s in splits.items()]
        )
    lines += ["", "exact duplicates within a split (after strip)"]
    lines += table(
        ["split", "duplicate rows", "duplicated texts", "with conflicting labels"],
        [
            [name, f"{d['rows']:,}", f"{d['distinct_texts']:,}", f"{d['conflicting_labels']:,}"]
            for name, s in splits.items()
            for d in [s["duplicates"]]
        ],
    )
    if report["overlap"]:
        lines += ["", "texts shared between splits (distinct, after strip)"]
        lines += table(
            ["splits", "shared texts"],
            [[f"{o['a']} & {o['b']}", f"{o['shared_texts']:,}"] for o in report["overlap"]],
        )
    for name, reason in report.get("missing", {}).items():
        lines += ["", f"split {name} not inspected: {reason}"]
    return "\n".join(lines) + "\n"
