"""Recordings in requests: multipart uploads and base64 JSON to waveforms, every bad recording a 4xx.

An audio run's ``/predict`` and ``/explain`` take WAV, FLAC or OGG files as a ``multipart/form-data`` upload
(field ``file``, repeated for several) or as JSON ``{"audio": "<base64>"}`` / ``{"audios": [...]}`` (plain base64
or a ``data:`` URL); the request parts every file modality shares are in :mod:`attnkit.serve.uploads`. Every file
goes through :func:`attnkit.data.audio.decode_audio` at the run's sample rate and ``max_seconds``, the call the
task makes for :meth:`~attnkit.predictor.Predictor.predict_proba` on file bytes, so a served recording gets the
samples the library would give it: mixed down to mono, resampled with soxr, in ``[-1, 1]``. Decoding runs on a
small thread pool (:class:`AudioDecoder`), off the event loop, at most ``decode_workers`` files at once.

What a bad recording gets (``{"error", "detail"}``, the detail naming the file), by
:attr:`~attnkit.data.audio.AudioError.reason`: not audio or an unsupported format 415; too large, too long
or too many channels 413; empty, truncated, corrupt or without frames 400. Base64 that does not decode and a
malformed multipart body are 400, no recording or too many 422.

Dimension legend: ``S`` samples at the run's sample rate.
"""

from __future__ import annotations

import numpy as np

from attnkit.data.audio import AudioError, decode_audio
from attnkit.serve.errors import RequestError
from attnkit.serve.uploads import Upload, UploadDecoder, UploadKind

__all__ = ["AUDIO_ERRORS", "AUDIO_UPLOADS", "AudioDecoder", "audio_error"]

#: How an audio run's requests name their files. An empty file is the decoder's to refuse (400, like any file
#: with nothing to decode).
AUDIO_UPLOADS = UploadKind(
    "audio", "audio", "audios", "recording", "recordings", "audio files (WAV, FLAC, OGG)", refuse_empty=False
)
#: ``AudioError.reason`` -> (HTTP status, error kind).
AUDIO_ERRORS: dict[str, tuple[int, str]] = {
    "not audio": (415, "not_audio"),
    "unsupported": (415, "unsupported_audio"),
    "too large": (413, "audio_too_large"),
    "too long": (413, "audio_too_long"),
    "too many channels": (413, "too_many_channels"),
    "empty": (400, "empty_audio"),
    "truncated": (400, "truncated_audio"),
    "corrupt": (400, "corrupt_audio"),
    "no frames": (400, "no_audio_frames"),
}


def audio_error(err: AudioError) -> RequestError:
    """The 4xx answer to a recording :func:`decode_audio` refused (status by :attr:`AudioError.reason`)."""
    status, kind = AUDIO_ERRORS.get(err.reason, (400, "bad_audio"))
    return RequestError(status, kind, str(err))


class AudioDecoder(UploadDecoder[np.ndarray]):
    """Decode audio uploads as the run's task does, at most ``workers`` at once, on threads of their own.

    Args:
        sample_rate: the run's sample rate in Hz (every file is resampled to it).
        max_seconds: the run's longest recording; longer files are refused from their header (413).
        max_bytes: files longer than this are refused (413).
        max_channels: files with more channels are refused (413).
        workers: files decoded at once.
    """

    def __init__(
        self, sample_rate: int, max_seconds: float, *, max_bytes: int, max_channels: int, workers: int = 2
    ) -> None:
        super().__init__(workers=workers)
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.max_bytes = max_bytes
        self.max_channels = max_channels
        # Resampling may round a clip of exactly max_seconds one sample over what the model's tables hold.
        self.max_samples = int(max_seconds * sample_rate)

    def decode_one(self, upload: Upload) -> np.ndarray:
        """``(S,)`` float32 mono samples of one upload; :class:`RequestError` for a bad recording."""
        try:
            waveform = decode_audio(
                upload.data,
                name=upload.where,
                sample_rate=self.sample_rate,
                max_seconds=self.max_seconds,
                max_bytes=self.max_bytes,
                max_channels=self.max_channels,
            )
        except AudioError as err:
            raise audio_error(err) from None
        return waveform[: self.max_samples]
