"""Audio classification: recordings -> log-mel or MFCC frames normalized with the training split's per-channel
statistics; units are frames (or stacks of ``audio.stack_frames`` frames).

The features are computed once per split, in batches, by :class:`attnkit.models.audio.features.SpectralFrontend`
(PyTorch, on the run's device), and kept per recording; batches pad them to their longest recording, so the model
gets ``features (B, U, E)`` and a right-padded ``unit_mask (B, U)``. SpecAugment masks are drawn per batch from the
loop's seeded generator, so a resumed run draws the same masks.

Dimension legend: ``N`` recordings, ``B`` batch, ``T`` frames, ``F`` features per frame, ``U`` units,
``E = F * stack`` features per unit, ``S`` samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from attnkit.data import BucketBatchSampler
from attnkit.data.audio import (
    AUDIO_DATASETS,
    AUDIO_SUFFIXES,
    AudioSet,
    carve_audio_validation,
    decode_audio,
    fsdd_split,
    load_audio_dataset,
    load_audio_folder,
    parse_audio_name,
)
from attnkit.data.errors import DataError
from attnkit.models.audio.features import (
    FeatureConfig,
    FeatureNormalizer,
    SpectralFrontend,
    num_frames,
    spec_augment,
)
from attnkit.tasks.base import Batch, BatchSampler, Task

if TYPE_CHECKING:
    from attnkit.train.config import AudioSection, RunConfig

#: Where an audio run keeps how its inputs are prepared.
PREPARATION_FILE = "audio_preparation.json"
#: Recordings per feature batch (padded to the longest of the batch).
FEATURE_BATCH = 64


@dataclass(frozen=True)
class AudioPreparation:
    """How raw recordings become model inputs: the feature front end and the training split's statistics.

    Attributes:
        features: the front end's :class:`FeatureConfig` fields.
        stack_frames: consecutive frames per unit.
        max_seconds: the longest recording accepted.
        mean: per-feature mean of the training frames (dB or MFCC units).
        std: per-feature standard deviation of the training frames (> 0).
        recording_mean: each recording's own per-feature mean is subtracted first (``audio.recording_mean``);
            ``mean`` and ``std`` are then those of the centred training frames.
    """

    features: dict[str, Any]
    stack_frames: int
    max_seconds: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    recording_mean: bool = False

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(**self.features)

    @property
    def sample_rate(self) -> int:
        return int(self.features["sample_rate"])

    @property
    def unit_seconds(self) -> float:
        """Seconds between the starts of two units."""
        return self.stack_frames * int(self.features["hop_length"]) / self.sample_rate

    @property
    def unit_features(self) -> int:
        return len(self.mean) * self.stack_frames

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json_dict(cls, raw: Any, where: Path) -> AudioPreparation:
        try:
            prep = cls(
                features=dict(raw["features"]),
                stack_frames=int(raw["stack_frames"]),
                max_seconds=float(raw["max_seconds"]),
                mean=tuple(float(v) for v in raw["mean"]),
                std=tuple(float(v) for v in raw["std"]),
                recording_mean=bool(raw.get("recording_mean", False)),  # absent in runs before the option
            )
            prep.feature_config  # noqa: B018 - validates the front end's fields
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: not an audio preparation ({type(err).__name__}: {err})") from None
        if len(prep.mean) != len(prep.std) or not all(s > 0 for s in prep.std) or prep.stack_frames < 1:
            raise ValueError(f"{where}: the feature statistics are damaged; train the run again")
        return prep


def feature_config_of(audio: AudioSection) -> FeatureConfig:
    """The front end an ``audio`` config section describes."""
    return FeatureConfig(
        sample_rate=audio.sample_rate,
        n_fft=audio.n_fft,
        win_length=audio.win_samples,
        hop_length=audio.hop_samples,
        kind=audio.features,
        n_mels=audio.n_mels,
        n_mfcc=audio.n_mfcc if audio.features == "mfcc" else min(audio.n_mfcc, audio.n_mels),
    )


@dataclass
class FrameDataset:
    """Normalized frames per recording (``(T_i, F)`` float32) and their class ids."""

    frames: list[Tensor]
    labels: list[int] | None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def lengths(self) -> list[int]:
        return [int(f.shape[0]) for f in self.frames]


def _valid(lengths: Tensor, total: int) -> Tensor:
    """``(B, T)`` bool: the first ``lengths[b]`` of ``total`` frames of each row."""
    return torch.arange(total)[None, :] < lengths[:, None]


class AudioClassificationTask(Task):
    """Classify recordings: built-ins (``fsdd``) or a folder of label folders, features normalized on train only.

    Args:
        config: the run's config (``data``, ``audio``, ``optim`` sections).
    """

    modality: ClassVar[str] = "audio"
    input_name: ClassVar[str] = "recordings"
    input_suffixes: ClassVar[frozenset[str] | None] = AUDIO_SUFFIXES
    preparation_name: ClassVar[str] = "audio features"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self._preparation: AudioPreparation | None = None
        self._frontend: SpectralFrontend | None = None
        #: The training split's raw frames from :meth:`fit_preparation`, kept for :meth:`encode` of that split.
        self._fitted_frames: tuple[list[np.ndarray], list[Tensor]] | None = None

    @property
    def preparation(self) -> AudioPreparation:
        if self._preparation is None:
            raise RuntimeError("the task's audio preparation is not fitted or loaded yet")
        return self._preparation

    def _feature_config(self) -> FeatureConfig:
        if self._preparation is not None:
            return self._preparation.feature_config
        return feature_config_of(self.config.audio)

    def _max_seconds(self) -> float:
        return (
            self._preparation.max_seconds if self._preparation is not None else self.config.audio.max_seconds
        )

    def frontend(self) -> SpectralFrontend:
        """The feature front end of this run (built once)."""
        config = self._feature_config()
        if self._frontend is None or self._frontend.config != config:
            self._frontend = SpectralFrontend(config).eval()
        return self._frontend

    # -- data -------------------------------------------------------------------------------------------

    def _is_builtin(self, source: str) -> bool:
        return parse_audio_name(source) is not None and not Path(source).exists()

    def read_source(self, source: str) -> AudioSet:
        """A built-in name (``fsdd``, ``fsdd:test``) or a folder of label folders, at the run's sample rate."""
        rate = self._feature_config().sample_rate
        if self._is_builtin(source):
            return load_audio_dataset(source, sample_rate=rate)
        path = Path(source)
        if not path.is_dir():
            raise DataError(
                f"{source}: not an audio dataset; give a folder with one sub-folder of recordings (wav, flac, "
                f"ogg) per label, or a built-in name ({', '.join(sorted(AUDIO_DATASETS))})"
            )
        audio, _report = load_audio_folder(path, sample_rate=rate, max_seconds=self._max_seconds())
        return audio

    def read_splits(self) -> tuple[AudioSet, AudioSet, AudioSet | None]:
        data = self.config.data
        test: AudioSet | None
        if self._is_builtin(data.train) and data.test is None:
            parsed = parse_audio_name(data.train)
            assert parsed is not None
            if parsed[1] not in (None, "all"):
                raise DataError(
                    f"data.train={data.train}: name the whole built-in ({parsed[0]}) and choose the split with "
                    "data.split (official or speaker:NAME)"
                )
            everything = load_audio_dataset(
                f"{parsed[0]}:all", sample_rate=self._feature_config().sample_rate
            )
            train, test = fsdd_split(everything, data.split or "official")
        else:
            if data.split is not None:
                raise DataError(
                    f"data.split={data.split} applies to a built-in with speakers "
                    f"({', '.join(sorted(AUDIO_DATASETS))}) used without data.test; give data.test instead"
                )
            train = self.read_source(data.train)
            test = self.read_source(data.test) if data.test else None
        if len(set(train.labels)) < 2:
            raise DataError(
                f"{data.train}: all {len(train)} recordings have one label; a classifier needs two"
            )
        if data.val:
            val = self.read_source(data.val)
        else:
            train, val = carve_audio_validation(train, data.val_fraction, data.split_seed)
        return train, val, test

    def labels_in(self, examples: AudioSet) -> list[str]:
        return list(examples.labels)

    def label_names(self, train: AudioSet) -> list[str]:
        """The labels in the data's canonical order (FSDD's digits 0..9; a folder's natural order)."""
        present = set(train.labels)
        return [name for name in (train.classes or sorted(present)) if name in present]

    # -- features ---------------------------------------------------------------------------------------

    def feature_device(self) -> torch.device:
        """Where features are computed: the run's device (``train.device``; a GPU when there is one)."""
        from attnkit.devices import resolve_device

        try:
            return resolve_device(self.config.train.device)
        except ValueError:  # a device this machine lacks (a run trained elsewhere): the CPU computes the same
            return torch.device("cpu")

    def _frames_of(self, waveforms: Sequence[np.ndarray]) -> list[Tensor]:
        """Un-normalized ``(T_i, F)`` frames of each waveform, computed in length-sorted padded batches on
        :meth:`feature_device` (returned on the CPU)."""
        device = self.feature_device()
        frontend = self.frontend().to(device)
        hop = frontend.config.hop_length
        order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]))
        out: list[Tensor | None] = [None] * len(waveforms)
        with torch.no_grad():
            for start in range(0, len(order), FEATURE_BATCH):
                chunk = order[start : start + FEATURE_BATCH]
                longest = max(1, max(len(waveforms[i]) for i in chunk))
                batch = torch.zeros(len(chunk), longest)  # (B, S)
                for row, i in enumerate(chunk):
                    batch[row, : len(waveforms[i])] = torch.from_numpy(
                        np.asarray(waveforms[i], dtype=np.float32)
                    )
                features = frontend(batch.to(device)).cpu()  # (B, T, F)
                for row, i in enumerate(chunk):
                    count = int(num_frames(len(waveforms[i]), hop))
                    out[i] = features[row, :count].clone()  # (T_i, F)
        return [f for f in out if f is not None]

    def _centred(self, frames: list[Tensor], recording_mean: bool) -> list[Tensor]:
        """Each recording's ``(T_i, F)`` frames minus their own per-feature mean (with ``recording_mean``)."""
        return [f - f.mean(dim=0, keepdim=True) for f in frames] if recording_mean else frames

    def fit_preparation(self, train: AudioSet) -> None:
        recording_mean = self.config.audio.recording_mean
        raw = self._frames_of(train.waveforms)
        self._fitted_frames = (train.waveforms, raw)
        frames = self._centred(raw, recording_mean)
        normalizer = FeatureNormalizer(frames[0].shape[1])
        lengths = torch.tensor([f.shape[0] for f in frames])
        padded = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)  # (N, T, F)
        normalizer.fit(padded, _valid(lengths, padded.shape[1]))
        audio = self.config.audio
        self._preparation = AudioPreparation(
            features=asdict(self._feature_config()),
            stack_frames=audio.stack_frames,
            max_seconds=audio.max_seconds,
            mean=tuple(float(v) for v in normalizer.mean),
            std=tuple(float(v) for v in normalizer.std),
            recording_mean=recording_mean,
        )

    def _normalized(self, frames: list[Tensor]) -> list[Tensor]:
        prep = self.preparation
        mean, std = torch.tensor(prep.mean), torch.tensor(prep.std)
        return [(f - mean) / std for f in self._centred(frames, prep.recording_mean)]

    def encode(self, examples: AudioSet, labels: list[str]) -> FrameDataset:
        prep = self.preparation
        if examples.sample_rate != prep.sample_rate:
            raise DataError(
                f"recordings at {examples.sample_rate} Hz do not match the run's {prep.sample_rate} Hz"
            )
        index = {label: i for i, label in enumerate(labels)}
        unknown = sorted(set(examples.labels) - set(index))
        if unknown:
            raise ValueError(
                f"labels {', '.join(unknown[:5])} do not occur in the training data (known: {', '.join(labels)})"
            )
        fitted = self._fitted_frames
        if fitted is not None and fitted[0] is examples.waveforms:  # the split the statistics came from
            raw, self._fitted_frames = fitted[1], None
        else:
            raw = self._frames_of(examples.waveforms)
        frames = self._normalized(raw)
        return FrameDataset(frames, [index[label] for label in examples.labels])

    # -- batches ----------------------------------------------------------------------------------------

    def _unit_lengths(self, dataset: FrameDataset) -> list[int]:
        stack = self.preparation.stack_frames
        return [-(-n // stack) for n in dataset.lengths]

    def train_sampler(self, dataset: FrameDataset, batch_size: int, seed: int) -> BatchSampler:
        return BucketBatchSampler(self._unit_lengths(dataset), batch_size, shuffle=True, seed=seed)

    def eval_batches(self, dataset: FrameDataset, batch_size: int) -> Iterable[list[int]]:
        return iter(BucketBatchSampler(self._unit_lengths(dataset), batch_size, shuffle=False, seed=0))

    def collate(
        self,
        dataset: FrameDataset,
        indices: Sequence[int],
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Batch:
        frames = [dataset.frames[i] for i in indices]
        lengths = torch.tensor([f.shape[0] for f in frames])
        padded = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)  # (B, T, F)
        audio = self.config.audio
        if train and generator is not None and (audio.time_masks or audio.freq_masks):
            padded = spec_augment(
                padded,
                _valid(lengths, padded.shape[1]),
                time_masks=audio.time_masks,
                time_width=audio.time_mask_frames,
                freq_masks=audio.freq_masks,
                freq_width=audio.freq_mask_bins,
                generator=generator,
            )
        features, mask = self._units(padded, lengths)
        targets = None if dataset.labels is None else torch.as_tensor([dataset.labels[i] for i in indices])
        return Batch(features, mask, targets)

    def _units(self, padded: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``padded (B, T, F)`` frames and their ``lengths (B,)`` -> units ``(B, U, E)`` and ``unit_mask (B, U)``."""
        stack = self.preparation.stack_frames
        batch, count, width = padded.shape
        units = max(1, -(-count // stack))
        full = torch.zeros(batch, units * stack, width, dtype=padded.dtype)
        full[:, :count] = padded
        features = full.reshape(batch, units, stack * width)  # (B, U, E)
        unit_lengths = torch.div(lengths + stack - 1, stack, rounding_mode="floor")  # (B,)
        mask = torch.arange(units)[None, :] < unit_lengths[:, None]  # (B, U)
        return features * mask.unsqueeze(-1), mask

    # -- the run directory ------------------------------------------------------------------------------

    def save_preparation(self, run_dir: Path) -> None:
        from attnkit.atomic import write_text

        write_text(run_dir / PREPARATION_FILE, self.preparation.to_json())

    def load_preparation(self, run_dir: Path) -> None:
        from attnkit.runs import RunError, RunNotFoundError

        path = Path(run_dir) / PREPARATION_FILE
        if not path.is_file():
            raise RunNotFoundError(f"{path}: not found; an audio run keeps its feature preparation there")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._preparation = AudioPreparation.from_json_dict(raw, path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RunError(f"{path}: cannot be read ({type(err).__name__}); train the run again") from None
        except ValueError as err:
            raise RunError(str(err)) from None

    def adopt_preparation(self, other: Task) -> None:
        if not isinstance(other, AudioClassificationTask):
            raise ValueError(f"an audio task cannot prepare inputs like a {other.modality} task")
        self._preparation = other.preparation

    def same_preparation(self, other: Task) -> bool:
        return isinstance(other, AudioClassificationTask) and other.preparation == self.preparation

    # -- the model --------------------------------------------------------------------------------------

    def model_fields(self, num_classes: int) -> dict[str, Any]:
        prep = self.preparation
        frames = 1 + int(prep.max_seconds * prep.sample_rate) // int(prep.features["hop_length"])
        return {
            "num_classes": num_classes,
            "feature_dim": prep.unit_features,
            "max_units": math.ceil(frames / prep.stack_frames),
        }

    # -- raw inputs -------------------------------------------------------------------------------------

    def encode_inputs(self, items: Sequence[Any]) -> tuple[Tensor, Tensor | None]:
        """Recordings (encoded file bytes, or 1-D float arrays at the run's sample rate in [-1, 1]) ->
        ``features (B, U, E)`` and ``unit_mask (B, U)``."""
        prep = self.preparation
        waveforms = [self.to_waveform(item, name=f"recording {i}") for i, item in enumerate(items)]
        if not waveforms:
            return torch.zeros(0, 1, prep.unit_features), torch.zeros(0, 1, dtype=torch.bool)
        frames = self._normalized(self._frames_of(waveforms))
        lengths = torch.tensor([f.shape[0] for f in frames])
        return self._units(torch.nn.utils.rnn.pad_sequence(frames, batch_first=True), lengths)

    def to_waveform(self, item: Any, *, name: str = "recording") -> np.ndarray:
        """One recording as ``(S,)`` float32 mono at the run's sample rate."""
        prep = self.preparation
        if isinstance(item, (bytes, bytearray, memoryview)):
            return decode_audio(
                bytes(item), name=name, sample_rate=prep.sample_rate, max_seconds=prep.max_seconds
            )
        array = np.asarray(item)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"{name}: a recording must be encoded file bytes or a 1-D float array of samples at "
                f"{prep.sample_rate} Hz, got {array.dtype} {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: the samples hold NaN or infinity")
        if len(array) == 0:
            raise ValueError(f"{name}: the recording is empty")
        if len(array) > prep.max_seconds * prep.sample_rate:
            raise ValueError(
                f"{name}: {len(array) / prep.sample_rate:.1f} s is longer than the run's {prep.max_seconds:g} s"
            )
        return array.astype(np.float32, copy=False)

    def unit_spans(self, unit_mask: Tensor) -> list[list[tuple[float, float]]]:
        """Each real unit's ``(start, end)`` in seconds, per row of ``unit_mask (B, U)``."""
        step = self.preparation.unit_seconds
        return [[(u * step, (u + 1) * step) for u in range(int(row.sum()))] for row in unit_mask]
