"""Export a trained run to ONNX (``torch.onnx.export``, dynamo exporter) and quantize it to int8.

The graph takes ``input_ids (B, T)`` (int64) and ``attention_mask (B, T)`` (bool, True = real token,
right-padded) with dynamic ``B`` and ``T``, and returns ``logits (B, C)`` and ``token_attention (B, T)``, the
same two tensors as the PyTorch model's :class:`~attnkit.models.base.ClassifierOutput`. Tokenization stays in
Python: :class:`~attnkit.predictor.Predictor` encodes, the ONNX Runtime session runs the graph.

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

Dimension legend: ``B`` batch, ``T`` tokens, ``C`` classes, ``H`` LSTM units per direction.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator
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
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("logits", "token_attention")
#: Models whose graph cannot be exported, with the reason shown to the user.
NOT_EXPORTABLE = {"han": NOT_EXPORTABLE_REASON}


def ExportableClassifier(model: AttentionModel) -> nn.Module:
    """The traceable inference graph of a model: ``model.export_module()`` (see :class:`AttentionModel`)."""
    return model.export_module()


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matches PyTorch.

    Attributes:
        path: the ``.onnx`` file.
        model: the model's name (with its ensemble size, if any).
        seconds: export time.
        max_abs_diff: largest ``|onnx - torch|`` over logits and token attention on the check batches.
        int8_path: the dynamically quantized model, if asked.
    """

    path: Path
    model: str
    seconds: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    int8_path: Path | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model": self.model,
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


def _sample_inputs(predictor: Predictor, texts: list[str]) -> tuple[Tensor, Tensor]:
    _, input_ids, mask = predictor.encode(texts)
    return input_ids.cpu(), mask.cpu()


#: Texts used to trace the graph and to check it. Two rows of different lengths so the trace sees padding
#: (an example dimension of size 1 would be specialized).
EXAMPLE_TEXTS = ["a first example text with several words in it .", "a second , shorter one"]
CHECK_TEXTS = [
    ["a b c d e f g h i j k l m n o p", "x", "one more text of medium length here ."],
    ["only one text"],
]


def export_onnx(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = 18,
    check: bool = True,
    tolerance: float = 1e-4,
    quantize: bool = False,
) -> ExportReport:
    """Export a run's model to ONNX with dynamic batch and sequence axes.

    Args:
        run_dir: a directory written by ``attnkit train``.
        out: the ``.onnx`` file to write (default ``RUN_DIR/model.onnx``).
        opset: ONNX opset version.
        check: run the exported graph in ONNX Runtime on batches of two shapes and compare with PyTorch.
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
        _sample_inputs(predictor, EXAMPLE_TEXTS),
        opset=opset,
        metadata=_metadata(predictor),
    )
    report = ExportReport(path=out_path, model=name, seconds=time.perf_counter() - start)
    logger.info("exported %s to %s in %.1f s", name, out_path, report.seconds)
    if check:
        report.max_abs_diff = check_onnx(predictor, out_path, tolerance=tolerance)
    if quantize:
        report.int8_path = quantize_int8(out_path)
    return report


def export_classifier(
    model: AttentionModel,
    out: str | Path,
    example: tuple[Tensor, Tensor],
    *,
    opset: int = 18,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Trace ``model`` (in eval mode) to an ONNX file with dynamic batch and token axes.

    Args:
        model: a classifier (not HAN).
        out: the ``.onnx`` file to write.
        example: ``input_ids (B, T)``, ``attention_mask (B, T)`` to trace with; use ``B, T >= 2`` and some
            padding, since the exporter specializes dimensions of size 0 or 1.
        opset: ONNX opset version.
        metadata: string key/values stored in the model's ``metadata_props``.

    Raises:
        ValueError: the model cannot be exported (see :data:`NOT_EXPORTABLE`).
    """
    graph = model.eval().export_module().eval()
    batch = torch.export.Dim("batch")
    tokens = torch.export.Dim("tokens", max=int(getattr(model.config, "max_length", 2**20)))
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporters(), torch.no_grad():
        program = torch.onnx.export(
            graph,
            example,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"input_ids": {0: batch, 1: tokens}, "attention_mask": {0: batch, 1: tokens}},
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
    return {
        "attnkit_version": __version__,
        "attnkit_model": predictor.config.model.label,
        "attnkit_labels": json.dumps(predictor.labels),
        "attnkit_inputs": "input_ids (B, T) int64, attention_mask (B, T) bool (True = token, right-padded)",
        "attnkit_outputs": "logits (B, C) float32, token_attention (B, T) float32",
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


def run_onnx(session: Any, input_ids: Tensor, attention_mask: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``logits (B, C)`` and ``token_attention (B, T)`` from an ONNX Runtime session."""
    feeds = {
        "input_ids": input_ids.cpu().numpy().astype(np.int64),
        "attention_mask": attention_mask.cpu().numpy().astype(bool),
    }
    logits, attention = session.run(list(OUTPUT_NAMES), feeds)
    return logits, attention


def check_onnx(
    predictor: Predictor, path: str | Path, *, tolerance: float = 1e-4, texts: list[list[str]] | None = None
) -> dict[str, float]:
    """Largest ``|onnx - torch|`` of logits and token attention over batches of different shapes.

    Raises:
        ValueError: a difference is above ``tolerance``.
    """
    session = onnx_session(path)
    worst = {"logits": 0.0, "token_attention": 0.0}
    for batch_texts in texts or CHECK_TEXTS:
        input_ids, mask = _sample_inputs(predictor, batch_texts)
        with torch.no_grad():
            ref = predictor.model(input_ids, mask)
        logits, attention = run_onnx(session, input_ids, mask)
        worst["logits"] = max(worst["logits"], float(np.abs(logits - ref.logits.numpy()).max()))
        worst["token_attention"] = max(
            worst["token_attention"], float(np.abs(attention - ref.token_attention.numpy()).max())
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
