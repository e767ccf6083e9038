"""`explain_recordings` and `attnkit faithfulness` on a trained audio run: the JSON format and its round trip, the
unit times, the display spectrogram against librosa, inputs as bytes, paths and arrays, and faithfulness on a task
where a short tone burst carries the label."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from attnkit.cli import main
from attnkit.explain import METHODS, AudioExplanation, explain_recordings
from attnkit.explain.audio import DISPLAY_RANGE_DB, decode_wav, display_spectrogram, encode_wav
from attnkit.explain.faithfulness import faithfulness_report, format_report, read_inputs
from attnkit.predictor import Predictor

RATE = 8000
HOP_SECONDS = 0.01  # audio.hop_ms = 10


BurstClips = Callable[[int, int], list[tuple[str, np.ndarray, float]]]


def wav_bytes(wave: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_format_unit_times_and_json_round_trip(burst_run: Path, burst_clips: BurstClips) -> None:
    predictor = Predictor(burst_run)
    clips = burst_clips(2, 3)
    waves = [wave[: 2400 + 333 * i] for i, (_, wave, _) in enumerate(clips)]  # 0.3 s and 0.34 s
    explanations = explain_recordings(predictor, waves, methods=["all"], sources=["a.wav", None])
    assert [e.source for e in explanations] == ["a.wav", None]
    for exp, wave in zip(explanations, waves, strict=True):
        item = exp.to_json_dict()
        assert set(item) == {
            "modality", "source", "label", "target", "probabilities", "methods", "signed", "audio", "spectrogram",
            "unit", "units", "scale",
        }  # fmt: skip
        assert item["modality"] == "audio" and item["methods"] == list(METHODS)
        assert list(item["scale"]) == item["methods"]
        assert item["unit"] == {"name": "frame", "seconds": HOP_SECONDS, "stack_frames": 1}
        frames = 1 + len(wave) // 80  # centred frames of an 80-sample hop
        assert len(item["units"]) == frames and item["spectrogram"]["frames"] == frames
        assert item["spectrogram"]["bands"] == 16 and item["spectrogram"]["hop_seconds"] == HOP_SECONDS
        for i, unit in enumerate(item["units"]):  # unit u covers [u * unit_seconds, (u + 1) * unit_seconds)
            assert unit["index"] == i
            assert unit["start"] == pytest.approx(i * HOP_SECONDS, abs=1e-9)
            assert unit["end"] == pytest.approx((i + 1) * HOP_SECONDS, abs=1e-9)
        assert (
            item["audio"]["duration"] == pytest.approx(len(wave) / RATE)
            and item["audio"]["sample_rate"] == RATE
        )
        assert sum(u["scores"]["attention"] for u in item["units"]) == pytest.approx(1.0, abs=1e-4)
        assert sum(item["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert (
            exp.unit_at(0.0) == 0 and exp.unit_at(0.0149) == 1 and exp.unit_at(frames * HOP_SECONDS) is None
        )
        # the kept audio is the recording, to 16-bit precision
        kept = exp.waveform()
        assert kept is not None and kept.shape == wave.shape
        assert np.abs(kept - wave).max() <= 1 / 32768 + 1e-7
        # JSON round trip: text -> dict -> AudioExplanation -> the same dict
        again = AudioExplanation.from_json_dict(json.loads(json.dumps(item)))
        assert again.to_json_dict() == item
        assert (again.spectrogram == exp.spectrogram).all()
    with pytest.raises(ValueError, match="not an audio explanation"):
        AudioExplanation.from_json_dict({"modality": "audio", "units": []})


def _display_levels(db: np.ndarray) -> np.ndarray:
    """``db (M, T)`` -> the display levels by hand: ``[peak - 80, peak]`` dB over 0..255, highest band on top."""
    high = db.max()
    levels = np.floor((np.clip(db, high - DISPLAY_RANGE_DB, high) - high + DISPLAY_RANGE_DB) / 80 * 255 + 0.5)
    return levels[::-1]


def _check_display(exp: AudioExplanation, db: np.ndarray) -> None:
    """Within one level of the reference ``db (M, T)`` (float32 against float64 moves a level boundary at most once
    in a while)."""
    expected = _display_levels(db)
    assert exp.spectrogram.shape == expected.shape
    difference = np.abs(exp.spectrogram.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.02
    assert exp.spectrogram_db[1] == pytest.approx(db.max(), abs=1e-3)


def test_the_display_spectrogram_is_the_log_mel_by_hand(burst_run: Path, burst_clips: BurstClips) -> None:
    """The image is the log-mel spectrogram computed by hand with numpy (centred, zero-padded frames of 256
    samples every 80, periodic Hann window, |rfft|^2, the Slaney mel filterbank (checked against librosa in
    tests/models/audio), 10 log10 with floor 1e-10), in [peak - 80, peak] dB over 0..255."""
    from attnkit.models.audio.features import mel_filterbank

    predictor = Predictor(burst_run)
    _, wave, _ = burst_clips(1, 4)[0]
    (exp,) = explain_recordings(predictor, [wave], methods=["attention"], include_audio=False)
    assert exp.audio_wav is None and exp.waveform() is None
    padded = np.pad(wave.astype(np.float64), 128)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)  # periodic Hann
    count = 1 + len(wave) // 80
    frames = np.stack([padded[80 * t : 80 * t + 256] * window for t in range(count)])  # (T, 256)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T, 129)
    mel = power @ mel_filterbank(RATE, 256, 16, 0.0, RATE / 2).double().numpy()  # (T, M)
    _check_display(exp, 10 * np.log10(np.maximum(mel, 1e-10)).T)
    assert exp.spectrogram.shape == (16, count)
    # by hand: the peak is 255, everything 80 dB or more below it is 0, -20 dB is 60/80 of the way up
    image, (low, top) = display_spectrogram(np.array([[-100.0, -20.0], [0.0, -80.0]]))  # (T=2, M=2)
    assert (low, top) == (-80.0, 0.0)
    assert image.tolist() == [[191, 0], [0, 255]]  # rows: band 1, band 0; columns: frames


@pytest.mark.slow  # librosa's first mel filterbank and spectrogram compile with numba: about 6 s
def test_the_display_spectrogram_is_librosas_log_mel(burst_run: Path, burst_clips: BurstClips) -> None:
    """The same against librosa (Slaney mel, power 2, centred zero-padded frames, 10 log10 with amin 1e-10)."""
    librosa = pytest.importorskip("librosa")
    predictor = Predictor(burst_run)
    _, wave, _ = burst_clips(1, 4)[0]
    (exp,) = explain_recordings(predictor, [wave], methods=["attention"], include_audio=False)
    power = librosa.feature.melspectrogram(
        y=wave.astype(np.float64),
        sr=RATE,
        n_fft=256,
        hop_length=80,
        win_length=256,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=16,
        norm="slaney",
        htk=False,
    )  # (M, T); fmt: skip
    _check_display(exp, 10 * np.log10(np.maximum(power, 1e-10)))


def test_bytes_paths_and_arrays_give_the_same_scores(
    burst_run: Path, tmp_path: Path, burst_clips: BurstClips
) -> None:
    predictor = Predictor(burst_run)
    _, wave, _ = burst_clips(1, 5)[0]
    path = tmp_path / "clip.wav"
    path.write_bytes(wav_bytes(wave))
    as_array, as_bytes, as_path = (
        explain_recordings(predictor, [item], methods=["ig", "loo"], ig_steps=8)[0]
        for item in (wave, path.read_bytes(), path)
    )
    assert as_path.source == str(path) and as_bytes.source is None
    for method in ("ig", "loo"):
        assert as_bytes.scores(method) == pytest.approx(as_array.scores(method), abs=1e-6)
        assert as_path.scores(method) == as_bytes.scores(method)
    # a recording at another rate is resampled like the training ones: 16 kHz bytes give about the same frames
    upsampled = np.interp(np.arange(2 * len(wave)) / 2, np.arange(len(wave)), wave).astype(np.float32)
    (resampled,) = explain_recordings(predictor, [wav_bytes(upsampled, 2 * RATE)], methods=["attention"])
    assert len(resampled.units) == len(as_array.units)


def test_targets_and_errors(burst_run: Path, burst_clips: BurstClips) -> None:
    predictor = Predictor(burst_run)
    _, wave, _ = burst_clips(1, 6)[0]
    (own,) = explain_recordings(predictor, [wave], methods=["loo"])
    other_label = next(label for label in predictor.labels if label != own.label)
    (other,) = explain_recordings(predictor, [wave], methods=["loo"], target=other_label)
    assert other.target == other_label and other.label == own.label
    # two classes: p(other) = 1 - p(own), so explaining the other class negates occlusion
    assert other.scores("loo") == pytest.approx([-v for v in own.scores("loo")], abs=2e-6)
    with pytest.raises(ValueError, match="unknown target label 'cat'"):
        explain_recordings(predictor, [wave], target="cat")
    with pytest.raises(ValueError, match="unknown explanation method 'shap'"):
        explain_recordings(predictor, [wave], methods=["shap"])
    with pytest.raises(ValueError, match=r"^broken\.wav: "):
        explain_recordings(predictor, [b"RIFF\x00\x00"], sources=["broken.wav"])
    with pytest.raises(ValueError, match=r"^recording 1: .*1-D float array"):
        explain_recordings(predictor, [wave, np.zeros((2, 3), dtype=np.float32)])
    with pytest.raises(TypeError, match="wrap a single recording in a list"):
        explain_recordings(predictor, wave)
    with pytest.raises(ValueError, match="got 2 sources for 1 recordings"):
        explain_recordings(predictor, [wave], sources=["a", "b"])
    assert explain_recordings(predictor, []) == []


def test_attention_finds_the_burst(burst_run: Path, burst_clips: BurstClips) -> None:
    """On 12 new recordings the most attended frame lies in the burst (20 ms of slack before, 10 ms after) for at
    least 9 (measured: attention 10, attention-value 12)."""
    predictor = Predictor(burst_run)
    clips = burst_clips(12, 7)
    explanations = explain_recordings(
        predictor, [wave for _, wave, _ in clips], methods=["attention", "attention-value"]
    )
    assert [e.label for e in explanations] == [label for label, _, _ in clips]
    for method in ("attention", "attention-value"):
        hits = sum(
            start - 0.02 <= exp.top_units(method, 1)[0][0].start <= start + 0.07
            for exp, (_, _, start) in zip(explanations, clips, strict=True)
        )
        assert hits >= 9, (method, hits)


def test_wav_round_trip_is_16_bit() -> None:
    wave = np.sin(np.linspace(0, 20, 500)).astype(np.float32) * 0.8
    samples, rate = decode_wav(encode_wav(wave, 16000))
    assert rate == 16000 and samples.dtype == np.float32
    assert np.abs(samples - wave).max() <= 1 / 32768
    clipped, _ = decode_wav(encode_wav(np.array([2.0, -2.0], dtype=np.float32), 8000))
    assert clipped.tolist() == pytest.approx([32767 / 32768, -1.0])


def test_faithfulness_on_the_burst_task(burst_run: Path, burst_data: dict[str, Path]) -> None:
    """Deletion AOPC of attention and IG above random, with paired bootstrap intervals that exclude 0; insertion
    likewise. Measured on the 16 test recordings (IG with 8 steps): deletion attention 0.19, ig 0.19, random 0.01;
    insertion 0.87, 0.88 and 0.65; forcing the pooling to uniform keeps half of the predictions (accuracy 1.0 ->
    0.5): this CRNN decides by where it attends."""
    predictor = Predictor(burst_run)
    waves, labels = read_inputs(predictor, str(burst_data["test"]))
    assert len(waves) == 16 and waves[0].dtype == np.float32 and waves[0].ndim == 1
    assert set(labels) == {"low", "high"}
    report = faithfulness_report(
        predictor, waves, labels=labels, methods=["attention", "ig"], n=16, ig_steps=8
    )
    assert report.modality == "audio" and report.unit == "frame"
    assert [m.method for m in report.methods] == ["attention", "ig", "random"]
    random = report.method("random")
    for name in ("attention", "ig"):
        method = report.method(name)
        assert method.deletion_aopc > random.deletion_aopc + 0.1, (name, method, random)
        assert method.insertion_aopc > random.insertion_aopc + 0.1
        # insertion = p(y | only the top frames); sufficiency = p(y | x) minus that: their sum is the mean p(y | x)
        full = [method.insertion[key] + method.sufficiency[key] for key in method.insertion]
        assert full == pytest.approx([random.insertion["0.01"] + random.sufficiency["0.01"]] * 5, abs=1e-9)
    verdicts = {(c.method, c.other): c for c in report.comparisons}
    assert verdicts[("attention", "random")].low > 0 and verdicts[("ig", "random")].low > 0
    uniform = report.uniform_attention
    assert uniform is not None and uniform.pooling_layers == 1 and uniform.accuracy == 1.0
    assert uniform.accuracy_uniform is not None and uniform.accuracy_uniform < 0.9
    assert any("over recordings" in note for note in report.findings)
    assert "units: frames" in format_report(report)
    assert not any(math.isnan(m.comprehensiveness_aopc) for m in report.methods)


def test_cli_faithfulness_on_an_audio_run(
    burst_run: Path, burst_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["faithfulness", str(burst_run), "--data", str(burst_data["test"]), "--n", "6", "--method", "attention",
            "--json", "--no-progress", "--plot", str(tmp_path / "curves.png")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 6 and report["modality"] == "audio" and report["unit"] == "frame"
    assert {m["method"] for m in report["methods"]} == {"attention", "random"}
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert main(["faithfulness", str(burst_run), "--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "error" in capsys.readouterr().err
