"""Inference backends of the server: PyTorch (the run's model) or ONNX Runtime (an exported graph).

Both tokenize in Python with the run's tokenizer and return class probabilities for a batch of texts. They are
called from one worker thread at a time (see :mod:`attnkit.serve.batching`).

Dimension legend: ``N`` texts, ``C`` classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from attnkit.predictor import Predictor

BACKENDS = ("torch", "onnx")


class Backend(Protocol):
    """Class probabilities for a batch of texts."""

    name: str
    predictor: Predictor

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """``(N, C)`` float32 probabilities, one row per text, in the order of ``labels``."""
        ...


class TorchBackend:
    """The run's PyTorch model (:meth:`Predictor.predict_proba`)."""

    name = "torch"

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.predictor.predict_proba(texts, batch_size=max(1, len(texts))).numpy()


class OnnxBackend:
    """An exported graph run by ONNX Runtime; the predictor supplies tokenizer and labels.

    Args:
        predictor: the run (tokenizer, labels; explanations still use its PyTorch model).
        path: the ``.onnx`` file written by :func:`attnkit.export.export_onnx`.
        threads: ONNX Runtime intra-op threads (default: its own choice).
    """

    name = "onnx"

    def __init__(self, predictor: Predictor, path: str | Path, *, threads: int | None = None) -> None:
        from attnkit.export import onnx_session

        self.predictor = predictor
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"no ONNX model at {self.path}; write one with: attnkit export {predictor.run_dir} --format onnx"
            )
        self.session = onnx_session(self.path, threads=threads)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        from attnkit.export import run_onnx

        _, input_ids, mask = self.predictor.encode(texts)
        logits, _ = run_onnx(self.session, input_ids, mask)  # (N, C)
        return self.predictor.probabilities(torch.from_numpy(logits)).numpy()


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is available, else ``cpu``; ``cpu``; ``cuda`` (or ``cuda:N``).

    Raises:
        ValueError: an unknown name, or ``cuda`` on a machine where torch sees no GPU.
    """
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: torch sees no CUDA GPU on this machine; use --device cpu")
        try:
            resolved = torch.device(name)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}") from None
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return resolved
    raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")


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
        device: ``auto``, ``cpu`` or ``cuda``: where the PyTorch model runs (for ``onnx``, only the
            explanations; ONNX Runtime runs on the CPU).
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
