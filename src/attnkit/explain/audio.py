"""Explain predictions of a trained audio (speech) run: one :class:`AudioExplanation` per recording, the only input
the audio renderers (:mod:`attnkit.explain.render_audio`) read.

A unit is what the model attends over: a frame of the run's features, or a stack of ``stack_frames`` consecutive
frames. Unit ``u`` covers ``[u * unit_seconds, (u + 1) * unit_seconds)`` of the recording (the audio task's
``unit_spans``; frame ``t`` is centred at ``t * hop_seconds``). Every method of :mod:`attnkit.explain.methods`
gives one score per unit, through the model contract only: ``embed`` is the identity on the normalized feature
rows, so the gradient methods score each unit's features, and ``loo`` (occlusion) deletes the unit's frames as
the model's ``remove_units`` does, so the clip gets shorter instead of holding a made-up value.

For display an explanation also carries the recording's log-mel spectrogram as an 8-bit image (always log-mel,
whatever features the model reads: an MFCC is no picture) and, optionally, the recording itself as a base64 WAV
for the HTML page's player.

Dimension legend: ``B`` batch, ``U`` units, ``T`` spectrogram frames, ``M`` mel bands, ``S`` samples.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit.data.errors import DataError
from attnkit.explain.images import decode_png, encode_png
from attnkit.explain.methods import check_methods
from attnkit.explain.scale import scales_json
from attnkit.explain.units import (
    UnitScores,
    check_target,
    json_head,
    label_probabilities,
    read_head,
    reading,
    round_score,
    score_batch,
)
from attnkit.predictor import Predictor

__all__ = [
    "DISPLAY_RANGE_DB",
    "AudioExplanation",
    "ExplainedFrame",
    "decode_wav",
    "display_spectrogram",
    "encode_wav",
    "explain_recordings",
]

DISPLAY_RANGE_DB = 80.0
"""Dynamic range of the display spectrogram: ``[peak - DISPLAY_RANGE_DB, peak]`` dB maps to 0..255."""


@dataclass
class ExplainedFrame:
    """One unit: its place in time ``[start, end)`` in seconds and one score per method."""

    index: int
    start: float
    end: float
    scores: dict[str, float]


@dataclass
class AudioExplanation(UnitScores[ExplainedFrame]):
    """A recording, its prediction, the explained class and per-unit scores of each method.

    Attributes:
        spectrogram: ``(M, T)`` uint8, as displayed: the top row is the highest mel band, column ``t`` is frame
            ``t`` (centred at ``t * hop_seconds``); 0 is ``spectrogram_db[0]`` dB or less, 255 the peak.
        spectrogram_db: ``(low, high)`` dB that 0 and 255 stand for.
        label: the predicted label; ``probabilities``: the run's class probabilities (with its temperature).
        target: the class the scores explain.
        methods: the score keys, in display order.
        units: the scored units in time order (``units[i].index == i``).
        duration: the recording's length in seconds (``samples / sample_rate``).
        sample_rate: the run's sample rate in Hz (the recording was resampled to it).
        hop_seconds: seconds between two spectrogram columns (frames).
        unit_seconds: seconds per unit (``stack_frames * hop_seconds``).
        stack_frames: frames per unit.
        unit_name: what one unit is called (``frame``).
        audio_wav: the recording as a base64 16-bit PCM WAV at ``sample_rate``, or None when not kept.
        source: where the recording came from (a file name), if known.
    """

    spectrogram: np.ndarray = field(repr=False)
    spectrogram_db: tuple[float, float]
    label: str
    probabilities: dict[str, float]
    target: str
    methods: list[str]
    units: list[ExplainedFrame]
    duration: float
    sample_rate: int
    hop_seconds: float
    unit_seconds: float
    stack_frames: int = 1
    unit_name: str = "frame"
    audio_wav: str | None = field(default=None, repr=False)
    source: str | None = None

    @property
    def extent(self) -> float:
        """Seconds the time axis of a display covers: to the end of the last unit (or frame, or sample)."""
        last_unit = self.units[-1].end if self.units else 0.0
        return max(last_unit, self.spectrogram.shape[1] * self.hop_seconds, self.duration)

    def unit_at(self, seconds: float) -> int | None:
        """The index of the unit playing at ``seconds`` (``start <= seconds < end``), or None outside them."""
        for unit in self.units:
            if unit.start <= seconds < unit.end:
                return unit.index
        return None

    def waveform(self) -> np.ndarray | None:
        """``(S,)`` float32: the kept recording decoded from :attr:`audio_wav` (16-bit), or None."""
        return None if self.audio_wav is None else decode_wav(self.audio_wav)[0]

    def to_json_dict(self) -> dict[str, Any]:
        """The explanation in the audio JSON format (``modality: audio``): units with start and end seconds."""
        bands, frames = (int(v) for v in self.spectrogram.shape)
        data = json_head("audio", self.source, self.label, self.target, self.probabilities, self.methods)
        data |= {
            "audio": {
                "sample_rate": self.sample_rate,
                "duration": self.duration,
                "wav": self.audio_wav,
            },
            "spectrogram": {
                "kind": "log-mel",
                "bands": bands,
                "frames": frames,
                "hop_seconds": self.hop_seconds,
                "db_low": self.spectrogram_db[0],
                "db_high": self.spectrogram_db[1],
                "png": encode_png(self.spectrogram[..., None]),
            },
            "unit": {
                "name": self.unit_name,
                "seconds": self.unit_seconds,
                "stack_frames": self.stack_frames,
            },
            "units": [
                {"index": u.index, "start": u.start, "end": u.end, "scores": dict(u.scores)}
                for u in self.units
            ],
        }
        data["scale"] = scales_json(data)  # how renderers colour each method
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> AudioExplanation:
        """Read back :meth:`to_json_dict` (``scale`` is derived, so it is recomputed, not read).

        Raises:
            ValueError: ``data`` is not an audio explanation (the message names the missing or bad field).
        """
        with reading("an audio"):
            spec = data["spectrogram"]
            image = decode_png(str(spec["png"]))[..., 0]  # (M, T)
            if image.shape != (int(spec["bands"]), int(spec["frames"])):
                raise ValueError(
                    f"spectrogram.png is {image.shape[0]}x{image.shape[1]}, not bands x frames "
                    f"{spec['bands']}x{spec['frames']}"
                )
            audio, unit = data["audio"], data["unit"]
            units = [
                ExplainedFrame(
                    index=int(u["index"]),
                    start=float(u["start"]),
                    end=float(u["end"]),
                    scores={str(k): float(v) for k, v in u["scores"].items()},
                )
                for u in data["units"]
            ]
            return cls(
                spectrogram=image,
                spectrogram_db=(float(spec["db_low"]), float(spec["db_high"])),
                **read_head(data),
                units=units,
                duration=float(audio["duration"]),
                sample_rate=int(audio["sample_rate"]),
                hop_seconds=float(spec["hop_seconds"]),
                unit_seconds=float(unit["seconds"]),
                stack_frames=int(unit.get("stack_frames", 1)),
                unit_name=str(unit.get("name", "frame")),
                audio_wav=None if audio.get("wav") is None else str(audio["wav"]),
            )


def encode_wav(waveform: np.ndarray, sample_rate: int) -> str:
    """``(S,)`` float samples in ``[-1, 1]`` -> base64 text of a mono 16-bit PCM WAV (what browsers play)."""
    import soundfile

    buffer = io.BytesIO()
    samples = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    soundfile.write(buffer, samples, int(sample_rate), format="WAV", subtype="PCM_16")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_wav(text: str) -> tuple[np.ndarray, int]:
    """Inverse of :func:`encode_wav`: base64 WAV -> ``((S,) float32, sample_rate)`` (the first channel)."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(text, validate=True)), dtype="float32")
    return (samples if samples.ndim == 1 else samples[:, 0]), int(rate)


def display_spectrogram(
    log_mel: np.ndarray, range_db: float = DISPLAY_RANGE_DB
) -> tuple[np.ndarray, tuple[float, float]]:
    """``log_mel (T, M)`` dB -> ``((M, T) uint8 image, (low, high) dB)``: the top ``range_db`` dB below the peak
    spread over 0..255 (rounded half up), quieter values 0; the highest band is the top row."""
    values = np.asarray(log_mel, dtype=np.float64)  # (T, M)
    high = float(values.max()) if values.size else 0.0
    low = high - range_db
    levels = np.floor((np.clip(values, low, high) - low) / range_db * 255.0 + 0.5)  # (T, M)
    image = np.flipud(levels.T).astype(np.uint8)  # (M, T): band 0 (lowest) at the bottom
    return np.ascontiguousarray(image), (round_score(low), round_score(high))


def _seconds(value: float) -> float:
    """A time in seconds rounded to the nanosecond: ``3 * 0.01`` is written ``0.03``."""
    return round(float(value), 9)


def _waveforms(
    predictor: Predictor, recordings: Sequence[Any], sources: Sequence[str | None], first: int
) -> list[np.ndarray]:
    """Each recording as ``(S,)`` float32 mono at the run's rate; a bad one is a DataError naming its source."""
    task: Any = predictor.task
    waves = []
    for number, (item, source) in enumerate(zip(recordings, sources, strict=True)):
        where = source if source is not None else f"recording {first + number}"
        try:
            if isinstance(item, (str, Path)):
                item = Path(item).expanduser().read_bytes()
            waves.append(task.to_waveform(item, name=where))
        except OSError as err:
            raise DataError(f"{where}: cannot be read ({err.strerror or type(err).__name__})") from None
        except DataError:
            raise
        except ValueError as err:
            raise DataError(str(err)) from None
    return waves


def explain_recordings(
    predictor: Predictor,
    recordings: Sequence[Any],
    *,
    methods: Sequence[str] = ("attention",),
    target: str | None = None,
    ig_steps: int = 50,
    batch_size: int = 16,
    sources: Sequence[str | None] | None = None,
    include_audio: bool = True,
) -> list[AudioExplanation]:
    """Predict ``recordings`` and score every unit (frame, or stack of frames) with each of ``methods``.

    Args:
        predictor: a loaded audio run.
        recordings: encoded file bytes (WAV, FLAC, OGG), file paths, or 1-D float arrays of samples at the run's
            sample rate in ``[-1, 1]``; each is decoded, resampled and mixed down as the run's training
            recordings were.
        methods: names from :data:`attnkit.explain.METHODS`, or ``all``. For models with self-attention layers
            (the audio transformer), ``attention`` also adds ``rollout``. ``loo`` is occlusion: the unit's
            frames are deleted.
        target: the label to explain; default: each recording's predicted label.
        ig_steps: integration steps of Integrated Gradients (from the all-zero features: the training mean).
        batch_size: recordings per forward pass.
        sources: a name per recording (file names), kept in the explanation and used in error messages
            (default: the path, for a path; else none).
        include_audio: keep each recording as a base64 WAV (:attr:`AudioExplanation.audio_wav`) for the HTML
            page's player.

    Raises:
        ValueError: an unknown method or target label, a recording that cannot be used (a
            :class:`~attnkit.data.errors.DataError` naming it), or a run that is not an audio run.
    """
    if predictor.modality != "audio":
        raise ValueError(
            f"{predictor.run_dir} is a {predictor.modality} run: explain its inputs with "
            + (
                "attnkit.explain.explain_images"
                if predictor.modality == "image"
                else "attnkit.explain.explain"
            )
        )
    if isinstance(recordings, (bytes, bytearray, np.ndarray, str, Path)):
        raise TypeError("recordings must be a sequence of recordings; wrap a single recording in a list")
    check_target(predictor, target)
    items = list(recordings)
    if sources is None:
        names: list[str | None] = [str(item) if isinstance(item, (str, Path)) else None for item in items]
    else:
        names = list(sources)
    if len(names) != len(items):
        raise ValueError(f"got {len(names)} sources for {len(items)} recordings")
    check_methods(list(methods))  # unknown names fail even when there is nothing to explain
    if not items:
        return []
    model = predictor.model
    chosen = check_methods(list(methods), model)
    task: Any = predictor.task
    preparation = task.preparation
    rate = int(preparation.sample_rate)
    hop_seconds = int(preparation.features["hop_length"]) / rate
    frontend = task.frontend()
    results: list[AudioExplanation] = []
    for start in range(0, len(items), batch_size):
        chunk_names = names[start : start + batch_size]
        waves = _waveforms(predictor, items[start : start + batch_size], chunk_names, start)
        inputs, mask = predictor.encode_inputs(waves)  # (B, U, E), (B, U)
        probabilities, targets, scores = score_batch(predictor, inputs, mask, chosen, target, ig_steps)
        spans = task.unit_spans(mask.cpu())  # per row: (start, end) seconds of each real unit
        for row, wave in enumerate(waves):
            with torch.no_grad():
                log_mel = frontend.log_mel_spectrogram(torch.from_numpy(wave)[None])[0]  # (T, M)
            image, db_range = display_spectrogram(log_mel.numpy())
            probs = probabilities[row]
            units = [
                ExplainedFrame(
                    index=i,
                    start=_seconds(begin),
                    end=_seconds(end),
                    scores={name: round_score(float(scores[name][row, i])) for name in chosen},
                )
                for i, (begin, end) in enumerate(spans[row])
            ]
            results.append(
                AudioExplanation(
                    spectrogram=image,
                    spectrogram_db=db_range,
                    label=predictor.labels[int(probs.argmax())],
                    probabilities=label_probabilities(predictor.labels, probs),
                    target=predictor.labels[int(targets[row])],
                    methods=list(chosen),
                    units=units,
                    duration=_seconds(len(wave) / rate),
                    sample_rate=rate,
                    hop_seconds=_seconds(hop_seconds),
                    unit_seconds=_seconds(preparation.unit_seconds),
                    stack_frames=int(preparation.stack_frames),
                    unit_name=model.unit_name,
                    audio_wav=encode_wav(wave, rate) if include_audio else None,
                    source=chunk_names[row],
                )
            )
    return results
