"""Audio folders: ``<root>/<class>/<file>.wav|.flac|.ogg``, one sub-folder per class, its name the label.

Dimensions: ``N`` recordings, ``S_i`` samples of recording ``i`` at ``sample_rate``.

Every file is decoded by :func:`attnkit.data.audio.decode.decode_audio` (the same conversion the server applies
to uploads): any sample rate, channel count or bit depth becomes mono ``float32`` at ``sample_rate``. What is
read and what is not, as for image folders (:mod:`attnkit.data.vision.folder`):

- audio files are files ending in ``.wav``, ``.flac`` or ``.ogg`` (any case) directly inside a class folder;
  other files, folders nested inside class folders and files beside the class folders are ignored and counted,
  and so are hidden names (starting with ``.``);
- an audio file that cannot be used (empty, zero-length, not audio, truncated, corrupt, too long, too large,
  too many channels, unreadable) is **skipped and counted** by reason in the :class:`AudioFolderReport`, the
  first few named; loading fails only when a class (or the whole folder) is left with none;
- a class folder with no audio file, a single class, or no class folder at all are errors naming the folder.

Classes are the folder names in natural order (``2`` before ``10``), files within a class likewise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnkit.data.audio.audioset import AudioSet
from attnkit.data.audio.decode import (
    AUDIO_SUFFIXES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHANNELS,
    AudioDecodeOptions,
    AudioError,
    read_audio_file,
)
from attnkit.data.errors import DataError
from attnkit.data.vision.folder import natural_key

logger = logging.getLogger(__name__)

#: How many skipped files a report names.
MAX_NAMED = 5
_KINDS = ".wav, .flac or .ogg"


@dataclass
class AudioFolderReport:
    """What happened while reading one audio folder.

    Attributes:
        source: the folder.
        kept: recordings returned.
        reasons: audio files skipped, by :attr:`~attnkit.data.audio.decode.AudioError.reason` (``"empty"``,
            ``"no frames"``, ``"not audio"``, ``"truncated"``, ``"corrupt"``, ``"too long"``, ...).
        skipped_files: the first :data:`MAX_NAMED` skipped files, each ``"<path>: <what is wrong>"``.
        ignored_files: entries that are not audio files by name (other suffixes, nested folders, files beside
            the class folders); not counted as skipped.
        hidden_files: entries whose name starts with ``.``, ignored.
        per_class: recordings kept per class, in class order.
    """

    source: str
    kept: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)
    ignored_files: int = 0
    hidden_files: int = 0
    per_class: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """Audio files skipped for any reason."""
        return sum(self.reasons.values())

    @property
    def total(self) -> int:
        """Audio files seen: kept plus skipped."""
        return self.kept + self.skipped

    def summary(self) -> str:
        """One line, e.g. ``skipped 2 of 40 audio files in digits/ (kept 38): 1 truncated, 1 too long``."""
        if not self.skipped:
            return f"kept all {self.kept} audio files in {self.source}"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.reasons.items() if n)
        return f"skipped {self.skipped} of {self.total} audio files in {self.source} (kept {self.kept}): {reasons}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable fields plus ``skipped``."""
        return {**asdict(self), "skipped": self.skipped}

    def _skip(self, error: AudioError) -> None:
        self.reasons[error.reason] = self.reasons.get(error.reason, 0) + 1
        if len(self.skipped_files) < MAX_NAMED:
            self.skipped_files.append(str(error))
        logger.debug("skipping %s", error)


def _is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_SUFFIXES


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: natural_key(e.name))
    except OSError as e:
        raise DataError(f"{folder}: cannot list the folder ({e.strerror or e})") from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def is_audio_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like an audio folder rather than an image or a text one.

    True when ``path`` is a folder whose (non-hidden) sub-folders hold at least one audio file (by suffix, see
    the module docstring) and more audio files than all their other files together. An image folder or a text
    folder (``<label>/<name>.txt``) is False; so is a file, a missing path, or a folder without sub-folders.
    Only names are looked at.
    """
    p = Path(path)
    if not p.is_dir():
        return False
    audio = other = 0
    try:
        for sub in _entries(p):
            if sub.name.startswith(".") or not _is_dir(sub):
                continue
            for entry in _entries(Path(sub.path)):
                if entry.name.startswith(".") or _is_dir(entry):
                    continue
                if _is_audio_name(entry.name):
                    audio += 1
                else:
                    other += 1
    except DataError:
        return False
    return audio > other


def load_audio_folder(
    root: str | os.PathLike[str],
    *,
    sample_rate: int,
    max_seconds: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> tuple[AudioSet, AudioFolderReport]:
    """Read ``<root>/<class>/<file>`` into an :class:`AudioSet` (see the module docstring for the rules).

    Args:
        root: the folder holding one sub-folder per class.
        sample_rate: the rate in Hz every recording is resampled to.
        max_seconds: longer recordings are skipped (``"too long"``).
        max_bytes: longer files are skipped unread (``"too large"``).
        max_channels: files with more channels are skipped.

    Returns:
        ``(audio, report)``: ``audio.waveforms`` are mono float32 at ``sample_rate``, ``audio.sources`` the
        file paths, ``audio.classes`` the class folder names, ``audio.speakers`` ``None``; ``report`` counts
        what was skipped or ignored.

    Raises:
        DataError: ``root`` is not a folder, has no class folders or only one, or a class folder has no audio
            files or none readable. One line naming the folder.
        ValueError: invalid options.
    """
    options = AudioDecodeOptions(sample_rate, max_seconds, max_bytes, max_channels)
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base}: not a folder; expected one sub-folder per class holding audio files")
    report = AudioFolderReport(source=str(base))
    class_dirs: list[Path] = []
    for entry in _entries(base):
        if entry.name.startswith("."):
            report.hidden_files += 1
        elif _is_dir(entry):
            class_dirs.append(Path(entry.path))
        else:
            report.ignored_files += 1
    layout = f"{base}/<class>/<file>.wav"
    if not class_dirs:
        raise DataError(
            f"{base}: no class folders; expected one sub-folder per class holding audio files ({layout})"
        )
    if len(class_dirs) == 1:
        raise DataError(
            f"{base}: only one class folder ({class_dirs[0].name}); a classifier needs at least two classes, "
            f"one sub-folder each ({layout})"
        )

    files: list[tuple[Path, str]] = []  # (audio file, class)
    for class_dir in class_dirs:
        found = 0
        for entry in _entries(class_dir):
            if entry.name.startswith("."):
                report.hidden_files += 1
            elif _is_dir(entry) or not _is_audio_name(entry.name):
                report.ignored_files += 1
            else:
                files.append((Path(entry.path), class_dir.name))
                found += 1
        if not found:
            raise DataError(f"{class_dir}: no audio files ({_KINDS}); add recordings or remove the folder")
    if report.ignored_files:
        logger.info("%s: ignoring %d entries that are not audio files", base, report.ignored_files)

    waveforms: list[np.ndarray] = []
    labels: list[str] = []
    sources: list[str] = []
    seen = dict.fromkeys((d.name for d in class_dirs), 0)  # audio files per class
    first_error: dict[str, str] = {}  # class -> its first skipped file's message
    for path, label in files:
        seen[label] += 1
        try:
            wave = read_audio_file(path, options)  # (S,)
        except AudioError as e:
            report._skip(e)
            first_error.setdefault(label, str(e))
            continue
        waveforms.append(wave)
        labels.append(label)
        sources.append(str(path))
        report.per_class[label] = report.per_class.get(label, 0) + 1

    if not waveforms:
        raise DataError(
            f"{base}: none of the {len(files)} audio files could be read (e.g. {report.skipped_files[0]})"
        )
    for class_dir in class_dirs:
        if not report.per_class.get(class_dir.name):
            raise DataError(
                f"{class_dir}: none of its {seen[class_dir.name]} audio files could be read "
                f"(e.g. {first_error[class_dir.name]})"
            )
    report.per_class = {d.name: report.per_class[d.name] for d in class_dirs}
    report.kept = len(labels)
    if report.skipped:
        logger.warning("%s", report.summary())
    audio = AudioSet(
        waveforms,
        labels,
        sources,
        options.sample_rate,
        speakers=None,
        classes=tuple(d.name for d in class_dirs),
    )
    return audio, report
