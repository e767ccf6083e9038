"""Serve a trained run over HTTP: REST API, a web page that highlights what the model attends to, ONNX.

A text run takes JSON texts; an image or audio run takes files (multipart ``file`` uploads or base64 JSON, see
:mod:`attnkit.serve.uploads`, :mod:`attnkit.serve.images`, :mod:`attnkit.serve.audio`). The page shows an image
run's heatmap per method over the image, and an audio run's spectrogram with each unit's time span shaded per
method beside a player (a clip may be uploaded or recorded in the browser).

- :func:`create_app`: the FastAPI app (``/predict``, ``/explain``, ``/health``, ``/model``, ``/docs``, ``/``).
- :func:`run_server`: the app on uvicorn with the connection limits of :mod:`attnkit.serve.protocol`.
- :func:`load_backend`: a run on PyTorch or on ONNX Runtime (an exported graph, see :mod:`attnkit.export`).
- :class:`MicroBatcher`: gathers concurrent requests into one model call on a worker thread.
- :class:`ExplainPool`: explanations on their own threads, bounded in number, queue and time.
- :mod:`attnkit.serve.security`: Host check, API key, per-client rate limit.
"""

from attnkit.serve.app import (
    BodyGuard,
    ServeConfig,
    check_exposure,
    check_port_free,
    create_app,
    run_server,
    server_config,
)
from attnkit.serve.backends import BACKENDS, Backend, OnnxBackend, TorchBackend, load_backend, resolve_device
from attnkit.serve.batching import BatcherStats, MicroBatcher, Overloaded
from attnkit.serve.explaining import ExplainPool, ExplainTimeout
from attnkit.serve.protocol import ConnectionLimits
from attnkit.serve.schemas import Limits
from attnkit.serve.security import read_api_key

__all__ = [
    "BACKENDS",
    "Backend",
    "BatcherStats",
    "BodyGuard",
    "ConnectionLimits",
    "ExplainPool",
    "ExplainTimeout",
    "Limits",
    "MicroBatcher",
    "OnnxBackend",
    "Overloaded",
    "ServeConfig",
    "TorchBackend",
    "check_exposure",
    "check_port_free",
    "create_app",
    "load_backend",
    "read_api_key",
    "resolve_device",
    "run_server",
    "server_config",
]
