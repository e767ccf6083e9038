"""The HTTP server: a thin adapter from requests to a backend's predictions and :func:`attnkit.explain` (texts),
:func:`attnkit.explain.images.explain_images` (images) or :func:`attnkit.explain.audio.explain_recordings`
(recordings).

Endpoints: ``POST /predict``, ``POST /explain``, ``GET /health``, ``GET /model``, the OpenAPI docs at
``/docs`` (Swagger UI, its assets served from the package: no CDN) and ``/openapi.json``, and
the web page at ``/`` (static files shipped in the package). A text run takes JSON (``text`` / ``texts``); an
image or audio run takes files as a ``multipart/form-data`` upload (field ``file``, repeated for several) or JSON
with base64 (``image`` / ``images``, ``audio`` / ``audios``), see :mod:`attnkit.serve.uploads`.

Every error is JSON ``{"error": kind, "detail": message}``: bad input is a 4xx (413 for a body over the limit,
400 for a body that is not UTF-8 or a ``Host`` not served here, 401 without the API key when one is set, 422 for
anything the schema or the limits reject, 429 over the rate limit; for images also 415 not an image, 400
truncated, corrupt or not base64, 413 too many pixels; for recordings 415 not audio or unsupported, 413 too
large, too long or too many channels, 400 empty, truncated, corrupt or without frames), a full queue is 503, an
explanation over its time limit 504. ``/predict`` runs through the :class:`MicroBatcher` on its own worker thread; ``/explain`` on the
:class:`~attnkit.serve.explaining.ExplainPool`'s threads, bounded in number, queue and time, so explanations
cannot starve predictions. :func:`run_server` adds the connection limits of :mod:`attnkit.serve.protocol`.
"""

from __future__ import annotations

import errno
import gc
import logging
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attnkit import __version__
from attnkit.serve.audio import AUDIO_UPLOADS, AudioDecoder
from attnkit.serve.backends import Backend
from attnkit.serve.batching import MicroBatcher, Overloaded
from attnkit.serve.errors import INPUT_NOUNS, RequestError, error_response, validation_detail
from attnkit.serve.explaining import (
    ISOLATIONS,
    ExplainPool,
    ExplainTimeout,
    thread_budget,
)
from attnkit.serve.images import IMAGE_UPLOADS, ImageDecoder
from attnkit.serve.protocol import ConnectionLimits, fit_to_descriptor_limit, guarded_protocol
from attnkit.serve.schemas import (
    AudioExplainRequest,
    AudioPredictRequest,
    Error,
    ExplainRequest,
    Explanations,
    ImageExplainRequest,
    ImagePredictRequest,
    Limits,
    ModelInfo,
    Prediction,
    Predictions,
    PredictRequest,
)
from attnkit.serve.security import (
    ApiKeyGuard,
    HostGuard,
    RateLimitGuard,
    TokenBuckets,
    default_allowed_hosts,
    is_loopback,
    is_open_path,
)
from attnkit.serve.uploads import (
    UploadDecoder,
    UploadKind,
    check_count,
    read_upload_request,
    upload_request_body,
)
from attnkit.threads import AUTO, ThreadGovernor

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger(__name__)

STATIC_DIR = Path(str(resources.files("attnkit.serve") / "static"))
#: The shared explanation renderer (attnkit-viz.js / .css), served at /assets.
VIZ_ASSETS_DIR = Path(str(resources.files("attnkit.explain") / "assets"))
#: Where the Swagger UI assets (from the fastapi-offline package) are served.
DOCS_ASSETS_URL = "/docs-assets"


@dataclass(frozen=True)
class ServeConfig:
    """How the server batches, explains, whom it serves and what it accepts.

    Attributes:
        max_batch_size: most texts per model call of ``/predict``.
        max_wait_ms: how long a request waits for others to share its batch.
        max_queue: most texts waiting for the model; more get 503.
        max_pending_explains: most ``/explain`` requests running or waiting; more get 503.
        explain_workers: explanations computed at once (threads apart from the predict worker).
        explain_threads: torch intra-op threads of each explanation worker.
        explain_timeout_s: time limit of one ``/explain`` request from its arrival; over it, 504.
        explain_isolation: ``thread`` (workers in this process) or ``process`` (each worker a process that
            loads the run: its own GIL, a lower CPU priority, killed past its limit; what ``attnkit serve``
            uses). See :mod:`attnkit.serve.explaining`.
        explain_nice: CPU priority offset (0-19) of ``process`` workers.
        predict_threads: torch intra-op threads of the predict worker; ``None``: the cores the explanation
            workers leave (see :func:`~attnkit.serve.explaining.thread_budget`).
        limits: per-request limits (texts, characters, images, pixels, body bytes).
        api_key: when set, every path but ``/health``, the page and the docs needs it (never logged).
        allowed_hosts: ``Host`` names served (``*``: any). ``None``: :func:`run_server` derives them from the
            bind address (the loopback names on loopback); :func:`create_app` alone then checks nothing.
        rate_limit: requests per second per client address; ``None``: no limit.
        rate_burst: requests a client may make at once before the rate applies.
        allow_unauthenticated: let :func:`run_server` bind beyond loopback without an API key.
        connections: connection timeouts and caps (used by :func:`run_server`).
        decode_workers: image and audio runs: files decoded at once (each decode of a large file holds its
            pixels or samples).
    """

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    max_pending_explains: int = 4
    explain_workers: int = 1
    explain_threads: int = 1
    explain_timeout_s: float = 30.0
    explain_isolation: str = "thread"
    explain_nice: int = 5
    predict_threads: int | None = None
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] | None = None
    rate_limit: float | None = None
    rate_burst: int = 20
    allow_unauthenticated: bool = False
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    decode_workers: int = 2

    def __post_init__(self) -> None:
        for name in (
            "max_pending_explains",
            "explain_workers",
            "explain_threads",
            "rate_burst",
            "decode_workers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.explain_isolation not in ISOLATIONS:
            raise ValueError(
                f"explain_isolation must be one of {', '.join(ISOLATIONS)}, got {self.explain_isolation!r}"
            )
        if not 0 <= self.explain_nice <= 19:
            raise ValueError(f"explain_nice must be in 0..19, got {self.explain_nice}")
        if self.predict_threads is not None and self.predict_threads < 1:
            raise ValueError(f"predict_threads must be >= 1, got {self.predict_threads}")
        if not 0 < self.explain_timeout_s <= 3600:
            raise ValueError(f"explain_timeout_s must be in (0, 3600] seconds, got {self.explain_timeout_s}")
        if self.rate_limit is not None and not 0 < self.rate_limit < float("inf"):
            raise ValueError(f"rate_limit must be a positive number of requests/s, got {self.rate_limit}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (leave it unset to serve without a key)")
        if self.allowed_hosts is not None and not self.allowed_hosts:
            raise ValueError("allowed_hosts must name at least one host ('*' allows any)")

    def to_json_dict(self) -> dict[str, Any]:
        """Every field but the API key (only whether one is set)."""
        out = asdict(self)
        out["api_key"] = self.api_key is not None
        return out


class BodyGuard:
    """ASGI middleware: refuse request bodies that are not JSON (415), over ``max_bytes`` (413) or not UTF-8
    (400), before anything parses them. With ``multipart_files`` (image and audio runs: what the uploads hold,
    for the message, e.g. ``image files``), ``multipart/form-data`` bodies are let through too (binary: not
    checked for UTF-8).

    The ``Content-Length`` header is checked first, so an announced oversized body is refused without being
    read; a chunked body is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, multipart_files: str | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.multipart_files = multipart_files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_big = error_response(
            413,
            "body_too_large",
            f"the request body is over the limit of {self.max_bytes} bytes",
            headers={"Connection": "close"},  # the rest of the body is not read: do not wait for it
        )
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        multipart = self.multipart_files is not None and content_type == b"multipart/form-data"
        if content_type != b"application/json" and not content_type.endswith(b"+json") and not multipart:
            shown = content_type.decode("latin-1")
            if self.multipart_files is not None:
                detail = (
                    f"the body must be JSON sent with Content-Type: application/json, or {self.multipart_files} "
                    f"as multipart/form-data, got {shown!r}"
                )
            else:
                detail = f"the body must be JSON sent with Content-Type: application/json, got {shown!r}"
            await error_response(415, "unsupported_media_type", detail)(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(400, "bad_request", "Content-Length is not a number")(
                    scope, receive, send
                )
                return
            if int(length) > self.max_bytes:
                await too_big(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            if not multipart:
                body.decode("utf-8")
        except UnicodeDecodeError as err:
            detail = (
                f"the request body is not valid UTF-8 (byte 0x{body[err.start]:02x} at offset {err.start})"
            )
            await error_response(400, "invalid_utf8", detail)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def check_texts(texts: list[str], *, given_both: bool, max_texts: int, max_chars: int) -> list[str]:
    """The texts of a request, or :class:`RequestError` (422) saying what is wrong with them."""
    if given_both:
        raise RequestError(422, "validation_error", "give either 'text' or 'texts', not both")
    if not texts:
        raise RequestError(422, "validation_error", 'no text given: send {"text": "..."} or {"texts": [...]}')
    if len(texts) > max_texts:
        raise RequestError(
            422, "too_many_texts", f"{len(texts)} texts in one request; the limit is {max_texts}"
        )
    for i, text in enumerate(texts):
        where = f"texts[{i}]" if len(texts) > 1 else "text"
        if not text.strip():
            raise RequestError(422, "empty_text", f"{where} is empty (or only whitespace)")
        if len(text) > max_chars:
            raise RequestError(
                422, "text_too_long", f"{where} has {len(text)} characters; the limit is {max_chars}"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise RequestError(
                422,
                "invalid_text",
                f"{where} contains an unpaired surrogate (\\u{ord(text[err.start]):04x} at character "
                f"{err.start}), which is not valid Unicode",
            ) from None
    return texts


def metrics_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a client may want of ``metrics.json``: per split its size, accuracy, macro-F1 and ECE, and the
    selected epoch. Nothing else (``metrics.json`` also holds the run directory and the training history)."""
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        report = metrics.get(split)
        if isinstance(report, dict):
            out[split] = {k: report[k] for k in ("n", "accuracy", "macro_f1", "ece") if k in report}
    for key in ("best_epoch", "epochs_run"):
        if key in metrics:
            out[key] = metrics[key]
    return out


def create_app(backend: Backend, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``backend``'s run (a text or an image run: the endpoints take its inputs).

    Args:
        backend: a loaded :class:`~attnkit.serve.backends.Backend` (its predictor also serves ``/explain``).
        config: batching, explanation capacity, access and limits.
    """
    from attnkit.explain import check_methods

    config = config or ServeConfig()
    limits = config.limits
    predictor = backend.predictor
    modality = predictor.modality
    predict_threads = thread_budget(config.predict_threads, config.explain_workers, config.explain_threads)
    # Fixed with predict_threads; else "auto" up to the cores the explain workers leave, re-checked every few
    # seconds in the predict worker's own thread (torch's thread count is per calling thread).
    governor = ThreadGovernor(config.predict_threads or AUTO, cap=predict_threads)
    executor = ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="attnkit-model", initializer=governor.start, initargs=(0.0,)
    )

    def predict_batch(items: list[Any]) -> list[np.ndarray]:
        governor.maybe_update()
        return list(backend.predict_proba(items))  # (C,) per text or image

    batcher: MicroBatcher[Any, np.ndarray] = MicroBatcher(
        predict_batch,
        executor,
        max_batch_size=config.max_batch_size,
        max_wait_ms=config.max_wait_ms,
        max_queue=config.max_queue,
    )
    explainer = ExplainPool(
        predictor,
        workers=config.explain_workers,
        threads=config.explain_threads,
        max_pending=config.max_pending_explains,
        timeout_s=config.explain_timeout_s,
        isolation=config.explain_isolation,
        nice=config.explain_nice,
    )
    self_attention = _has_self_attention(predictor)
    methods_available = check_methods(["all"], predictor.model, has_layers=self_attention)
    uploads = UPLOAD_KINDS.get(modality)  # None: a text run
    decoder = _decoder(predictor, config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        explainer.start()
        logger.info(
            "compute threads: predict %s, explanations %d x %d (%s workers)",
            predict_threads if config.predict_threads else f"auto (at most {predict_threads})",
            config.explain_workers,
            config.explain_threads,
            config.explain_isolation,
        )
        try:
            yield
        finally:
            await batcher.stop()
            explainer.stop()
            executor.shutdown(wait=False, cancel_futures=True)
            if decoder is not None:
                decoder.shutdown()

    # Swagger UI from the fastapi-offline package's files: /docs works without the network. (No ReDoc: its
    # page fetches a logo from a CDN.)
    app = FastAPIOffline(
        docs_url="/docs",
        redoc_url=None,
        static_url=DOCS_ASSETS_URL,
        title="attnkit",
        version=__version__,
        summary=f"Classify {INPUT_NOUNS[modality]} with a trained {predictor.config.model.label} and see what it "
        "attends to.",
        lifespan=lifespan,
        responses={422: {"model": Error}, 503: {"model": Error}},
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    )
    app.state.batcher = batcher
    app.state.explainer = explainer
    app.state.backend = backend
    app.state.config = config
    # Added innermost first: a request meets the Host check, then the rate limit, the key, the body guard.
    app.add_middleware(
        BodyGuard,
        max_bytes=limits.body_bytes(modality),
        multipart_files=None if uploads is None else uploads.files,
    )
    if config.api_key is not None:
        app.add_middleware(ApiKeyGuard, key=config.api_key)
        _document_api_key(app)
    if config.rate_limit is not None:
        app.add_middleware(RateLimitGuard, buckets=TokenBuckets(config.rate_limit, config.rate_burst))
    if config.allowed_hosts is not None:
        app.add_middleware(HostGuard, allowed=config.allowed_hosts)

    # -- errors: always {"error", "detail"} -------------------------------------------------------------------

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, exc.kind, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        kind, detail = validation_detail(list(exc.errors()), modality)
        return error_response(422, kind, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            kind, detail = "invalid_body", "the request body could not be parsed as JSON"
        return error_response(exc.status_code, kind, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return error_response(503, "overloaded", str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(ExplainTimeout)
    async def _explain_timeout(_: Request, exc: ExplainTimeout) -> JSONResponse:
        return error_response(504, "explain_timeout", str(exc))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error", exc_info=exc)
        return error_response(
            500, "internal_error", f"{type(exc).__name__}: the server failed on this request"
        )

    # -- the API ----------------------------------------------------------------------------------------------

    @app.get("/health", summary="liveness, batching and explanation counters")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "backend": backend.name,
            "batching": batcher.stats.to_json_dict(),
            "explain": explainer.stats(),
        }

    @app.get(
        "/model",
        response_model=ModelInfo,
        summary="the served model: labels, limits, methods, metrics (no file paths)",
    )
    async def model_info() -> dict[str, Any]:
        return {
            "model": predictor.config.model.label,
            "name": predictor.config.model.name,
            "backend": backend.name,
            "device": str(predictor.device),
            "labels": list(predictor.labels),
            "temperature": predictor.temperature,
            "modality": modality,
            "max_length": predictor.tokenizer.config.max_length if modality == "text" else None,
            "truncation": predictor.tokenizer.config.truncation if modality == "text" else None,
            "image": image_description(predictor) if modality == "image" else None,
            "audio": audio_description(predictor) if modality == "audio" else None,
            "methods": methods_available,
            "self_attention": self_attention,
            "limits": asdict(limits),
            "batching": {
                "max_batch_size": config.max_batch_size,
                "max_wait_ms": config.max_wait_ms,
                "max_queue": config.max_queue,
            },
            "explain": {
                "isolation": config.explain_isolation,
                "workers": config.explain_workers,
                "max_pending": config.max_pending_explains,
                "timeout_s": config.explain_timeout_s,
            },
            "metrics": metrics_summary(predictor.metrics),
            "version": __version__,
        }

    if uploads is not None and decoder is not None:
        _add_upload_routes(app, predictor, batcher, explainer, decoder, uploads, limits, self_attention)
    else:
        _add_text_routes(app, predictor, batcher, explainer, limits, self_attention)

    # -- the web page -----------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/assets", StaticFiles(directory=VIZ_ASSETS_DIR), name="assets")
    return app


def _add_text_routes(
    app: FastAPI,
    predictor: Any,
    batcher: MicroBatcher[Any, np.ndarray],
    explainer: ExplainPool,
    limits: Limits,
    self_attention: bool,
) -> None:
    """``POST /predict`` and ``POST /explain`` of a text run (JSON ``text`` / ``texts``)."""
    from attnkit.explain import check_methods

    @app.post(
        "/predict",
        response_model=Prediction | Predictions,
        summary="label and class probabilities of one text (`text`) or several (`texts`)",
    )
    async def predict(body: PredictRequest) -> dict[str, Any]:
        texts = check_texts(
            body.all_texts(),
            given_both=body.text is not None and body.texts is not None,
            max_texts=limits.max_texts,
            max_chars=limits.max_chars,
        )
        rows = await batcher.submit(texts)
        predictions = [
            predictor.prediction(text, torch.from_numpy(row)).to_json_dict()
            for text, row in zip(texts, rows, strict=True)
        ]
        return predictions[0] if body.text is not None else {"predictions": predictions}

    @app.post(
        "/explain",
        response_model=dict[str, Any] | Explanations,
        summary="per-token scores of one or more methods (docs/explanation-format.md)",
        responses={504: {"model": Error}},
    )
    async def explain_texts(body: ExplainRequest) -> dict[str, Any]:
        texts = check_texts(
            body.all_texts(),
            given_both=body.text is not None and body.texts is not None,
            max_texts=limits.max_explain_texts,
            max_chars=limits.max_chars,
        )
        if body.method is not None and body.methods is not None:
            raise RequestError(422, "validation_error", "give either 'method' or 'methods', not both")
        try:
            check_methods(body.all_methods())
        except ValueError as err:
            raise RequestError(422, "unknown_method", str(err)) from None
        if body.target is not None and body.target not in predictor.labels:
            raise RequestError(
                422,
                "unknown_target",
                f"unknown target label {body.target!r}; the labels are {', '.join(predictor.labels)}",
            )
        if body.layers and not self_attention:
            raise RequestError(
                422,
                "no_layers",
                f"layer attention maps need a model with self-attention; this model is "
                f"{predictor.config.model.label}",
            )
        names = check_methods(body.all_methods(), predictor.model, has_layers=self_attention)
        try:
            items = await explainer.run(texts, names, target=body.target, layers=body.layers)
        except ValueError as err:  # a named method this model cannot compute
            raise RequestError(422, "unsupported_method", str(err)) from None
        return items[0] if body.text is not None else {"explanations": items}


def _document_api_key(app: FastAPI) -> None:
    """Declare the API key in the OpenAPI schema, so that Swagger UI offers "Authorize" and sends it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path, operations in schema.get("paths", {}).items():
            if not is_open_path(path):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _has_self_attention(predictor: Any) -> bool:
    from attnkit.explain.methods import has_self_attention

    if predictor.modality != "text":
        return bool(predictor.model.has_layer_attentions())
    _, input_ids, mask = predictor.encode(["a b"])
    return bool(has_self_attention(predictor.model, input_ids, mask))


def image_description(predictor: Any) -> dict[str, Any]:
    """An image run's input size and mode, normalization and unit grid (see :func:`attnkit.export.image_description`)."""
    from attnkit.export import image_description as describe

    return describe(predictor)


def audio_description(predictor: Any) -> dict[str, Any]:
    """An audio run's sample rate, longest recording, features and units (see
    :func:`attnkit.export.audio_description`)."""
    from attnkit.export import audio_description as describe

    return describe(predictor)


# -- image and audio runs: files in, one route pair for both --------------------------------------------------

#: How the requests of each file modality name their files.
UPLOAD_KINDS: dict[str, UploadKind] = {"image": IMAGE_UPLOADS, "audio": AUDIO_UPLOADS}


def _decoder(predictor: Any, config: ServeConfig) -> UploadDecoder[np.ndarray] | None:
    """The run's upload decoder (``None`` for a text run)."""
    limits = config.limits
    if predictor.modality == "image":
        prep = predictor.task.preparation
        return ImageDecoder(
            tuple(prep.size),
            prep.mode,
            max_pixels=limits.max_image_pixels,
            max_bytes=limits.max_image_body_bytes,
            workers=config.decode_workers,
        )
    if predictor.modality == "audio":
        prep = predictor.task.preparation
        return AudioDecoder(
            prep.sample_rate,
            prep.max_seconds,
            max_bytes=limits.max_audio_body_bytes,
            max_channels=limits.max_audio_channels,
            workers=config.decode_workers,
        )
    return None


@dataclass(frozen=True)
class _FileRoutes:
    """What differs between the image and the audio endpoints."""

    predict_body: type[ImagePredictRequest] | type[AudioPredictRequest]
    explain_body: type[ImageExplainRequest] | type[AudioExplainRequest]
    max_predict: int
    max_explain: int
    explain_summary: str


def _file_routes(kind: UploadKind, limits: Limits) -> _FileRoutes:
    if kind.modality == "image":
        return _FileRoutes(
            ImagePredictRequest,
            ImageExplainRequest,
            limits.max_images,
            limits.max_explain_images,
            "per-unit scores (pixel boxes) of one or more methods (docs/explanation-format.md)",
        )
    return _FileRoutes(
        AudioPredictRequest,
        AudioExplainRequest,
        limits.max_audios,
        limits.max_explain_audios,
        "per-unit scores (frames, with start and end seconds) of one or more methods and the log-mel "
        "spectrogram (docs/explanation-format.md)",
    )


def _add_upload_routes(
    app: FastAPI,
    predictor: Any,
    batcher: MicroBatcher[Any, np.ndarray],
    explainer: ExplainPool,
    decoder: UploadDecoder[np.ndarray],
    kind: UploadKind,
    limits: Limits,
    self_attention: bool,
) -> None:
    """``POST /predict`` and ``POST /explain`` of an image or audio run (multipart ``file`` or base64 JSON)."""
    from attnkit.explain import check_methods

    routes = _file_routes(kind, limits)

    @app.post(
        "/predict",
        response_model=Prediction | Predictions,
        summary=f"label and class probabilities of one {kind.noun} or several (multipart `file`, or base64 JSON)",
        openapi_extra=upload_request_body(routes.predict_body, kind),
    )
    async def predict_files(request: Request) -> dict[str, Any]:
        parsed = await read_upload_request(
            request, routes.predict_body, kind=kind, max_uploads=routes.max_predict
        )
        uploads = check_count(parsed.uploads, limit=routes.max_predict, kind=kind)
        decoded = await decoder.decode(uploads)
        rows = await batcher.submit(decoded)
        predictions = [
            predictor.prediction(upload.where, torch.from_numpy(row)).to_json_dict()
            for upload, row in zip(uploads, rows, strict=True)
        ]
        return predictions[0] if parsed.single else {"predictions": predictions}

    @app.post(
        "/explain",
        response_model=dict[str, Any] | Explanations,
        summary=routes.explain_summary,
        responses={504: {"model": Error}},
        openapi_extra=upload_request_body(routes.explain_body, kind),
    )
    async def explain_files(request: Request) -> dict[str, Any]:
        parsed = await read_upload_request(
            request, routes.explain_body, kind=kind, max_uploads=routes.max_explain
        )
        methods = parsed.methods or ["attention"]
        try:
            check_methods(methods)
        except ValueError as err:
            raise RequestError(422, "unknown_method", str(err)) from None
        if parsed.target is not None and parsed.target not in predictor.labels:
            raise RequestError(
                422,
                "unknown_target",
                f"unknown target label {parsed.target!r}; the labels are {', '.join(predictor.labels)}",
            )
        names = check_methods(methods, predictor.model, has_layers=self_attention)
        uploads = check_count(parsed.uploads, limit=routes.max_explain, kind=kind)
        decoded = await decoder.decode(uploads)
        try:
            items = await explainer.run(decoded, names, target=parsed.target, layers=False)
        except ValueError as err:  # a named method this model cannot compute
            raise RequestError(422, "unsupported_method", str(err)) from None
        for item, upload in zip(items, uploads, strict=True):
            item["source"] = upload.filename
        return items[0] if parsed.single else {"explanations": items}


def check_exposure(config: ServeConfig, host: str) -> ServeConfig:
    """``config`` for serving on ``host``: refuses an unauthenticated bind beyond loopback, and fills in the
    allowed ``Host`` names from the bind address when none are given (calling it twice changes nothing).

    Raises:
        ValueError: ``host`` is reachable from other machines, there is no API key and
            ``allow_unauthenticated`` is not set.
    """
    if not is_loopback(host) and config.api_key is None and not config.allow_unauthenticated:
        raise ValueError(
            f"--host {host} makes the server reachable from other machines and it has no API key: give one "
            f"with --api-key-file FILE (or $ATTNKIT_API_KEY), or pass --allow-unauthenticated to serve anyone "
            f"who can reach it"
        )
    if config.allowed_hosts is None:
        config = replace(config, allowed_hosts=default_allowed_hosts(host))
    return config


def check_port_free(host: str, port: int) -> None:
    """Raise ``ValueError`` (one line) when nothing can listen on ``host:port``: another server holds the port,
    the port needs privileges, or ``host`` is not an address of this machine. Every address ``host`` resolves to
    is tried, as uvicorn binds them all; a family the kernel lacks (IPv6) is skipped, as asyncio skips it.
    Checked before the model loads, so the answer is immediate (uvicorn would fail only after the load)."""
    if port == 0:  # the system picks a free port
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ValueError(
            f"--host {host}: not an address this machine can listen on ({e.strerror or e})"
        ) from None
    for family, kind, protocol, _, address in infos:
        try:
            probe = socket.socket(family, kind, protocol)
        except OSError:  # e.g. no IPv6 in this kernel
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    hint = "another server holds the port: stop it, or pick another with --port"
                elif e.errno == errno.EACCES:
                    hint = "ports below 1024 need privileges: pick another with --port"
                else:
                    hint = "check --host and --port"
                raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e}); {hint}") from None


def _log_exposure(config: ServeConfig, host: str) -> None:
    if is_loopback(host):
        return
    logger.warning(
        "listening on %s: reachable from other machines (API key: %s; rate limit: %s; Host check: %s)",
        host,
        "required" if config.api_key else "NONE",
        f"{config.rate_limit:g}/s per client" if config.rate_limit else "none (--rate-limit)",
        ", ".join(config.allowed_hosts) if config.allowed_hosts else "none (--allowed-host)",
    )


def server_config(
    app: ASGIApp, config: ServeConfig, *, host: str, port: int, log_level: str = "info"
) -> uvicorn.Config:
    """The uvicorn configuration serving ``app`` with ``config.connections`` enforced.

    uvicorn's own ``timeout_keep_alive`` and ``backlog`` are used; the head and body timeouts, the head size
    limit and the connection cap come from :class:`~attnkit.serve.protocol.GuardedHttpToolsProtocol`
    (``max_connections`` is fitted to the file-descriptor limit).
    """
    import uvicorn

    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    connections = fit_to_descriptor_limit(config.connections)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=guarded_protocol(connections),
        ws="none",
        timeout_keep_alive=connections.keep_alive_timeout_s,  # type: ignore[arg-type]  # float s work
        backlog=connections.backlog,
    )


def run_server(
    backend: Backend,
    config: ServeConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> None:
    """Serve ``backend`` with uvicorn until interrupted (binds to loopback unless ``host`` says otherwise).

    Beyond loopback an API key is required unless ``config.allow_unauthenticated`` (see :func:`check_exposure`).

    Before serving, everything loaded so far (torch, the model, the app) is moved out of the garbage
    collector's reach with :func:`gc.freeze`: otherwise full collections walk those objects again and again and
    stall every request for up to ~200 ms (measured: the p99 latency of the load test).
    """
    import uvicorn

    config = check_exposure(config or ServeConfig(), host)
    _log_exposure(config, host)
    app = create_app(backend, config)
    server = uvicorn.Server(server_config(app, config, host=host, port=port, log_level=log_level))
    gc.collect()
    gc.freeze()
    server.run()
