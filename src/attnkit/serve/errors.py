"""The server's refusals: :class:`RequestError`, the one JSON shape of every error response, and the one-line
messages for request bodies the schema rejects."""

from __future__ import annotations

from typing import Any

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


#: What the body of a request looks like, by modality (for messages).
BODY_EXAMPLES = {
    "text": '{"text": "..."} or {"texts": ["...", "..."]}',
    "image": '{"image": "<base64>"} or {"images": ["<base64>", ...]} (or a multipart upload, field "file")',
    "audio": '{"audio": "<base64>"} or {"audios": ["<base64>", ...]} (or a multipart upload, field "file")',
}
#: What a run of each modality classifies, in messages ("this run classifies recordings").
INPUT_NOUNS = {"text": "texts", "image": "images", "audio": "recordings"}
#: The JSON keys of each modality's requests: sent to a run of another modality, they get a plain hint.
_MODALITY_KEYS = {"text": ("text", "texts"), "image": ("image", "images"), "audio": ("audio", "audios")}


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def validation_detail(errors: list[dict[str, Any]], modality: str = "text") -> tuple[str, str]:
    """``(kind, one-line detail)`` for Pydantic's errors on the body of a request to a run of ``modality``."""
    if any(e.get("type") == "json_invalid" for e in errors):
        message = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return "invalid_json", f"the request body is not valid JSON ({message})".replace(" ()", "")
    other_keys = {key for other, keys in _MODALITY_KEYS.items() if other != modality for key in keys}
    lines = []
    for e in errors[:10]:
        where = _location(tuple(e.get("loc", ())))
        if where == "body" and e.get("type") in ("model_attributes_type", "dict_type", "model_type"):
            lines.append(f"the body must be a JSON object such as {BODY_EXAMPLES[modality]}")
        elif e.get("type") == "extra_forbidden" and where in other_keys:
            lines.append(
                f"{where}: this run classifies {INPUT_NOUNS[modality]}; send {BODY_EXAMPLES[modality]}"
            )
        else:
            lines.append(f"{where}: {e.get('msg', 'invalid')}")
    return "validation_error", "; ".join(lines)
