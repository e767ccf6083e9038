"""Connection limits the HTTP server enforces below the app: request-head and body timeouts, a head size limit
and a cap on open connections, so that slow or idle clients cannot hold the server's sockets.

uvicorn (0.54, httptools parser) has a keep-alive timeout (the idle time *after* a response) and a backlog, but no
timeout for receiving a request head or body: a connection that sends nothing, or one header byte per second,
stays open for ever, and enough of them exhaust the file descriptors. Its ``limit_concurrency`` does not help: it
counts those slow connections and then answers 503 to the *complete* requests of everyone else. (h11's
``h11_max_incomplete_event_size`` does not apply to the httptools parser uvicorn picks.) So
:class:`GuardedHttpToolsProtocol`, a subclass of uvicorn's httptools protocol, adds:

- ``header_timeout_s``: a connection must deliver a complete request head within this time of opening (or of the
  first byte of a later request on a kept-alive connection); else 408 and close.
- ``body_timeout_s``: the body must arrive completely within this time of the head; else 408 and close.
- ``max_header_bytes``: a head still incomplete after this many bytes gets 431 and is closed.
- ``max_connections``: open connections. At the cap, a new connection closes the connection that has waited
  longest for a request head (idle keep-alive or slow), or else the one that has waited longest for the rest of
  a body; only when every connection has a complete request in progress is the new one refused (503). A
  slowloris client therefore cannot lock out others: new clients push its connections out, and complete
  requests in progress are never cut.

Connections in the middle of a request (head received, response pending) have no timer here: the app bounds
its own work (queue limits, the explanation time limit).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

#: File descriptors kept free beside the connections (model files, logs, the explanation pool, the listener).
RESERVED_FDS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """Timeouts and caps of the HTTP connections (see the module docstring).

    Attributes:
        header_timeout_s: seconds to receive a complete request head.
        body_timeout_s: seconds to receive the body after the head.
        keep_alive_timeout_s: seconds an idle kept-alive connection stays open after a response (uvicorn's).
        max_connections: open connections at once.
        max_header_bytes: size of a request head (request line and headers).
        backlog: connections the kernel queues before they are accepted (uvicorn's).
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 5.0
    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024
    backlog: int = 2048

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise ValueError(f"{name} must be in (0, 3600] seconds, got {value}")
        for name in ("max_connections", "max_header_bytes", "backlog"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def _raw_json_response(status: int, phrase: str, kind: str, detail: str) -> bytes:
    body = json.dumps({"error": kind, "detail": detail}).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head and body timeouts, a head size limit and a connection cap.

    Use :func:`guarded_protocol` to get a subclass bound to a :class:`ConnectionLimits`.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._reading_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._idle_since = self.loop.time()

    # -- the connection -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            logger.warning("refused a connection: %d connections are all busy", len(self.connections) - 1)
            transport.write(
                _raw_json_response(
                    503,
                    "Service Unavailable",
                    "too_many_connections",
                    "the server is at its connection limit",
                )
            )
            transport.close()
            return
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _eviction_rank(self) -> tuple[int, float] | None:
        """How readily this connection may be closed to make room: ``(0, since)`` idle or reading a request
        head, ``(1, since)`` still receiving a body; ``None`` with a complete request in progress."""
        if self._reading_head:
            busy = self.cycle is not None and not self.cycle.response_complete
            return None if busy or self.pipeline else (0, self._idle_since)
        if self.cycle is not None and not self.cycle.response_started and self.cycle.more_body:
            return (1, self._idle_since)
        return None

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request head (or else for a body); False if
        every connection has a complete request in progress."""
        open_ones = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        if len(open_ones) < self.limits.max_connections:
            return True  # the extra ones are already closing
        ranked = [
            (rank, c)
            for c in open_ones
            if isinstance(c, GuardedHttpToolsProtocol) and (rank := c._eviction_rank()) is not None
        ]
        if not ranked:
            return False
        _, oldest = min(ranked, key=lambda pair: pair[0])
        oldest._evict()
        return True

    def _evict(self) -> None:
        if self._reading_head or self.cycle is None:
            self.transport.close()
        else:  # a body was still coming: tell the app, then close
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self.transport.close()

    # -- timers ---------------------------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close_with(self, status: int, phrase: str, kind: str, detail: str) -> None:
        """Answer ``status`` (unless a response to the current request has started) and close."""
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = None if self._reading_head else self.cycle  # the request whose body is awaited
        if cycle is not None:
            if cycle.response_started:  # answered already (e.g. 413 before the body came): just close
                self.transport.close()
                return
            # The app may be waiting on the body: it now reads a disconnect and must not answer.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(_raw_json_response(status, phrase, kind, detail))
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._head_bytes == 0:
            self.transport.close()  # sent nothing: nothing to answer
            return
        detail = f"the request head did not arrive within {self.limits.header_timeout_s:g} s"
        self._close_with(408, "Request Timeout", "header_timeout", detail)

    def _body_timed_out(self) -> None:
        self._timer = None
        detail = f"the request body did not arrive within {self.limits.body_timeout_s:g} s"
        self._close_with(408, "Request Timeout", "body_timeout", detail)

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser refuses (``Content-Length: abc``, a broken request line) gets the JSON error
        body every other error has; uvicorn's own answer is plain text."""
        detail = "the request is not valid HTTP/1.1 (its request line or a header could not be parsed)"
        self._close_with(400, "Bad Request", "invalid_http", detail)

    # -- parsing --------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            if self._timer is None:  # the first byte of a later request on a kept-alive connection
                self._idle_since = self.loop.time()
                self._arm(self.limits.header_timeout_s, self._head_timed_out)
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.limits.max_header_bytes:
            detail = f"the request head is over {self.limits.max_header_bytes} bytes"
            self._close_with(431, "Request Header Fields Too Large", "header_too_large", detail)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._idle_since = self.loop.time()
        self._arm(self.limits.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._reading_head = True
        self._idle_since = self.loop.time()
        super().on_message_complete()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A :class:`GuardedHttpToolsProtocol` subclass enforcing ``limits`` (pass it as uvicorn's ``http``)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def fit_to_descriptor_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """``limits`` with ``max_connections`` within the process's file-descriptor limit.

    Raises the soft limit (``ulimit -n``) up to the hard one if that is what the connections need; if even the
    hard limit is too low, lowers ``max_connections`` to fit and logs a warning.
    """
    from dataclasses import replace

    try:
        import resource
    except ImportError:  # not on this platform (Windows): nothing to check
        return limits
    need = limits.max_connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(1, soft - RESERVED_FDS)
        logger.warning(
            "max_connections lowered from %d to %d to fit the file-descriptor limit %d (ulimit -n)",
            limits.max_connections,
            fitted,
            soft,
        )
        return replace(limits, max_connections=fitted)
    return limits
