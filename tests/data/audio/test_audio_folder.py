"""Audio folders (attnkit.data.audio.folder) on trees written here: every rate, width, channel count and
container to mono at one rate, unusable files skipped and counted, one-line errors for unusable layouts."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from attnkit.data.audio import (
    AudioDecodeOptions,
    decode_audio,
    is_audio_folder,
    load_audio_folder,
    read_audio_file,
)
from attnkit.data.errors import DataError
from attnkit.data.vision import is_image_folder

MakeWav = Callable[..., bytes]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)).astype(np.float32)


def mixed_tree(root: Path, make_wav: MakeWav) -> dict[str, Path]:
    """``yes/`` with one file of every kind plus bad, hidden and stray entries; ``no/`` with two good files."""
    good = make_wav(np.round(tone(300, 8000, 0.25) * 32767), 8000)
    return {
        "pcm16": write(root / "yes" / "take2.wav", good),
        "stereo_flac": write(
            root / "yes" / "take10.FLAC", encoded(np.stack([tone(440, 44100, 0.5)] * 2, 1), 44100, "FLAC")
        ),
        "ogg": write(root / "yes" / "take3.ogg", encoded(tone(500, 22050, 0.4), 22050, "OGG", "VORBIS")),
        "pcm24": write(root / "yes" / "take4.wav", encoded(tone(200, 16000, 0.3), 16000, "WAV", "PCM_24")),
        "u8": write(root / "yes" / "take5.wav", make_wav(np.full(800, 200), 11025, width=1)),
        "empty": write(root / "yes" / "empty.wav", b""),
        "header_only": write(root / "yes" / "silent.wav", make_wav(np.zeros(0), 8000)),
        "text": write(root / "yes" / "notes.wav", b"this is a text file renamed .wav\n"),
        "truncated": write(root / "yes" / "cut.wav", good[: len(good) // 2]),
        "too_long": write(root / "yes" / "long.wav", make_wav(np.zeros(8000 * 3), 8000)),
        "stray": write(root / "yes" / "readme.txt", b"recorded in a kitchen\n"),
        "hidden": write(root / "yes" / ".take.wav", good),
        "nested": write(root / "yes" / "more" / "x.wav", good),
        "beside": write(root / "LICENSE", b"CC0\n"),
        "no_a": write(root / "no" / "a.wav", make_wav(np.round(tone(250, 48000, 0.2) * 32767), 48000)),
        "no_b": write(root / "no" / "b.flac", encoded(tone(350, 8000, 0.2), 8000, "FLAC", "PCM_16")),
    }


def test_a_mixed_folder(tmp_path: Path, make_wav: MakeWav) -> None:
    files = mixed_tree(tmp_path / "words", make_wav)
    audio, report = load_audio_folder(tmp_path / "words", sample_rate=16000, max_seconds=2.0)
    assert audio.classes == ("no", "yes") and audio.sample_rate == 16000 and audio.speakers is None
    kept = ["no_a", "no_b", "pcm16", "ogg", "pcm24", "u8", "stereo_flac"]  # natural order within a class
    assert audio.sources == [str(files[k]) for k in kept]
    assert audio.labels == ["no", "no", "yes", "yes", "yes", "yes", "yes"]
    # Lengths at 16 kHz: 0.2 s, 0.2 s, 0.25 s, 0.4 s, 0.3 s, 800 / 11025 s, 0.5 s.
    assert [w.shape[0] for w in audio.waveforms] == [
        3200,
        3200,
        4000,
        6400,
        4800,
        round(800 * 16000 / 11025),
        8000,
    ]
    options = AudioDecodeOptions(16000, 2.0)
    for key, wave in zip(kept, audio.waveforms, strict=True):  # each is exactly what the shared decoder gives
        np.testing.assert_array_equal(wave, read_audio_file(files[key], options))
    np.testing.assert_allclose(audio.waveforms[5][500:-500], (200 - 128) / 128, atol=1e-4)  # u8 200 is 0.5625
    assert report.kept == 7 and report.skipped == 5 and report.total == 12
    assert report.reasons == {"empty": 1, "no frames": 1, "not audio": 1, "too long": 1, "truncated": 1}
    assert report.per_class == {"no": 2, "yes": 5}
    assert report.ignored_files == 3 and report.hidden_files == 1  # readme.txt, more/, LICENSE; .take.wav
    assert len(report.skipped_files) == 5
    named = "\n".join(report.skipped_files)
    for key in ("empty", "header_only", "text", "truncated", "too_long"):
        assert f"{files[key]}: " in named
    assert report.summary() == (
        f"skipped 5 of 12 audio files in {tmp_path / 'words'} (kept 7): 1 truncated, 1 empty, 1 too long, "
        "1 not audio, 1 no frames"  # in the order met: cut, empty, long, notes, silent
    )
    assert report.to_dict()["skipped"] == 5


def test_every_kept_file_is_mono_float_in_range(tmp_path: Path, make_wav: MakeWav) -> None:
    mixed_tree(tmp_path / "w", make_wav)
    audio, _ = load_audio_folder(tmp_path / "w", sample_rate=8000, max_seconds=2.0)
    for wave in audio.waveforms:
        assert wave.dtype == np.float32 and wave.ndim == 1 and np.abs(wave).max() <= 1.0


def test_a_clean_folder_reports_nothing_skipped(tmp_path: Path, make_wav: MakeWav) -> None:
    for label in ("2", "10", "3"):
        write(tmp_path / "d" / label / "a.wav", make_wav(np.arange(10), 8000))
    audio, report = load_audio_folder(tmp_path / "d", sample_rate=8000, max_seconds=1)
    assert audio.classes == ("2", "3", "10")
    np.testing.assert_array_equal(audio.waveforms[0], np.arange(10, dtype=np.float32) / 32768)
    assert report.summary() == f"kept all 3 audio files in {tmp_path / 'd'}"


def test_layout_errors(tmp_path: Path, make_wav: MakeWav) -> None:
    wav = make_wav(np.arange(10), 8000)
    with pytest.raises(DataError, match=r"missing: not a folder; expected one sub-folder per class"):
        load_audio_folder(tmp_path / "missing", sample_rate=8000, max_seconds=1)
    write(tmp_path / "flat" / "a.wav", wav)
    with pytest.raises(DataError, match=r"flat: no class folders; expected one sub-folder per class"):
        load_audio_folder(tmp_path / "flat", sample_rate=8000, max_seconds=1)
    write(tmp_path / "one" / "yes" / "a.wav", wav)
    with pytest.raises(
        DataError, match=r"one: only one class folder \(yes\); a classifier needs at least two"
    ):
        load_audio_folder(tmp_path / "one", sample_rate=8000, max_seconds=1)
    write(tmp_path / "two" / "yes" / "a.wav", wav)
    write(tmp_path / "two" / "no" / "notes.txt", b"nothing here")
    with pytest.raises(DataError, match=r"two/no: no audio files \(\.wav, \.flac or \.ogg\); add recordings"):
        load_audio_folder(tmp_path / "two", sample_rate=8000, max_seconds=1)
    write(tmp_path / "bad" / "yes" / "a.wav", wav)
    write(tmp_path / "bad" / "no" / "a.wav", b"")
    write(tmp_path / "bad" / "no" / "b.wav", b"not audio at all")
    with pytest.raises(DataError) as e:
        load_audio_folder(tmp_path / "bad", sample_rate=8000, max_seconds=1)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'bad' / 'no'}: none of its 2 audio files could be read (e.g. ")
    assert "a.wav: empty file (0 bytes)" in message and "\n" not in message
    with pytest.raises(ValueError, match=r"sample_rate must be an integer"):
        load_audio_folder(tmp_path / "bad", sample_rate=0, max_seconds=1)


def test_is_audio_folder(tmp_path: Path, make_wav: MakeWav) -> None:
    wav = make_wav(np.arange(10), 8000)
    write(tmp_path / "audio" / "a" / "1.wav", wav)
    write(tmp_path / "audio" / "a" / "notes.txt", b"x")
    write(tmp_path / "audio" / "b" / "2.ogg", b"")
    write(tmp_path / "audio" / ".git" / "x.txt", b"")
    write(tmp_path / "images" / "a" / "1.png", b"")
    write(tmp_path / "images" / "b" / "2.jpg", b"")
    write(tmp_path / "texts" / "a" / "1.txt", b"")
    write(tmp_path / "texts" / "b" / "2.txt", b"")
    write(tmp_path / "half" / "a" / "1.wav", wav)
    write(tmp_path / "half" / "a" / "1.txt", b"")
    assert is_audio_folder(tmp_path / "audio")
    assert not is_image_folder(tmp_path / "audio")  # the image test says no to an audio folder too
    assert not is_audio_folder(tmp_path / "images") and not is_audio_folder(tmp_path / "texts")
    assert not is_audio_folder(tmp_path / "half")  # as many other files as audio files
    assert not is_audio_folder(tmp_path / "audio" / "a" / "1.wav") and not is_audio_folder(
        tmp_path / "nothing"
    )
    write(tmp_path / "flat" / "1.wav", wav)
    assert not is_audio_folder(tmp_path / "flat")


def test_folder_and_upload_decode_alike(tmp_path: Path) -> None:
    data = encoded(np.stack([tone(440, 44100, 0.2), tone(660, 44100, 0.2)], 1), 44100, "FLAC", "PCM_24")
    path = write(tmp_path / "w" / "a" / "x.flac", data)
    write(tmp_path / "w" / "b" / "y.flac", data)
    audio, _ = load_audio_folder(tmp_path / "w", sample_rate=8000, max_seconds=1)
    assert audio.sources[0] == str(path)
    np.testing.assert_array_equal(
        audio.waveforms[0], decode_audio(data, name="upload", sample_rate=8000, max_seconds=1)
    )
