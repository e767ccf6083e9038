"""Dataset health report for images and recordings (``attnkit data inspect`` on an image or audio source).

The same questions as the text report (:mod:`attnkit.data.text.inspect`): how many examples and skipped files,
label balance, sizes (image height and width as stored, recording durations), exact duplicates within a split
(same file bytes for a folder, same pixels or samples for a built-in dataset) and how many are shared between
splits. A folder is read exactly as ``train`` reads it, so its skipped files and classes are the ones a run gets.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.health import STATS, duplicate_counts, length_stats, shared_counts, table
from attnkit.data.modality import source_modality

# The audio defaults of a run (AudioConfig): a folder is inspected as a run with those options reads it.
_AUDIO_SAMPLE_RATE = 8000
_AUDIO_MAX_SECONDS = 10.0


@dataclass(frozen=True)
class MediaItem:
    """One image or recording: a digest of its content, its label and its sizes (``height``, ``width`` for an
    image as stored; ``seconds`` for a recording)."""

    key: str
    label: str
    sizes: Mapping[str, float]


@dataclass
class MediaSplit:
    """One split's items and the folder report of how it was read (None for a built-in dataset)."""

    items: list[MediaItem]
    load: dict[str, Any] | None = None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _image_folder(path: Path) -> MediaSplit:
    from PIL import Image

    from attnkit.data.vision import load_image_folder

    # A small size reads every image as train does (the same skips) without needing one size for all.
    images, report = load_image_folder(path, size=(8, 8), mode="RGB")
    items = []
    for source, label in zip(images.sources, images.labels, strict=True):
        data = Path(source).read_bytes()
        with Image.open(Path(source)) as im:  # the header only: the size as stored
            width, height = im.size
        items.append(MediaItem(_digest(data), label, {"height": height, "width": width}))
    return MediaSplit(items, report.to_dict())


def _audio_folder(path: Path) -> MediaSplit:
    from attnkit.data.audio import load_audio_folder

    audio, report = load_audio_folder(path, sample_rate=_AUDIO_SAMPLE_RATE, max_seconds=_AUDIO_MAX_SECONDS)
    items = [
        MediaItem(_digest(Path(source).read_bytes()), label, {"seconds": len(wave) / audio.sample_rate})
        for source, label, wave in zip(audio.sources, audio.labels, audio.waveforms, strict=True)
    ]
    return MediaSplit(items, report.to_dict())


def _builtin_splits(
    modality: str, source: str, options: Mapping[str, Any], missing: dict[str, str]
) -> dict[str, MediaSplit]:
    from attnkit.data.audio import get_audio_dataset
    from attnkit.data.vision import get_vision_dataset

    name, _, split = source.partition(":")
    dataset = get_vision_dataset(name) if modality == "image" else get_audio_dataset(name)
    wanted = [split.strip()] if split.strip() else [s for s in dataset.splits if s != "all"]
    splits: dict[str, MediaSplit] = {}
    for part in wanted:
        try:
            loaded = dataset.load(part, **options)
        except DatasetNotFoundError as e:
            missing[part] = str(e)
            continue
        if modality == "image":
            pixels = loaded.pixels  # type: ignore[union-attr]
            height, width = pixels.shape[1:3]
            items = [
                MediaItem(_digest(image.tobytes()), label, {"height": height, "width": width})
                for image, label in zip(pixels, loaded.labels, strict=True)
            ]
        else:
            rate = loaded.sample_rate  # type: ignore[union-attr]
            items = [
                MediaItem(_digest(wave.tobytes()), label, {"seconds": len(wave) / rate})
                for wave, label in zip(loaded.waveforms, loaded.labels, strict=True)  # type: ignore[union-attr]
            ]
        splits[part] = MediaSplit(items)
    if not splits:
        raise DataError(f"{source}: no split is available: {next(iter(missing.values()))}")
    return splits


def _load(
    modality: str, source: str, options: Mapping[str, Any], missing: dict[str, str]
) -> dict[str, MediaSplit]:
    path = Path(source)
    if path.is_dir():
        return {"train": _image_folder(path) if modality == "image" else _audio_folder(path)}
    return _builtin_splits(modality, source, options, missing)


def duplicate_stats(items: Sequence[MediaItem]) -> dict[str, int]:
    """Exact duplicates within one split: ``rows`` that repeat an earlier item's content, ``distinct`` contents
    that occur more than once, and of those, ``conflicting_labels``: contents seen with more than one label."""
    rows, distinct, conflicting = duplicate_counts(
        [item.key for item in items], [item.label for item in items]
    )
    return {"rows": rows, "distinct": distinct, "conflicting_labels": conflicting}


def inspect_media(
    source: str,
    test: str | None = None,
    *,
    data_dir: str | None = None,
    allow_download: bool = True,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Load an image or audio source (and ``test``) and report on it (JSON-serializable).

    Returns:
        ``{"source", "modality", "splits": {name: {"rows", "labels", "sizes", "duplicates"}}, "overlap",
        "load", "missing"}``: ``labels`` maps label -> count; ``sizes`` maps ``height`` / ``width`` (images)
        or ``seconds`` (recordings) to :func:`~attnkit.data.health.length_stats`; ``overlap`` lists
        ``{"a", "b", "shared"}``: distinct contents present in both splits; ``load`` holds each folder's
        report (skipped files by reason, the first ones named).

    Raises:
        DataError: the source is not an image or audio source, or cannot be loaded.
    """
    modality = source_modality(source)
    if modality is None:
        raise DataError(f"{source}: not an image or audio dataset or folder")
    options = {"data_dir": data_dir, "allow_download": allow_download, "cache_dir": cache_dir}
    missing: dict[str, str] = {}
    splits = _load(modality, source, options, missing)
    if test is not None:
        if "test" in splits:
            raise DataError(f"{source} already has a test split; --test is for sources without one")
        if source_modality(test) != modality:
            raise DataError(f"--test {test}: not an {modality} dataset or folder like {source}")
        if Path(source).is_dir() != Path(test).is_dir():  # file bytes against decoded content: never equal
            raise DataError(
                f"--test {test}: compare a folder with a folder; a built-in dataset's splits are compared with "
                "each other without --test"
            )
        splits["test"] = next(iter(_load(modality, test, options, missing).values()))
    report: dict[str, Any] = {"source": source, "modality": modality, "splits": {}, "overlap": []}
    if test is not None:
        report["test_source"] = test
    for name, split in splits.items():
        keys = sorted({key for item in split.items for key in item.sizes})
        report["splits"][name] = {
            "rows": len(split.items),
            "labels": dict(sorted(Counter(item.label for item in split.items).items())),
            "sizes": {key: length_stats([item.sizes[key] for item in split.items]) for key in keys},
            "duplicates": duplicate_stats(split.items),
        }
    contents = {name: {item.key for item in split.items} for name, split in splits.items()}
    report["overlap"] = [{"a": a, "b": b, "shared": n} for a, b, n in shared_counts(contents)]
    report["load"] = {name: split.load for name, split in splits.items() if split.load is not None}
    report["missing"] = missing
    return report


def _number(key: str, value: float) -> str:
    return (
        f"{value:.2f}"
        if key == "seconds"
        else f"{value:,.0f}"
        if float(value).is_integer()
        else f"{value:,.1f}"
    )


def format_media_report(report: Mapping[str, Any]) -> str:
    """A plain-text rendering of an :func:`inspect_media` report."""
    splits: Mapping[str, Any] = report["splits"]
    noun = "images" if report["modality"] == "image" else "recordings"
    test = f"  (test: {report['test_source']})" if "test_source" in report else ""
    lines = [f"source: {report['source']} ({noun}){test}", ""]
    load = report.get("load", {})
    lines += table(
        ["split", noun, "skipped", "classes"],
        [
            [name, f"{s['rows']:,}", f"{load.get(name, {}).get('skipped', 0):,}", str(len(s["labels"]))]
            for name, s in splits.items()
        ],
    )
    labels = sorted({label for s in splits.values() for label in s["labels"]})
    lines += ["", "label counts"]
    lines += table(
        ["label", *splits],
        [[label, *[f"{s['labels'].get(label, 0):,}" for s in splits.values()]] for label in labels],
    )
    titles = {
        "height": "height in pixels (as stored)",
        "width": "width in pixels (as stored)",
        "seconds": "duration in seconds",
    }
    for key, title in titles.items():
        if any(key in s["sizes"] for s in splits.values()):
            lines += ["", title]
            lines += table(
                ["split", *STATS],
                [[name, *[_number(key, s["sizes"][key][k]) for k in STATS]] for name, s in splits.items()],
            )
    what = "same file bytes" if load else "same content"
    lines += ["", f"exact duplicates within a split ({what})"]
    lines += table(
        ["split", f"duplicate {noun}", "duplicated contents", "with conflicting labels"],
        [
            [name, f"{d['rows']:,}", f"{d['distinct']:,}", f"{d['conflicting_labels']:,}"]
            for name, s in splits.items()
            for d in [s["duplicates"]]
        ],
    )
    if report["overlap"]:
        lines += ["", f"{noun} shared between splits (distinct contents)"]
        lines += table(
            ["splits", "shared"], [[f"{o['a']} & {o['b']}", f"{o['shared']:,}"] for o in report["overlap"]]
        )
    for name, folder in load.items():
        if folder.get("skipped"):
            reasons = ", ".join(f"{n} {reason}" for reason, n in folder["reasons"].items() if n)
            lines += [
                "",
                f"skipped in {name}: {reasons}",
                *(f"  {named}" for named in folder["skipped_files"]),
            ]
    for name, reason in report.get("missing", {}).items():
        lines += ["", f"split {name} not inspected: {reason}"]
    return "\n".join(lines) + "\n"
