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
from pathlib import Path

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
from attnkit.data.folders import (
    MAX_NAMED,
    FolderKind,
    FolderReport,
    class_folder_entries,
    has_suffix,
    is_dir_entry,
    scan_class_folders,
)

__all__ = ["MAX_NAMED", "AudioFolderReport", "is_audio_folder", "load_audio_folder"]

logger = logging.getLogger(__name__)

_KIND = FolderKind(
    files="audio files",
    holding="audio files",
    leaf="<file>.wav",
    kinds=".wav, .flac or .ogg",
    add="recordings",
    suffixes=AUDIO_SUFFIXES,
    logger=logger,
)


class AudioFolderReport(FolderReport):
    """What happened while reading one audio folder (the fields: :class:`~attnkit.data.folders.FolderReport`).

    ``reasons`` counts audio files by :attr:`~attnkit.data.audio.decode.AudioError.reason` (``"empty"``,
    ``"no frames"``, ``"not audio"``, ``"truncated"``, ``"corrupt"``, ``"too long"``, ...); ``kept`` and
    ``per_class`` count recordings. :meth:`summary` reads e.g. ``skipped 2 of 40 audio files in digits/
    (kept 38): 1 truncated, 1 too long``.
    """

    noun = "audio files"


def is_audio_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like an audio folder rather than an image or a text one.

    True when ``path`` is a folder whose (non-hidden) sub-folders hold at least one audio file (by suffix, see
    the module docstring) and more audio files than all their other files together. An image folder or a text
    folder (``<label>/<name>.txt``) is False; so is a file, a missing path, or a folder without sub-folders.
    Only names are looked at.
    """
    entries = class_folder_entries(path)
    if entries is None:
        return False
    files = [entry for entry in entries if not is_dir_entry(entry)]
    audio = sum(has_suffix(entry.name, AUDIO_SUFFIXES) for entry in files)
    return audio > len(files) - audio


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
    report = AudioFolderReport(source=str(Path(root)))
    tally = scan_class_folders(root, _KIND, report)
    waveforms: list[np.ndarray] = []
    for path, label in tally.files:
        try:
            wave = read_audio_file(path, options)  # (S,)
        except AudioError as e:
            tally.skip(label, e)
            continue
        waveforms.append(wave)
        tally.keep(path, label)
    classes = tally.finish()
    audio = AudioSet(
        waveforms, tally.labels, tally.sources, options.sample_rate, speakers=None, classes=classes
    )
    return audio, report
