"""Class folders: ``<root>/<class>/<file>``, one sub-folder per class, its name the label.

The listing, skipping and reporting shared by image folders (:mod:`attnkit.data.vision.folder`) and audio
folders (:mod:`attnkit.data.audio.folder`); each of those decodes its own files.

Dimensions: none; paths and counts only (``N`` files found, ``K`` class folders).

- :func:`natural_key`: class folders and files sort in natural order (``2`` before ``10``).
- :func:`scan_class_folders`: the class folders and the files in them whose suffix a :class:`FolderKind` names;
  hidden names (starting with ``.``) and other entries are counted in the :class:`FolderReport`, never read.
- :class:`FolderTally`: what the decoding loop kept and skipped; :meth:`FolderTally.finish` fails when the
  folder or one class is left with nothing.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from attnkit.data.errors import DataError
from attnkit.data.labels import label_name

#: How many skipped files a report names.
MAX_NAMED = 5


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``img2.png`` before ``img10.png`` (str and int pieces alternate, never compared)."""
    return [int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", name))]


def list_entries(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder`` in natural order; a folder that cannot be listed is a :class:`DataError`."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: natural_key(e.name))
    except OSError as e:
        raise DataError(f"{folder}: cannot list the folder ({e.strerror or e})") from None


def is_dir_entry(entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` is a folder (False when it cannot be told)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def has_suffix(name: str, suffixes: Collection[str]) -> bool:
    """Whether ``name`` ends in one of ``suffixes`` (lower case, with the dot), in any case."""
    return os.path.splitext(name)[1].lower() in suffixes


def class_folder_entries(path: str | os.PathLike[str]) -> list[os.DirEntry[str]] | None:
    """The non-hidden entries (files and folders) of the non-hidden sub-folders of ``path``, in natural order.

    ``None`` when ``path`` is not a folder or a folder in it cannot be listed. Only names are looked at: what
    :func:`~attnkit.data.vision.is_image_folder` and :func:`~attnkit.data.audio.is_audio_folder` count.
    """
    p = Path(path)
    if not p.is_dir():
        return None
    found: list[os.DirEntry[str]] = []
    try:
        for sub in list_entries(p):
            if sub.name.startswith(".") or not is_dir_entry(sub):
                continue
            found.extend(entry for entry in list_entries(Path(sub.path)) if not entry.name.startswith("."))
    except DataError:
        return None
    return found


@dataclass(frozen=True)
class FolderKind:
    """What the class folders of one modality hold, for scanning and for the messages.

    Attributes:
        files: the files, as messages count them (``"image files"``).
        holding: what a class folder holds (``"images"``).
        leaf: a file in the layout line, ``<root>/<class>/<leaf>`` (``"<image>"``).
        kinds: the accepted suffixes in words (``".wav, .flac or .ogg"``).
        add: what to add to an empty class folder (``"images"``).
        suffixes: the accepted suffixes, lower case with the dot.
        logger: where the counts are logged (the modality's folder module).
    """

    files: str
    holding: str
    leaf: str
    kinds: str
    add: str
    suffixes: Collection[str]
    logger: logging.Logger

    def is_member(self, name: str) -> bool:
        """Whether a file called ``name`` is one to read, by its suffix."""
        return has_suffix(name, self.suffixes)


class SkippedFileError(Protocol):
    """What a folder reader's decoder raises for a file it skips (an ``ImageError``, an ``AudioError``): its
    message names the file, ``reason`` is the short cause the report counts by."""

    @property
    def reason(self) -> str: ...


@dataclass
class FolderReport:
    """What happened while reading one class folder (the image and audio reports add only their wording).

    Attributes:
        source: the folder.
        kept: files returned.
        reasons: files skipped, by the error's ``reason``.
        skipped_files: the first :data:`MAX_NAMED` skipped files, each ``"<path>: <what is wrong>"``.
        ignored_files: entries that are not files to read by name (other suffixes, nested folders, files
            beside the class folders); not counted as skipped.
        hidden_files: entries whose name starts with ``.``, ignored.
        per_class: files kept per class, in class order.
    """

    #: What the files are called in :meth:`summary`.
    noun: ClassVar[str] = "files"

    source: str
    kept: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)
    ignored_files: int = 0
    hidden_files: int = 0
    per_class: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """Files skipped for any reason."""
        return sum(self.reasons.values())

    @property
    def total(self) -> int:
        """Files seen: kept plus skipped."""
        return self.kept + self.skipped

    def skipped_by_reason(self) -> dict[str, int]:
        """Non-zero skip counts keyed by reason, e.g. ``{"truncated": 2, "not an image": 1}``."""
        return {reason: n for reason, n in self.reasons.items() if n}

    def summary(self) -> str:
        """One line, e.g. ``skipped 3 of 120 images in pets/ (kept 117): 2 truncated, 1 not an image``."""
        if not self.skipped:
            return f"kept all {self.kept} {self.noun} in {self.source}"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason().items())
        return f"skipped {self.skipped} of {self.total} {self.noun} in {self.source} (kept {self.kept}): {reasons}"

    def skipped_lines(self) -> str:
        """:meth:`summary`, then one indented line per named skipped file (the first :data:`MAX_NAMED`), and how
        many more there are: what a user needs to find and fix the files."""
        lines = [self.summary(), *(f"  {named}" for named in self.skipped_files)]
        more = self.skipped - len(self.skipped_files)
        if more > 0:
            lines.append(f"  ... and {more} more (attnkit -v names every one)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable fields plus ``skipped``."""
        return {**asdict(self), "skipped": self.skipped}

    def _skip(self, reason: str, message: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.skipped_files) < MAX_NAMED:
            self.skipped_files.append(message)


def scan_class_folders(root: str | os.PathLike[str], kind: FolderKind, report: FolderReport) -> FolderTally:
    """Find the class folders of ``root`` and the files of ``kind`` in them, counting hidden and other entries
    in ``report``; returns the :class:`FolderTally` to decode them with (``files``: ``(path, class)`` pairs).

    Raises:
        DataError: ``base`` is not a folder, has no class folders or only one, or a class folder has no file
            of ``kind``. One line naming the folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base}: not a folder; expected one sub-folder per class holding {kind.holding}")
    class_dirs: list[Path] = []
    for entry in list_entries(base):
        if entry.name.startswith("."):
            report.hidden_files += 1
        elif is_dir_entry(entry):
            class_dirs.append(Path(entry.path))
        else:
            report.ignored_files += 1
    layout = f"{base}/<class>/{kind.leaf}"
    if not class_dirs:
        raise DataError(
            f"{base}: no class folders; expected one sub-folder per class holding {kind.holding} ({layout})"
        )
    if len(class_dirs) == 1:
        raise DataError(
            f"{base}: only one class folder ({class_dirs[0].name}); a classifier needs at least two classes, "
            f"one sub-folder each ({layout})"
        )

    # The class of a folder is its name as a label ("1.0" and "1" are the class "1", as in a CSV column).
    labels = {class_dir: label_name(class_dir.name) or class_dir.name for class_dir in class_dirs}
    if len(set(labels.values())) == 1:
        raise DataError(
            f"{base}: the class folders {', '.join(d.name for d in class_dirs)} all name the class "
            f"{labels[class_dirs[0]]!r}; a classifier needs at least two classes, one sub-folder each ({layout})"
        )
    files: list[tuple[Path, str]] = []  # (file, class)
    for class_dir in class_dirs:
        found = 0
        for entry in list_entries(class_dir):
            if entry.name.startswith("."):
                report.hidden_files += 1
            elif is_dir_entry(entry) or not kind.is_member(entry.name):
                report.ignored_files += 1
            else:
                files.append((Path(entry.path), labels[class_dir]))
                found += 1
        if not found:
            raise DataError(
                f"{class_dir}: no {kind.files} ({kind.kinds}); add {kind.add} or remove the folder"
            )
    if report.ignored_files:
        kind.logger.info("%s: ignoring %d entries that are not %s", base, report.ignored_files, kind.files)
    return FolderTally(base, kind, report, labels, files)


class FolderTally:
    """Keeps count while a folder's files are decoded in order: :meth:`keep` or :meth:`skip` each, then
    :meth:`finish`.

    Attributes:
        base: the folder; ``report``: its report.
        classes: the classes in order (folders whose names are one label, such as ``1`` and ``1.0``, are one).
        files: ``(path, class)`` of every file to decode, in order.
        labels: the class of each kept file, in reading order; ``sources``: its path.
    """

    def __init__(
        self,
        base: Path,
        kind: FolderKind,
        report: FolderReport,
        class_of: dict[Path, str],
        files: list[tuple[Path, str]],
    ) -> None:
        self.base, self.kind, self.report = base, kind, report
        self.files = files
        self._folders: dict[str, list[Path]] = {}  # class -> its folders, in order
        for folder, label in class_of.items():
            self._folders.setdefault(label, []).append(folder)
        self.classes = list(self._folders)
        self.labels: list[str] = []
        self.sources: list[str] = []
        self._first_error: dict[str, str] = {}  # class -> its first skipped file's message

    def skip(self, label: str, error: SkippedFileError) -> None:
        """Count a file of class ``label`` that could not be used."""
        self.report._skip(error.reason, str(error))
        self.kind.logger.debug("skipping %s", error)
        self._first_error.setdefault(label, str(error))

    def keep(self, path: Path, label: str) -> None:
        """Count a file of class ``label`` that was read."""
        self.labels.append(label)
        self.sources.append(str(path))
        self.report.per_class[label] = self.report.per_class.get(label, 0) + 1

    def finish(self) -> tuple[str, ...]:
        """Complete the report (kept, per-class counts in class order, a warning when files were skipped) and
        return the classes, the class folder names in order.

        Raises:
            DataError: no file was read, or none of one class. One line naming the folder.
        """
        report, files = self.report, self.kind.files
        if not self.labels:
            raise DataError(
                f"{self.base}: none of the {len(self.files)} {files} could be read "
                f"(e.g. {report.skipped_files[0]})"
            )
        seen = Counter(label for _, label in self.files)  # files per class
        for label in self.classes:
            if not report.per_class.get(label):
                folders = " + ".join(str(d) for d in self._folders[label])
                raise DataError(
                    f"{folders}: none of its {seen[label]} {files} could be read "
                    f"(e.g. {self._first_error[label]})"
                )
        report.per_class = {label: report.per_class[label] for label in self.classes}
        report.kept = len(self.labels)
        if report.skipped:
            self.kind.logger.warning("%s", report.skipped_lines())
        return tuple(self.classes)
