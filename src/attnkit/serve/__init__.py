"""Serve a trained run over HTTP: REST API, a web page that highlights what the model attends to, ONNX.

- :func:`create_app`: the FastAPI app (``/predict``, ``/explain``, ``/health``, ``/model``, ``/docs``, ``/``).
- :func:`load_backend`: a run on PyTorch or on ONNX Runtime (an exported graph, see :mod:`attnkit.export`).
- :class:`MicroBatcher`: gathers concurrent requests into one model call on a worker thread.
"""

from attnkit.serve.app import BodyGuard, ServeConfig, create_app, run_server
from attnkit.serve.backends import BACKENDS, Backend, OnnxBackend, TorchBackend, load_backend
from attnkit.serve.batching import BatcherStats, MicroBatcher, Overloaded
from attnkit.serve.schemas import Limits

__all__ = [
    "BACKENDS",
    "Backend",
    "BatcherStats",
    "BodyGuard",
    "Limits",
    "MicroBatcher",
    "OnnxBackend",
    "Overloaded",
    "ServeConfig",
    "TorchBackend",
    "create_app",
    "load_backend",
    "run_server",
]
