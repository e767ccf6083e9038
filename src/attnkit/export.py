"""Export a trained run to ONNX (``torch.onnx.export``) and quantize it to int8.

The graph's inputs and outputs depend on what the run classifies (:data:`SIGNATURES`):

- **text**: ``input_ids (B, T)`` (int64) and ``attention_mask (B, T)`` (bool, True = real token,
  right-padded), dynamic ``B`` and ``T``; returns ``logits (B, C)`` and ``token_attention (B, T)``.
- **image**: ``pixels (B, CH, IH, IW)`` (float32, normalized like the training images: ``(x / 255 - mean) / std``
  per channel, the run's ``image_preparation.json``), dynamic ``B``, fixed ``CH, IH, IW``; returns
  ``logits (B, C)`` and ``unit_attention (B, U)`` over the model's grid of unit boxes (row-major). Every unit of
  an image is real, so the graph builds the all-True unit mask itself and takes the pixels alone.
- **audio**: ``waveform (B, S)`` (float32 samples at the run's sample rate, mono, in ``[-1, 1]``, each clip
  right-padded with zeros to the longest) and ``lengths (B,)`` (int64, each clip's samples before padding),
  dynamic ``B`` and ``S`` (up to ``audio.max_seconds``); returns ``logits (B, C)`` and ``unit_attention (B, U)``
  over ``U = ceil((1 + S // hop) / stack_frames)`` units, 0 past each clip's own
  ``ceil((1 + length // hop) / stack_frames)`` units. The features are inside the graph (:class:`WaveformGraph`):
  the run's front end (STFT as a strided convolution, power, mel, dB, optionally the MFCC's DCT), its
  normalization statistics, frame stacking and the unit mask, then the model.

Those are the same tensors as the PyTorch model's :class:`~attnkit.models.base.ModelOutput`. Tokenizing,
decoding, resizing and (audio) decoding and resampling a file stay in Python:
:class:`~attnkit.predictor.Predictor` encodes (its task's ``encode_inputs``; :func:`graph_inputs`), the ONNX
Runtime session runs the graph.

Exporters: text and image graphs are traced by the dynamo exporter. Audio graphs use the TorchScript-based one
(``dynamo=False``): the dynamo exporter cannot trace the CRNN's ``nn.GRU`` with a dynamic time axis (its fake
tensor GRU decomposition unrolls the steps; measured: it fails on frames from the strided STFT convolution and
specializes the length of a plain GRU input past ~40 steps, at 15-65 s per export), where the TorchScript
exporter writes ONNX's own ``GRU`` op in under a second.

Model coverage:

- ``bag-attn``, ``cnn-attn``, ``transformer``: the model's own ``embed -> forward_features -> pool ->
  forward_head`` pipeline is traced as is (the transformer takes the fused SDPA path).
- ``bilstm-attn``: its packed BiLSTM (``pack_padded_sequence`` needs the lengths as Python ints) is traced
  through an equivalent unpacked form: per layer, one forward LSTM over the inputs and one over each row
  reversed within its own length, with the trained weights of each direction. Padding never reaches a real
  step either way, so the outputs are the same.
- ``han``: not exportable. Its sentence split gives shapes that depend on the token values (the number of
  sentences and the longest sentence, ``nonzero`` over kept tokens), which ``torch.export`` cannot trace with
  dynamic shapes. Serve it with the PyTorch backend.
- every image model (``vit``, ``cnn-attn``, ``cbam-attn``, ``hybrid-vit``) and image ensembles: the model's
  ``export_module()`` as is (convolutions, CBAM gates, the ViT blocks on the fused SDPA path).
- every audio model (``crnn-attn``, ``transformer``): the model's ``export_module()`` behind the front end.

int8 (:func:`quantize_int8`) quantizes the weights of the model's matrix products and convolutions; for an
audio graph the front end's nodes are left in float32. Quantizing the STFT convolution and the mel ``MatMul``
too moved the log-mel features by up to 2.5-5 dB here (dynamic quantization, random speech-like clips), and a
2-epoch FSDD crnn-attn fell from 95.3% to 85.0% test accuracy with it, where keeping the front end in float32
gave 95.7%.

Dimension legend: ``B`` batch, ``T`` tokens, ``C`` classes, ``H`` LSTM units per direction; images: ``CH``
channels, ``IH`` / ``IW`` height / width in pixels, ``U`` units; audio: ``S`` samples, ``F`` features per frame,
``E = F * stack_frames`` features per unit.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit import __version__
from attnkit.models.audio.features import SpectralFrontend
from attnkit.models.base import AttentionModel
from attnkit.models.han import NOT_EXPORTABLE_REASON
from attnkit.models.recurrent import UnpackedBiLSTM as UnpackedBiLSTM
from attnkit.predictor import Predictor
from attnkit.runs import RunError, RunNotFoundError

if TYPE_CHECKING:
    from attnkit.tasks.audio import AudioPreparation

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
#: The module scope of an audio graph's front end: its nodes are named ``/frontend/...``.
FRONTEND_SCOPE = "frontend"


@dataclass(frozen=True)
class GraphSignature:
    """The names of an exported graph's inputs and outputs, and what the metadata says of them."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    inputs_doc: str
    outputs_doc: str


#: The graph's inputs and outputs by modality (see the module docstring).
SIGNATURES: dict[str, GraphSignature] = {
    "text": GraphSignature(
        ("input_ids", "attention_mask"),
        ("logits", "token_attention"),
        "input_ids (B, T) int64, attention_mask (B, T) bool (True = token, right-padded)",
        "logits (B, C) float32, token_attention (B, T) float32",
    ),
    "image": GraphSignature(
        ("pixels",),
        ("logits", "unit_attention"),
        "pixels (B, CH, IH, IW) float32, normalized per channel: (x / 255 - mean) / std (attnkit_image)",
        "logits (B, C) float32, unit_attention (B, U) float32 over the unit grid, row-major (attnkit_image)",
    ),
    "audio": GraphSignature(
        ("waveform", "lengths"),
        ("logits", "unit_attention"),
        "waveform (B, S) float32 mono samples at attnkit_audio.sample_rate in [-1, 1], zero-padded after each "
        "clip; lengths (B,) int64 samples of each clip before padding",
        "logits (B, C) float32, unit_attention (B, U) float32 over units of attnkit_audio.unit_seconds, "
        "U = ceil((1 + S // hop_length) / stack_frames); 0 past each clip's units",
    ),
}
#: The text graph's names (the names before other modalities existed).
INPUT_NAMES = SIGNATURES["text"].inputs
OUTPUT_NAMES = SIGNATURES["text"].outputs
#: Models whose graph cannot be exported, with the reason shown to the user. Every image model exports.
NOT_EXPORTABLE = {"han": NOT_EXPORTABLE_REASON}


def ExportableClassifier(model: AttentionModel) -> nn.Module:
    """The traceable inference graph of a model: ``model.export_module()`` (see :class:`AttentionModel`)."""
    return model.export_module()


class PixelsOnly(nn.Module):
    """An image model's ``(pixels, unit_mask)`` export graph as ``pixels -> (logits, unit_attention)``.

    Every unit of an image is real, so the all-True ``unit_mask (B, U)`` is built inside the graph, with the
    batch size it is given.

    Args:
        graph: ``model.export_module()`` of an image model (or an image ensemble).
        num_units: ``U``, the model's unit count.
    """

    def __init__(self, graph: nn.Module, num_units: int) -> None:
        super().__init__()
        self.inner = graph
        self.num_units = num_units

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        mask = torch.ones(pixels.shape[0], self.num_units, dtype=torch.bool, device=pixels.device)  # (B, U)
        logits, attention = self.inner(pixels, mask)  # (B, C), (B, U)
        return logits, attention


class WaveformGraph(nn.Module):
    """An audio model's ``(features, unit_mask)`` export graph behind the run's feature pipeline:
    ``(waveform, lengths) -> (logits, unit_attention)``.

    The steps are the audio task's (:meth:`~attnkit.tasks.audio.AudioClassificationTask.encode_inputs`) on a
    padded batch: the front end over every frame of the batch, the training split's statistics, frames past each
    clip's own ``1 + length // hop`` set to 0, ``stack_frames`` frames side by side per unit (the last unit padded
    with zeros) and the unit mask from the lengths. The front end's zero centre padding makes a clip's frames
    independent of the padding after it, as the task's length-sorted feature batches rely on.

    Args:
        graph: ``model.export_module()`` of an audio model.
        preparation: the run's :class:`~attnkit.tasks.audio.AudioPreparation` (front end, statistics, stacking).
    """

    mean: Tensor
    std: Tensor

    def __init__(self, graph: nn.Module, preparation: AudioPreparation) -> None:
        super().__init__()
        config = preparation.feature_config
        self.frontend = SpectralFrontend(config)  # named FRONTEND_SCOPE: int8 leaves its nodes in float32
        self.register_buffer("mean", torch.tensor(preparation.mean, dtype=torch.float32))  # (F,)
        self.register_buffer("std", torch.tensor(preparation.std, dtype=torch.float32))  # (F,)
        self.hop_length = config.hop_length
        self.stack = preparation.stack_frames
        self.recording_mean = preparation.recording_mean
        self.inner = graph

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        frames = self.frontend(waveform)  # (B, T, F)
        batch, count, width = frames.shape
        valid_frames = 1 + torch.div(lengths, self.hop_length, rounding_mode="floor")  # (B,)
        frame_mask = torch.arange(count, device=waveform.device)[None, :] < valid_frames[:, None]  # (B, T)
        if self.recording_mean:  # a constant of the run: each clip's own mean over its valid frames
            keep = frame_mask.unsqueeze(-1).to(frames.dtype)  # (B, T, 1)
            own = (frames * keep).sum(dim=1, keepdim=True) / keep.sum(dim=1, keepdim=True)  # (B, 1, F)
            frames = frames - own  # (B, T, F)
        normalized = torch.where(frame_mask.unsqueeze(-1), (frames - self.mean) / self.std, 0.0)  # (B, T, F)
        units = (count + self.stack - 1) // self.stack
        if self.stack > 1:  # a constant of the run: the traced graph has one branch
            normalized = F.pad(normalized, (0, 0, 0, units * self.stack - count))  # (B, U * stack, F)
        features = normalized.reshape(batch, units, self.stack * width)  # (B, U, E)
        valid_units = torch.div(valid_frames + self.stack - 1, self.stack, rounding_mode="floor")  # (B,)
        unit_mask = torch.arange(units, device=waveform.device)[None, :] < valid_units[:, None]  # (B, U)
        features = torch.where(unit_mask.unsqueeze(-1), features, 0.0)  # (B, U, E)
        logits, attention = self.inner(features, unit_mask)  # (B, C), (B, U)
        return logits, attention


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matches PyTorch.

    Attributes:
        path: the ``.onnx`` file.
        model: the model's name (with its ensemble size, if any).
        seconds: export time.
        max_abs_diff: largest ``|onnx - torch|`` over each output (logits and the attention) on the check
            batches.
        int8_path: the dynamically quantized model, if asked.
        modality: ``text``, ``image`` or ``audio``: which :data:`SIGNATURES` entry the graph has.
    """

    path: Path
    model: str
    seconds: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    int8_path: Path | None = None
    modality: str = "text"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model": self.model,
            "modality": self.modality,
            "inputs": list(SIGNATURES[self.modality].inputs),
            "outputs": list(SIGNATURES[self.modality].outputs),
            "seconds": round(self.seconds, 2),
            "max_abs_diff": self.max_abs_diff,
            "int8_path": None if self.int8_path is None else str(self.int8_path),
        }


@contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the exporter's and quantizer's chatter (pass logs, optional-op and pre-processing warnings)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. optional torchvision ops, "consider pre-processing"
            yield
    finally:
        logging.disable(previous)


#: Texts used to trace the graph and to check it. Two rows of different lengths so the trace sees padding
#: (an example dimension of size 1 would be specialized).
EXAMPLE_TEXTS = ["a first example text with several words in it .", "a second , shorter one"]
CHECK_TEXTS = [
    ["a b c d e f g h i j k l m n o p", "x", "one more text of medium length here ."],
    ["only one text"],
]
#: Image batches traced and checked: ``(count, height, width)`` of random uint8 images, seeded. Two images to
#: trace (a batch of 1 would be specialized); the checks add other batch sizes and images of other sizes,
#: which the task resizes as it does any input.
EXAMPLE_IMAGES = (2, None, None)
CHECK_IMAGES = [(3, None, None), (1, None, None), (2, 37, 45)]
#: Recordings traced and checked: clip lengths as fractions of the run's ``max_seconds`` (a length that is 0 or
#: 1 sample is specialized, hence the floor of 2 samples; 1.0 reaches the models' position tables). Several
#: lengths per batch, so the graph sees padding; the odd fractions give frame counts that are not multiples of
#: the hop or of ``stack_frames``.
EXAMPLE_CLIPS = (0.05, 0.031)
CHECK_CLIPS = [(0.09, 0.0007, 0.0413, 0.0171), (0.0233,), (1.0, 0.01)]


def random_images(count: int, height: int, width: int, channels: int, *, seed: int) -> list[np.ndarray]:
    """``count`` random ``(height, width, channels)`` uint8 images (uniform pixels), from ``seed``."""
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, size=(count, height, width, channels), dtype=np.uint8))


def random_waveforms(lengths: Sequence[int], sample_rate: int, *, seed: int) -> list[np.ndarray]:
    """Speech-like ``(S,)`` float32 clips of ``lengths`` samples in ``[-1, 1]``, from ``seed``: a few tones with
    a random amplitude envelope over noise, and a silent last tenth (frames at the log floor)."""
    rng = np.random.default_rng(seed)
    clips = []
    for length in lengths:
        t = np.arange(length) / sample_rate  # (S,)
        tones = sum(
            rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(100, sample_rate / 2.5) * t)
            for _ in range(3)
        )
        envelope = np.interp(t, np.linspace(0, t[-1] if length > 1 else 1, 6), rng.uniform(0, 1, 6))  # (S,)
        clip = envelope * tones + 0.01 * rng.standard_normal(length)  # (S,)
        clip[length - length // 10 :] = 0.0
        clips.append(np.clip(clip, -1.0, 1.0).astype(np.float32))
    return clips


def _sample_batches(predictor: Predictor, *, check: bool) -> list[list[Any]]:
    """Raw inputs to trace with (one batch) or to check on (several): texts, random images or waveforms."""
    if predictor.modality == "text":
        return CHECK_TEXTS if check else [EXAMPLE_TEXTS]
    if predictor.modality == "audio":
        prep: Any = predictor.task.preparation  # type: ignore[attr-defined]
        longest = int(prep.max_seconds * prep.sample_rate)
        return [
            random_waveforms(
                [max(2, round(f * longest)) for f in fractions],
                prep.sample_rate,
                seed=seed + (1 if check else 0),
            )
            for seed, fractions in enumerate(CHECK_CLIPS if check else [EXAMPLE_CLIPS])
        ]
    prep = predictor.task.preparation  # type: ignore[attr-defined]
    batches = []
    for seed, (count, height, width) in enumerate(CHECK_IMAGES if check else [EXAMPLE_IMAGES]):
        size = (height or prep.size[0], width or prep.size[1])
        batches.append(random_images(count, *size, prep.channels, seed=seed + (1 if check else 0)))
    return batches


def _sample_inputs(predictor: Predictor, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
    """``(inputs, unit_mask)`` on the CPU for raw ``items``, encoded by the run's task."""
    inputs, mask = predictor.encode_inputs(list(items))
    return inputs.cpu(), mask.cpu()


def padded_waveforms(waveforms: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """``waveform (B, S)`` float32, each clip right-padded with zeros to the longest, and ``lengths (B,)`` int64:
    an audio graph's inputs."""
    lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.int64)  # (B,)
    batch = torch.zeros(len(waveforms), int(lengths.max()) if len(waveforms) else 1)  # (B, S)
    for row, wave in enumerate(waveforms):
        batch[row, : len(wave)] = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    return batch, lengths


def graph_inputs(predictor: Predictor, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
    """The two tensors an exported graph of ``predictor``'s run takes for raw ``items``, on the CPU:
    ``(input_ids, attention_mask)`` (text), ``(pixels, unit_mask)`` (images: the mask is not fed) or
    ``(waveform, lengths)`` (audio: each item decoded and resampled as the task does)."""
    if predictor.modality == "audio":
        task: Any = predictor.task
        waves = [task.to_waveform(item, name=f"recording {i}") for i, item in enumerate(items)]
        return padded_waveforms(waves)
    return _sample_inputs(predictor, items)


def export_onnx(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = 18,
    check: bool = True,
    tolerance: float = 1e-4,
    quantize: bool = False,
) -> ExportReport:
    """Export a run's model to ONNX: dynamic batch (and, for text and audio, length) axis.

    Args:
        run_dir: a directory written by ``attnkit train`` (a text, an image or an audio run).
        out: the ``.onnx`` file to write (default ``RUN_DIR/model.onnx``).
        opset: ONNX opset version.
        check: run the exported graph in ONNX Runtime on batches of other shapes (texts of other lengths;
            random images, some of another size, through the task's ``encode_inputs``; clips of several lengths
            per batch, up to the run's ``max_seconds``) and compare with PyTorch.
        tolerance: largest allowed absolute difference when checking.
        quantize: also write an int8 dynamically quantized copy next to it (``*.int8.onnx``; an audio graph's
            front end stays float32).

    Returns:
        An :class:`ExportReport`.

    Raises:
        ValueError: the run cannot be loaded (:class:`attnkit.runs.RunError`), ``out`` is a folder, the model
            cannot be exported, or the check found a difference above ``tolerance``.
    """
    predictor = Predictor(run_dir)
    name = predictor.config.model.label
    out_path = Path(out) if out is not None else predictor.run_dir / ONNX_FILE
    if out_path.is_dir():
        raise ValueError(
            f"--out {out_path} is a folder; name the .onnx file to write (e.g. {out_path / ONNX_FILE})"
        )
    start = time.perf_counter()
    example = _sample_batches(predictor, check=False)[0]
    if predictor.modality == "audio":
        export_waveform_classifier(
            predictor.model,
            predictor.task.preparation,  # type: ignore[attr-defined]
            out_path,
            graph_inputs(predictor, example),
            opset=opset,
            metadata=_metadata(predictor),
        )
    else:
        export_classifier(
            predictor.model,
            out_path,
            _sample_inputs(predictor, example),
            opset=opset,
            metadata=_metadata(predictor),
        )
    report = ExportReport(
        path=out_path, model=name, seconds=time.perf_counter() - start, modality=predictor.modality
    )
    logger.info("exported %s to %s in %.1f s", name, out_path, report.seconds)
    if check:
        report.max_abs_diff = check_onnx(predictor, out_path, tolerance=tolerance)
    if quantize:
        report.int8_path = quantize_int8(out_path)
    return report


def export_classifier(
    model: AttentionModel,
    out: str | Path,
    example: tuple[Tensor, Tensor] | tuple[Tensor] | Tensor,
    *,
    opset: int = 18,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Trace ``model`` (in eval mode) to an ONNX file with the graph of its modality (:data:`SIGNATURES`).

    Args:
        model: a classifier (not HAN), of any modality.
        out: the ``.onnx`` file to write.
        example: the inputs to trace with. Text: ``input_ids (B, T)``, ``attention_mask (B, T)``; use
            ``B, T >= 2`` and some padding, since the exporter specializes dimensions of size 0 or 1. Images:
            ``pixels (B, CH, IH, IW)`` (alone, or with a unit mask, which is ignored) with ``B >= 2``.
        opset: ONNX opset version.
        metadata: string key/values stored in the model's ``metadata_props``.

    Raises:
        ValueError: the model cannot be exported (see :data:`NOT_EXPORTABLE`).
    """
    graph = model.eval().export_module().eval()
    signature = SIGNATURES[model.modality]
    batch = torch.export.Dim("batch")
    args: tuple[Tensor, ...]
    if model.modality == "image":
        pixels = example if isinstance(example, Tensor) else example[0]  # (B, CH, IH, IW)
        num_units = int(model.unit_mask_of(pixels[:1]).shape[1])
        graph = PixelsOnly(graph, num_units)
        args = (pixels,)
        dynamic_shapes: dict[str, dict[int, Any]] = {"pixels": {0: batch}}
    else:
        if isinstance(example, Tensor) or len(example) != 2:
            raise ValueError("a text model is traced with (input_ids, attention_mask)")
        args = tuple(example)
        tokens = torch.export.Dim("tokens", max=int(getattr(model.config, "max_length", 2**20)))
        dynamic_shapes = {"input_ids": {0: batch, 1: tokens}, "attention_mask": {0: batch, 1: tokens}}
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporters(), torch.no_grad():
        program = torch.onnx.export(
            graph,
            args,
            input_names=list(signature.inputs),
            output_names=list(signature.outputs),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    program.model.metadata_props.update(metadata or {})
    program.save(str(out_path))
    return out_path


def export_waveform_classifier(
    model: AttentionModel,
    preparation: AudioPreparation,
    out: str | Path,
    example: tuple[Tensor, Tensor],
    *,
    opset: int = 18,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Trace an audio ``model`` (in eval mode) behind its run's features (:class:`WaveformGraph`) to an ONNX file
    with the audio signature of :data:`SIGNATURES`, with the TorchScript-based exporter (see the module
    docstring).

    Args:
        model: an audio classifier.
        preparation: its run's :class:`~attnkit.tasks.audio.AudioPreparation`.
        out: the ``.onnx`` file to write.
        example: ``waveform (B, S)`` and ``lengths (B,)`` to trace with (:func:`padded_waveforms`); use ``B >= 2``
            clips of different lengths.
        opset: ONNX opset version.
        metadata: string key/values stored in the model's ``metadata_props``.
    """
    import onnx

    if model.modality != "audio":
        raise ValueError(f"export_waveform_classifier takes an audio model, got a {model.modality} model")
    graph = WaveformGraph(model.eval().export_module().eval(), preparation).eval()
    signature = SIGNATURES["audio"]
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = {
        "waveform": {0: "batch", 1: "samples"},
        "lengths": {0: "batch"},
        "logits": {0: "batch"},
        "unit_attention": {0: "batch", 1: "units"},
    }
    with _quiet_exporters(), torch.no_grad():
        torch.onnx.export(
            graph,
            tuple(example),
            str(out_path),
            input_names=list(signature.inputs),
            output_names=list(signature.outputs),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(out_path))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out_path))
    return out_path


def _metadata(predictor: Predictor) -> dict[str, str]:
    signature = SIGNATURES[predictor.modality]
    out = {
        "attnkit_version": __version__,
        "attnkit_model": predictor.config.model.label,
        "attnkit_modality": predictor.modality,
        "attnkit_labels": json.dumps(predictor.labels),
        "attnkit_inputs": signature.inputs_doc,
        "attnkit_outputs": signature.outputs_doc,
    }
    if predictor.modality == "image":
        out["attnkit_image"] = json.dumps(image_description(predictor))
    if predictor.modality == "audio":
        out["attnkit_audio"] = json.dumps(audio_description(predictor))
    return out


def image_description(predictor: Predictor) -> dict[str, Any]:
    """How an image run's inputs are made and what its units are: size, mode, per-channel mean and std (of
    ``[0, 1]`` pixels), and the unit grid (``unit_size`` pixels a side, ``grid`` rows x cols, row-major)."""
    prep = predictor.task.preparation  # type: ignore[attr-defined]
    config = predictor.model.config
    return {
        "size": list(prep.size),
        "mode": prep.mode,
        "mean": list(prep.mean),
        "std": list(prep.std),
        "unit_size": int(config.unit_size),
        "grid": list(config.grid),
    }


def audio_description(predictor: Predictor) -> dict[str, Any]:
    """How an audio run's inputs are made and what its units are: the sample rate recordings are resampled to,
    the longest recording, the features (kind, bands, window and hop in samples and seconds), frames per unit,
    seconds per unit and the most units."""
    prep: Any = predictor.task.preparation  # type: ignore[attr-defined]
    config = prep.feature_config
    return {
        "sample_rate": int(prep.sample_rate),
        "max_seconds": float(prep.max_seconds),
        "features": config.kind,
        "num_features": int(config.num_features),
        "n_mels": int(config.n_mels),
        "n_fft": int(config.n_fft),
        "win_length": int(config.window_length),
        "hop_length": int(config.hop_length),
        "hop_seconds": float(config.hop_seconds),
        "stack_frames": int(prep.stack_frames),
        "unit_seconds": float(prep.unit_seconds),
        "max_units": int(predictor.model.config.max_units),
    }


def onnx_session(path: str | Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path`` (``threads``: intra-op threads, default ONNX Runtime's).

    Raises:
        attnkit.runs.RunError: the file is missing or is not a model ONNX Runtime can load (one line naming it).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise RunNotFoundError(
            f"{path}: no ONNX model there; write one with: attnkit export RUN_DIR --format onnx"
        )
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime's errors (InvalidProtobuf, Fail, ...) derive from Exception only
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(
            f"{path}: not an ONNX model ONNX Runtime can load ({detail}); export it again with attnkit export"
        ) from None


def session_modality(session: Any) -> str:
    """``image`` for a graph that takes ``pixels``, ``audio`` for one that takes ``waveform`` and ``lengths``,
    else ``text``."""
    names = tuple(value.name for value in session.get_inputs())
    for modality in ("image", "audio"):
        if names == SIGNATURES[modality].inputs:
            return modality
    return "text"


def run_onnx(session: Any, inputs: Tensor, unit_mask: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``logits (B, C)`` and the attention (``token_attention (B, T)`` or ``unit_attention (B, U)``) from an
    ONNX Runtime session.

    Args:
        session: from :func:`onnx_session`.
        inputs: ``input_ids (B, T)`` (text), ``pixels (B, CH, IH, IW)`` (images) or ``waveform (B, S)`` (audio).
        unit_mask: ``attention_mask (B, T)`` for text; not used for images (every unit is real); for audio the
            ``lengths (B,)`` of the clips (:func:`graph_inputs` gives both).
    """
    modality = session_modality(session)
    if modality == "image":
        feeds = {"pixels": inputs.detach().cpu().numpy().astype(np.float32)}
        names = SIGNATURES["image"].outputs
    elif modality == "audio":
        if unit_mask is None:
            raise ValueError("an audio graph needs the lengths of the clips")
        feeds = {
            "waveform": inputs.detach().cpu().numpy().astype(np.float32),
            "lengths": unit_mask.cpu().numpy().astype(np.int64),
        }
        names = SIGNATURES["audio"].outputs
    else:
        if unit_mask is None:
            raise ValueError("a text graph needs the attention_mask")
        feeds = {
            "input_ids": inputs.cpu().numpy().astype(np.int64),
            "attention_mask": unit_mask.cpu().numpy().astype(bool),
        }
        names = SIGNATURES["text"].outputs
    logits, attention = session.run(list(names), feeds)
    return logits, attention


def check_onnx(
    predictor: Predictor,
    path: str | Path,
    *,
    tolerance: float = 1e-4,
    texts: list[list[str]] | None = None,
    batches: list[list[Any]] | None = None,
) -> dict[str, float]:
    """Largest ``|onnx - torch|`` of the logits and the attention over batches of different shapes.

    Args:
        predictor: the run.
        path: its exported graph.
        tolerance: largest allowed absolute difference.
        texts: batches of texts to check on (text runs; the same as ``batches``).
        batches: batches of raw inputs (texts; images as bytes or uint8 arrays; recordings as file bytes or
            float waveforms); default: :data:`CHECK_TEXTS`, random images (:data:`CHECK_IMAGES`) or random
            waveforms (:data:`CHECK_CLIPS`).

    Raises:
        ValueError: a difference is above ``tolerance``.
    """
    session = onnx_session(path)
    attention_name = SIGNATURES[predictor.modality].outputs[1]
    worst = {"logits": 0.0, attention_name: 0.0}
    for items in batches or texts or _sample_batches(predictor, check=True):
        inputs, mask = _sample_inputs(predictor, items)
        with torch.no_grad():
            ref = predictor.model(inputs.to(predictor.device), mask.to(predictor.device))
        logits, attention = run_onnx(session, *graph_inputs(predictor, items))
        worst["logits"] = max(worst["logits"], float(np.abs(logits - ref.logits.cpu().numpy()).max()))
        worst[attention_name] = max(
            worst[attention_name], float(np.abs(attention - ref.unit_attention.cpu().numpy()).max())
        )
    if max(worst.values()) > tolerance:
        raise ValueError(f"ONNX outputs differ from PyTorch by more than {tolerance}: {worst}")
    return worst


def frontend_nodes(path: str | Path) -> list[str]:
    """The names of an audio graph's front-end nodes (scope ``/frontend/``); ``[]`` for other graphs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    prefix = f"/{FRONTEND_SCOPE}/"
    return [node.name for node in graph.node if node.name.startswith(prefix)]


def quantize_int8(path: str | Path, out: str | Path | None = None) -> Path:
    """Dynamic int8 quantization (weights int8, activations quantized on the fly) with ONNX Runtime.

    An audio graph's front end (:func:`frontend_nodes`: the STFT convolution, the mel and DCT products) stays
    float32; the model after it is quantized.

    Args:
        path: an exported fp32 ``.onnx`` file.
        out: where to write (default: ``model.onnx`` -> ``model.int8.onnx`` next to it).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(path)
    dst = Path(out) if out is not None else src.with_name(src.stem + ".int8.onnx")
    with _quiet_exporters():
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, nodes_to_exclude=frontend_nodes(src)
        )
    logger.info("wrote int8 model %s", dst)
    return dst
