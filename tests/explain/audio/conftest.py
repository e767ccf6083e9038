"""Fixtures for the audio explanation tests: tiny untrained audio models on random feature rows, and one run
trained (once per session, a few seconds on one thread) on synthetic recordings where a short tone burst carries
the label.

The task: 0.4 s of quiet noise at 8 kHz with a 60 ms tone burst at a random place: 400 Hz (``low``) or 2000 Hz
(``high``). Only the burst differs between the classes, so a faithful method ranks its frames first, and deleting
them removes the evidence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from torch import Tensor

from attnkit.models.audio import (
    AudioClassifier,
    AudioTransformerClassifier,
    AudioTransformerConfig,
    CRNNClassifier,
    CRNNConfig,
)

RATE = 8000
#: The two classes and the frequency of their burst, in Hz.
BURSTS = {"low": 400.0, "high": 2000.0}
#: Seconds of each synthetic recording and of its burst.
CLIP_SECONDS, BURST_SECONDS = 0.4, 0.06

# name -> (config class, model class, tiny fields) for feature rows of 8 values and 3 classes.
TINY_AUDIO: dict[str, tuple[type, type, dict[str, Any]]] = {
    "crnn-attn": (CRNNConfig, CRNNClassifier, {"conv_channels": (4, 6), "hidden_dim": 5}),
    "transformer": (
        AudioTransformerConfig,
        AudioTransformerClassifier,
        {"embed_dim": 16, "num_heads": 2, "ff_dim": 24, "num_layers": 2, "pooling_heads": 2},
    ),
}

AudioModels = Callable[..., AudioClassifier]


def tiny_audio_model(name: str, seed: int = 0) -> AudioClassifier:
    """A tiny untrained audio model ``name`` (3 classes, 8 features per unit, up to 40 units) in eval mode.

    BatchNorm layers get non-trivial running statistics, so eval mode is not the identity on them.
    """
    config_cls, model_cls, fields = TINY_AUDIO[name]
    torch.manual_seed(seed)
    model = model_cls(config_cls(num_classes=3, feature_dim=8, max_units=40, dropout=0.0, **fields))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(name="audio_model")
def audio_model_fixture() -> AudioModels:
    return tiny_audio_model


Frames = Callable[..., tuple[Tensor, Tensor]]


@pytest.fixture(name="frames")
def frames_fixture() -> Frames:
    """``frames(lengths, seed, dtype)``: normalized-looking feature rows ``(B, U, 8)`` (0 past each length) and
    their right-padded mask ``(B, U)``."""

    def make(lengths: list[int], seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(seed)
        width = max(lengths)
        mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]  # (B, U)
        features = torch.randn(len(lengths), width, 8, generator=gen).to(dtype) * mask[..., None]
        return features, mask

    return make


def burst_clip(label: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One recording of the burst task and the second its burst starts at."""
    samples = int(CLIP_SECONDS * RATE)
    wave = 0.01 * rng.standard_normal(samples)
    start = float(rng.uniform(0.05, CLIP_SECONDS - BURST_SECONDS - 0.05))
    first, count = int(start * RATE), int(BURST_SECONDS * RATE)
    t = np.arange(count) / RATE
    wave[first : first + count] += 0.5 * np.sin(2 * np.pi * BURSTS[label] * t) * np.hanning(count)
    return wave.astype(np.float32), start


BurstClips = Callable[[int, int], list[tuple[str, np.ndarray, float]]]


@pytest.fixture(name="burst_clips")
def burst_clips_fixture() -> BurstClips:
    """``burst_clips(count, seed)``: ``(label, waveform, burst start in seconds)`` of new recordings of the burst
    task, labels alternating ``low``, ``high``."""

    def make(count: int, seed: int) -> list[tuple[str, np.ndarray, float]]:
        rng = np.random.default_rng(seed)
        labels = list(BURSTS)
        return [(labels[i % 2], *burst_clip(labels[i % 2], rng)) for i in range(count)]

    return make


def write_burst_folder(root: Path, per_class: int, seed: int) -> Path:
    """``root/<label>/<i>.wav`` (16-bit PCM) for both labels of the burst task."""
    rng = np.random.default_rng(seed)
    for label in BURSTS:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            soundfile.write(folder / f"{i}.wav", burst_clip(label, rng)[0], RATE, subtype="PCM_16")
    return root


@pytest.fixture(scope="session")
def burst_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"train": folder, "test": folder}`` of the burst task (40 and 8 recordings per class)."""
    root = tmp_path_factory.mktemp("burst-audio")
    return {
        "train": write_burst_folder(root / "train", 40, seed=0),
        "test": write_burst_folder(root / "test", 8, seed=1),
    }


#: The run's config: 16 log-mel bands, 10 ms frames, a tiny CRNN, three epochs (one leaves it at chance).
BURST_RUN = {
    "audio": {"n_mels": 16, "max_seconds": 1.0},
    "model": {"name": "crnn-attn", "options": {"conv_channels": [4], "hidden_dim": 8, "dropout": 0.0}},
    "train": {"epochs": 3, "seed": 0, "threads": 1, "progress": False, "calibrate": False},
    "optim": {"batch_size": 8, "lr": 0.03},
}


@pytest.fixture(scope="session")
def burst_run(
    burst_data: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    quick_writes_patch: Callable[[], contextlib.AbstractContextManager[None]],
) -> Path:
    """A crnn-attn run trained on the burst task (3 epochs, about 3 s on one thread; validation accuracy 1.0),
    its training plots written as placeholders (no test reads them)."""
    from attnkit.train.config import RunConfig
    from attnkit.train.loop import fit

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("burst-run")
        config = RunConfig.from_dict({"data": {"train": str(burst_data["train"])}, **BURST_RUN})
        with quick_writes_patch():
            result = fit(config, out)
    finally:
        torch.set_num_threads(before)
    assert result.metrics["val"]["accuracy"] == 1.0, result.metrics["val"]
    return out


def hand_explanation(*, with_audio: bool = True) -> dict[str, Any]:
    """An audio explanation built by hand (no model): 0.5 s of a 440 Hz tone at 8 kHz, an 8-band spectrogram of
    51 frames of 10 ms, units of 2 frames (20 ms; the last one ends at 0.52 s), attention peaked on unit 12
    (0.24-0.26 s) and signed ``ig`` scores."""
    from attnkit.explain.audio import AudioExplanation, ExplainedFrame, display_spectrogram, encode_wav

    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4000) / RATE)).astype(np.float32)
    image, db_range = display_spectrogram(rng.normal(-40, 15, size=(51, 8)))
    weights = np.exp(-0.5 * (np.arange(26) - 12.0) ** 2)
    weights /= weights.sum()
    signed = rng.normal(size=26)
    units = [
        ExplainedFrame(
            i, round(0.02 * i, 9), round(0.02 * (i + 1), 9), {"attention": float(w), "ig": float(g)}
        )
        for i, (w, g) in enumerate(zip(weights, signed, strict=True))
    ]
    return AudioExplanation(
        spectrogram=image,
        spectrogram_db=db_range,
        label="yes",
        probabilities={"yes": 0.8, "no": 0.2},
        target="yes",
        methods=["attention", "ig"],
        units=units,
        duration=0.5,
        sample_rate=RATE,
        hop_seconds=0.01,
        unit_seconds=0.02,
        stack_frames=2,
        audio_wav=encode_wav(wave, RATE) if with_audio else None,
        source="tone.wav",
    ).to_json_dict()


@pytest.fixture(name="hand_explanation")
def hand_explanation_fixture() -> Callable[..., dict[str, Any]]:
    return hand_explanation
