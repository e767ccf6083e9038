"""Typed run configuration: one source of truth for the CLI flags, the YAML files and the saved run.

A run config is a tree of small dataclasses. ``RunConfig.from_dict`` rejects unknown keys by name, and every
section validates itself in ``__post_init__`` so a mistake is reported before any data is read: types, ranges
(threads, smoothing, clipping, weight decay, sizes, time budget), the model's own options, and whether the
model's weights fit in this machine's memory (:func:`check_model_memory`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_type_hints

import yaml

from attnkit.threads import check_thread_setting

if TYPE_CHECKING:
    from attnkit.models.base import ModelConfig

T = TypeVar("T")

#: Upper bounds of sizes: far above any useful value, low enough that a typo fails here, not deep in torch.
MAX_VOCAB_SIZE = 2**24
MAX_TOKENS = 2**20
MAX_BATCH_SIZE = 2**20
MAX_EPOCHS = 100_000
MAX_ENSEMBLE = 256
MAX_SEED = 2**32 - 1
MAX_WEIGHT_DECAY = 10.0
MAX_IMAGE_SIDE = 8192
MAX_SAMPLE_RATE = 192_000
MAX_AUDIO_SECONDS = 600.0
MODALITY_CHOICES = ("auto", "text", "image", "audio")
#: Model options that come from the data and the tokenizer, never from ``model.options``.
DERIVED_MODEL_FIELDS = {
    "vocab_size": "it is the tokenizer's vocabulary size (set tokenizer.vocab_size)",
    "num_classes": "it is the number of labels in the training data",
    "max_length": "it is tokenizer.max_length",
    "pad_id": "it is the tokenizer's padding id",
    "image_size": "it is the images' size (set image.size)",
    "channels": "it is the images' channel count (set image.mode)",
    "feature_dim": "it is the audio features per frame (set audio.n_mels, audio.n_mfcc, audio.stack_frames)",
    "max_units": "it follows from audio.max_seconds",
}
#: The memory assumed where the machine's cannot be read: a cap of 1 TiB.
_FALLBACK_MEMORY_BYTES = 2**40
_DEVICE_PATTERN = re.compile(r"(cpu|cuda|mps)(:\d+)?")


class ConfigError(ValueError):
    """A configuration value or key the user can fix."""


def _check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise unless ``low <= value <= high``; NaN never passes."""
    if value < low:
        raise ConfigError(f"{name} must be >= {_number(low)}, got {value}")
    if value > high:
        raise ConfigError(f"{name} must be <= {_number(high)}, got {value}")
    if not low <= value <= high:  # NaN, for which every comparison is False
        raise ConfigError(f"{name} must be a number in [{_number(low)}, {_number(high)}], got {value}")


def _number(value: float) -> str:
    """``4294967295`` rather than ``4.29497e+09``; ``0.5``, ``inf``."""
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:g}"


@dataclass
class DataConfig:
    """Where the examples come from.

    Attributes:
        train: a file, a folder of per-label folders, or a built-in name (``imdb``, ``20newsgroups``, ``sst2``,
            ``ag_news``, ``mr``, ``embedded``), optionally ``name:split``.
        test: held-out data, used only for the final report (never for model selection). For built-in names the
            official test split is used when this is left empty.
        val: validation data; when empty, ``val_fraction`` of ``train`` is carved out with ``split_seed``.
        val_fraction: share of ``train`` carved out for validation when ``val`` is empty. 0 trains on all of
            ``train`` with no validation: every epoch of ``train.epochs`` runs, the last weights are kept, and no
            temperature is fitted (use it to refit for the number of epochs a validated run selected).
        text_field: text column/field name (auto-detected when empty).
        label_field: label column/field name (auto-detected when empty).
        modality: what the examples are: ``text``, ``image`` or ``audio``. ``auto`` decides from the data (a
            built-in's modality, a folder of image or audio folders) or else the model (``vit`` is an image
            model); the saved config records the decision, so a run loads without its training data.
        split: how a built-in with speakers (``fsdd``) is split into train and test: ``official`` (the dataset's
            own split; the default) or ``speaker:NAME`` (that speaker's recordings are the test set, never heard
            in training). Only for such built-ins.
    """

    train: str = "embedded"
    test: str | None = None
    val: str | None = None
    text_field: str | None = None
    label_field: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    modality: Literal["auto", "text", "image", "audio"] = "auto"
    split: str | None = None

    def __post_init__(self) -> None:
        if not self.train.strip():
            raise ConfigError("data.train must name the training data (a file, a folder or a built-in name)")
        if self.modality not in MODALITY_CHOICES:
            raise ConfigError(
                f"data.modality must be one of {', '.join(MODALITY_CHOICES)}; got {self.modality!r}"
            )
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f"data.val_fraction must be in [0, 0.5), got {self.val_fraction}")
        if self.split is not None and not (
            self.split == "official"
            or (self.split.startswith("speaker:") and self.split[len("speaker:") :].strip())
        ):
            raise ConfigError(
                f"data.split must be null, official or speaker:NAME (leave that speaker out), got {self.split!r}"
            )

    @property
    def has_validation(self) -> bool:
        """Whether the run holds out a validation split (given as ``val`` or carved with ``val_fraction``)."""
        return bool(self.val) or self.val_fraction > 0


@dataclass
class TokenizerSection:
    """Tokenizer settings (see :class:`attnkit.data.text.tokenizer.TokenizerConfig`).

    ``truncation``: what a text longer than ``max_length`` tokens keeps: ``head`` (its first tokens) or
    ``head+tail`` (its first quarter and last three quarters, where a review's verdict usually is).
    """

    level: Literal["word", "char", "word-zh", "word-zh+char", "auto"] = "auto"
    vocab_size: int = 10_000
    min_freq: int = 1
    lowercase: bool = True
    max_length: int = 500
    truncation: Literal["head", "head+tail"] = "head"

    def __post_init__(self) -> None:
        if self.truncation not in ("head", "head+tail"):
            raise ConfigError(f"tokenizer.truncation must be head or head+tail, got {self.truncation!r}")
        if self.level not in ("word", "char", "word-zh", "word-zh+char", "auto"):
            raise ConfigError(
                f"tokenizer.level must be one of word, char, word-zh, word-zh+char, auto; got {self.level!r}"
            )
        _check_range("tokenizer.vocab_size", self.vocab_size, 3, MAX_VOCAB_SIZE)
        _check_range("tokenizer.min_freq", self.min_freq, 1, math.inf)
        _check_range("tokenizer.max_length", self.max_length, 1, MAX_TOKENS)


@dataclass
class ImageSection:
    """How images are read and augmented (image runs only).

    Attributes:
        size: ``[height, width]`` every image is resized to; null keeps the data's own size (a built-in's, or
            the one size every image of a folder has).
        mode: ``L`` (grayscale, 1 channel) or ``RGB`` (3 channels); ``auto``: the built-in's, RGB for folders.
        random_crop_padding: training-time augmentation: pad each image by this many pixels (with black, raw
            pixel 0) and crop it back at a random offset; 0 = off.
        horizontal_flip: training-time augmentation: mirror each image left-right with probability 0.5.
        random_erasing: training-time augmentation: the probability that an image gets one random rectangle
            (2-33% of its area, aspect 0.3-3.3) filled with the training mean (random erasing); 0 = off.
            Applied after the crop and the flip.
        max_pixels: images declaring more pixels (width x height) are refused from their header, before they
            are decoded (a decompression bomb): skipped in training data, an error in predict and explain
            (which take ``--max-image-pixels`` to raise it for one command). Pillow refuses above about 179
            million pixels whatever this says.
    """

    size: list[int] | None = None
    mode: Literal["auto", "L", "RGB"] = "auto"
    random_crop_padding: int = 0
    horizontal_flip: bool = False
    random_erasing: float = 0.0
    max_pixels: int = 64_000_000

    def __post_init__(self) -> None:
        if isinstance(self.size, tuple):  # ImageSection(size=(32, 32)) in Python
            self.size = list(self.size)
        if self.size is not None:
            if (
                not isinstance(self.size, list)
                or len(self.size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in self.size)
            ):
                raise ConfigError(
                    f"image.size must be [height, width] (two integers) or null, got {self.size!r}"
                )
            for side in self.size:
                _check_range("image.size", side, 1, MAX_IMAGE_SIDE)
        if self.mode not in ("auto", "L", "RGB"):
            raise ConfigError(f"image.mode must be auto, L or RGB; got {self.mode!r}")
        _check_range("image.random_crop_padding", self.random_crop_padding, 0, 256)
        _check_range("image.random_erasing", self.random_erasing, 0.0, 1.0)
        _check_range("image.max_pixels", self.max_pixels, 1, 10**10)


@dataclass
class AudioSection:
    """How recordings are read, turned into features and augmented (audio runs only).

    Attributes:
        sample_rate: every recording is resampled to this rate (Hz) and mixed down to mono.
        max_seconds: the longest recording accepted (a longer one in a folder is skipped and counted; at
            prediction it is refused); sizes the models' position tables.
        features: ``logmel`` (log-mel spectrogram, dB) or ``mfcc`` (its DCT-II, the first ``n_mfcc``).
        n_mels: mel bands.
        n_mfcc: MFCCs kept (``features: mfcc``), at most ``n_mels``.
        window_ms: analysis window (Hann); the FFT size is the next power of two.
        hop_ms: hop between frames: one frame every ``hop_ms`` milliseconds.
        stack_frames: consecutive frames put side by side into one unit (frame patches for the transformer;
            ``stack_frames * hop_ms`` per unit).
        recording_mean: subtract each recording's own mean of every feature before the training statistics are
            applied (cepstral mean normalization): a microphone's or a voice's constant colouring cancels, which
            helps on speakers and microphones never heard in training.
        time_masks / time_mask_frames: training-time SpecAugment: this many spans of up to this many frames set to
            the training mean in each recording; 0 masks = off.
        freq_masks / freq_mask_bins: the same over bands of up to this many feature channels.
    """

    sample_rate: int = 8000
    max_seconds: float = 10.0
    features: Literal["logmel", "mfcc"] = "logmel"
    n_mels: int = 40
    n_mfcc: int = 20
    window_ms: float = 32.0
    hop_ms: float = 10.0
    stack_frames: int = 1
    recording_mean: bool = False
    time_masks: int = 0
    time_mask_frames: int = 10
    freq_masks: int = 0
    freq_mask_bins: int = 8

    def __post_init__(self) -> None:
        _check_range("audio.sample_rate", self.sample_rate, 1000, MAX_SAMPLE_RATE)
        _check_range("audio.max_seconds", self.max_seconds, 0.01, MAX_AUDIO_SECONDS)
        if self.features not in ("logmel", "mfcc"):
            raise ConfigError(f"audio.features must be logmel or mfcc, got {self.features!r}")
        _check_range("audio.n_mels", self.n_mels, 1, 512)
        _check_range("audio.n_mfcc", self.n_mfcc, 1, self.n_mels if self.features == "mfcc" else 512)
        _check_range("audio.window_ms", self.window_ms, 1.0, 1000.0)
        _check_range("audio.hop_ms", self.hop_ms, 0.1, self.window_ms)
        if self.hop_samples < 1:
            raise ConfigError(
                f"audio.hop_ms={self.hop_ms} is under one sample at audio.sample_rate={self.sample_rate}"
            )
        if self.n_mels > self.n_fft // 2 + 1:
            raise ConfigError(
                f"audio.n_mels={self.n_mels} is more than the {self.n_fft // 2 + 1} frequency bins of a "
                f"{self.window_ms:g} ms window; lower audio.n_mels or widen audio.window_ms"
            )
        _check_range("audio.stack_frames", self.stack_frames, 1, 64)
        _check_range("audio.time_masks", self.time_masks, 0, 64)
        _check_range("audio.time_mask_frames", self.time_mask_frames, 0, 10_000)
        _check_range("audio.freq_masks", self.freq_masks, 0, 64)
        _check_range("audio.freq_mask_bins", self.freq_mask_bins, 0, self.n_mels)

    @property
    def win_samples(self) -> int:
        return max(1, round(self.window_ms * self.sample_rate / 1000))

    @property
    def n_fft(self) -> int:
        """The FFT size: the smallest power of two that holds the window."""
        return 1 << (self.win_samples - 1).bit_length()

    @property
    def hop_samples(self) -> int:
        return round(self.hop_ms * self.sample_rate / 1000)

    @property
    def frame_features(self) -> int:
        """Features per frame: ``n_mels`` or ``n_mfcc``."""
        return self.n_mfcc if self.features == "mfcc" else self.n_mels

    @property
    def unit_features(self) -> int:
        """Features per unit: a frame's times ``stack_frames``."""
        return self.frame_features * self.stack_frames

    @property
    def max_units(self) -> int:
        """Units of a ``max_seconds`` recording (centred frames: ``1 + samples // hop``, then stacked)."""
        frames = 1 + int(self.max_seconds * self.sample_rate) // self.hop_samples
        return -(-frames // self.stack_frames)


@dataclass
class ModelSection:
    """Which model, and any of its config fields (``embed_dim``, ``hidden_dim``, ``pooling_scorer``...).

    Attributes:
        ensemble: number of members ``M``. Above 1, training fits ``M`` copies of the model with seeds
            ``train.seed, train.seed + 1, ...`` (each a full run in ``RUN_DIR/members/<m>``, early-stopped on
            the same validation split) and the run's model averages their logits
            (:class:`attnkit.models.ensemble.EnsembleClassifier`). Training time grows ``M``-fold.
    """

    #: ``auto``: the modality's default (:data:`attnkit.models.registry.DEFAULT_MODELS`): for text ``nb-attn``, the
    #: most accurate model for a small time budget in BENCHMARKS.md ("Which model by default"; the article's
    #: BiLSTM + attention is ``bilstm-attn``); for images the most accurate one in "Vision". A run saves the
    #: model it used.
    name: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    ensemble: int = 1

    def __post_init__(self) -> None:
        from attnkit.models.registry import available_models

        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise ConfigError(f"model.ensemble must be an integer >= 1, got {self.ensemble!r}")
        _check_range("model.ensemble", self.ensemble, 1, MAX_ENSEMBLE)
        if self.name != "auto" and self.name not in available_models():
            raise ConfigError(
                f"model.name {self.name!r} is unknown; choose auto or one of {', '.join(available_models())}"
            )
        if not isinstance(self.options, dict) or not all(isinstance(key, str) for key in self.options):
            raise ConfigError(
                f"model.options must be a mapping of option names to values, got {self.options!r}"
            )
        for key, why in DERIVED_MODEL_FIELDS.items():
            if key in self.options:
                raise ConfigError(f"model.options.{key} cannot be set: {why}")
        # The options' names, types and ranges are checked by the model's config in RunConfig.__post_init__,
        # which knows the vocabulary size and length they combine with.

    @property
    def label(self) -> str:
        """How the model is named to users: ``nb-attn``, or ``nb-attn (ensemble of 5)``."""
        return self.name if self.ensemble == 1 else f"{self.name} (ensemble of {self.ensemble})"


@dataclass
class OptimConfig:
    """AdamW with linear warmup then linear or cosine decay, and gradient clipping.

    Attributes:
        ema_decay: 0 (off), or the decay of an exponential moving average of the weights, e.g. 0.999 (an
            average over about the last 1 / (1 - decay) steps, once a warm-up of about 9 / (1 - decay) steps has
            passed; in shorter runs the warm-up sets it): it is the model that is validated, selected, saved and
            served, while training updates the raw weights (:mod:`attnkit.train.averaging`).
    """

    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    grad_clip: float = 1.0
    batch_size: int = 64
    eval_batch_size: int = 256
    label_smoothing: float = 0.0
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"optim.lr must be a finite number > 0, got {self.lr}")
        _check_range("optim.weight_decay", self.weight_decay, 0.0, MAX_WEIGHT_DECAY)
        # AdamW scales every weight by (1 - lr * weight_decay) per step: at 1 or more it zeroes or flips them.
        if self.lr * self.weight_decay >= 1.0:
            raise ConfigError(
                f"optim.lr * optim.weight_decay must be < 1 (AdamW multiplies the weights by 1 - lr * weight_decay "
                f"at every step), got {self.lr} * {self.weight_decay}"
            )
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"optim.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ConfigError(f"optim.schedule must be linear, cosine or constant, got {self.schedule!r}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ConfigError(
                f"optim.grad_clip must be a finite number >= 0 (0 = no clipping), got {self.grad_clip}"
            )
        _check_range("optim.batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_range("optim.eval_batch_size", self.eval_batch_size, 1, MAX_BATCH_SIZE)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(
                f"optim.ema_decay must be 0 (off) or in (0, 1), e.g. 0.999; got {self.ema_decay}"
            )


@dataclass
class TrainConfig:
    """The loop: epochs, early stopping, seed, device.

    Attributes:
        patience: stop after this many epochs without a better validation accuracy.
        threads: torch compute threads on the CPU. ``auto`` (default) uses the cores other processes leave idle
            and re-checks every few seconds (:mod:`attnkit.threads`): never the 10x slowdown of spinning threads
            on a busy machine, every core on an idle one. A number fixes it; ``null`` leaves torch's default.
        precision: ``bf16`` runs the training forward pass and loss under bfloat16 autocast (weights, optimizer
            and evaluation stay float32): for GPUs with bfloat16 (Ampere and later); on a CPU without native
            bfloat16 it is slower, not faster.
        compile: train through ``torch.compile`` (dynamic shapes): a GPU speed-up for the larger models after a
            compile of tens of seconds; selection, checkpoints and inference use the uncompiled model.
        max_train_seconds: stop at the first epoch end past this much training time.
        fit_schedule_to_budget: with ``max_train_seconds``, make the run as many whole epochs as fit in the
            budget (at most ``epochs``) and stretch the learning-rate schedule (warmup and decay) over them, so
            it ends at the budget with its decay complete, on a fast machine or a slow one. The epochs are
            planned from the measured speed after the first 5% of the first epoch's steps, then re-planned at
            every epoch end (a machine that slows down gets fewer; one that slows down in the last epochs may
            end past the budget by less than an epoch, with its decay complete; one that speeds up gets more,
            except in the last quarter of the plan, where stretching the decay would raise the learning rate
            again). Without it a budget cuts the
            schedule wherever the time runs out.
        eval_every_steps: also evaluate on validation every N optimizer steps (besides each epoch end).
        track_test: also record test accuracy at each evaluation, for time-to-accuracy reports only; it is
            never used to select a model or to stop.
        calibrate: after training, fit a temperature on the validation split (``calibration.json``); predicted
            probabilities become ``softmax(logits / T)``. Labels never change, only the probabilities.
        refit: after the validated run (kept in ``RUN_DIR/validated``), train again from scratch on train +
            validation for the epochs it selected; the run directory then holds that model (see ``fit``).
    """

    epochs: int = 5
    seed: int = 0
    patience: int = 2
    device: str = "auto"
    threads: int | str | None = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    progress: bool = True
    max_train_seconds: float | None = None
    fit_schedule_to_budget: bool = False
    eval_every_steps: int | None = None
    track_test: bool = False
    calibrate: bool = True
    refit: bool = False

    def __post_init__(self) -> None:
        _check_range("train.epochs", self.epochs, 1, MAX_EPOCHS)
        _check_range("train.seed", self.seed, 0, MAX_SEED)
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            raise ConfigError(f"train.eval_every_steps must be >= 1, got {self.eval_every_steps}")
        if self.patience < 1:
            raise ConfigError(f"train.patience must be >= 1, got {self.patience}")
        if self.device != "auto" and not _DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"train.device must be auto, cpu, cuda[:N] or mps, got {self.device!r}")
        try:
            check_thread_setting(self.threads, "train.threads")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.max_train_seconds is not None and not (
            math.isfinite(self.max_train_seconds) and self.max_train_seconds > 0
        ):
            raise ConfigError(
                f"train.max_train_seconds must be null (no budget) or a finite number > 0, got {self.max_train_seconds}"
            )
        if self.fit_schedule_to_budget and self.max_train_seconds is None:
            raise ConfigError(
                "train.fit_schedule_to_budget needs a budget to fit: set train.max_train_seconds (e.g. 600)"
            )


@dataclass
class RunConfig:
    """Everything a training run needs; saved as ``config.yaml`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    image: ImageSection = field(default_factory=ImageSection)
    audio: AudioSection = field(default_factory=AudioSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from attnkit.models.registry import available_models, modalities_of

        modality = self.modality
        if modality not in modalities_of(self.model_name):
            raise ConfigError(
                f"model.name {self.model_name!r} is not {'an' if modality[0] in 'aeiou' else 'a'} {modality} model; "
                f"{modality} models are "
                f"{', '.join(available_models(modality))}"
            )
        # The model's options against its own config (names, types, ranges), and its size against the memory,
        # at the largest vocabulary the tokenizer may produce; 2 classes (the data may have more: the run's
        # model is checked again with its real labels when it is built).
        check_model_memory(self, self.tokenizer.vocab_size, 2)

    @property
    def modality(self) -> str:
        """``text``, ``image`` or ``audio``: what the run's examples are (``data.modality``, or decided for
        ``auto``)."""
        if self.data.modality != "auto":
            return self.data.modality
        return resolve_modality(self.data, self.model.name)  # auto names no modality

    @property
    def model_name(self) -> str:
        """The model the run trains: ``model.name``, or for ``auto`` the modality's default."""
        if self.model.name != "auto":
            return self.model.name
        from attnkit.models.registry import DEFAULT_MODELS

        return DEFAULT_MODELS[self.modality]

    def resolved(self) -> RunConfig:
        """This config with ``data.modality`` and ``model.name`` decided: what a run saves, so that it loads without
        its data and names its model."""
        decided = [
            f"data.modality={self.modality}" if self.data.modality == "auto" else "",
            f"model.name={self.model_name}" if self.model.name == "auto" else "",
        ]
        decided = [item for item in decided if item]
        return self.with_overrides(decided) if decided else self

    def default_model_fields(self, num_classes: int, vocab_size: int | None = None) -> dict[str, Any]:
        """The data-derived model fields as far as the config alone knows them (the task knows the real ones)."""
        if self.modality == "image":
            size = self.image.size or [28, 28]
            return {
                "num_classes": num_classes,
                "image_size": tuple(size),
                "channels": 3 if self.image.mode == "RGB" else 1,
            }
        if self.modality == "audio":
            return {
                "num_classes": num_classes,
                "feature_dim": self.audio.unit_features,
                "max_units": self.audio.max_units,
            }
        return {
            "vocab_size": self.tokenizer.vocab_size if vocab_size is None else vocab_size,
            "num_classes": num_classes,
            "max_length": self.tokenizer.max_length,
        }

    def model_config(
        self, vocab_size: int | None = None, num_classes: int = 2, *, fields: dict[str, Any] | None = None
    ) -> ModelConfig:
        """The validated config of the run's model (one member) from its data-derived ``fields`` (by default
        :meth:`default_model_fields` with ``vocab_size`` and ``num_classes``) and ``model.options``.

        Raises:
            ConfigError: an unknown option or a value the model refuses (the message names it).
        """
        from attnkit.models.registry import model_config_from_dict

        if fields is None:
            fields = self.default_model_fields(num_classes, vocab_size)
        try:
            return model_config_from_dict(
                self.model_name, {**fields, **self.model.options}, modality=self.modality
            )
        except ValueError as err:
            raise ConfigError(f"model.options: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        return _build(cls, raw, "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        """Read a config file; every problem is a one-line :class:`ConfigError` that names the file.

        An empty file is an error, not the default config: a run's ``config.yaml`` is never empty, and a
        ``--config`` file that says nothing is a mistake (train without ``--config`` for the defaults).
        """
        path = Path(path)
        raw = read_yaml_mapping(path)
        try:
            return cls.from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def save_yaml(self, path: str | Path) -> None:
        """Write the config as YAML, atomically (:func:`attnkit.atomic.write_text`)."""
        from attnkit.atomic import write_text

        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    def with_overrides(self, overrides: list[str]) -> RunConfig:
        """Apply ``section.key=value`` strings (value parsed as YAML), e.g. ``optim.lr=1e-3``."""
        raw = self.to_dict()
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value")
            dotted, value = item.split("=", 1)
            parts = dotted.strip().split(".")
            node = raw
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {item!r}: {part!r} is not a config section")
                node = node[part]
            try:
                node[parts[-1]] = yaml.safe_load(value)
            except yaml.YAMLError as err:
                raise ConfigError(
                    f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)})"
                ) from None
        return RunConfig.from_dict(raw)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: ``line 3, column 7: mapping values are not allowed here``."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8, empty, not valid YAML or not a mapping (one line
            that names the file).
    """
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); is it a config file?") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if raw is None:
        raise ConfigError(f"{path}: is empty; a config file needs at least one section (data, model, ...)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def parameter_bound(model: ModelConfig) -> int:
    """A cheap upper bound on the values (parameters and buffers) of the model ``model`` configures, unbuilt.

    Tables: ``vocab_size`` plus every ``*_buckets`` field rows of ``embed_dim + 2 * num_classes`` values (word
    and hashed n-gram embeddings; nb-attn's gates and ratios are ``num_classes`` wide), and ``max_length *
    embed_dim`` positions. Dense layers: ``S**2 * (32 * num_layers + sum(kernel_sizes) + 8)`` with ``S`` the sum of
    the ``*_dim`` / ``*_size`` / ``num_filters`` fields and ``num_classes`` (an LSTM layer holds ``16 W**2``
    for width ``W``, a transformer block ``6 W**2``). It can exceed the real count tens of times for wide dense
    layers; :func:`check_model_memory` counts exactly when the bound does not fit. Tested to bound every
    registered model (``tests/train/test_config_validation.py``).
    """
    values = dataclasses.asdict(model)
    ints = {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}
    # Text models' tables; a model without a vocabulary (images, audio) has none of these fields.
    embed_dim, max_length = ints.get("embed_dim", 0), ints.get("max_length", 0)
    rows = ints.get("vocab_size", 0) + sum(v for k, v in ints.items() if k.endswith("_buckets"))
    tables = rows * (embed_dim + 2 * model.num_classes) + max_length * embed_dim
    widths = [v for k, v in ints.items() if k.endswith(("_dim", "_size")) and k != "vocab_size"]
    width = sum(widths) + ints.get("num_filters", 0) + model.num_classes
    kernels = sum(int(k) for k in values.get("kernel_sizes", ()) or ())
    dense = width**2 * (32 * ints.get("num_layers", 1) + kernels + 8)
    head = model.pooling_queries * width * (model.num_classes + 2 * width)
    return int(tables + dense + head)


def count_parameters(model: ModelConfig) -> int | None:
    """The exact number of values (parameters and buffers) of the model, built on the ``meta`` device.

    Nothing is allocated, but the first random initialisation on ``meta`` imports ``torch._dynamo`` (seconds),
    so :func:`check_model_memory` only calls this when :func:`parameter_bound` does not fit. ``None`` when a
    tensor is too large for torch to even describe.
    """
    import torch

    from attnkit.models.registry import build_model_from_config

    try:
        with torch.device("meta"):
            built = build_model_from_config(model)
    except (RuntimeError, OverflowError):  # "Storage size calculation overflowed"
        return None
    return sum(t.numel() for t in (*built.parameters(), *built.buffers()))


def physical_memory_bytes() -> int:
    """This machine's physical memory, or :data:`_FALLBACK_MEMORY_BYTES` where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_MEMORY_BYTES


def check_model_memory(
    config: RunConfig,
    vocab_size: int | None = None,
    num_classes: int = 2,
    *,
    fields: dict[str, Any] | None = None,
) -> None:
    """Refuse a model whose float32 weights (every ensemble member) would not fit in this machine's memory.

    Three steps, cheapest first: the word embedding every classifier has (``vocab_size * embed_dim`` values, a
    lower bound) already too large refuses; :func:`parameter_bound` fitting accepts; else the exact count
    (:func:`count_parameters`, slow once per process) decides.

    Raises:
        ConfigError: an invalid model option, or weights larger than the physical memory. Training needs about
            four times the weights (gradients and AdamW's two moments), so this only refuses what can never run.
    """
    model = config.model_config(vocab_size, num_classes, fields=fields)
    members, have = config.model.ensemble, physical_memory_bytes()
    # Every TextClassifier holds nn.Embedding(vocab_size, embed_dim); other modalities have no such table.
    embedding = getattr(model, "vocab_size", 0) * getattr(model, "embed_dim", 0)
    count: int | None = embedding
    if 4 * embedding * members <= have:
        if 4 * parameter_bound(model) * members <= have:
            return
        count = count_parameters(model)
        if count is not None and 4 * count * members <= have:
            return
    total = (parameter_bound(model) if count is None else count) * members
    raise ConfigError(
        f"model: {config.model.label} would hold about {total:.3g} parameters ({_bytes(4 * total)} of float32 "
        f"weights, from model.options and {_size_source(config, model)}), more than this machine's "
        f"{_bytes(have)} of memory; make it smaller (embed_dim, hidden sizes, *_buckets, tokenizer.vocab_size)"
    )


def _size_source(config: RunConfig, model: ModelConfig) -> str:
    if config.modality == "image":
        return f"image_size={list(getattr(model, 'image_size', ()))}"
    if config.modality == "audio":
        return f"audio.max_seconds={config.audio.max_seconds:g}"
    return f"tokenizer.vocab_size={getattr(model, 'vocab_size', None)}"


def resolve_modality(data: DataConfig, model_name: str) -> str:
    """``text``, ``image`` or ``audio`` for ``data.modality: auto``: the data's (a built-in image or audio
    dataset, a folder of image or audio folders), else the model's when only one modality has it, else
    ``text``."""
    from attnkit.data.modality import source_modality
    from attnkit.models.registry import modalities_of

    found = source_modality(data.train)
    if found is not None:
        return found
    owners = modalities_of(model_name)
    return owners[0] if len(owners) == 1 else "text"


def _bytes(size: float) -> str:
    """``25.2 GiB``, ``7.45 EiB``: the largest binary unit that keeps the number at or above 1."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = 0
    while size >= 1024 and power < len(units) - 1:
        size, power = size / 1024, power + 1
    return f"{size:.3g} {units[power]}"


def _build(cls: type[T], raw: Any, prefix: str) -> T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(raw).__name__}")
    assert dataclasses.is_dataclass(cls)
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        where = f" in {prefix.rstrip('.')}" if prefix else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}{where}; known keys: {', '.join(sorted(known))}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {err}") from None


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Check a YAML scalar against a field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name} = {value!r} does not match {hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{name} must be {hint.__name__}, got {value!r}")
    return value
