"""Request and response bodies of the server (Pydantic), and the limits requests are checked against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr


@dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    Attributes:
        max_texts: texts per request.
        max_chars: characters per text.
        max_body_bytes: request body size, checked before the body is parsed.
        max_explain_texts: texts per ``/explain`` request (explanations cost up to ~100 forward passes each).
    """

    max_texts: int = 64
    max_chars: int = 20_000
    max_body_bytes: int = 1_000_000
    max_explain_texts: int = 8

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_chars", "max_body_bytes", "max_explain_texts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class _Body(BaseModel):
    """One text (``text``) or several (``texts``): exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr | None = Field(default=None, description="one text; the response is one object")
    texts: list[StrictStr] | None = Field(default=None, description="several texts; the response has a list")

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class PredictRequest(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "a wonderful film"}, {"texts": ["a wonderful film", "dull"]}]
        },
    )


class ExplainRequest(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "a wonderful film", "methods": ["attention", "grad-input"]},
                {"texts": ["a wonderful film"], "method": "ig", "target": "negative"},
            ]
        },
    )

    method: StrictStr | None = Field(default=None, description="one method (default: attention)")
    methods: list[StrictStr] | None = Field(default=None, description="several methods, or ['all']")
    target: StrictStr | None = Field(
        default=None, description="label to explain (default: the predicted one)"
    )
    layers: StrictBool = Field(default=False, description="per-layer, per-head attention maps (transformer)")

    def all_methods(self) -> list[str]:
        if self.method is not None:
            return [self.method]
        return list(self.methods) if self.methods is not None else ["attention"]


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class Predictions(BaseModel):
    predictions: list[Prediction]


class Explanations(BaseModel):
    explanations: list[dict[str, Any]]


class Error(BaseModel):
    error: str = Field(description="a short machine-readable kind, e.g. validation_error")
    detail: str = Field(description="what is wrong, for a person")
