"""Decoding one audio file's bytes into a mono ``float32`` waveform: the one conversion every audio path shares.

Dimensions: ``F`` frames of the file (one sample per channel each), ``C`` channels, ``S`` output samples at
``sample_rate``.

The built-in datasets, the folder reader and the HTTP server all call :func:`decode_audio`, so a file becomes the
same samples whichever way it arrives. The steps, in order:

1. **Refuse** an empty input, more than ``max_bytes``, and anything that is not a WAV (RIFF/WAVE, RIFX, RF64),
   FLAC or OGG (Vorbis, Opus) file by its leading bytes. libsndfile (through soundfile) reads many more formats;
   only these three are accepted, so random bytes never reach its format guessing (its MP3 probe takes bytes
   that merely start like an MPEG frame, and mpg123 then writes notes to stderr).
2. **Check the header** before decoding: at most ``max_channels`` channels, a source rate in
   ``[1, 768,000]`` Hz, a declared length (a FLAC stream that leaves it out is refused), at least one frame, at
   most ``max_seconds`` of audio. A WAV whose ``data`` chunk declares more bytes than the file holds, and an
   Ogg stream that ends inside a page or before its end-of-stream page, are **truncated** (libsndfile would
   silently return the frames that are there, or none at all for Ogg).
3. **Decode** in blocks, each block **mixed down to mono by the mean of its channels**, so memory is one mono
   waveform whatever ``C`` is. Integer PCM is scaled by libsndfile to ``[-1, 1)``: unsigned 8-bit ``(v - 128) /
   128``, signed ``b``-bit ``v / 2**(b - 1)``; float files are taken as they are. A decoder error, fewer frames
   than the header declares, or a NaN / infinite sample is an :class:`AudioError`.
4. **Resample** to ``sample_rate`` with soxr's high-quality recipe (``"HQ"``, linear phase), when the file's
   rate differs. soxr's batch ``resample`` removes the filter's delay, so output sample ``k`` is the signal at
   time ``k / sample_rate``; about ``F * sample_rate / rate`` samples come out.
5. **Clip** to ``[-1, 1]`` (float files and the resampler's overshoot may leave it slightly).

Every problem with the bytes is an :class:`AudioError` (a :class:`~attnkit.data.errors.DataError`) with a
one-line message naming the input and a :attr:`AudioError.reason`; nothing else is raised for bad bytes.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
import soxr

from attnkit.data.errors import DataError

AudioErrorReason = Literal[
    "empty",
    "too large",
    "not audio",
    "truncated",
    "corrupt",
    "no frames",
    "too long",
    "too many channels",
    "unsupported",
    "unreadable file",
]

#: File suffixes taken for audio (lowercase).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
#: Default input-size cap per file: about 6 minutes of 48 kHz 16-bit stereo WAV.
DEFAULT_MAX_BYTES = 64 << 20
#: Default channel cap (7.1 surround has 8; microphone arrays up to 32).
DEFAULT_MAX_CHANNELS = 32
#: The highest source or target rate accepted, in Hz.
MAX_SAMPLE_RATE = 768_000
# The lowest rate a recording may have: below it a file is broken, not speech (a 1 Hz header on 8 samples would
# be resampled into seconds of nothing).
MIN_SAMPLE_RATE = 1_000
#: soxr's quality recipe: "HQ" is its high-quality, linear-phase filter.
RESAMPLE_QUALITY = "HQ"

# Frames decoded per libsndfile call: (BLOCK_FRAMES, C) float32 is the largest temporary.
BLOCK_FRAMES = 1 << 16
# libsndfile reports SF_COUNT_MAX frames when a FLAC header leaves the length out.
_UNKNOWN_FRAMES = 1 << 62
# soundfile's format names that belong to the accepted containers.
_FORMAT_OF = {"WAV": "WAV", "WAVEX": "WAV", "RF64": "WAV", "FLAC": "FLAC", "OGG": "OGG"}
_NO_LENGTH = 0xFFFFFFFF  # a RIFF chunk size meaning "unknown" (streamed writers; RF64 keeps it in ds64)
_EXPECTED = "expected a WAV, FLAC or OGG file"


class AudioError(DataError):
    """One audio input could not be used.

    Attributes:
        reason: what is wrong (:data:`AudioErrorReason`); the folder reader counts skipped files by it.
    """

    def __init__(self, message: str, reason: AudioErrorReason) -> None:
        super().__init__(message)
        self.reason: AudioErrorReason = reason


@dataclass(frozen=True)
class AudioDecodeOptions:
    """What :func:`decode_audio` produces and what it refuses.

    Attributes:
        sample_rate: the output rate in Hz; every input is resampled to it.
        max_seconds: inputs longer than this (by their header, before decoding) are refused.
        max_bytes: inputs longer than this many bytes are refused.
        max_channels: inputs with more channels are refused.
    """

    sample_rate: int
    max_seconds: float
    max_bytes: int = DEFAULT_MAX_BYTES
    max_channels: int = DEFAULT_MAX_CHANNELS

    def __post_init__(self) -> None:
        if not _is_int(self.sample_rate) or not 1 <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(
                f"sample_rate must be an integer in [1, {MAX_SAMPLE_RATE}] Hz, got {self.sample_rate!r}"
            )
        seconds = self.max_seconds
        if not isinstance(seconds, numbers.Real) or isinstance(seconds, bool) or not 0 < seconds < math.inf:
            raise ValueError(f"max_seconds must be a finite number of seconds > 0, got {seconds!r}")
        if not _is_int(self.max_bytes) or self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be an integer > 0, got {self.max_bytes!r}")
        if not _is_int(self.max_channels) or self.max_channels <= 0:
            raise ValueError(f"max_channels must be an integer > 0, got {self.max_channels!r}")
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "max_seconds", float(seconds))


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def decode_audio(
    data: bytes,
    *,
    name: str,
    sample_rate: int,
    max_seconds: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> np.ndarray:
    """Decode, mix down, resample and clip one WAV, FLAC or OGG file (see the module docstring for each step).

    Args:
        data: the file's bytes.
        name: the file name or upload, for messages.
        sample_rate: the output rate in Hz.
        max_seconds: refuse inputs longer than this.
        max_bytes: refuse inputs of more bytes than this.
        max_channels: refuse inputs with more channels than this.

    Returns:
        ``float32`` array ``(S,)`` in ``[-1, 1]`` at ``sample_rate``, C-contiguous, ``S >= 1``.

    Raises:
        AudioError: empty, too large, not audio, truncated, corrupt, no frames, too long, too many channels or
            unsupported (one line naming ``name``; :attr:`AudioError.reason` says which).
        ValueError: invalid options.
    """
    options = AudioDecodeOptions(sample_rate, max_seconds, max_bytes, max_channels)
    return decode_audio_with(data, options, name=name)


def read_audio_file(path: str | os.PathLike[str], options: AudioDecodeOptions) -> np.ndarray:
    """:func:`decode_audio_with` on a file's bytes; a file over ``options.max_bytes`` is refused unread.

    Raises:
        AudioError: the decoder's errors, ``"too large"``, or ``"unreadable file"`` (an ``OSError``), naming
            ``path``.
    """
    where = str(path)
    try:
        size = os.stat(path).st_size
        if size > options.max_bytes:
            raise _too_large(where, size, options.max_bytes)
        data = Path(path).read_bytes()
    except OSError as e:
        raise AudioError(f"{where}: cannot read the file ({e.strerror or e})", "unreadable file") from None
    return decode_audio_with(data, options, name=where)


def decode_audio_with(data: bytes, options: AudioDecodeOptions, *, name: str) -> np.ndarray:
    """:func:`decode_audio` with validated :class:`AudioDecodeOptions` (a folder reader checks them once)."""
    if len(data) == 0:
        raise AudioError(f"{name}: empty file (0 bytes); {_EXPECTED}", "empty")
    if len(data) > options.max_bytes:
        raise _too_large(name, len(data), options.max_bytes)
    container = _container(data, name)
    try:
        sound = soundfile.SoundFile(io.BytesIO(data))
    except Exception as e:  # LibsndfileError, and whatever a damaged header makes the binding raise
        cut = _shortfall(container, data, opened=False)
        if cut is not None:
            raise AudioError(f"{name}: truncated {container} file ({cut})", "truncated") from None
        declared = _wav_rate(data) if container == "WAV" else None
        if declared is not None and not MIN_SAMPLE_RATE <= declared <= MAX_SAMPLE_RATE:
            raise _bad_rate(name, declared) from None  # libsndfile: "SF_INFO struct incomplete"
        raise AudioError(
            f"{name}: corrupt or truncated {container} file ({_message(e)})", "corrupt"
        ) from None
    with sound:
        rate, frames = _check_header(sound, container, data, options, name)
        mono = _read_mono(sound, frames, container, name)  # (F,)
    if not np.isfinite(mono).all():
        raise AudioError(f"{name}: corrupt {container} file (NaN or infinite samples)", "corrupt")
    if rate != options.sample_rate:
        mono = _resample(mono, rate, options.sample_rate, name)  # (S,)
    np.clip(mono, -1.0, 1.0, out=mono)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _too_large(name: str, size: int, cap: int) -> AudioError:
    return AudioError(
        f"{name}: too large ({size:,} bytes > {cap:,}); use a shorter or compressed file", "too large"
    )


def _container(data: bytes, name: str) -> str:
    """``"WAV"``, ``"FLAC"`` or ``"OGG"`` by the leading bytes, else an :class:`AudioError` saying what it is."""
    head = data[:12]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64"):
        if head[8:12] == b"WAVE":
            return "WAV"
        kind = head[8:12].decode("latin-1").strip() or "unknown"
        raise AudioError(
            f"{name}: not audio (a RIFF {kind!r} file, not RIFF/WAVE); {_EXPECTED}",
            "not audio",
        )
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    what = "it looks like text" if _looks_like_text(data[:512]) else "unrecognised leading bytes"
    raise AudioError(f"{name}: not audio ({what}); {_EXPECTED}", "not audio")


def _looks_like_text(sample: bytes) -> bool:
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 3:  # an invalid byte, not a character cut at the end of the sample
            return False
        text = sample[: e.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\t\n\r" for c in text)


def _message(error: Exception) -> str:
    """libsndfile's own words, without soundfile's ``Error opening <_io.BytesIO object at 0x...>:`` prefix."""
    text = getattr(error, "error_string", None) or str(error) or type(error).__name__
    return " ".join(str(text).split()).rstrip(".")


def _shortfall(container: str, data: bytes, *, opened: bool) -> str | None:
    """Why a WAV or OGG file is cut short, or ``None`` (FLAC: the decoder itself notices, see :func:`_read_mono`).

    ``opened``: libsndfile opened the file, so it found the samples: a WAV is then judged by its ``data``
    chunk alone (a damaged chunk before it, which libsndfile skipped, is not a truncation).
    """
    if container == "WAV":
        return _wav_shortfall(data, opened=opened)
    if container == "OGG":
        return _ogg_shortfall(data)
    return None


def _wav_shortfall(data: bytes, *, opened: bool) -> str | None:
    """Why a RIFF/WAVE file is cut short (its ``data`` chunk, or unless ``opened`` a chunk before it, declares
    more bytes than there are), or ``None`` when it is not (or the length is unknown: size 0xFFFFFFFF, as in
    RF64)."""
    endian = ">" if data[:4] == b"RIFX" else "<"
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from(f"{endian}I", data, offset + 4)
        body = offset + 8
        present = len(data) - body
        if chunk_id == b"data":
            if size == _NO_LENGTH or size <= present:
                return None
            return f"the data chunk declares {size:,} bytes of samples, {present:,} are present"
        if size > present:
            name = chunk_id.decode("latin-1")
            return None if opened else f"the file ends inside its {name!r} chunk, before any samples"
        offset = body + size + (size & 1)
    return None if opened else "the file ends before its data chunk"


def _ogg_shortfall(data: bytes) -> str | None:
    """Why an Ogg stream is cut short (it ends inside a page, or its last page lacks the end-of-stream flag),
    or ``None``. Bytes that are not Ogg pages end the walk without a verdict: the decoder judges them."""
    offset, flags = 0, 0
    while offset + 27 <= len(data) and data[offset : offset + 4] == b"OggS":
        segments = data[offset + 26]
        table_end = offset + 27 + segments
        if table_end > len(data):
            return "the file ends inside an Ogg page header"
        end = table_end + sum(data[offset + 27 : table_end])
        if end > len(data):
            return f"the file ends inside an Ogg page, {end - len(data):,} bytes short"
        flags, offset = data[offset + 5], end
    rest = data[offset:]
    if rest and len(rest) < 27 and b"OggS".startswith(rest[:4]):
        return "the file ends inside an Ogg page header"
    if not rest and not flags & 0x04:
        return "the stream ends before its last page"
    return None


def _bad_rate(name: str, rate: int) -> AudioError:
    return AudioError(
        f"{name}: unsupported sample rate {rate:,} Hz (expected {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,})",
        "unsupported",
    )


def _wav_rate(data: bytes) -> int | None:
    """The sample rate a RIFF/WAVE file's ``fmt `` chunk declares, or None when there is no such chunk."""
    position = 12  # after "RIFF", the size and "WAVE"
    while position + 8 <= len(data):
        chunk, size = (
            data[position : position + 4],
            int.from_bytes(data[position + 4 : position + 8], "little"),
        )
        if chunk == b"fmt " and position + 16 <= len(data):
            return int.from_bytes(data[position + 12 : position + 16], "little")
        position += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def _check_header(
    sound: soundfile.SoundFile, container: str, data: bytes, options: AudioDecodeOptions, name: str
) -> tuple[int, int]:
    """``(rate, frames)`` of an opened file that passes the checks of step 2, else an :class:`AudioError`."""
    kind = _FORMAT_OF.get(str(sound.format))
    if kind != container:
        raise AudioError(
            f"{name}: unsupported audio format {sound.format!r} inside a {container} file", "unsupported"
        )
    channels, rate, frames = int(sound.channels), int(sound.samplerate), int(sound.frames)
    if channels > options.max_channels:
        raise AudioError(
            f"{name}: too many channels ({channels} > {options.max_channels}); mix it down first",
            "too many channels",
        )
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise _bad_rate(name, rate)
    if frames >= _UNKNOWN_FRAMES or frames < 0:
        raise AudioError(
            f"{name}: the {container} header does not give the length; re-encode the file", "unsupported"
        )
    cut = _shortfall(container, data, opened=True)
    if cut is not None:  # before the frame count: libsndfile counts 0 frames in a truncated OGG
        raise AudioError(f"{name}: truncated {container} file ({cut})", "truncated")
    if frames == 0:
        raise AudioError(f"{name}: no audio frames (zero-length {container} file)", "no frames")
    seconds = frames / rate
    if seconds > options.max_seconds:
        raise AudioError(
            f"{name}: too long ({seconds:,.2f} s > {options.max_seconds:g} s); use a shorter clip", "too long"
        )
    return rate, frames


def _read_mono(sound: soundfile.SoundFile, frames: int, container: str, name: str) -> np.ndarray:
    """All ``frames`` frames, each the mean of its channels: ``float32 (F,)``."""
    mono = np.empty(frames, dtype=np.float32)  # (F,)
    done = 0
    while done < frames:
        try:
            block = sound.read(min(BLOCK_FRAMES, frames - done), dtype="float32", always_2d=True)  # (n, C)
        except Exception as e:  # the decoder lost sync, a damaged packet, a short read
            raise AudioError(
                f"{name}: corrupt or truncated {container} file after {done:,} of {frames:,} frames ({_message(e)})",
                "corrupt",
            ) from None
        n = block.shape[0]
        if n == 0:
            raise AudioError(
                f"{name}: truncated {container} file (decoded {done:,} of the {frames:,} frames its header declares)",
                "truncated",
            )
        mono[done : done + n] = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)  # (n,)
        done += n
    return mono


def _resample(mono: np.ndarray, rate: int, target: int, name: str) -> np.ndarray:
    """``mono (F,)`` at ``rate`` -> ``(S,)`` at ``target`` with soxr; too short a clip is an :class:`AudioError`."""
    try:
        out = soxr.resample(mono, rate, target, quality=RESAMPLE_QUALITY)  # (S,)
    except Exception as e:  # soxr refuses ratios it cannot build a filter for
        raise AudioError(
            f"{name}: cannot resample {rate:,} Hz to {target:,} Hz ({_message(e)})", "unsupported"
        ) from None
    if out.shape[0] == 0:
        raise AudioError(
            f"{name}: too short ({mono.shape[0]} frames at {rate:,} Hz is less than one sample at {target:,} Hz)",
            "no frames",
        )
    return np.array(out, dtype=np.float32)  # a writable copy, for the in-place clip
