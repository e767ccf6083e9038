"""Inference backends of the server: PyTorch (the run's model) or ONNX Runtime (an exported graph).

Both encode in Python with the run's task (texts: its tokenizer; images: decoded ``(H, W, C)`` uint8 arrays,
normalized as in training; recordings: ``(S,)`` float32 waveforms, which an audio graph takes as they are, padded
into one batch with their lengths) and return class probabilities for a batch of inputs. They are called from
one worker thread at a time (see :mod:`attnkit.serve.batching`).

Dimension legend: ``N`` inputs (texts, images or recordings), ``C`` classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from attnkit.devices import resolve_device
from attnkit.predictor import Predictor

__all__ = ["BACKENDS", "Backend", "OnnxBackend", "TorchBackend", "load_backend", "resolve_device"]

BACKENDS = ("torch", "onnx")


class Backend(Protocol):
    """Class probabilities for a batch of inputs (texts; images as uint8 arrays or encoded bytes; recordings as
    float waveforms or encoded bytes)."""

    name: str
    predictor: Predictor

    def predict_proba(self, items: list[Any]) -> np.ndarray:
        """``(N, C)`` float32 probabilities, one row per input, in the order of ``labels``."""
        ...


class TorchBackend:
    """The run's PyTorch model (:meth:`Predictor.predict_proba`)."""

    name = "torch"

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def predict_proba(self, items: list[Any]) -> np.ndarray:
        return self.predictor.predict_proba(items, batch_size=max(1, len(items))).numpy()


class OnnxBackend:
    """An exported graph run by ONNX Runtime; the predictor supplies the encoding (tokenizer, image
    normalization, or decoding recordings: an audio graph computes its own features) and the labels.

    Args:
        predictor: the run (its task encodes, labels; explanations still use its PyTorch model).
        path: the ``.onnx`` file written by :func:`attnkit.export.export_onnx`.
        threads: ONNX Runtime intra-op threads (default: its own choice).

    Raises:
        FileNotFoundError: there is no file at ``path``.
        attnkit.runs.RunError: the file is not a model ONNX Runtime loads, or its graph is not one of this
            run's modality (a text graph for an image run, say).
    """

    name = "onnx"

    def __init__(self, predictor: Predictor, path: str | Path, *, threads: int | None = None) -> None:
        from attnkit.export import onnx_session, session_modality
        from attnkit.runs import RunError

        self.predictor = predictor
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"no ONNX model at {self.path}; write one with: attnkit export {predictor.run_dir} --format onnx"
            )
        self.session = onnx_session(self.path, threads=threads)
        graph = session_modality(self.session)
        if graph != predictor.modality:
            raise RunError(
                f"{self.path} is the graph of {_a(graph)} model but {predictor.run_dir} is {_a(predictor.modality)} "
                f"run; export this run with: attnkit export {predictor.run_dir} --format onnx"
            )

    def predict_proba(self, items: list[Any]) -> np.ndarray:
        from attnkit.export import graph_inputs, run_onnx

        logits, _ = run_onnx(self.session, *graph_inputs(self.predictor, items))  # (N, C)
        return self.predictor.probabilities(torch.from_numpy(logits)).numpy()


def _a(word: str) -> str:
    """``word`` with its indefinite article (``an image``, ``a text``)."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def load_backend(
    run_dir: str | Path,
    backend: str = "torch",
    *,
    onnx_path: str | Path | None = None,
    threads: int | None = None,
    device: str = "cpu",
) -> Backend:
    """Load a run for serving.

    Args:
        run_dir: a directory written by ``attnkit train``.
        backend: ``torch`` or ``onnx``.
        onnx_path: the ONNX file for the ``onnx`` backend (default ``RUN_DIR/model.onnx``).
        threads: compute threads (torch intra-op threads, or ONNX Runtime intra-op threads).
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps`` (see :func:`attnkit.devices.resolve_device`): where
            the PyTorch model runs (for ``onnx``, only the explanations; ONNX Runtime runs on the CPU).

    Raises:
        ValueError: an unknown backend, ``threads`` below 1, or a device this machine does not have.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    where = resolve_device(device)
    predictor = Predictor(run_dir, device=where)
    if backend == "torch":
        return TorchBackend(predictor)
    from attnkit.export import ONNX_FILE

    return OnnxBackend(predictor, onnx_path or predictor.run_dir / ONNX_FILE, threads=threads)
