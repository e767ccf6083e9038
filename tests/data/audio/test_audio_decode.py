"""decode_audio on files written here with ``wave`` and soundfile: every PCM width and float, stereo mixdown,
resampling against a sine synthesized at the target rate and against librosa, FLAC and OGG, and one-line
AudioErrors (never anything else) for every kind of bad input, random and mutated bytes included."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from attnkit.data.audio import AudioDecodeOptions, AudioError, decode_audio, read_audio_file
from attnkit.data.errors import DataError

MakeWav = Callable[..., bytes]


def sf_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def decode(data: bytes, rate: int = 8000, seconds: float = 10.0, **kwargs: int) -> np.ndarray:
    return decode_audio(data, name="clip.wav", sample_rate=rate, max_seconds=seconds, **kwargs)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


# ----------------------------------------------------------------------------------------------------
# Sample formats: the values are the stored integers scaled as the module docstring says.


def test_unsigned_8_bit(make_wav: MakeWav) -> None:
    out = decode(make_wav(np.array([0, 64, 128, 192, 255]), 8000, width=1))
    np.testing.assert_array_equal(out, np.array([-1.0, -0.5, 0.0, 0.5, 127 / 128], np.float32))
    assert out.dtype == np.float32 and out.flags.c_contiguous


@pytest.mark.parametrize("width", [2, 3, 4])
def test_signed_pcm_widths(make_wav: MakeWav, width: int) -> None:
    full = 2 ** (8 * width - 1)
    ints = np.array([-full, -full // 2, -1, 0, 1, 12345, full // 4, full - 1])
    out = decode(make_wav(ints, 8000, width=width))
    np.testing.assert_allclose(out, (ints / full).astype(np.float32), rtol=0, atol=0)


def test_float_wav_is_taken_as_it_is_then_clipped() -> None:
    values = np.array([-1.5, -1.0, -0.25, 0.0, 1e-6, 0.75, 1.0, 2.0], np.float32)
    out = decode(sf_bytes(values, 8000, "WAV", "FLOAT"))
    np.testing.assert_array_equal(out, np.clip(values, -1, 1))


def test_stereo_is_mixed_down_by_the_mean(make_wav: MakeWav) -> None:
    left = np.array([1000, -2000, 32767, -32768, 7])
    right = np.array([3000, 2000, 32767, 0, -8])
    out = decode(make_wav(np.stack([left, right], 1), 8000, channels=2))
    np.testing.assert_allclose(out, (left + right) / 2 / 32768, rtol=0, atol=1e-7)  # 2000/32768, 0, ...
    six = np.stack([np.full(4, 600 * c) for c in range(6)], 1)  # channel c holds 600 c
    np.testing.assert_allclose(decode(make_wav(six, 8000, channels=6)), np.full(4, 1500 / 32768), atol=1e-7)


def test_flac_is_lossless_and_ogg_close() -> None:
    ints = np.random.default_rng(0).integers(-20000, 20000, size=4000)
    flac = decode(sf_bytes(ints.astype(np.int16), 8000, "FLAC", "PCM_16"))
    np.testing.assert_array_equal(flac, (ints / 32768).astype(np.float32))
    tone = sine(440, 16000, 1.0)
    ogg = decode(sf_bytes(tone.astype(np.float32), 16000, "OGG", "VORBIS"), rate=16000)
    assert ogg.shape == (16000,)
    # Vorbis is lossy: the tone comes back within 1 % RMS error of its amplitude away from the ends.
    rms_error = np.sqrt(np.mean((ogg[800:-800] - tone[800:-800]) ** 2))
    assert rms_error < 0.005


# ----------------------------------------------------------------------------------------------------
# Resampling.


def test_44k1_to_8k_keeps_a_440_hz_sine() -> None:
    tone = sine(440, 44100, 1.0)
    data = sf_bytes(np.stack([tone, tone], 1).astype(np.float32), 44100, "WAV", "FLOAT")
    out = decode(data, rate=8000)
    assert out.shape == (8000,)
    reference = sine(440, 8000, 1.0)  # the same tone synthesized at 8 kHz: output sample k is at k / 8000 s
    # soxr's filter has no delay; away from the first and last 10 ms (its edge transients, up to 0.02 there)
    # the resampled tone equals the synthesized one within 1e-5 (float32 rounding is 6e-8 at 0.5).
    np.testing.assert_allclose(out[80:-80], reference[80:-80], rtol=0, atol=1e-5)
    assert np.abs(out - reference).max() < 0.03
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) * 8000 / len(out) == 440.0


@pytest.mark.slow  # importing librosa and compiling its numba kernels takes 4-8 s here; the check itself 5 ms
def test_resampling_matches_librosa(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    stereo = (0.3 * rng.standard_normal((22050, 2))).astype(np.float32)
    path = tmp_path / "noise.flac"
    soundfile.write(path, stereo, 22050, subtype="PCM_24")
    ours = read_audio_file(path, AudioDecodeOptions(16000, 10.0))
    theirs, rate = librosa.load(path, sr=16000, mono=True, res_type="soxr_hq")  # mean mixdown, soxr HQ
    assert rate == 16000 and ours.shape == theirs.shape == (16000,)
    np.testing.assert_allclose(ours, np.clip(theirs, -1, 1), rtol=0, atol=1e-6)


def test_upsampling_8k_to_16k_doubles_the_length(make_wav: MakeWav) -> None:
    tone = np.round(sine(300, 8000, 0.5) * 32767)
    out = decode(make_wav(tone, 8000), rate=16000)
    assert out.shape == (8000,)
    np.testing.assert_allclose(out[160:-160], sine(300, 16000, 0.5)[160:-160], rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------------------------
# Bad inputs: an AudioError naming the input, one line, with a reason.


def expect(data: bytes, reason: str, pattern: str, **kwargs: float) -> AudioError:
    with pytest.raises(AudioError) as caught:
        decode_audio(
            data,
            name="upload.wav",
            sample_rate=8000,
            max_seconds=float(kwargs.pop("max_seconds", 10.0)),
            **{k: int(v) for k, v in kwargs.items()},  # type: ignore[arg-type]
        )
    error = caught.value
    assert isinstance(error, DataError)
    message = str(error)
    assert message.startswith("upload.wav: ") and "\n" not in message, message
    assert error.reason == reason, message
    assert pattern in message, message
    return error


def test_empty_input() -> None:
    expect(b"", "empty", "empty file (0 bytes)")


def test_a_wav_header_with_no_frames(make_wav: MakeWav) -> None:
    header = make_wav(np.zeros(0), 8000)
    assert len(header) == 44
    expect(header, "no frames", "no audio frames (zero-length WAV file)")
    expect(
        sf_bytes(np.zeros((0, 1), np.float32), 8000, "FLAC"), "empty", "empty file"
    )  # libsndfile writes nothing


def test_truncated_wav(make_wav: MakeWav) -> None:
    data = make_wav(np.arange(1000), 8000)  # 2,000 bytes of samples after a 44-byte header
    expect(
        data[:1000],
        "truncated",
        "truncated WAV file (the data chunk declares 2,000 bytes of samples, 956 are present)",
    )
    expect(data[:-1], "truncated", "1,999 are present")
    expect(data[:30], "truncated", "truncated WAV file (the file ends inside its 'fmt ' chunk")
    expect(data[:12], "truncated", "truncated WAV file")


def test_truncated_flac_and_ogg() -> None:
    tone = sine(440, 8000, 5.0).astype(np.float32)
    flac = sf_bytes(tone, 8000, "FLAC")
    error = expect(flac[: len(flac) // 2], "corrupt", "corrupt or truncated FLAC file")
    assert "frames" in str(error)  # it names how far decoding got
    ogg = sf_bytes(tone, 8000, "OGG", "VORBIS")
    expect(ogg[: len(ogg) // 2], "truncated", "truncated OGG file (the file ends inside an Ogg page, ")
    expect(ogg[:-1], "truncated", "1 bytes short")
    expect(ogg[:20], "truncated", "the file ends inside an Ogg page header")
    first_page = 27 + ogg[26] + sum(ogg[27 : 27 + ogg[26]])
    expect(ogg[:first_page], "truncated", "the stream ends before its last page")


def test_not_audio() -> None:
    expect(b"this is a text file renamed .wav\n" * 5, "not audio", "not audio (it looks like text)")
    expect(b"RIFF\x10\x00\x00\x00AVI LIST", "not audio", "a RIFF 'AVI' file, not RIFF/WAVE")
    expect(bytes(range(256)), "not audio", "unrecognised leading bytes")
    # libsndfile's own probe would take this for an MP3 frame; only WAV, FLAC and OGG are accepted.
    expect(b"\xff\xfb\x90\x64" + bytes(2000), "not audio", "expected a WAV, FLAC or OGG file")


def test_corrupt_headers(make_wav: MakeWav) -> None:
    data = bytearray(make_wav(np.arange(100), 8000))
    struct.pack_into("<H", data, 22, 0)  # zero channels
    expect(bytes(data), "corrupt", "corrupt or truncated WAV file (")
    flac = bytearray(sf_bytes(np.zeros(100, np.float32), 8000, "FLAC"))
    flac[4] = 0x7F  # the first metadata block's type: 127 is invalid
    expect(bytes(flac), "corrupt", "corrupt or truncated FLAC file")


def test_nan_samples_are_corrupt() -> None:
    expect(
        sf_bytes(np.array([0.0, np.nan, 0.5], np.float32), 8000, "WAV", "FLOAT"), "corrupt", "NaN or infinite"
    )


def test_caps(make_wav: MakeWav) -> None:
    ten_seconds = make_wav(np.zeros(80_000), 8000)
    expect(ten_seconds, "too long", "too long (10.00 s > 9.5 s)", max_seconds=9.5)
    assert decode(ten_seconds, seconds=10.0).shape == (80_000,)  # exactly the cap is allowed
    expect(ten_seconds, "too large", f"too large ({len(ten_seconds):,} bytes > 1,000)", max_bytes=1000)
    three = make_wav(np.zeros((10, 3)), 8000, channels=3)
    expect(three, "too many channels", "too many channels (3 > 2)", max_channels=2)


def test_a_flac_without_its_length_is_refused() -> None:
    flac = bytearray(sf_bytes(np.zeros(100, np.float32), 8000, "FLAC"))
    streaminfo = 8  # after "fLaC" and the 4-byte block header
    total = int.from_bytes(flac[streaminfo + 10 : streaminfo + 18], "big")
    flac[streaminfo + 10 : streaminfo + 18] = (total & ~((1 << 36) - 1)).to_bytes(
        8, "big"
    )  # 36-bit count = 0
    expect(bytes(flac), "unsupported", "the FLAC header does not give the length")


def test_too_short_to_resample(make_wav: MakeWav) -> None:
    with pytest.raises(
        AudioError, match=r"too short \(2 frames at 44,100 Hz is less than one sample at 8,000 Hz\)"
    ):
        decode_audio(make_wav(np.zeros(2), 44100), name="tick.wav", sample_rate=8000, max_seconds=1)


def test_random_and_mutated_bytes_raise_only_audio_errors(make_wav: MakeWav) -> None:
    rng = np.random.default_rng(2)
    tone = sine(440, 8000, 0.3).astype(np.float32)
    valid = [
        make_wav(np.round(tone * 30000), 8000),
        sf_bytes(tone, 8000, "FLAC"),
        sf_bytes(tone, 8000, "OGG", "VORBIS"),
        sf_bytes(np.stack([tone, tone], 1), 8000, "WAV", "FLOAT"),
    ]
    inputs = [rng.bytes(int(n)) for n in rng.integers(1, 4000, size=60)]
    inputs += [magic + rng.bytes(500) for magic in (b"RIFF", b"fLaC", b"OggS", b"RIFF\x00\x01\x00\x00WAVE")]
    for data in valid:
        for _ in range(25):
            mutated = bytearray(data)
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
                mutated[at] = int(rng.integers(0, 256))
            inputs.append(bytes(mutated[: int(rng.integers(1, len(data) + 1))]))
    outcomes = {"decoded": 0, "refused": 0}
    for data in inputs:
        try:
            out = decode_audio(data, name="fuzz", sample_rate=8000, max_seconds=5)
        except AudioError as e:
            assert str(e).startswith("fuzz: ") and "\n" not in str(e)
            outcomes["refused"] += 1
        else:
            assert out.dtype == np.float32 and out.ndim == 1 and out.size > 0
            assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 60  # every random input at least; some mutated files still decode


def test_read_audio_file_errors(tmp_path: Path, make_wav: MakeWav) -> None:
    options = AudioDecodeOptions(8000, 5.0, max_bytes=100)
    with pytest.raises(AudioError, match=r"missing\.wav: cannot read the file") as e:
        read_audio_file(tmp_path / "missing.wav", options)
    assert e.value.reason == "unreadable file"
    big = tmp_path / "big.wav"
    big.write_bytes(make_wav(np.zeros(100), 8000))
    with pytest.raises(AudioError, match=r"big\.wav: too large \(244 bytes > 100\)"):
        read_audio_file(big, options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 0}, "sample_rate must be an integer in [1, 768000] Hz, got 0"),
        ({"sample_rate": 8000.0}, "sample_rate must be an integer"),
        ({"max_seconds": float("inf")}, "max_seconds must be a finite number of seconds > 0, got inf"),
        ({"max_seconds": 0}, "max_seconds must be a finite number"),
        ({"max_bytes": 0}, "max_bytes must be an integer > 0, got 0"),
        ({"max_channels": -1}, "max_channels must be an integer > 0, got -1"),
    ],
)
def test_options_are_validated(kwargs: dict[str, float], message: str) -> None:
    arguments: dict[str, float] = {"sample_rate": 8000, "max_seconds": 1.0, **kwargs}
    with pytest.raises(ValueError) as e:
        AudioDecodeOptions(**arguments)  # type: ignore[arg-type]
    assert str(e.value) == message or str(e.value).startswith(message)
    assert not isinstance(e.value, AudioError)


def test_other_chunks_around_the_samples(make_wav: MakeWav) -> None:
    data = make_wav(np.arange(100), 8000)
    fmt_end = 12 + 8 + 16  # "RIFF" size "WAVE", then the 16-byte fmt chunk
    info = b"LIST" + struct.pack("<I", 4) + b"INFO"
    with_list = data[:fmt_end] + info + data[fmt_end:] + b"junk" + struct.pack("<I", 2) + b"ab"
    np.testing.assert_array_equal(decode(with_list), np.arange(100, dtype=np.float32) / 32768)
    oversized = data[:fmt_end] + b"LIST" + struct.pack("<I", 10**6) + b"INFO" + data[fmt_end:]
    expect(
        oversized,
        "truncated",
        "truncated WAV file (the file ends inside its 'LIST' chunk, before any samples)",
    )


@pytest.mark.parametrize("rate", [0, 1, 999])
def test_a_wav_declaring_a_rate_below_1000_hz_is_refused(rate: int) -> None:
    """Rate 0 gave libsndfile's "SF_INFO struct incomplete"; 1 Hz was accepted and 8 samples resampled into
    8 seconds. The rate is read from the fmt chunk, after a LIST chunk, where the header puts it."""
    wav = bytearray(sf_bytes(np.zeros(8, np.float32), 8000, "WAV", "PCM_16"))
    fmt = wav.index(b"fmt ")
    listing = b"LIST" + struct.pack("<I", 5) + b"INFO!" + b"\x00"  # odd size: padded to even
    wav[fmt:fmt] = listing
    wav[4:8] = struct.pack("<I", len(wav) - 8)
    fmt += len(listing)
    wav[fmt + 12 : fmt + 16] = struct.pack("<I", rate)
    with pytest.raises(
        AudioError, match=rf"up\.wav: unsupported sample rate {rate:,} Hz \(expected 1,000 to "
    ):
        decode_audio(bytes(wav), sample_rate=8000, max_seconds=10.0, name="up.wav")
    wav[fmt + 12 : fmt + 16] = struct.pack("<I", 1000)
    assert decode_audio(bytes(wav), sample_rate=1000, max_seconds=10.0, name="up.wav").shape == (8,)
