"""The speech models' front end: padded waveforms -> log-mel or MFCC frames, masks, SpecAugment, normalization.

A speech model takes raw waveforms ``(B, S)`` (float, right-padded with zeros after each clip's end) and computes
its features inside the model, so that training, the GPU, the server and the ONNX export all run the same
module. :class:`SpectralFrontend` does it with operations ONNX exports (``pad``, ``conv1d``, ``matmul``,
``clamp``, ``log``):

1. centre padding: ``n_fft // 2`` zeros on both sides (librosa >= 0.10's ``center=True, pad_mode="constant"``);
2. the STFT as a strided ``conv1d`` with fixed kernels ``window * cos`` and ``-window * sin`` (a periodic Hann
   window, zero-padded to ``n_fft`` around its centre as librosa and ``torch.stft`` do), then the power
   ``re**2 + im**2``. ``torch.stft`` gives the same numbers, but only the dynamo exporter takes it (to ONNX's
   ``STFT`` op), the TorchScript one refuses its complex output; a ``Conv`` exports with either and runs in
   every ONNX runtime;
3. a Slaney mel filterbank (:func:`mel_filterbank`, equal to ``librosa.filters.mel``);
4. ``10 * log10(max(power, log_floor))`` (``librosa.power_to_db`` with ``ref=1.0, top_db=None``: a per-clip
   ``top_db`` would make a clip's features depend on the loudest clip of its batch);
5. for ``kind="mfcc"``, an orthonormal DCT-II of the log-mel over the mel axis, keeping ``n_mfcc`` coefficients.

Frames: frame ``t`` is centred on sample ``t * hop_length``; a clip of ``n`` samples has
``num_frames(n) = 1 + n // hop_length`` frames. Because the centre padding is zeros, the first
``num_frames(n)`` frames of a clip zero-padded to any length equal the frames of the clip alone (up to the
float rounding of the convolution's reduction order), so :func:`frame_mask` from the clip lengths marks the
valid frames of a padded batch.

:func:`spec_augment` masks time spans and feature bands (Park et al. 2019) per example, inside valid frames only;
:class:`FeatureNormalizer` holds per-feature mean and standard deviation fitted over valid frames of the
training split (in one call or streamed over batches) and standardizes with them.

Dimension legend: ``B`` batch, ``S`` samples, ``N`` clips fitted on, ``T`` frames, ``K = n_fft // 2 + 1``
frequency bins, ``M`` mel bands, ``F`` features per frame (``M`` for log-mel, ``n_mfcc`` for MFCC), ``L`` the
STFT kernel length (``n_fft``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

FeatureKind = Literal["logmel", "mfcc"]
FEATURE_KINDS: tuple[str, ...] = get_args(FeatureKind)

# Slaney's mel scale (Auditory Toolbox; librosa's htk=False): linear below 1 kHz, logarithmic above.
_MEL_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_MEL_LOG_START_HZ = 1000.0
_MEL_LOG_START_MEL = _MEL_LOG_START_HZ / _MEL_LINEAR_HZ_PER_MEL  # 15 mels
_MEL_LOG_STEP = math.log(6.4) / 27.0  # natural-log hertz per mel above 1 kHz

_Count = TypeVar("_Count", int, Tensor)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class FeatureConfig:
    """How :class:`SpectralFrontend` turns waveforms into feature frames. Plain fields, validated on construction.

    Attributes:
        sample_rate: samples per second of the waveforms (FSDD: 8000).
        n_fft: FFT size and STFT kernel length ``L``, in samples; even, so that a clip of ``n`` samples has
            ``1 + n // hop_length`` frames.
        win_length: Hann window length in samples, ``<= n_fft`` (``None``: ``n_fft``); a shorter window is
            zero-padded to ``n_fft`` around its centre.
        hop_length: samples between frame centres.
        kind: ``logmel`` (``n_mels`` features a frame, in dB) or ``mfcc`` (``n_mfcc`` features a frame).
        n_mels: mel bands ``M``.
        n_mfcc: cepstral coefficients kept (``mfcc`` only), ``<= n_mels``.
        f_min: lowest frequency of the mel filterbank, in Hz.
        f_max: highest frequency of the mel filterbank, in Hz, ``<= sample_rate / 2`` (``None``: the Nyquist
            frequency).
        log_floor: the power below which the log is clamped (librosa's ``amin``): ``10 * log10(log_floor)`` dB
            is the lowest feature value, also that of silence and padding.
    """

    sample_rate: int = 8000
    n_fft: int = 256
    win_length: int | None = None
    hop_length: int = 80
    kind: FeatureKind = "logmel"
    n_mels: int = 40
    n_mfcc: int = 20
    f_min: float = 0.0
    f_max: float | None = None
    log_floor: float = 1e-10

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "n_mfcc"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"FeatureConfig.{name} must be an integer >= 1, got {value!r}")
        if self.n_fft % 2:
            raise ValueError(
                f"FeatureConfig.n_fft must be even (centred frames then number 1 + samples // hop_length), "
                f"got {self.n_fft}"
            )
        if self.win_length is not None and (
            not _is_int(self.win_length) or not 1 <= self.win_length <= self.n_fft
        ):
            raise ValueError(
                f"FeatureConfig.win_length must be an integer in [1, n_fft={self.n_fft}] or null, "
                f"got {self.win_length!r}"
            )
        if self.kind not in FEATURE_KINDS:
            raise ValueError(
                f"FeatureConfig.kind must be one of {', '.join(FEATURE_KINDS)}; got {self.kind!r}"
            )
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"FeatureConfig.n_mfcc must be <= n_mels={self.n_mels}, got {self.n_mfcc}")
        nyquist = self.sample_rate / 2
        if not _is_number(self.f_min) or not 0.0 <= self.f_min < nyquist:
            raise ValueError(
                f"FeatureConfig.f_min must be a number in [0, sample_rate / 2 = {nyquist:g}) Hz, got {self.f_min!r}"
            )
        if self.f_max is not None and (not _is_number(self.f_max) or not self.f_min < self.f_max <= nyquist):
            raise ValueError(
                f"FeatureConfig.f_max must be a number in (f_min={self.f_min:g}, sample_rate / 2 = {nyquist:g}] Hz "
                f"or null, got {self.f_max!r}"
            )
        if not _is_number(self.log_floor) or not self.log_floor > 0:
            raise ValueError(f"FeatureConfig.log_floor must be a number > 0, got {self.log_floor!r}")

    @property
    def window_length(self) -> int:
        """The Hann window's length in samples: ``win_length``, or ``n_fft`` when it is ``None``."""
        return self.n_fft if self.win_length is None else self.win_length

    @property
    def mel_f_max(self) -> float:
        """The filterbank's highest frequency in Hz: ``f_max``, or ``sample_rate / 2`` when it is ``None``."""
        return self.sample_rate / 2 if self.f_max is None else float(self.f_max)

    @property
    def num_features(self) -> int:
        """``F``, the features a frame: ``n_mels`` for ``logmel``, ``n_mfcc`` for ``mfcc``."""
        return self.n_mels if self.kind == "logmel" else self.n_mfcc

    @property
    def frame_seconds(self) -> float:
        """The duration a frame's window covers, in seconds (``window_length / sample_rate``), centred on the
        frame's time ``t * hop_seconds``."""
        return self.window_length / self.sample_rate

    @property
    def hop_seconds(self) -> float:
        """Seconds between frame centres (``hop_length / sample_rate``)."""
        return self.hop_length / self.sample_rate


def _hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney mel of ``hz`` (any shape, float64)."""
    linear = hz / _MEL_LINEAR_HZ_PER_MEL
    log = _MEL_LOG_START_MEL + torch.log(hz.clamp_min(_MEL_LOG_START_HZ) / _MEL_LOG_START_HZ) / _MEL_LOG_STEP
    return torch.where(hz >= _MEL_LOG_START_HZ, log, linear)


def _mel_to_hz(mel: Tensor) -> Tensor:
    """Hertz of Slaney ``mel`` (any shape, float64): the inverse of :func:`_hz_to_mel`."""
    linear = mel * _MEL_LINEAR_HZ_PER_MEL
    log = _MEL_LOG_START_HZ * torch.exp(_MEL_LOG_STEP * (mel - _MEL_LOG_START_MEL))
    return torch.where(mel >= _MEL_LOG_START_MEL, log, linear)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular mel filters on the Slaney mel scale with Slaney area normalization, float32 ``(K, M)``.

    The same matrix as ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min,
    fmax=f_max).T`` (``htk=False, norm="slaney"``): ``M + 2`` edge frequencies equally spaced in mel between
    ``f_min`` and ``f_max``; filter ``m`` rises linearly from edge ``m`` to ``m + 1`` and falls to ``m + 2``,
    scaled by ``2 / (f[m + 2] - f[m])`` so every filter has about the same area. Computed in float64.

    Args:
        sample_rate: samples per second.
        n_fft: FFT size; the rows are the ``K = n_fft // 2 + 1`` bins at ``k * sample_rate / n_fft`` Hz.
        n_mels: filters ``M``.
        f_min: lowest edge, in Hz.
        f_max: highest edge, in Hz (``None``: ``sample_rate / 2``).

    Returns:
        ``(K, M)``: ``power (.., K) @ filters`` gives the mel power ``(.., M)``.
    """
    if f_max is None:
        f_max = sample_rate / 2
    num_bins = n_fft // 2 + 1
    bin_hz = torch.linspace(0.0, sample_rate / 2, num_bins, dtype=torch.float64)  # (K,)
    mel_edges = torch.linspace(
        float(_hz_to_mel(torch.tensor(float(f_min), dtype=torch.float64))),
        float(_hz_to_mel(torch.tensor(float(f_max), dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )  # (M + 2,)
    edges_hz = _mel_to_hz(mel_edges)  # (M + 2,)
    widths = edges_hz[1:] - edges_hz[:-1]  # (M + 1,)
    offsets = edges_hz[:, None] - bin_hz[None, :]  # (M + 2, K): edge minus bin frequency
    rising = -offsets[:-2] / widths[:-1, None]  # (M, K): 0 at the lower edge, 1 at the centre
    falling = offsets[2:] / widths[1:, None]  # (M, K): 1 at the centre, 0 at the upper edge
    triangles = torch.minimum(rising, falling).clamp_min(0.0)  # (M, K)
    area_norm = 2.0 / (edges_hz[2:] - edges_hz[:-2])  # (M,)
    filters = triangles * area_norm[:, None]  # (M, K)
    empty = (filters.amax(dim=1) == 0) & (edges_hz[:-2] > 0)  # (M,)
    if bool(empty.any()):
        logger.warning(
            "mel_filterbank: %d of %d mel filters fall between FFT bins and are empty; "
            "use fewer n_mels or a larger n_fft",
            int(empty.sum()),
            n_mels,
        )
    return filters.T.contiguous().to(torch.float32)  # (K, M)


def hann_window(length: int, n_fft: int) -> Tensor:
    """The periodic Hann window of ``length`` samples, zero-padded to ``n_fft`` around its centre, float64 ``(L,)``.

    ``0.5 - 0.5 * cos(2 pi n / length)``, like ``scipy.signal.get_window("hann", length, fftbins=True)`` and
    ``torch.hann_window(length, periodic=True)``; the left padding is ``(n_fft - length) // 2``, as in librosa
    and ``torch.stft``.
    """
    n = torch.arange(length, dtype=torch.float64)  # (length,)
    window = 0.5 - 0.5 * torch.cos(2.0 * math.pi * n / length)  # (length,)
    left = (n_fft - length) // 2
    return F.pad(window, (left, n_fft - length - left))  # (L,)


def stft_kernels(n_fft: int, win_length: int | None = None) -> Tensor:
    """The windowed DFT as ``conv1d`` weights, float32 ``(2K, 1, L)``: rows ``k < K`` are the real part
    ``w[n] cos(2 pi k n / L)``, rows ``K + k`` the imaginary part ``-w[n] sin(2 pi k n / L)``.

    The angles are taken from ``k * n mod L`` in integers, so every kernel is exact to float64 before the cast.
    """
    window = hann_window(n_fft if win_length is None else win_length, n_fft)  # (L,)
    k = torch.arange(n_fft // 2 + 1)[:, None]  # (K, 1)
    n = torch.arange(n_fft)[None, :]  # (1, L)
    angle = (2.0 * math.pi / n_fft) * ((k * n) % n_fft).to(torch.float64)  # (K, L)
    real = torch.cos(angle) * window  # (K, L)
    imag = -torch.sin(angle) * window  # (K, L)
    return torch.cat([real, imag]).to(torch.float32)[:, None, :]  # (2K, 1, L)


def dct_matrix(n_mels: int, n_mfcc: int) -> Tensor:
    """The orthonormal DCT-II over ``M`` values keeping ``n_mfcc`` coefficients, float32 ``(M, n_mfcc)``.

    ``log_mel (.., M) @ matrix`` equals ``scipy.fft.dct(log_mel, type=2, norm="ortho")[..., :n_mfcc]``:
    ``c[j] = s[j] * sum_m x[m] cos(pi j (m + 1/2) / M)`` with ``s[0] = sqrt(1 / M)``, ``s[j > 0] = sqrt(2 / M)``.
    """
    m = torch.arange(n_mels, dtype=torch.float64)[:, None]  # (M, 1)
    j = torch.arange(n_mfcc, dtype=torch.float64)[None, :]  # (1, n_mfcc)
    basis = torch.cos(math.pi / n_mels * (m + 0.5) * j)  # (M, n_mfcc)
    scale = torch.full((n_mfcc,), math.sqrt(2.0 / n_mels), dtype=torch.float64)  # (n_mfcc,)
    scale[0] = math.sqrt(1.0 / n_mels)
    return (basis * scale).to(torch.float32)  # (M, n_mfcc)


def num_frames(num_samples: _Count, hop_length: int) -> _Count:
    """Frames of a clip of ``num_samples`` samples with centred frames: ``1 + num_samples // hop_length``.

    Args:
        num_samples: a count (``int``) or a tensor of counts (any shape, integer dtype).
        hop_length: samples between frame centres.

    Returns:
        The same type and shape as ``num_samples``.
    """
    if not _is_int(hop_length) or hop_length < 1:
        raise ValueError(f"hop_length must be an integer >= 1, got {hop_length!r}")
    if isinstance(num_samples, Tensor):
        if num_samples.is_floating_point():
            raise ValueError(f"num_samples must be an integer tensor, got {num_samples.dtype}")
        return 1 + torch.div(num_samples, hop_length, rounding_mode="floor")
    if not _is_int(num_samples) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
    return 1 + num_samples // hop_length


def frame_mask(lengths: Tensor, num_frames_total: int, hop_length: int) -> Tensor:
    """Which frames of a padded batch belong to their clip: ``(B, T)`` bool, True where
    ``t < 1 + lengths[b] // hop_length``.

    Args:
        lengths: ``(B,)`` integer clip lengths in samples (before padding).
        num_frames_total: ``T``, the frames of the padded batch (``num_frames(S, hop_length)``).
        hop_length: samples between frame centres.
    """
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be (B,), got shape {tuple(lengths.shape)}")
    valid = num_frames(lengths, hop_length)  # (B,)
    frames = torch.arange(num_frames_total, device=lengths.device)  # (T,)
    return frames[None, :] < valid[:, None]  # (B, T)


class SpectralFrontend(nn.Module):
    """Padded waveforms ``(B, S)`` -> feature frames ``(B, T, F)``, ``T = 1 + S // hop_length`` (see the module
    docstring for the steps).

    The STFT kernels, the mel filterbank and the DCT matrix are non-persistent buffers: they follow the module to
    a device and a dtype, but they are derived from the config and never go into a checkpoint.

    Args:
        config: what to compute.
    """

    stft_kernels: Tensor
    mel_basis: Tensor
    dct_basis: Tensor | None

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.num_bins = config.n_fft // 2 + 1
        self.register_buffer("stft_kernels", stft_kernels(config.n_fft, config.win_length), persistent=False)
        mel = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.mel_f_max)
        self.register_buffer("mel_basis", mel, persistent=False)  # (K, M)
        dct = dct_matrix(config.n_mels, config.n_mfcc) if config.kind == "mfcc" else None
        self.register_buffer("dct_basis", dct, persistent=False)  # (M, n_mfcc), or None for log-mel

    @property
    def num_features(self) -> int:
        """``F``, the features a frame."""
        return self.config.num_features

    def power_spectrogram(self, waveform: Tensor) -> Tensor:
        """``|STFT|**2`` of ``waveform (B, S)``: ``(B, T, K)``, equal to ``torch.stft(..., center=True,
        pad_mode="constant").abs() ** 2`` transposed."""
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, S), got shape {tuple(waveform.shape)}")
        half = self.config.n_fft // 2
        x = waveform.to(self.stft_kernels.dtype)[:, None, :]  # (B, 1, S)
        x = F.pad(x, (half, half))  # (B, 1, S + L): zeros, so padding after a clip changes none of its frames
        spectrum = F.conv1d(x, self.stft_kernels, stride=self.config.hop_length)  # (B, 2K, T)
        real, imag = spectrum[:, : self.num_bins], spectrum[:, self.num_bins :]  # (B, K, T) each
        return (real.square() + imag.square()).transpose(1, 2)  # (B, T, K)

    def log_mel_spectrogram(self, waveform: Tensor) -> Tensor:
        """``10 * log10(max(mel power, log_floor))`` of ``waveform (B, S)``: ``(B, T, M)`` in dB."""
        mel = self.power_spectrogram(waveform) @ self.mel_basis  # (B, T, M)
        return 10.0 * torch.log10(mel.clamp_min(self.config.log_floor))  # (B, T, M)

    def forward(self, waveform: Tensor) -> Tensor:
        """Features of ``waveform (B, S)`` (float, zeros after each clip's end): ``(B, T, F)``."""
        log_mel = self.log_mel_spectrogram(waveform)  # (B, T, M)
        if self.dct_basis is None:  # decided by config.kind: a constant for tracing
            return log_mel
        return log_mel @ self.dct_basis  # (B, T, n_mfcc)

    def num_frames(self, num_samples: _Count) -> _Count:
        """``T`` for clips of ``num_samples`` samples (see :func:`num_frames`)."""
        return num_frames(num_samples, self.config.hop_length)

    def frame_mask(self, lengths: Tensor, num_frames_total: int) -> Tensor:
        """``(B, T)`` bool: the valid frames of clips of ``lengths (B,)`` samples (see :func:`frame_mask`)."""
        return frame_mask(lengths, num_frames_total, self.config.hop_length)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"kind={c.kind}, sample_rate={c.sample_rate}, n_fft={c.n_fft}, win_length={c.window_length}, "
            f"hop_length={c.hop_length}, n_mels={c.n_mels}, features={c.num_features}"
        )


def _uniform_ints(high: Tensor, uniforms: Tensor) -> Tensor:
    """Integers uniform in ``[0, high]`` (inclusive, elementwise) from ``uniforms`` in ``[0, 1)`` of the same
    shape."""
    drawn = torch.floor(uniforms * (high + 1).to(uniforms.dtype)).long()
    return torch.minimum(drawn, high)  # the float product can round up to high + 1


def _spans(starts: Tensor, widths: Tensor, size: int) -> Tensor:
    """The union of ``[start, start + width)`` over the last axis of ``starts, widths (B, R)``: ``(B, size)``
    bool."""
    positions = torch.arange(size, device=starts.device)  # (size,)
    inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])  # (B, R, size)
    return inside.any(dim=1)  # (B, size)


def spec_augment_mask(
    frame_mask: Tensor,
    num_features: int,
    *,
    time_masks: int,
    time_width: int,
    freq_masks: int,
    freq_width: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Where :func:`spec_augment` writes ``fill``: ``(B, T, F)`` bool, drawn independently for every example.

    Each of ``freq_masks`` bands has a width uniform in ``[0, freq_width]`` and a start uniform among the
    positions that keep it inside the ``F`` features; each of ``time_masks`` spans has a width uniform in
    ``[0, min(time_width, length)]`` (the range clipped to the clip's ``length`` valid frames, so a short clip
    is not always masked whole) and a start uniform in ``[0, length - width]``. Masks may overlap. Only valid
    frames are ever masked: a band covers its features in the valid frames only.

    Args:
        frame_mask: ``(B, T)`` bool, the valid frames; right-padded (valid frames first, as :func:`frame_mask`
            gives).
        num_features: ``F``.
        time_masks: spans per example (``0``: none).
        time_width: the widest span, in frames.
        freq_masks: bands per example (``0``: none).
        freq_width: the widest band, in features, ``<= F``.
        generator: the source of randomness (on any device); ``None``: torch's global generator.
    """
    for name, value in (
        ("time_masks", time_masks),
        ("time_width", time_width),
        ("freq_masks", freq_masks),
        ("freq_width", freq_width),
    ):
        if not _is_int(value) or value < 0:
            raise ValueError(f"spec_augment {name} must be an integer >= 0, got {value!r}")
    if freq_width > num_features:
        raise ValueError(f"spec_augment freq_width must be <= the {num_features} features, got {freq_width}")
    if frame_mask.dim() != 2 or frame_mask.dtype != torch.bool:
        raise ValueError(
            f"frame_mask must be (B, T) bool, got {frame_mask.dtype} of shape {tuple(frame_mask.shape)}"
        )
    batch, frames = frame_mask.shape
    device = frame_mask.device
    draw_device = generator.device if generator is not None else device
    # One draw for everything, in a fixed order, so a generator's state fixes every mask.
    uniforms = torch.rand(
        batch, 2 * (time_masks + freq_masks), generator=generator, dtype=torch.float64, device=draw_device
    ).to(device)  # (B, 2 * (Rt + Rf))
    time_u, freq_u = uniforms.split([2 * time_masks, 2 * freq_masks], dim=1)  # (B, 2Rt), (B, 2Rf)

    lengths = frame_mask.sum(dim=1)  # (B,)
    widest = lengths.clamp_max(time_width)[:, None].expand(batch, time_masks)  # (B, Rt)
    time_widths = _uniform_ints(widest, time_u[:, :time_masks])  # (B, Rt)
    time_starts = _uniform_ints(lengths[:, None] - time_widths, time_u[:, time_masks:])  # (B, Rt)
    masked_frames = _spans(time_starts, time_widths, frames)  # (B, T)

    band_limit = torch.full((batch, freq_masks), freq_width, dtype=torch.long, device=device)  # (B, Rf)
    band_widths = _uniform_ints(band_limit, freq_u[:, :freq_masks])  # (B, Rf)
    band_starts = _uniform_ints(num_features - band_widths, freq_u[:, freq_masks:])  # (B, Rf)
    masked_features = _spans(band_starts, band_widths, num_features)  # (B, F)

    masked = masked_frames[:, :, None] | masked_features[:, None, :]  # (B, T, F)
    return masked & frame_mask[:, :, None]  # (B, T, F)


def spec_augment(
    features: Tensor,
    frame_mask: Tensor,
    *,
    time_masks: int,
    time_width: int,
    freq_masks: int,
    freq_width: int,
    generator: torch.Generator | None = None,
    fill: float = 0.0,
) -> Tensor:
    """SpecAugment's time and frequency masking (Park et al. 2019) of a batch of feature frames.

    A new tensor: ``features`` with ``fill`` where :func:`spec_augment_mask` draws masks (per example, valid
    frames only); every padded frame and every unmasked value is unchanged. With zero masks it is ``features``
    itself, value for value.

    Args:
        features: ``(B, T, F)``.
        frame_mask: ``(B, T)`` bool, the valid frames (right-padded).
        time_masks, time_width, freq_masks, freq_width, generator: see :func:`spec_augment_mask`.
        fill: the masked value; ``0.0`` is the training mean once :class:`FeatureNormalizer` has run.

    Returns:
        ``(B, T, F)``.
    """
    if features.dim() != 3 or tuple(features.shape[:2]) != tuple(frame_mask.shape):
        raise ValueError(
            f"features must be (B, T, F) with frame_mask (B, T); got {tuple(features.shape)} and "
            f"{tuple(frame_mask.shape)}"
        )
    masked = spec_augment_mask(
        frame_mask,
        features.shape[2],
        time_masks=time_masks,
        time_width=time_width,
        freq_masks=freq_masks,
        freq_width=freq_width,
        generator=generator,
    )  # (B, T, F)
    return features.masked_fill(masked, fill)  # (B, T, F)


class FeatureNormalizer(nn.Module):
    """Per-feature standardization ``(features - mean) / std`` with statistics of the training frames.

    ``mean (F,)`` and ``std (F,)`` are persistent buffers (0 and 1 until fitted), so they travel in the model's
    checkpoint. Fitting counts valid frames only (padding would pull the mean towards the log floor) and
    accumulates in float64 with Chan et al.'s pairwise update, so fitting batch by batch gives the statistics of
    all the frames at once; ``std`` is the population standard deviation, floored at ``min_std``.

    Args:
        num_features: ``F``.
        min_std: the smallest ``std`` (a constant feature then maps to 0, not to inf).
    """

    mean: Tensor
    std: Tensor

    def __init__(self, num_features: int, *, min_std: float = 1e-5) -> None:
        super().__init__()
        if not _is_int(num_features) or num_features < 1:
            raise ValueError(f"FeatureNormalizer num_features must be an integer >= 1, got {num_features!r}")
        if not _is_number(min_std) or not min_std > 0:
            raise ValueError(f"FeatureNormalizer min_std must be a number > 0, got {min_std!r}")
        self.num_features = num_features
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(num_features))  # (F,)
        self.register_buffer("std", torch.ones(num_features))  # (F,)

    def _valid_frames(self, features: Tensor, frame_mask: Tensor) -> Tensor:
        """The valid frames of one batch as float64 ``(V, F)``, shapes checked."""
        if features.dim() != 3 or features.shape[2] != self.num_features:
            raise ValueError(
                f"features must be (N, T, {self.num_features}), got shape {tuple(features.shape)}"
            )
        if frame_mask.dtype != torch.bool or tuple(frame_mask.shape) != tuple(features.shape[:2]):
            raise ValueError(
                f"frame_mask must be (N, T) = {tuple(features.shape[:2])} bool, got {frame_mask.dtype} of shape "
                f"{tuple(frame_mask.shape)}"
            )
        return features.detach()[frame_mask].to(torch.float64)  # (V, F)

    @torch.no_grad()
    def fit_batches(self, batches: Iterable[tuple[Tensor, Tensor]]) -> FeatureNormalizer:
        """Fit ``mean`` and ``std`` over the valid frames of every ``(features (N, T, F), frame_mask (N, T))``.

        Returns:
            ``self``.

        Raises:
            ValueError: a batch has the wrong shape, or no batch has a valid frame.
        """
        count = 0
        mean = torch.zeros(self.num_features, dtype=torch.float64, device=self.mean.device)  # (F,)
        squares = torch.zeros_like(mean)  # (F,): sum of squared deviations from mean
        for features, mask in batches:
            frames = self._valid_frames(features, mask).to(mean.device)  # (V, F)
            batch_count = frames.shape[0]
            if batch_count == 0:
                continue
            batch_mean = frames.mean(dim=0)  # (F,)
            batch_squares = (frames - batch_mean).square().sum(dim=0)  # (F,)
            total = count + batch_count
            delta = batch_mean - mean  # (F,)
            mean = mean + delta * (batch_count / total)
            squares = squares + batch_squares + delta.square() * (count * batch_count / total)
            count = total
        if count == 0:
            raise ValueError("FeatureNormalizer.fit found no valid frame (every frame_mask is all False)")
        std = (squares / count).sqrt().clamp_min(self.min_std)  # (F,)
        self.mean.copy_(mean)
        self.std.copy_(std)
        return self

    def fit(self, features: Tensor, frame_mask: Tensor) -> FeatureNormalizer:
        """Fit over the valid frames of ``features (N, T, F)`` (``frame_mask (N, T)`` bool); returns ``self``."""
        return self.fit_batches([(features, frame_mask)])

    def forward(self, features: Tensor) -> Tensor:
        """``(features - mean) / std`` of ``features (B, T, F)``: ``(B, T, F)``."""
        return (features - self.mean) / self.std  # (B, T, F)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, min_std={self.min_std:g}"
