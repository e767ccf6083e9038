"""Export a trained run to ONNX (``torch.onnx.export``, dynamo exporter) and quantize it to int8.

The graph's inputs and outputs depend on what the run classifies (:data:`SIGNATURES`):

- **text**: ``input_ids (B, T)`` (int64) and ``attention_mask (B, T)`` (bool, True = real token,
  right-padded), dynamic ``B`` and ``T``; returns ``logits (B, C)`` and ``token_attention (B, T)``.
- **image**: ``pixels (B, CH, IH, IW)`` (float32, normalized like the training images: ``(x / 255 - mean) / std``
  per channel, the run's ``image_preparation.json``), dynamic ``B``, fixed ``CH, IH, IW``; returns
  ``logits (B, C)`` and ``unit_attention (B, U)`` over the model's grid of unit boxes (row-major). Every unit of
  an image is real, so the graph builds the all-True unit mask itself and takes the pixels alone.

Those are the same tensors as the PyTorch model's :class:`~attnkit.models.base.ModelOutput`. Tokenizing,
decoding and resizing stay in Python: :class:`~attnkit.predictor.Predictor` encodes (its task's
``encode_inputs``), the ONNX Runtime session runs the graph.

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

Dimension legend: ``B`` batch, ``T`` tokens, ``C`` classes, ``H`` LSTM units per direction; images: ``CH``
channels, ``IH`` / ``IW`` height / width in pixels, ``U`` units.
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
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attnkit import __version__
from attnkit.models.base import AttentionModel
from attnkit.models.han import NOT_EXPORTABLE_REASON
from attnkit.models.recurrent import UnpackedBiLSTM as UnpackedBiLSTM
from attnkit.predictor import Predictor
from attnkit.runs import RunError, RunNotFoundError

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"


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
        modality: ``text`` or ``image``: which :data:`SIGNATURES` entry the graph has.
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


def random_images(count: int, height: int, width: int, channels: int, *, seed: int) -> list[np.ndarray]:
    """``count`` random ``(height, width, channels)`` uint8 images (uniform pixels), from ``seed``."""
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, size=(count, height, width, channels), dtype=np.uint8))


def _sample_batches(predictor: Predictor, *, check: bool) -> list[list[Any]]:
    """Raw inputs to trace with (one batch) or to check on (several): texts, or random images."""
    if predictor.modality == "text":
        return CHECK_TEXTS if check else [EXAMPLE_TEXTS]
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


def export_onnx(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = 18,
    check: bool = True,
    tolerance: float = 1e-4,
    quantize: bool = False,
) -> ExportReport:
    """Export a run's model to ONNX: dynamic batch (and, for text, sequence) axis.

    Args:
        run_dir: a directory written by ``attnkit train`` (a text or an image run).
        out: the ``.onnx`` file to write (default ``RUN_DIR/model.onnx``).
        opset: ONNX opset version.
        check: run the exported graph in ONNX Runtime on batches of other shapes (texts of other lengths;
            random images, some of another size, through the task's ``encode_inputs``) and compare with PyTorch.
        tolerance: largest allowed absolute difference when checking.
        quantize: also write an int8 dynamically quantized copy next to it (``*.int8.onnx``).

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
    export_classifier(
        predictor.model,
        out_path,
        _sample_inputs(predictor, _sample_batches(predictor, check=False)[0]),
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
    """``image`` for a graph that takes ``pixels``, else ``text``."""
    names = [value.name for value in session.get_inputs()]
    return "image" if names == list(SIGNATURES["image"].inputs) else "text"


def run_onnx(session: Any, inputs: Tensor, unit_mask: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``logits (B, C)`` and the attention (``token_attention (B, T)`` or ``unit_attention (B, U)``) from an
    ONNX Runtime session.

    Args:
        session: from :func:`onnx_session`.
        inputs: ``input_ids (B, T)`` (text) or ``pixels (B, CH, IH, IW)`` (images).
        unit_mask: ``attention_mask (B, T)`` for text; not used for images (every unit is real).
    """
    if session_modality(session) == "image":
        feeds = {"pixels": inputs.detach().cpu().numpy().astype(np.float32)}
        names = SIGNATURES["image"].outputs
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
        batches: batches of raw inputs (texts; images as bytes or uint8 arrays); default: :data:`CHECK_TEXTS`,
            or random images (:data:`CHECK_IMAGES`).

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
        logits, attention = run_onnx(session, inputs, mask)
        worst["logits"] = max(worst["logits"], float(np.abs(logits - ref.logits.cpu().numpy()).max()))
        worst[attention_name] = max(
            worst[attention_name], float(np.abs(attention - ref.unit_attention.cpu().numpy()).max())
        )
    if max(worst.values()) > tolerance:
        raise ValueError(f"ONNX outputs differ from PyTorch by more than {tolerance}: {worst}")
    return worst


def quantize_int8(path: str | Path, out: str | Path | None = None) -> Path:
    """Dynamic int8 quantization (weights int8, activations quantized on the fly) with ONNX Runtime.

    Args:
        path: an exported fp32 ``.onnx`` file.
        out: where to write (default: ``model.onnx`` -> ``model.int8.onnx`` next to it).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(path)
    dst = Path(out) if out is not None else src.with_name(src.stem + ".int8.onnx")
    with _quiet_exporters():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    logger.info("wrote int8 model %s", dst)
    return dst
