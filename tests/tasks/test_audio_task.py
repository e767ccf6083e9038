"""The audio task: statistics from train only, units and masks by hand, seeded SpecAugment, the run files, raw
recordings encoded as the training ones were, and the split and modality options."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from attnkit.data.audio import AudioSet
from attnkit.data.errors import DataError
from attnkit.models.audio.features import FeatureConfig, SpectralFrontend
from attnkit.runs import RunError, RunNotFoundError
from attnkit.tasks import task_for
from attnkit.tasks.audio import PREPARATION_FILE, AudioClassificationTask
from attnkit.train.config import ConfigError, RunConfig

RATE = 8000


def _recordings(n_per_label: int = 6, seed: int = 0) -> AudioSet:
    """Tones of 0.1-0.4 s: label "lo" at 300 Hz, "hi" at 1500 Hz, with noise."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for label, freq in (("lo", 300.0), ("hi", 1500.0)):
        for _ in range(n_per_label):
            t = np.arange(int(rng.integers(800, 3200))) / RATE
            wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.shape)
            waves.append(wave.astype(np.float32))
            labels.append(label)
    return AudioSet(waves, labels, [f"clip{i}.wav" for i in range(len(waves))], RATE, classes=("lo", "hi"))


def _task(**audio: object) -> AudioClassificationTask:
    config = RunConfig.from_dict(
        {"data": {"train": "unused-folder", "modality": "audio"}, "audio": {"n_mels": 16, **audio}}
    )
    task = task_for(config)
    assert isinstance(task, AudioClassificationTask)
    return task


def _reference_frames(wave: np.ndarray, task: AudioClassificationTask) -> torch.Tensor:
    """The front end on one recording alone, cut to its own frames (1 + S // hop)."""
    frontend = SpectralFrontend(
        task.preparation.feature_config if task._preparation else task._feature_config()
    )
    with torch.no_grad():
        frames = frontend(torch.from_numpy(wave)[None])[0]  # (T, F)
    return frames[: 1 + len(wave) // frontend.config.hop_length]


def test_statistics_are_the_training_frames_mean_and_std() -> None:
    task, train = _task(), _recordings()
    task.fit_preparation(train)
    frames = torch.cat([_reference_frames(w, task) for w in train.waveforms]).double()  # (sum T, F)
    np.testing.assert_allclose(task.preparation.mean, frames.mean(0).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(task.preparation.std, frames.std(0, unbiased=False).numpy(), rtol=1e-4)
    assert task.labels_in(train)[:1] == ["lo"] and task.label_names(train) == ["lo", "hi"]


def test_encoded_frames_are_normalized_and_batches_stack_units() -> None:
    task, train = _task(stack_frames=3), _recordings()
    task.fit_preparation(train)
    dataset = task.encode(train, ["lo", "hi"])
    mean, std = torch.tensor(task.preparation.mean), torch.tensor(task.preparation.std)
    for wave, frames in zip(train.waveforms, dataset.frames, strict=True):
        torch.testing.assert_close(frames, (_reference_frames(wave, task) - mean) / std, atol=1e-4, rtol=1e-4)
    batch = task.collate(dataset, [0, 7])
    lengths = [dataset.frames[0].shape[0], dataset.frames[7].shape[0]]
    units = [-(-n // 3) for n in lengths]
    assert batch.unit_mask is not None and batch.unit_mask.shape == (2, max(units))
    assert batch.unit_mask.sum(1).tolist() == units
    assert batch.inputs.shape == (2, max(units), 3 * 16)
    # Unit u of a row holds frames 3u, 3u+1, 3u+2 side by side; past the recording's end it is 0.
    row = dataset.frames[7]
    torch.testing.assert_close(batch.inputs[1, 0], row[0:3].reshape(-1))
    tail = row.shape[0] % 3
    if tail:
        last = batch.inputs[1, units[1] - 1].reshape(3, 16)
        torch.testing.assert_close(last[:tail], row[-tail:])
        assert torch.all(last[tail:] == 0)
    assert torch.all(batch.inputs[~batch.unit_mask] == 0)
    assert batch.targets is not None and batch.targets.tolist() == [0, 1]


def test_spec_augment_only_in_training_and_seeded() -> None:
    task, train = _task(time_masks=2, time_mask_frames=4, freq_masks=1, freq_mask_bins=3), _recordings()
    task.fit_preparation(train)
    dataset = task.encode(train, ["lo", "hi"])
    plain = task.collate(dataset, [0, 1, 2])
    assert torch.equal(
        task.collate(dataset, [0, 1, 2], train=False, generator=torch.Generator()).inputs, plain.inputs
    )
    first = task.collate(dataset, [0, 1, 2], train=True, generator=torch.Generator().manual_seed(5))
    again = task.collate(dataset, [0, 1, 2], train=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first.inputs, again.inputs)
    changed = first.inputs != plain.inputs
    assert bool(changed.any())
    assert torch.all(first.inputs[changed] == 0)  # masked values are the training mean
    assert torch.equal(first.unit_mask, plain.unit_mask)


def test_preparation_round_trip_and_damage(tmp_path: Path) -> None:
    task, train = _task(), _recordings()
    task.fit_preparation(train)
    task.save_preparation(tmp_path)
    loaded = _task()
    loaded.load_preparation(tmp_path)
    assert loaded.preparation == task.preparation and loaded.same_preparation(task)
    raw = json.loads((tmp_path / PREPARATION_FILE).read_text())
    raw["std"][0] = 0.0
    (tmp_path / PREPARATION_FILE).write_text(json.dumps(raw))
    with pytest.raises(RunError, match="statistics are damaged"):
        _task().load_preparation(tmp_path)
    (tmp_path / PREPARATION_FILE).write_text("{not json")
    with pytest.raises(RunError, match="cannot be read"):
        _task().load_preparation(tmp_path)
    with pytest.raises(RunNotFoundError, match="not found"):
        _task().load_preparation(tmp_path / "elsewhere")


def test_raw_recordings_encode_like_the_training_ones() -> None:
    task, train = _task(), _recordings()
    task.fit_preparation(train)
    dataset = task.encode(train, ["lo", "hi"])
    buffer = io.BytesIO()
    soundfile.write(buffer, train.waveforms[3], RATE, format="WAV", subtype="FLOAT")
    inputs, mask = task.encode_inputs([buffer.getvalue(), train.waveforms[9]])
    assert mask is not None
    batch = task.collate(dataset, [3, 9])
    torch.testing.assert_close(
        inputs[0, : int(mask[0].sum())], batch.inputs[0, : int(mask[0].sum())], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(inputs[1], batch.inputs[1][: inputs.shape[1]], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="1-D float array"):
        task.encode_inputs([np.zeros((2, 10), dtype=np.float32)])
    with pytest.raises(ValueError, match="longer than the run's"):
        task.encode_inputs([np.zeros(RATE * 11, dtype=np.float32)])
    assert task.model_fields(2) == {"num_classes": 2, "feature_dim": 16, "max_units": 1 + 10 * RATE // 80}


def test_split_option_is_for_built_ins_with_speakers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.split must be null, official or speaker:NAME"):
        RunConfig.from_dict({"data": {"train": "fsdd", "split": "speaker:"}})
    folder = tmp_path / "clips"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            soundfile.write(folder / label / f"{i}.wav", np.zeros(800, dtype=np.float32) + 0.1 * i, RATE)
    config = RunConfig.from_dict({"data": {"train": str(folder), "split": "official"}})
    assert config.modality == "audio"  # decided from the folder of audio folders
    with pytest.raises(DataError, match=r"applies to a built-in with speakers"):
        task_for(config).read_splits()


def test_audio_section_mistakes_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"audio\.n_mels=200 is more than the 129 frequency bins"):
        RunConfig.from_dict({"audio": {"n_mels": 200}})
    with pytest.raises(ConfigError, match=r"audio\.n_mfcc must be <= 40"):
        RunConfig.from_dict({"audio": {"features": "mfcc", "n_mfcc": 41}})
    with pytest.raises(ConfigError, match=r"audio\.features must be one of logmel, mfcc"):
        RunConfig.from_dict({"audio": {"features": "wave"}})
    audio = RunConfig.from_dict({"audio": {"sample_rate": 16000, "window_ms": 25, "hop_ms": 10}}).audio
    assert (audio.win_samples, audio.n_fft, audio.hop_samples) == (400, 512, 160)
    assert FeatureConfig(sample_rate=16000, n_fft=512, win_length=400, hop_length=160).num_features == 40


@pytest.mark.parametrize("device", ["cpu", *(["cuda"] if torch.cuda.is_available() else [])])
def test_features_on_the_runs_device_equal_the_cpus(device: str) -> None:
    train = _recordings(2)
    on_cpu = _task()
    on_cpu.config.train.device = "cpu"
    on_device = _task()
    on_device.config.train.device = device
    assert on_device.feature_device().type == device
    for a, b in zip(on_cpu._frames_of(train.waveforms), on_device._frames_of(train.waveforms), strict=True):
        assert b.device.type == "cpu"
        torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-4)  # dB; float32 FFT kernels differ by device


def test_recording_mean_centres_each_recording_before_the_training_statistics(tmp_path: Path) -> None:
    task, train = _task(recording_mean=True), _recordings()
    task.fit_preparation(train)
    prep = task.preparation
    assert prep.recording_mean
    raw = [_reference_frames(w, task) for w in train.waveforms]
    centred = torch.cat([f - f.mean(0) for f in raw]).double()
    # ~0, since every recording is centred
    np.testing.assert_allclose(prep.mean, centred.mean(0).numpy(), atol=1e-4)
    np.testing.assert_allclose(prep.std, centred.std(0, unbiased=False).numpy(), rtol=1e-4)
    dataset = task.encode(train, ["lo", "hi"])
    mean, std = torch.tensor(prep.mean), torch.tensor(prep.std)
    for frames, f in zip(dataset.frames, raw, strict=True):
        torch.testing.assert_close(frames, (f - f.mean(0) - mean) / std, atol=1e-4, rtol=1e-4)
    # A constant gain (a louder microphone: +6 dB on every band) no longer changes the features.
    louder, _ = task.encode_inputs([train.waveforms[0] * 2.0])
    plain, _ = task.encode_inputs([train.waveforms[0]])
    torch.testing.assert_close(louder, plain, atol=1e-3, rtol=0)
    task.save_preparation(tmp_path)
    loaded = _task()
    loaded.load_preparation(tmp_path)
    assert loaded.preparation.recording_mean


def test_the_training_split_is_framed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    task, train = _task(), _recordings()
    calls: list[int] = []
    framed = task._frames_of

    def counting(waveforms: list[np.ndarray]) -> list[torch.Tensor]:
        calls.append(len(waveforms))
        return framed(waveforms)

    monkeypatch.setattr(task, "_frames_of", counting)
    task.fit_preparation(train)
    first = task.encode(train, ["lo", "hi"])
    assert calls == [len(train)]  # encode reused the frames fit_preparation computed
    again = task.encode(train, ["lo", "hi"])  # a later encode frames again (nothing kept)
    assert calls == [len(train), len(train)]
    for a, b in zip(first.frames, again.frames, strict=True):
        assert torch.equal(a, b)
