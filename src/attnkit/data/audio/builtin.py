"""Built-in audio datasets by name: ``fsdd``, ``fsdd:train``, ``fsdd:test``, ``fsdd:all``.

The same ``<name>[:<split>]`` spelling as the text and image built-ins (:mod:`attnkit.data.vision.builtin`); a
name without a split means the dataset's first split (``train``). Splits are the official ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from attnkit.data.audio import fsdd
from attnkit.data.audio.audioset import AudioSet
from attnkit.data.builtins import RegisteredDataset, get_registered, parse_registered_name, split_source
from attnkit.data.errors import DataError


class SplitLoader(Protocol):
    """Loads one split of a built-in audio dataset (e.g. :func:`~attnkit.data.audio.load_fsdd`)."""

    def __call__(
        self,
        split: Any,
        *,
        sample_rate: int = ...,
        data_dir: str | os.PathLike[str] | None = ...,
        allow_download: bool = ...,
        cache_dir: str | os.PathLike[str] | None = ...,
    ) -> AudioSet: ...


@dataclass(frozen=True)
class AudioDataset(RegisteredDataset):
    """One built-in audio dataset.

    Attributes:
        name: registry name (``fsdd``).
        splits: the official split names; the first is the default.
        classes: class names in label-id order.
        sample_rate: the files' own rate in Hz, what a load without ``sample_rate`` returns.
        speakers: the speakers recorded, where the dataset names them.
        loader: loads one split.
        description: one line for listings and errors.
    """

    sample_rate: int
    speakers: tuple[str, ...]
    loader: SplitLoader
    description: str

    def load(
        self,
        split: str | None = None,
        *,
        sample_rate: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        allow_download: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> AudioSet:
        """Load ``split`` (``None``: :attr:`default_split`) at ``sample_rate`` (``None``: :attr:`sample_rate`).

        Raises:
            DataError: an unknown split (listing the valid ones), or the loader's errors.
        """
        return self.loader(
            self.checked_split(split),
            sample_rate=self.sample_rate if sample_rate is None else sample_rate,
            data_dir=data_dir,
            allow_download=allow_download,
            cache_dir=cache_dir,
        )


AUDIO_DATASETS: dict[str, AudioDataset] = {
    "fsdd": AudioDataset(
        name=fsdd.NAME,
        splits=("train", "test", "all"),
        classes=fsdd.CLASSES,
        sample_rate=fsdd.SAMPLE_RATE,
        speakers=fsdd.SPEAKERS,
        loader=fsdd.load_fsdd,
        description=(
            "Free Spoken Digit Dataset v1.0.10: digits 0-9 spoken by 6 speakers, 8 kHz mono, 2,700 train "
            "(takes 5-49), 300 test (takes 0-4)"
        ),
    ),
}


def parse_audio_name(source: str) -> tuple[str, str | None] | None:
    """``"fsdd:test"`` -> ``("fsdd", "test")``, ``" FSDD "`` -> ``("fsdd", None)``; ``None`` when the name
    before ``:`` is not a built-in audio dataset (the split is not checked)."""
    return parse_registered_name(source, AUDIO_DATASETS)


def get_audio_dataset(name: str) -> AudioDataset:
    """The registry entry for ``name`` (case-insensitive, ``_`` read as ``-``).

    Raises:
        DataError: an unknown name, listing the known ones.
    """
    return get_registered(name, AUDIO_DATASETS, "audio")


def load_audio_dataset(
    name: str,
    split: str | None = None,
    *,
    sample_rate: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> AudioSet:
    """Load a built-in: ``load_audio_dataset("fsdd", "test")`` or ``load_audio_dataset("fsdd:test")``.

    Args:
        name: ``<name>`` or ``<name>:<split>``.
        split: ``train``, ``test`` or ``all`` (the official split); ``None``: the split in ``name``, else the
            default (``train``).
        sample_rate: the rate in Hz to resample to; ``None`` keeps the dataset's own.
        data_dir, allow_download, cache_dir: where files are found (see the dataset's loader).

    Raises:
        DataError: unknown name or split, a split given twice differently, and the loader's errors.
    """
    base, named_split = split_source(name)
    dataset = get_audio_dataset(base)
    if named_split is not None and split is not None and named_split != split:
        raise DataError(f"{name!r} names split {named_split!r} but split={split!r} was given; give one")
    chosen = split if split is not None else named_split
    return dataset.load(
        chosen, sample_rate=sample_rate, data_dir=data_dir, allow_download=allow_download, cache_dir=cache_dir
    )
