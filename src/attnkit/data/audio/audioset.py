"""An in-memory set of labelled recordings: the one type every audio loader returns.

Dimensions: ``N`` recordings, ``S_i`` samples of recording ``i`` (lengths differ), at one ``sample_rate`` in Hz.
Samples are mono ``float32`` in ``[-1, 1]``, as :func:`attnkit.data.audio.decode.decode_audio` produces them;
framing into features happens later, in the audio task.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AudioSet:
    """Labelled mono recordings at one sample rate.

    Attributes:
        waveforms: ``N`` arrays, each ``(S_i,)`` float32 in ``[-1, 1]`` with ``S_i >= 1``. The decoders
            guarantee the range; this class checks dtype, shape and length only (a full scan per subset
            would cost more than the subset).
        labels: ``N`` class names (``"7"`` for a spoken digit, or a folder's name).
        sources: ``N`` places the recordings came from: a file path, or an archive member
            (``recordings/7_theo_3.wav``).
        sample_rate: samples per second of every waveform.
        speakers: ``N`` speaker names where the dataset records them (FSDD), else ``None`` (folders).
        classes: the class names in their canonical order (FSDD: ``"0"``..``"9"``; a folder: its class folders
            in natural order). Empty means the sorted distinct labels. Every label is one of them; a class may
            have no recording in a subset.
    """

    waveforms: list[np.ndarray]
    labels: list[str]
    sources: list[str]
    sample_rate: int
    speakers: list[str] | None = None
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        rate = self.sample_rate
        if not isinstance(rate, numbers.Integral) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(f"AudioSet.sample_rate must be a positive integer (Hz), got {rate!r}")
        object.__setattr__(self, "sample_rate", int(rate))
        n = len(self.waveforms)
        for i, wave in enumerate(self.waveforms):
            if (
                not isinstance(wave, np.ndarray)
                or wave.dtype != np.float32
                or wave.ndim != 1
                or wave.size == 0
            ):
                shape = getattr(wave, "shape", None)
                dtype = getattr(wave, "dtype", type(wave).__name__)
                raise ValueError(
                    f"AudioSet.waveforms[{i}] must be a non-empty float32 array (S,), got {dtype} of shape {shape}"
                )
        if len(self.labels) != n or len(self.sources) != n:
            raise ValueError(
                f"AudioSet: {n} waveforms but {len(self.labels)} labels and {len(self.sources)} sources; "
                "give one label and one source per recording"
            )
        if self.speakers is not None and len(self.speakers) != n:
            raise ValueError(
                f"AudioSet: {n} waveforms but {len(self.speakers)} speakers; give one per recording or None"
            )
        distinct = set(self.labels)
        if not self.classes:
            object.__setattr__(self, "classes", tuple(sorted(distinct)))
        else:
            object.__setattr__(self, "classes", tuple(self.classes))
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"AudioSet.classes has duplicates: {self.classes}")
            unknown = distinct - set(self.classes)
            if unknown:
                raise ValueError(
                    f"AudioSet: labels {sorted(unknown)[:5]} are not in classes {self.classes}; add them"
                )

    def __len__(self) -> int:
        return len(self.waveforms)

    @property
    def durations(self) -> np.ndarray:
        """``float64`` array ``(N,)``: each recording's length in seconds, ``S_i / sample_rate``."""
        lengths = np.fromiter((w.shape[0] for w in self.waveforms), dtype=np.int64, count=len(self))
        return lengths / self.sample_rate

    def label_ids(self) -> np.ndarray:
        """``int64`` array ``(N,)``: each label's position in :attr:`classes`."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.fromiter((index[label] for label in self.labels), dtype=np.int64, count=len(self))

    def subset(self, indices: Sequence[int] | np.ndarray) -> AudioSet:
        """The recordings at ``indices`` (integer positions, in that order, repeats allowed; or a boolean mask
        of length ``N``), as a new set with the same :attr:`classes` and sample rate. The waveform arrays are
        shared with this set, not copied: copy one before changing it in place.

        Raises:
            IndexError: a position is out of range, or a mask has the wrong length.
        """
        idx = np.asarray(indices)
        if idx.dtype == np.bool_:
            if idx.shape != (len(self),):
                raise IndexError(f"a boolean mask over {len(self)} recordings must have shape ({len(self)},)")
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"subset takes integer positions or a boolean mask, got {idx.dtype}")
        positions = idx.reshape(-1).tolist()
        n = len(self)
        bad = [i for i in positions if not -n <= i < n]
        if bad:
            raise IndexError(f"position {bad[0]} is out of range for {n} recordings")
        return AudioSet(
            waveforms=[self.waveforms[i] for i in positions],
            labels=[self.labels[i] for i in positions],
            sources=[self.sources[i] for i in positions],
            sample_rate=self.sample_rate,
            speakers=None if self.speakers is None else [self.speakers[i] for i in positions],
            classes=self.classes,
        )
