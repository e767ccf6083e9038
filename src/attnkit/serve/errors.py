"""The server's refusals: :class:`RequestError` and the one JSON shape of every error response."""

from __future__ import annotations

from fastapi.responses import JSONResponse


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
    """``{"error": kind, "detail": detail}`` with ``status``."""
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)
