"""Request and response bodies of the server (Pydantic), and the limits requests are checked against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from attnkit.data.labels import label_name


def _target_label(value: Any) -> Any:
    """A JSON number names the class it names in data (``1`` and ``1.0`` are ``"1"``); strings pass as they are,
    and anything else (a boolean, a list) is left for the strict string check to refuse."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:  # NaN: refused
        return label_name(value)
    return value


@dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    Attributes:
        max_texts: texts per request.
        max_chars: characters per text.
        max_body_bytes: request body size of a text run, checked before the body is parsed.
        max_explain_texts: texts per ``/explain`` request (explanations cost up to ~100 forward passes each).
        max_images: images per ``/predict`` request of an image run.
        max_explain_images: images per ``/explain`` request of an image run.
        max_image_body_bytes: request body size of an image run (every upload, or the base64 JSON, together),
            checked before the body is parsed; also the most bytes one image file may have.
        max_image_pixels: most pixels (width x height) an uploaded image may declare; larger ones are refused
            from their header, before decoding (decompression bombs).
        max_audios: recordings per ``/predict`` request of an audio run.
        max_explain_audios: recordings per ``/explain`` request of an audio run.
        max_audio_body_bytes: request body size of an audio run (every upload, or the base64 JSON, together),
            checked before the body is parsed; also the most bytes one audio file may have.
        max_audio_channels: most channels an uploaded recording may have (it is mixed down to mono); more are
            refused from the header, before decoding. The longest recording is the run's ``audio.max_seconds``.
    """

    max_texts: int = 64
    max_chars: int = 20_000
    max_body_bytes: int = 1_000_000
    max_explain_texts: int = 8
    max_images: int = 16
    max_explain_images: int = 2
    max_image_body_bytes: int = 20_000_000
    max_image_pixels: int = 40_000_000
    max_audios: int = 16
    max_explain_audios: int = 2
    max_audio_body_bytes: int = 20_000_000
    max_audio_channels: int = 32

    def __post_init__(self) -> None:
        for name in (
            "max_texts",
            "max_chars",
            "max_body_bytes",
            "max_explain_texts",
            "max_images",
            "max_explain_images",
            "max_image_body_bytes",
            "max_image_pixels",
            "max_audios",
            "max_explain_audios",
            "max_audio_body_bytes",
            "max_audio_channels",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def body_bytes(self, modality: str) -> int:
        """The request body limit of a run of ``modality``."""
        if modality == "image":
            return self.max_image_body_bytes
        if modality == "audio":
            return self.max_audio_body_bytes
        return self.max_body_bytes


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
        default=None, description="label to explain (default: the predicted one; a number names its class)"
    )
    _number_target = field_validator("target", mode="before")(_target_label)
    layers: StrictBool = Field(default=False, description="per-layer, per-head attention maps (transformer)")

    def all_methods(self) -> list[str]:
        if self.method is not None:
            return [self.method]
        return list(self.methods) if self.methods is not None else ["attention"]


class ExplainOptions(BaseModel):
    """The options of ``/explain`` for runs whose inputs are files (images, recordings)."""

    model_config = ConfigDict(extra="forbid")

    method: StrictStr | None = Field(default=None, description="one method (default: attention)")
    methods: list[StrictStr] | None = Field(default=None, description="several methods, or ['all']")
    target: StrictStr | None = Field(
        default=None, description="label to explain (default: the predicted one; a number names its class)"
    )
    _number_target = field_validator("target", mode="before")(_target_label)

    def all_methods(self) -> list[str]:
        if self.method is not None:
            return [self.method]
        return list(self.methods) if self.methods is not None else ["attention"]


class _ImageBody(BaseModel):
    """One image (``image``) or several (``images``), base64-encoded: exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    image: StrictStr | None = Field(
        default=None,
        description="one image file (PNG, JPEG, BMP, GIF, WebP) in base64, or a data: URL; one object back",
    )
    images: list[StrictStr] | None = Field(
        default=None, description="several images in base64 (or data: URLs); the response has a list"
    )

    def all_images(self) -> list[str]:
        return [self.image] if self.image is not None else list(self.images or [])


class ImagePredictRequest(_ImageBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"image": "iVBORw0KGgo..."}, {"images": ["iVBORw0KGgo...", "/9j/4AAQ..."]}]
        },
    )


class ImageExplainRequest(_ImageBody, ExplainOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"image": "iVBORw0KGgo...", "methods": ["attention", "ig"]},
                {"images": ["iVBORw0KGgo..."], "method": "attention", "target": "cat"},
            ]
        },
    )


class _AudioBody(BaseModel):
    """One recording (``audio``) or several (``audios``), base64-encoded: exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    audio: StrictStr | None = Field(
        default=None,
        description="one audio file (WAV, FLAC, OGG) in base64, or a data: URL; one object back",
    )
    audios: list[StrictStr] | None = Field(
        default=None, description="several audio files in base64 (or data: URLs); the response has a list"
    )


class AudioPredictRequest(_AudioBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"audio": "UklGRiQAAABXQVZF..."}, {"audios": ["UklGRi...", "ZkxhQw..."]}]
        },
    )


class AudioExplainRequest(_AudioBody, ExplainOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"audio": "UklGRiQAAABXQVZF...", "methods": ["attention", "ig"]},
                {"audios": ["UklGRi..."], "method": "loo", "target": "seven"},
            ]
        },
    )


def multipart_schema(files: str) -> dict[str, Any]:
    """The multipart form of ``/predict`` and ``/explain`` of a run taking ``files`` (``image files``), for the
    OpenAPI schema."""
    return {
        "type": "object",
        "properties": {
            "file": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "description": f"one or several {files} (the field repeated)",
            },
            "method": {
                "type": "array",
                "items": {"type": "string"},
                "description": "/explain: methods (repeated, or comma-separated; default attention)",
            },
            "target": {
                "type": "string",
                "description": "/explain: label to explain (default: the predicted one)",
            },
        },
        "required": ["file"],
    }


#: The multipart form of an image run, for the OpenAPI schema.
MULTIPART_SCHEMA: dict[str, Any] = multipart_schema("image files")


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class Predictions(BaseModel):
    predictions: list[Prediction]


class Explanations(BaseModel):
    explanations: list[dict[str, Any]]


class ModelInfo(BaseModel):
    """What a client needs to know of the served model; no file-system paths."""

    model: str = Field(description="the model as users see it, e.g. 'nb-attn (ensemble of 5)'")
    name: str = Field(description="the model's registered name, e.g. 'bilstm-attn'")
    backend: str = Field(description="torch or onnx")
    device: str = Field(description="where the PyTorch model runs (cpu, cuda:0)")
    labels: list[str] = Field(description="the classes, in the order of the probabilities")
    temperature: float = Field(description="probabilities are softmax(logits / temperature)")
    modality: str = Field(default="text", description="what the run classifies: text, image or audio")
    max_length: int | None = Field(
        description="tokens the model reads of a longer text (text runs; null otherwise): see truncation"
    )
    truncation: str | None = Field(
        default=None,
        description="which tokens a longer text keeps: head (its first max_length) or head+tail (its first "
        "quarter and last three quarters); text runs, null otherwise",
    )
    image: dict[str, Any] | None = Field(
        default=None,
        description="image runs: the size and mode inputs are resized to (cover, centre crop), the per-channel "
        "mean and std, and the unit grid (unit_size pixels a side, grid rows x cols); null otherwise",
    )
    audio: dict[str, Any] | None = Field(
        default=None,
        description="audio runs: the sample rate recordings are resampled to, the longest recording "
        "(max_seconds), the features (log-mel or MFCC, window and hop), frames per unit and seconds per unit; "
        "null otherwise",
    )
    methods: list[str] = Field(description="explanation methods this model supports ('all' asks for these)")
    self_attention: bool = Field(description="whether /explain can return per-layer, per-head maps")
    limits: dict[str, int] = Field(description="per-request limits")
    batching: dict[str, float] = Field(description="micro-batching of /predict")
    explain: dict[str, float | str] = Field(
        description="explanation capacity: isolation, workers, max_pending, timeout_s"
    )
    metrics: dict[str, Any] = Field(description="validation and test accuracy, macro-F1 and ECE")
    version: str = Field(description="the attnkit version")


class Error(BaseModel):
    error: str = Field(description="a short machine-readable kind, e.g. validation_error")
    detail: str = Field(description="what is wrong, for a person")
