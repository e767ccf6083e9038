"""Explain predictions of a trained image run: one :class:`ImageExplanation` per image, in the JSON format of
``docs/explanation-format.md`` ("Image explanations"), the only input the image renderers read.

A unit is a box of the model's unit grid (a ViT patch, a cell of a CNN's final feature map): ``rows x cols``
boxes of ``unit_size x unit_size`` pixels in row-major order that tile the image the model saw (the input
resized to the run's size and mode). Every method of :mod:`attnkit.explain.methods` gives one score per box.

Dimension legend: ``B`` batch, ``U`` units (boxes), ``H`` / ``W`` image height / width, ``C`` channels.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attnkit.data.errors import DataError
from attnkit.explain.methods import check_methods
from attnkit.explain.scale import scales_json
from attnkit.explain.units import (
    UnitScores,
    check_target,
    json_head,
    label_probabilities,
    read_head,
    reading,
    round_score,
    score_batch,
)
from attnkit.predictor import Predictor

__all__ = [
    "ExplainedUnit",
    "ImageExplanation",
    "decode_png",
    "encode_png",
    "explain_images",
    "grid_boxes",
    "upsample_scores",
]


@dataclass
class ExplainedUnit:
    """One unit: its place in the grid, its pixel box ``[x0, y0, x1, y1]`` (x1, y1 exclusive) and one score per
    method."""

    index: int
    row: int
    col: int
    box: tuple[int, int, int, int]
    scores: dict[str, float]


@dataclass
class ImageExplanation(UnitScores[ExplainedUnit]):
    """An image, its prediction, the explained class and per-unit scores of each method.

    Attributes:
        image: ``(H, W, C)`` uint8: the image as the model saw it (resized to the run's size and mode); the
            boxes are in its pixel coordinates.
        label: the predicted label; ``probabilities``: the run's class probabilities (with its temperature).
        target: the class the scores explain.
        methods: the score keys, in display order.
        units: the scored units, row-major (``units[i].index == i``).
        grid: ``(rows, cols)`` of the unit grid; ``unit_size``: the side of one box in pixels.
        unit_name: what one unit is called (``patch``, ``cell``).
        source: where the image came from (a file name), if known.
    """

    image: np.ndarray = field(repr=False)
    label: str
    probabilities: dict[str, float]
    target: str
    methods: list[str]
    units: list[ExplainedUnit]
    grid: tuple[int, int]
    unit_size: int
    unit_name: str = "patch"
    source: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of :attr:`image`, in pixels."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def score_grid(self, method: str) -> np.ndarray:
        """``(rows, cols)`` float64: the scores of ``method`` laid out on the grid."""
        return np.asarray(self.scores(method), dtype=np.float64).reshape(self.grid)

    def heatmap(self, method: str) -> np.ndarray:
        """``(H, W)`` float64: every pixel carries the score of the box it lies in (:func:`upsample_scores`)."""
        boxes = [unit.box for unit in self.units]
        return upsample_scores(self.scores(method), boxes, self.size)

    def to_json_dict(self) -> dict[str, Any]:
        """The explanation in the image JSON format of ``docs/explanation-format.md``."""
        height, width = self.size
        channels = int(self.image.shape[2])
        data = json_head("image", self.source, self.label, self.target, self.probabilities, self.methods)
        data |= {
            "image": {
                "width": width,
                "height": height,
                "mode": "L" if channels == 1 else "RGB",
                "png": encode_png(self.image),
            },
            "grid": {
                "rows": self.grid[0],
                "cols": self.grid[1],
                "unit_size": self.unit_size,
                "unit_name": self.unit_name,
            },
            "units": [
                {"index": u.index, "row": u.row, "col": u.col, "box": list(u.box), "scores": dict(u.scores)}
                for u in self.units
            ],
        }
        data["scale"] = scales_json(data)  # how renderers colour each method
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ImageExplanation:
        """Read back :meth:`to_json_dict` (``scale`` is derived, so it is recomputed, not read).

        Raises:
            ValueError: ``data`` is not an image explanation (the message names the missing or bad field).
        """
        with reading("an image"):
            image = decode_png(str(data["image"]["png"]))
            grid = (int(data["grid"]["rows"]), int(data["grid"]["cols"]))
            units = [
                ExplainedUnit(
                    index=int(u["index"]),
                    row=int(u["row"]),
                    col=int(u["col"]),
                    box=(int(u["box"][0]), int(u["box"][1]), int(u["box"][2]), int(u["box"][3])),
                    scores={str(k): float(v) for k, v in u["scores"].items()},
                )
                for u in data["units"]
            ]
            return cls(
                image=image,
                **read_head(data),
                units=units,
                grid=grid,
                unit_size=int(data["grid"]["unit_size"]),
                unit_name=str(data["grid"].get("unit_name", "patch")),
            )


def encode_png(image: np.ndarray) -> str:
    """``(H, W, C)`` uint8 (C = 1 or 3) -> base64 text of a lossless PNG."""
    from PIL import Image

    pixels = image[..., 0] if image.shape[2] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    """Inverse of :func:`encode_png`: base64 PNG -> ``(H, W, C)`` uint8."""
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as opened:
        array = np.asarray(opened.convert("L" if opened.mode in ("L", "1", "I;16") else "RGB"))
    return array[..., None] if array.ndim == 2 else array


def grid_boxes(grid: tuple[int, int], unit_size: int) -> list[tuple[int, int, int, int]]:
    """The ``rows * cols`` boxes ``(x0, y0, x1, y1)`` of a grid of ``unit_size`` squares, row-major.

    The same boxes as :func:`attnkit.models.vision.base.unit_boxes`, for callers that have no model config.
    """
    rows, cols = grid
    return [
        (c * unit_size, r * unit_size, (c + 1) * unit_size, (r + 1) * unit_size)
        for r in range(rows)
        for c in range(cols)
    ]


def upsample_scores(
    scores: Sequence[float], boxes: Sequence[Sequence[int]], size: tuple[int, int]
) -> np.ndarray:
    """``(H, W)`` float64 heatmap: every pixel of box ``i`` gets ``scores[i]`` (nearest-box upsampling).

    Pixels outside every box (none, for a grid that tiles the image) are NaN.
    """
    if len(scores) != len(boxes):
        raise ValueError(f"got {len(scores)} scores for {len(boxes)} boxes")
    heat = np.full(size, np.nan, dtype=np.float64)  # (H, W)
    for score, (x0, y0, x1, y1) in zip(scores, boxes, strict=True):
        heat[y0:y1, x0:x1] = score
    return heat


def _arrays(predictor: Predictor, images: Sequence[Any], sources: Sequence[str | None]) -> list[np.ndarray]:
    """Each image as ``(H, W, C)`` uint8 in the run's size and mode; a bad one names its source."""
    arrays = []
    for number, (item, source) in enumerate(zip(images, sources, strict=True)):
        try:
            arrays.append(predictor.task.to_array(item))  # type: ignore[attr-defined]
        except ValueError as err:
            where = source if source is not None else f"image {number}"
            raise DataError(f"{where}: {str(err).removeprefix('image: ')}") from None
    return arrays


def explain_images(
    predictor: Predictor,
    images: Sequence[Any],
    methods: Sequence[str] = ("attention",),
    *,
    target: str | None = None,
    ig_steps: int = 50,
    batch_size: int = 16,
    sources: Sequence[str | None] | None = None,
) -> list[ImageExplanation]:
    """Predict ``images`` and score every unit box with each of ``methods``.

    Args:
        predictor: a loaded image run.
        images: encoded image bytes (PNG, JPEG, ...) or ``(H, W, C)`` / ``(H, W)`` uint8 arrays; each is resized
            and converted as the run's training images were.
        methods: names from :data:`attnkit.explain.METHODS`, or ``all``. For models with self-attention layers
            (ViT), ``attention`` also adds ``rollout``. ``loo`` is occlusion: each box set to the training mean.
        target: the label to explain; default: each image's predicted label.
        ig_steps: integration steps of Integrated Gradients.
        batch_size: images per forward pass.
        sources: a name per image (file names), kept in the explanation and used in error messages.

    Raises:
        ValueError: an unknown method or target label, an image that cannot be decoded (a
            :class:`~attnkit.data.errors.DataError` naming it), or a run that is not an image run.
    """
    if predictor.modality != "image":
        raise ValueError(
            f"{predictor.run_dir} is a {predictor.modality} run: explain its inputs with attnkit.explain.explain"
        )
    if isinstance(images, (bytes, bytearray, np.ndarray)):
        raise TypeError("images must be a sequence of images; wrap a single image in a list")
    check_target(predictor, target)
    names = [None] * len(images) if sources is None else list(sources)
    if len(names) != len(images):
        raise ValueError(f"got {len(names)} sources for {len(images)} images")
    check_methods(list(methods))  # unknown names fail even when there is nothing to explain
    if not images:
        return []
    model = predictor.model
    chosen = check_methods(list(methods), model)
    config = model.config
    grid = (int(config.grid[0]), int(config.grid[1]))
    boxes = grid_boxes(grid, int(config.unit_size))
    results: list[ImageExplanation] = []
    for start in range(0, len(images), batch_size):
        arrays = _arrays(predictor, images[start : start + batch_size], names[start : start + batch_size])
        inputs, mask = predictor.encode_inputs(arrays)  # (B, C, H, W), (B, U)
        probabilities, targets, scores = score_batch(predictor, inputs, mask, chosen, target, ig_steps)
        for row, array in enumerate(arrays):
            probs = probabilities[row]
            units = [
                ExplainedUnit(
                    index=i,
                    row=i // grid[1],
                    col=i % grid[1],
                    box=box,
                    scores={name: round_score(float(scores[name][row, i])) for name in chosen},
                )
                for i, box in enumerate(boxes)
            ]
            results.append(
                ImageExplanation(
                    image=array,
                    label=predictor.labels[int(probs.argmax())],
                    probabilities=label_probabilities(predictor.labels, probs),
                    target=predictor.labels[int(targets[row])],
                    methods=list(chosen),
                    units=units,
                    grid=grid,
                    unit_size=int(config.unit_size),
                    unit_name=model.unit_name,
                    source=names[start + row],
                )
            )
    return results
