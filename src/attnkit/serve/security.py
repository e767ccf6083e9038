"""Who may use the server: a Host-header check (against DNS rebinding), an optional API key, a per-client rate
limit. Each is an ASGI middleware answering the project's JSON errors.

- :class:`HostGuard`: a web page on another site can make a browser send requests to ``127.0.0.1`` under its own
  domain name (DNS rebinding); the ``Host`` header still names that domain, so requests whose ``Host`` is not an
  allowed name are refused (400). :func:`default_allowed_hosts` gives the loopback names for a loopback bind.
- :class:`ApiKeyGuard`: every path except the open ones (``/health``, the web page, its assets and the API docs)
  needs ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; compared in constant time; else 401.
- :class:`RateLimitGuard`: a token bucket per client address (IPv6 grouped by /64), ``rate`` requests per second
  with bursts of ``burst``; an empty bucket is 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: The names a browser uses for this machine; allowed by default when bound to loopback.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Environment variable holding the API key (the alternative to ``--api-key-file``).
API_KEY_ENV = "ATTNKIT_API_KEY"
MIN_KEY_LENGTH = 16
#: Paths served without the API key: liveness, the web page and its assets, the API docs.
OPEN_PATHS = ("/health", "/", "/openapi.json", "/docs", "/docs/oauth2-redirect")
OPEN_PREFIXES = ("/static/", "/assets/", "/docs-assets/")


def _error(status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """Whether ``host`` binds every interface (``0.0.0.0``, ``::`` or empty)."""
    try:
        return host in ("", "*") or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> tuple[str, ...] | None:
    """The ``Host`` names accepted when bound to ``bind_host``: the loopback names and the bind address itself;
    ``None`` (no check) for a wildcard bind, where the names clients use cannot be known (give them with
    ``--allowed-host``)."""
    if is_wildcard(bind_host):
        return None
    names = list(LOOPBACK_NAMES)
    host = bind_host.strip("[]").lower()
    if host not in names:
        names.append(host)
    return tuple(names)


def host_name(header: str) -> str:
    """The name in a ``Host`` header, lower-cased, without its port: ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


class HostGuard:
    """Refuse requests whose ``Host`` is not in ``allowed`` (400 ``bad_host``); ``*`` allows any."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(h) for h in allowed)
        self.any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if host_name(header) not in self.allowed:
            shown = header[:100] or "(none)"
            detail = (
                f"Host {shown!r} is not served here; allowed: {', '.join(sorted(self.allowed))} "
                f"(add names with --allowed-host)"
            )
            await _error(400, "bad_host", detail)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def read_api_key(path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> str | None:
    """The API key from the file ``path`` (its first line), else from ``$ATTNKIT_API_KEY``, else ``None``.

    Raises:
        ValueError: the file is missing, empty, or the key is shorter than 16 characters.
    """
    env = os.environ if environ is None else environ
    if path is not None:
        file = Path(path)
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ValueError(f"cannot read the API key file {file}: {err.strerror or err}") from None
        key = lines[0].strip() if lines else ""
        where = str(file)
    else:
        key = env.get(API_KEY_ENV, "").strip()
        where = f"${API_KEY_ENV}"
        if not key:
            return None
    if not key:
        raise ValueError(f"the API key file {where} is empty")
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"the API key in {where} has {len(key)} characters; use at least {MIN_KEY_LENGTH} "
            f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return key


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class ApiKeyGuard:
    """Require the API key on every path but the open ones; 401 ``unauthorized`` otherwise.

    The key and the presented value are hashed before a constant-time comparison, so neither the content nor
    the length of the key shows in the response time.
    """

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.digest = _digest(key.encode("utf-8"))

    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        presented = headers.get(b"x-api-key")
        if presented is None:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer":
                return False
            presented = token.strip()
        return hmac.compare_digest(_digest(presented), self.digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not self.authorized(dict(scope["headers"])):
            detail = "this server needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            headers = {"WWW-Authenticate": 'Bearer realm="attnkit"'}
            await _error(401, "unauthorized", detail, headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def is_open_path(path: str) -> bool:
    """Whether ``path`` is served without the API key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def client_key(address: str) -> str:
    """The rate-limit bucket of a client address: the address, or its /64 network for IPv6 (one host usually
    holds a whole /64, so per-address buckets would be free to multiply)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class TokenBuckets:
    """One token bucket per client: ``rate`` tokens per second, at most ``burst`` stored.

    At most ``max_clients`` buckets are kept; the least recently seen client is forgotten first (it comes back
    with a full bucket, which only errs on the side of serving it).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate_limit must be a positive number of requests per second, got {rate}")
        if burst < 1:
            raise ValueError(f"rate_burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last time)

    def take(self, key: str) -> float:
        """Take one token for ``key``; returns 0 if it was there, else the seconds until one will be."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


class RateLimitGuard:
    """Answer 429 ``rate_limited`` (with ``Retry-After`` in whole seconds) to a client over its rate.

    ``/health`` is not counted, so monitoring never uses a client's budget.
    """

    def __init__(self, app: ASGIApp, buckets: TokenBuckets) -> None:
        self.app = app
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(client_key(client[0]) if client else "unknown")
        if wait > 0:
            retry = max(1, math.ceil(wait))
            detail = (
                f"over the rate limit of {self.buckets.rate:g} requests/s (bursts of {self.buckets.burst}); "
                f"retry in {retry} s"
            )
            await _error(429, "rate_limited", detail, {"Retry-After": str(retry)})(scope, receive, send)
            return
        await self.app(scope, receive, send)
