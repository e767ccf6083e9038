"""The speech front end against librosa 0.11 and torch.stft, the frame arithmetic, SpecAugment and the normalizer.

Precision. The front end runs in float32; the references run in float64 (librosa on float64 samples). A float32
dot product over a frame's ``L`` samples is off by a few ``1e-7`` of ``sum |x w|``, so the STFT's error is
relative to the *frame's* loudest bin, not to each bin: a band 60 dB below its frame's loudest band still has
~1e-5 relative error (4e-5 dB), one 110 dB below (a chirp's far leakage) has ~1e-2 dB. Hence every
comparison below is (a) in the power domain, absolute, relative to the frame's maximum, for every bin, and (b) in
dB, 1e-3 absolute, for the bands within 60 dB of their frame's loudest band (and for the floored bands, which
are exactly ``10 * log10(log_floor)`` on both sides). The MFCC (an orthonormal DCT, an isometry) is then bounded
per frame by the log-mel's own error norm.

Dimension legend: ``B`` batch, ``S`` samples, ``T`` frames, ``K`` frequency bins, ``M`` mel bands, ``F``
features.
"""

from __future__ import annotations

import logging
import math
import warnings

import librosa
import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch

from attnkit.models.audio.features import (
    FeatureConfig,
    FeatureNormalizer,
    SpectralFrontend,
    dct_matrix,
    frame_mask,
    hann_window,
    mel_filterbank,
    num_frames,
    spec_augment,
    spec_augment_mask,
)

SR = 8000
VOWEL_SAMPLES = 4800  # 0.6 s of voice, then silence


def _chirp(seconds: float = 1.0) -> np.ndarray:
    """A linear chirp 100 Hz -> 3900 Hz, amplitude 0.5."""
    t = np.arange(int(seconds * SR)) / SR
    return 0.5 * np.sin(2 * np.pi * (100 * t + (3900 - 100) / (2 * seconds) * t**2))


def _noise(seconds: float = 1.0) -> np.ndarray:
    return 0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR))


def _vowel(seconds: float = 1.0) -> np.ndarray:
    """A speech-like clip: a 120 Hz voice with formant-shaped harmonics and a rise-decay envelope over 0.6 s,
    a little noise, then exact silence (floored bands)."""
    t = np.arange(VOWEL_SAMPLES) / SR
    harmonics = np.arange(1, 33)
    formants = np.exp(-(((120 * harmonics - 700) / 150) ** 2)) + 0.5 * np.exp(
        -(((120 * harmonics - 1200) / 200) ** 2)
    )
    voice = (formants[:, None] * np.sin(2 * np.pi * 120 * harmonics[:, None] * t)).sum(0)
    envelope = np.minimum(t / 0.05, 1.0) * np.exp(-3 * t)
    clip = 0.3 * envelope * voice + 1e-3 * np.random.default_rng(1).standard_normal(t.size)
    return np.concatenate([clip, np.zeros(int(seconds * SR) - t.size)])


SIGNALS = {"chirp": _chirp, "noise": _noise, "vowel": _vowel}
#: (n_fft, win_length, hop_length) tried against librosa: the default, a shorter window, another hop.
STFT_SHAPES = [(256, None, 80), (512, 400, 160), (256, 200, 64)]


def _as_batch(y: np.ndarray) -> torch.Tensor:
    return torch.tensor(y, dtype=torch.float32)[None]  # (1, S)


def _f64(y: torch.Tensor) -> np.ndarray:
    """The float32 samples the front end sees, as float64 for the reference."""
    return y[0].double().numpy()


# -- config -----------------------------------------------------------------------------------------------------


def test_config_defaults_and_derived_values() -> None:
    config = FeatureConfig()
    assert (config.window_length, config.mel_f_max, config.num_features) == (256, 4000.0, 40)
    assert config.frame_seconds == pytest.approx(0.032)
    assert config.hop_seconds == pytest.approx(0.01)
    mfcc = FeatureConfig(kind="mfcc", n_mfcc=13, win_length=200, f_max=3800.0)
    assert (mfcc.num_features, mfcc.window_length, mfcc.mel_f_max) == (13, 200, 3800.0)
    assert mfcc.frame_seconds == pytest.approx(0.025)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"n_fft": 255}, "n_fft"),
        ({"n_fft": 256.0}, "n_fft"),
        ({"win_length": 257}, "win_length"),
        ({"hop_length": 0}, "hop_length"),
        ({"hop_length": True}, "hop_length"),
        ({"kind": "mel"}, "kind"),
        ({"n_mels": 0}, "n_mels"),
        ({"n_mfcc": 41}, "n_mfcc"),
        ({"f_min": -1.0}, "f_min"),
        ({"f_min": 4000.0}, "f_min"),
        ({"f_max": 4001.0}, "f_max"),
        ({"f_min": 300.0, "f_max": 300.0}, "f_max"),
        ({"log_floor": 0.0}, "log_floor"),
    ],
)
def test_config_rejects_bad_fields_by_name(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=rf"FeatureConfig\.{named} ") as info:
        FeatureConfig(**fields)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


# -- filterbank, window, DCT ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [
        (8000, 256, 40, 0.0, None),
        (8000, 512, 64, 20.0, 3800.0),
        (16000, 512, 80, 0.0, 7600.0),
        (22050, 2048, 128, 0.0, 8000.0),
        (44100, 1024, 40, 133.33, 6855.4976),
        (8000, 200, 23, 300.0, 3400.0),  # odd bin count (101), band-limited telephone range
    ],
)
def test_mel_filterbank_equals_librosa(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> None:
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    reference = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T  # (K, M)
    assert ours.dtype == torch.float32 and tuple(ours.shape) == reference.shape
    # Both are float64 math rounded to float32 (librosa rounds twice): 1e-6 relative; zeros are exact zeros.
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-6, atol=1e-12)
    assert np.array_equal(ours.numpy() == 0, reference == 0)


def test_mel_filterbank_warns_of_empty_filters(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        mel_filterbank(8000, 64, 60)
    assert "empty" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        mel_filterbank(8000, 256, 40)
    assert caplog.text == ""


@pytest.mark.parametrize(("length", "n_fft"), [(256, 256), (200, 256), (401, 512)])
def test_window_is_scipy_periodic_hann_centred(length: int, n_fft: int) -> None:
    reference = scipy.signal.get_window("hann", length, fftbins=True)
    padded = librosa.util.pad_center(reference, size=n_fft)
    np.testing.assert_allclose(hann_window(length, n_fft).numpy(), padded, rtol=0, atol=1e-15)


def test_dct_matrix_is_scipy_orthonormal_dct_ii() -> None:
    x = np.random.default_rng(2).standard_normal((7, 40))
    reference = scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[:, :13]
    ours = torch.tensor(x) @ dct_matrix(40, 13).double()
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=1e-5)  # float32 matrix entries
    full = dct_matrix(40, 40).double()
    np.testing.assert_allclose((full.T @ full).numpy(), np.eye(40), atol=1e-6)  # orthonormal


# -- spectra against librosa and torch.stft ---------------------------------------------------------------------


@pytest.mark.parametrize(("n_fft", "win_length", "hop_length"), STFT_SHAPES)
@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_power_spectrogram_equals_librosa_stft(
    signal: str, n_fft: int, win_length: int | None, hop_length: int
) -> None:
    y = _as_batch(SIGNALS[signal]())
    frontend = SpectralFrontend(FeatureConfig(n_fft=n_fft, win_length=win_length, hop_length=hop_length))
    ours = frontend.power_spectrogram(y)[0].double().numpy().T  # (K, T)
    stft = librosa.stft(
        _f64(y),
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window="hann",
        center=True,
        pad_mode="constant",
    )
    reference = np.abs(stft) ** 2  # (K, T)
    assert ours.shape == reference.shape == (n_fft // 2 + 1, 1 + y.shape[1] // hop_length)
    # float32 rounding of the frame's dot products: 4e-6 of the frame's loudest bin (measured <= 1.1e-6).
    frame_peak = reference.max(axis=0, keepdims=True)  # (1, T)
    assert np.all(np.abs(ours - reference) <= 4e-6 * frame_peak + 1e-12)


@pytest.mark.parametrize(("n_fft", "win_length", "hop_length"), STFT_SHAPES)
def test_power_spectrogram_equals_torch_stft(n_fft: int, win_length: int | None, hop_length: int) -> None:
    waveform = torch.tensor(np.stack([_chirp(), _noise(), _vowel()]), dtype=torch.float32)  # (B, S)
    frontend = SpectralFrontend(FeatureConfig(n_fft=n_fft, win_length=win_length, hop_length=hop_length))
    window = torch.hann_window(win_length or n_fft, periodic=True)
    spectrum = torch.stft(
        waveform,
        n_fft,
        hop_length,
        win_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (B, K, T)
    reference = (spectrum.abs() ** 2).transpose(1, 2)  # (B, T, K)
    ours = frontend.power_spectrogram(waveform)  # (B, T, K)
    assert ours.shape == reference.shape
    # Both float32 (an FFT against a direct sum): 4e-6 of each frame's loudest bin.
    frame_peak = reference.amax(dim=2, keepdim=True)  # (B, T, 1)
    assert bool(((ours - reference).abs() <= 4e-6 * frame_peak + 1e-12).all())


def _librosa_log_mel(y: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(mel power, its dB) from librosa, ``(M, T)`` each."""
    power = librosa.feature.melspectrogram(
        y=y,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=config.n_mels,
        fmin=config.f_min,
        fmax=config.f_max,
    )
    return power, librosa.power_to_db(power, ref=1.0, amin=config.log_floor, top_db=None)


def _compared_bands(power: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``(M, T)`` bool: bands within 60 dB of their frame's loudest band, or floored."""
    frame_peak = power.max(axis=0, keepdims=True)  # (1, T)
    return (power >= 1e-6 * frame_peak) | (power < config.log_floor)


@pytest.mark.parametrize(("n_fft", "win_length", "hop_length"), STFT_SHAPES)
@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_log_mel_equals_librosa(signal: str, n_fft: int, win_length: int | None, hop_length: int) -> None:
    config = FeatureConfig(n_fft=n_fft, win_length=win_length, hop_length=hop_length, f_min=30.0)
    y = _as_batch(SIGNALS[signal]())
    ours = SpectralFrontend(config)(y)[0].double().numpy().T  # (M, T)
    power, reference = _librosa_log_mel(_f64(y), config)
    assert ours.shape == reference.shape == (40, 1 + y.shape[1] // hop_length)
    compared = _compared_bands(power, config)
    assert compared.mean() > 0.3  # the narrowband chirp has ~44% of its bands within 60 dB of its peak
    np.testing.assert_allclose(ours[compared], reference[compared], rtol=0, atol=1e-3)
    # Every band, in the power domain: float32 rounding relative to the frame's loudest band.
    ours_power = 10.0 ** (ours / 10.0)
    frame_peak = power.max(axis=0, keepdims=True)
    assert np.all(np.abs(ours_power - np.maximum(power, config.log_floor)) <= 4e-6 * frame_peak + 1e-12)
    if signal == "vowel":  # frames wholly in the silent tail are floored, on both sides
        silent = math.ceil((VOWEL_SAMPLES + n_fft // 2) / hop_length)
        assert np.all(ours[:, silent:] == -100.0)
        assert np.all(reference[:, silent:] == -100.0)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_mfcc_equals_librosa(signal: str) -> None:
    config = FeatureConfig(kind="mfcc", n_mfcc=20)
    y = _as_batch(SIGNALS[signal]())
    frontend = SpectralFrontend(config)
    ours = frontend(y)[0].double().numpy().T  # (n_mfcc, T)
    _, reference_db = _librosa_log_mel(_f64(y), config)
    reference = librosa.feature.mfcc(S=reference_db, n_mfcc=20, dct_type=2, norm="ortho")  # (n_mfcc, T)
    assert ours.shape == reference.shape
    # The DCT step alone: our MFCC is the orthonormal DCT of our own log-mel (float32 matmul of ~100 dB values).
    ours_db = frontend.log_mel_spectrogram(y)[0].double().numpy().T  # (M, T)
    own_dct = librosa.feature.mfcc(S=ours_db, n_mfcc=20, dct_type=2, norm="ortho")
    np.testing.assert_allclose(ours, own_dct, rtol=1e-6, atol=1e-4)
    # End to end: an orthonormal DCT does not grow errors, so per frame ||mfcc error|| <= ||log-mel error||
    # (plus the float32 rounding of the DCT itself).
    frame_error = np.linalg.norm(ours - reference, axis=0)  # (T,)
    log_mel_error = np.linalg.norm(ours_db - reference_db, axis=0)  # (T,)
    assert np.all(frame_error <= log_mel_error + 1e-6 * np.linalg.norm(reference, axis=0) + 1e-4)
    if signal != "chirp":  # no band far below its frame's peak: 1e-3 outright
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-3)


# -- frames and masks -------------------------------------------------------------------------------------------


def test_num_frames_and_frame_mask_by_hand() -> None:
    assert [num_frames(n, 80) for n in (0, 1, 79, 80, 159, 160, 8000)] == [1, 1, 1, 2, 2, 3, 101]
    lengths = torch.tensor([0, 79, 80, 250, 400])
    assert num_frames(lengths, 80).tolist() == [1, 1, 2, 4, 6]
    mask = frame_mask(lengths, 5, 80)  # (B, T)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [
        [True, False, False, False, False],
        [True, False, False, False, False],
        [True, True, False, False, False],
        [True, True, True, True, False],
        [True, True, True, True, True],  # more frames than the batch has: all valid
    ]
    with pytest.raises(ValueError, match="hop_length"):
        num_frames(10, 0)
    with pytest.raises(ValueError, match="num_samples"):
        num_frames(-1, 80)
    with pytest.raises(ValueError, match="lengths"):
        frame_mask(lengths[None], 5, 80)


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_padded_batch_frames_equal_each_clip_alone(kind: str) -> None:
    config = FeatureConfig(kind=kind)
    frontend = SpectralFrontend(config)
    rng = np.random.default_rng(3)
    lengths = [8000, 5123, 2400, 127, 81, 80, 7999, 1]
    waveform = torch.zeros(len(lengths), 8000)  # (B, S)
    for row, length in enumerate(lengths):
        waveform[row, :length] = torch.tensor(0.2 * rng.standard_normal(length))
    features = frontend(waveform)  # (B, T, F)
    assert tuple(features.shape) == (len(lengths), 101, config.num_features)
    valid = frontend.frame_mask(torch.tensor(lengths), features.shape[1])  # (B, T)
    for row, length in enumerate(lengths):
        alone = frontend(waveform[row : row + 1, :length])[0]  # (T_row, F)
        assert alone.shape[0] == int(valid[row].sum()) == frontend.num_frames(length)
        # Equal up to float32 rounding, not bitwise: oneDNN's conv1d picks its reduction order from the batch
        # and length (one clip in a batch of 1 vs 8 already differs by an ulp). Measured: <= 8e-6 dB (MFCC
        # 2e-5); allowed 1e-4 dB (MFCC 5e-4, a sum over 40 bands); a leak of the padding is ~1e4 times larger.
        torch.testing.assert_close(
            features[row, : alone.shape[0]], alone, rtol=0, atol=1e-4 if kind == "logmel" else 5e-4
        )

    # The same comparison catches a leak: junk after a clip's end changes its last valid frames by dBs.
    junk = waveform.clone()
    junk[3, lengths[3] :] = 0.2
    leaked = frontend(junk)[3, : frontend.num_frames(lengths[3])]  # (T_3, F)
    assert float((leaked - features[3, : leaked.shape[0]]).abs().max()) > 1.0


def test_gradients_reach_the_waveform() -> None:
    for kind in ("logmel", "mfcc"):
        waveform = torch.tensor(np.stack([_vowel()[1000:3000], _noise()[:2000]]), dtype=torch.float32)
        waveform.requires_grad_(True)
        SpectralFrontend(FeatureConfig(kind=kind))(waveform).sum().backward()
        assert waveform.grad is not None
        assert bool(torch.isfinite(waveform.grad).all())
        assert float((waveform.grad != 0).double().mean()) > 0.99  # every sample of a clip feeds some frame


def test_gradient_equals_finite_differences() -> None:
    frontend = SpectralFrontend(
        FeatureConfig(n_fft=16, hop_length=8, n_mels=4, kind="mfcc", n_mfcc=3)
    ).double()
    assert frontend.stft_kernels.dtype == torch.float64  # the buffers follow .double()
    waveform = 0.5 * torch.randn(2, 40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.autograd.gradcheck(frontend, (waveform.requires_grad_(True),), eps=1e-6, atol=1e-5)


def test_derived_buffers_stay_out_of_checkpoints() -> None:
    frontend = SpectralFrontend(FeatureConfig(kind="mfcc"))
    assert dict(frontend.state_dict()) == {}
    names = {name for name, _ in frontend.named_buffers()}
    assert names == {"stft_kernels", "mel_basis", "dct_basis"}
    assert tuple(frontend.stft_kernels.shape) == (2 * 129, 1, 256)
    assert {name for name, _ in SpectralFrontend(FeatureConfig()).named_buffers()} == {
        "stft_kernels",
        "mel_basis",
    }
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        frontend(torch.zeros(8000))


@pytest.mark.slow  # the dynamo exporter takes ~5 s per graph here
@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_onnx_export_equals_pytorch(kind: str) -> None:
    import onnxruntime as ort

    frontend = SpectralFrontend(FeatureConfig(kind=kind)).eval()
    example = torch.randn(2, 4000, generator=torch.Generator().manual_seed(5)) * 0.1
    dynamic_shapes = {
        "waveform": {0: torch.export.Dim("batch"), 1: torch.export.Dim("samples", min=1, max=2**20)}
    }
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(  # the call attnkit.export makes
            frontend,
            (example,),
            input_names=["waveform"],
            output_names=["features"],
            dynamic_shapes=dynamic_shapes,
            opset_version=18,
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    for seed, (batch, samples) in enumerate([(3, 8000), (1, 123), (5, 80), (2, 4000)]):
        waveform = torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed)) * 0.3
        (graph,) = session.run(["features"], {"waveform": waveform.numpy()})
        expected = frontend(waveform).numpy()
        assert graph.shape == expected.shape == (batch, 1 + samples // 80, frontend.num_features)
        np.testing.assert_allclose(graph, expected, rtol=0, atol=1e-4)


# -- SpecAugment ------------------------------------------------------------------------------------------------


def _masks(lengths: list[int], frames: int) -> torch.Tensor:
    return torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, width)`` of each run of True in a 1-D bool tensor."""
    values = [0, *row.int().tolist(), 0]
    edges = np.flatnonzero(np.diff(values))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_spec_augment_without_masks_is_the_identity() -> None:
    features = torch.randn(4, 30, 8)
    mask = _masks([30, 12, 1, 0], 30)
    out = spec_augment(features, mask, time_masks=0, time_width=10, freq_masks=0, freq_width=4, fill=-7.0)
    assert torch.equal(out, features)
    out = spec_augment(features, mask, time_masks=3, time_width=0, freq_masks=2, freq_width=0, fill=-7.0)
    assert torch.equal(out, features)


def test_spec_augment_time_masks_stay_in_bounds() -> None:
    lengths = [int(n) for n in np.random.default_rng(6).integers(0, 60, size=400)]
    valid = _masks(lengths, 60)  # (B, T)
    masked = spec_augment_mask(
        valid, 12, time_masks=2, time_width=7, freq_masks=0, freq_width=0, generator=_generator(7)
    )  # (B, T, F)
    assert bool((masked == masked[:, :, :1]).all())  # whole frames
    frames = masked[:, :, 0]  # (B, T)
    assert not bool((frames & ~valid).any())
    for row, length in enumerate(lengths):
        runs = _runs(frames[row])
        assert len(runs) <= 2
        assert sum(width for _, width in runs) <= min(2 * 7, length)
        assert all(start + width <= length for start, width in runs)
    assert int(frames.sum()) > 0


def test_spec_augment_freq_masks_stay_in_bounds() -> None:
    lengths = [40, 17, 3, 0] * 50
    valid = _masks(lengths, 40)
    masked = spec_augment_mask(
        valid, 20, time_masks=0, time_width=0, freq_masks=2, freq_width=5, generator=_generator(8)
    )  # (B, T, F)
    assert not bool((masked & ~valid[:, :, None]).any())  # padded frames never masked
    for row, length in enumerate(lengths):
        if length == 0:
            assert not bool(masked[row].any())
            continue
        band = masked[row, 0]  # (F,)
        assert bool((masked[row, :length] == band).all())  # the same band in every valid frame
        runs = _runs(band)
        assert len(runs) <= 2 and sum(width for _, width in runs) <= 10


def test_spec_augment_widths_and_starts_are_uniform() -> None:
    batch, frames, width = 6000, 50, 4
    valid = torch.ones(batch, frames, dtype=torch.bool)
    time = spec_augment_mask(
        valid, 10, time_masks=1, time_width=width, freq_masks=0, freq_width=0, generator=_generator(9)
    )
    freq = spec_augment_mask(
        valid, 10, time_masks=0, time_width=0, freq_masks=1, freq_width=width, generator=_generator(10)
    )
    for counts in (time[:, :, 0].sum(1), freq[:, 0, :].sum(1)):  # (B,): one span's width each
        frequencies = torch.bincount(counts, minlength=width + 1).double() / batch
        assert len(frequencies) == width + 1  # never wider than width
        torch.testing.assert_close(
            frequencies, torch.full((width + 1,), 1 / (width + 1), dtype=torch.float64), atol=0.02, rtol=0
        )
    starts = time[:, :, 0].double().argmax(1)[time[:, :, 0].any(1)]
    ends = frames - time[:, :, 0].flip(1).double().argmax(1)[time[:, :, 0].any(1)]
    assert int(starts.min()) == 0 and int(ends.max()) == frames  # spans reach both ends


def test_spec_augment_clips_time_width_to_short_clips() -> None:
    valid = _masks([3] * 500, 10)
    masked = spec_augment_mask(
        valid, 4, time_masks=1, time_width=8, freq_masks=0, freq_width=0, generator=_generator(11)
    )
    widths = masked[:, :, 0].sum(1)  # (B,)
    assert set(widths.tolist()) == {0, 1, 2, 3}  # uniform over [0, min(8, 3)]


def test_spec_augment_fills_only_masked_values_and_is_deterministic() -> None:
    features = torch.randn(16, 50, 20, generator=_generator(12))
    valid = _masks([int(n) for n in torch.randint(1, 51, (16,), generator=_generator(13))], 50)
    options = {"time_masks": 2, "time_width": 10, "freq_masks": 2, "freq_width": 6}
    out = spec_augment(features, valid, **options, generator=_generator(14), fill=-3.5)
    masked = spec_augment_mask(valid, 20, **options, generator=_generator(14))
    assert bool((out[masked] == -3.5).all())
    assert torch.equal(out[~masked], features[~masked])
    assert torch.equal(out[~valid], features[~valid])  # padding untouched
    assert int(masked.sum()) > 0
    again = spec_augment(features, valid, **options, generator=_generator(14), fill=-3.5)
    assert torch.equal(out, again)
    other = spec_augment(features, valid, **options, generator=_generator(15), fill=-3.5)
    assert not torch.equal(out, other)
    assert not bool((features == -3.5).any())  # the input itself is not modified


def test_spec_augment_rejects_bad_arguments() -> None:
    features, valid = torch.zeros(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="freq_width"):
        spec_augment(features, valid, time_masks=1, time_width=2, freq_masks=1, freq_width=5)
    with pytest.raises(ValueError, match="time_masks"):
        spec_augment(features, valid, time_masks=-1, time_width=2, freq_masks=1, freq_width=2)
    with pytest.raises(ValueError, match="frame_mask"):
        spec_augment(features, valid.int(), time_masks=1, time_width=2, freq_masks=1, freq_width=2)
    with pytest.raises(ValueError, match=r"\(B, T, F\)"):
        spec_augment(features[0], valid, time_masks=1, time_width=2, freq_masks=1, freq_width=2)


# -- normalizer -------------------------------------------------------------------------------------------------


def _feature_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    rng = np.random.default_rng(seed)
    lengths = [int(n) for n in rng.integers(1, 31, size=12)]
    scale = np.linspace(0.5, 20.0, 6)
    features = torch.tensor(rng.normal(-40.0, 1.0, size=(12, 30, 6)) * scale, dtype=torch.float32)
    valid = _masks(lengths, 30)
    features[~valid] = 1e6  # padding that must not count
    return features, valid, lengths


def test_normalizer_fits_numpy_statistics_over_valid_frames() -> None:
    features, valid, lengths = _feature_batch(16)
    frames = np.concatenate([features[row, :length].double().numpy() for row, length in enumerate(lengths)])
    normalizer = FeatureNormalizer(6).fit(features, valid)
    np.testing.assert_allclose(normalizer.mean.numpy(), frames.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(normalizer.std.numpy(), frames.std(axis=0), rtol=1e-6)
    out = normalizer(features)  # (B, T, F)
    np.testing.assert_allclose(
        out[valid].double().numpy(), (frames - frames.mean(axis=0)) / frames.std(axis=0), rtol=0, atol=1e-4
    )


def test_normalizer_streamed_fit_equals_one_fit() -> None:
    batches = [_feature_batch(seed)[:2] for seed in range(17, 22)]
    features = torch.cat([b[0] for b in batches])
    valid = torch.cat([b[1] for b in batches])
    valid[3:9] = False  # a batch with no valid frame at all is skipped
    chunks = [(features[i : i + 7], valid[i : i + 7]) for i in range(0, features.shape[0], 7)]
    streamed = FeatureNormalizer(6).fit_batches(iter(chunks))
    whole = FeatureNormalizer(6).fit(features, valid)
    frames = features[valid].double().numpy()
    for fitted in (streamed, whole):
        np.testing.assert_allclose(fitted.mean.numpy(), frames.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(fitted.std.numpy(), frames.std(axis=0), rtol=1e-6)


def test_normalizer_floors_std_and_checkpoints_its_statistics() -> None:
    features = torch.randn(3, 10, 4)
    features[..., 2] = 5.0  # a constant feature
    valid = torch.ones(3, 10, dtype=torch.bool)
    normalizer = FeatureNormalizer(4, min_std=1e-5)
    assert torch.equal(normalizer(features), features)  # 0 and 1 until fitted
    normalizer.fit(features, valid)
    assert float(normalizer.std[2]) == pytest.approx(1e-5)
    assert bool((normalizer(features)[..., 2] == 0).all())
    state = normalizer.state_dict()
    assert set(state) == {"mean", "std"}
    restored = FeatureNormalizer(4)
    restored.load_state_dict(state)
    assert torch.equal(restored(features), normalizer(features))


def test_normalizer_rejects_bad_inputs() -> None:
    normalizer = FeatureNormalizer(4)
    with pytest.raises(ValueError, match="no valid frame"):
        normalizer.fit(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(N, T, 4\)"):
        normalizer.fit(torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="frame_mask"):
        normalizer.fit(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_features"):
        FeatureNormalizer(0)
    assert math.isclose(FeatureNormalizer(3).min_std, 1e-5)
