"""The HTTP server: a thin adapter from JSON requests to a backend's predictions and :func:`attnkit.explain`.

Endpoints: ``POST /predict``, ``POST /explain``, ``GET /health``, ``GET /model``, the OpenAPI docs at
``/docs`` and ``/openapi.json``, and the web page at ``/`` (static files shipped in the package).

Every error is JSON ``{"error": kind, "detail": message}``: bad input is a 4xx (413 for a body over the limit,
400 for a body that is not UTF-8, 422 for anything the schema or the limits reject), a full queue is 503.
Model calls run on one worker thread: ``/predict`` through the :class:`MicroBatcher`, ``/explain`` one request
at a time, so the event loop keeps answering while the model works.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attnkit import __version__
from attnkit.serve.backends import Backend
from attnkit.serve.batching import MicroBatcher, Overloaded
from attnkit.serve.schemas import (
    Error,
    ExplainRequest,
    Explanations,
    Limits,
    Prediction,
    Predictions,
    PredictRequest,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(str(resources.files("attnkit.serve") / "static"))
#: The shared explanation renderer (attnkit-viz.js / .css), served at /assets.
VIZ_ASSETS_DIR = Path(str(resources.files("attnkit.explain") / "assets"))


@dataclass(frozen=True)
class ServeConfig:
    """How the server batches and what it accepts.

    Attributes:
        max_batch_size: most texts per model call of ``/predict``.
        max_wait_ms: how long a request waits for others to share its batch.
        max_queue: most texts waiting for the model; more get 503.
        max_pending_explains: most ``/explain`` requests running or waiting; more get 503.
        limits: per-request limits (texts, characters, body bytes).
    """

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    max_pending_explains: int = 4
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.max_pending_explains < 1:
            raise ValueError(f"max_pending_explains must be >= 1, got {self.max_pending_explains}")

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestError(Exception):
    """A request the server refuses: answered with ``status`` and ``{"error": kind, "detail": detail}``."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail


def error_response(
    status: int, kind: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


class BodyGuard:
    """ASGI middleware: refuse request bodies that are not JSON (415), over ``max_bytes`` (413) or not UTF-8
    (400), before anything parses them.

    The ``Content-Length`` header is checked first, so an announced oversized body is refused without being
    read; a chunked body is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_big = error_response(
            413, "body_too_large", f"the request body is over the limit of {self.max_bytes} bytes"
        )
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if content_type != b"application/json" and not content_type.endswith(b"+json"):
            detail = f"the body must be JSON sent with Content-Type: application/json, got {content_type.decode('latin-1')!r}"
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


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def _validation_detail(errors: list[dict[str, Any]]) -> tuple[str, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        message = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return "invalid_json", f"the request body is not valid JSON ({message})".replace(" ()", "")
    lines = []
    for e in errors[:10]:
        where = _location(tuple(e.get("loc", ())))
        if where == "body" and e.get("type") in ("model_attributes_type", "dict_type"):
            lines.append(
                'the body must be a JSON object such as {"text": "..."} or {"texts": ["...", "..."]}'
            )
        else:
            lines.append(f"{where}: {e.get('msg', 'invalid')}")
    return "validation_error", "; ".join(lines)


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


def create_app(backend: Backend, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``backend``'s run.

    Args:
        backend: a loaded :class:`~attnkit.serve.backends.Backend` (its predictor also serves ``/explain``).
        config: batching and limits.
    """
    config = config or ServeConfig()
    limits = config.limits
    predictor = backend.predictor
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attnkit-model")

    def predict_batch(texts: list[str]) -> list[np.ndarray]:
        return list(backend.predict_proba(texts))  # (C,) per text

    batcher: MicroBatcher[str, np.ndarray] = MicroBatcher(
        predict_batch,
        executor,
        max_batch_size=config.max_batch_size,
        max_wait_ms=config.max_wait_ms,
        max_queue=config.max_queue,
    )
    explain_slots = {"in_use": 0}
    self_attention = _has_self_attention(predictor)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="attnkit",
        version=__version__,
        summary=f"Classify texts with a trained {predictor.config.model.label} and see what it attends to.",
        lifespan=lifespan,
        responses={422: {"model": Error}, 503: {"model": Error}},
    )
    app.state.batcher = batcher
    app.state.backend = backend
    app.state.config = config
    app.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes)

    # -- errors: always {"error", "detail"} -------------------------------------------------------------------

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, exc.kind, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        kind, detail = _validation_detail(list(exc.errors()))
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

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error", exc_info=exc)
        return error_response(
            500, "internal_error", f"{type(exc).__name__}: the server failed on this request"
        )

    # -- the API ----------------------------------------------------------------------------------------------

    @app.get("/health", summary="liveness and batching counters")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "backend": backend.name, "batching": batcher.stats.to_json_dict()}

    @app.get("/model", summary="the served run: model, config, labels, metrics, limits")
    async def model_info() -> dict[str, Any]:
        from attnkit.explain import METHODS

        metrics = {k: v for k, v in predictor.metrics.items() if k != "history"}
        return {
            "model": predictor.config.model.label,
            "backend": backend.name,
            "labels": predictor.labels,
            "config": predictor.config.to_dict(),
            "metrics": metrics,
            "methods": list(METHODS),
            "self_attention": self_attention,
            "limits": asdict(limits),
            "batching": {
                "max_batch_size": config.max_batch_size,
                "max_wait_ms": config.max_wait_ms,
                "max_queue": config.max_queue,
            },
            "version": __version__,
        }

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
    )
    async def explain_texts(body: ExplainRequest) -> dict[str, Any]:
        from attnkit.explain import check_methods, explain

        texts = check_texts(
            body.all_texts(),
            given_both=body.text is not None and body.texts is not None,
            max_texts=limits.max_explain_texts,
            max_chars=limits.max_chars,
        )
        if body.method is not None and body.methods is not None:
            raise RequestError(422, "validation_error", "give either 'method' or 'methods', not both")
        try:
            methods = check_methods(body.all_methods())
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
        if explain_slots["in_use"] >= config.max_pending_explains:
            raise Overloaded(f"{explain_slots['in_use']} explanations are already running or waiting")
        explain_slots["in_use"] += 1
        try:
            loop = asyncio.get_running_loop()
            explanations = await loop.run_in_executor(
                executor, lambda: explain(predictor, texts, methods, target=body.target, layers=body.layers)
            )
        finally:
            explain_slots["in_use"] -= 1
        items = [e.to_json_dict() for e in explanations]
        return items[0] if body.text is not None else {"explanations": items}

    # -- the web page -----------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/assets", StaticFiles(directory=VIZ_ASSETS_DIR), name="assets")
    return app


def _has_self_attention(predictor: Any) -> bool:
    from attnkit.explain.methods import has_self_attention

    _, input_ids, mask = predictor.encode(["a b"])
    return bool(has_self_attention(predictor.model, input_ids, mask))


def run_server(
    backend: Backend,
    config: ServeConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> None:
    """Serve ``backend`` with uvicorn until interrupted (binds to loopback unless ``host`` says otherwise).

    Before serving, everything loaded so far (torch, the model, the app) is moved out of the garbage
    collector's reach with :func:`gc.freeze`: otherwise full collections walk those objects again and again and
    stall every request for up to ~200 ms (measured: the p99 latency of the load test).
    """
    import uvicorn

    app = create_app(backend, config)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
