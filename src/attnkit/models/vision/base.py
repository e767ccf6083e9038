"""What every image classifier shares: the config fields, the unit grid and the contract's unit operations.

An image classifier maps ``pixels (B, C, H, W)`` (float, normalized with the training split's per-channel mean
and std, so 0 is the training mean) to logits plus its attention over *units*: a ``rows x cols`` grid of
non-overlapping ``unit_size x unit_size`` pixel boxes, in row-major order (ViT patches, or the cells of a CNN's
final feature map whose stride is ``unit_size``).

The unit representation that gradient methods differentiate is the same for every image model: the pixels of
each unit's box, ``embed(pixels) -> (B, U, C * unit_size**2)``. A gradient or Integrated-Gradients path over it
moves pixels, so per-unit attributions are aggregated over each box exactly, whatever the architecture. A unit is
removed by setting its pixels to 0 (the training mean): images have no padding to delete into, and the same
baseline serves occlusion, leave-one-out and deletion AOPC for every model.

Dimension legend: ``B`` batch, ``C`` channels, ``H`` / ``W`` image height / width, ``S`` unit size (pixels),
``U = (H / S) * (W / S)`` units, ``E = C * S * S`` unit representation size, ``K`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attnkit.models.base import AttentionModel, ModelConfig, ModelOutput, UnitsExportForward


@dataclass(frozen=True)
class ImageModelConfig(ModelConfig):
    """Fields every image model config has (on top of :class:`~attnkit.models.base.ModelConfig`).

    ``image_size`` and ``channels`` come from the data (the task sets them); ``unit_size`` is the model's.

    Attributes:
        image_size: ``(H, W)`` of the inputs, in pixels; both divisible by ``unit_size``.
        channels: ``C``: 1 (grayscale) or 3 (RGB).
        unit_size: side ``S`` of one unit's pixel box (the ViT patch size, a CNN's total stride).
        test_time_flip: when evaluating, average the passes over the image and its left-right mirror (see
            :mod:`attnkit.models.vision.pooled`); training is unchanged. On Fashion-MNIST it added 0.5-0.8
            points of test accuracy to ``cnn-attn`` (``benchmarks/vision_models.py``).
    """

    image_size: tuple[int, ...] = (28, 28)
    channels: int = 1
    unit_size: int = 4
    test_time_flip: bool = False

    def _validate_inputs(self) -> None:
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(
                f"{self._name}.image_size must be [height, width] >= 1, got {list(self.image_size)}"
            )
        self._require_min("channels", 1)
        self._require_min("unit_size", 1)
        height, width = self.image_size
        if height % self.unit_size or width % self.unit_size:
            raise ValueError(
                f"{self._name}.image_size {height}x{width} must be divisible by unit_size={self.unit_size}; "
                "resize the images (image.size) or pick a unit_size that divides both sides"
            )

    @property
    def grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the unit grid."""
        height, width = self.image_size
        return height // self.unit_size, width // self.unit_size

    @property
    def num_units(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def unit_input_dim(self) -> int:
        return self.channels * self.unit_size**2


def patchify(pixels: Tensor, size: int) -> Tensor:
    """``pixels (B, C, H, W)`` -> ``(B, U, C*S*S)``: each ``S x S`` box flattened channel-major, row-major units."""
    batch, channels, height, width = pixels.shape
    rows, cols = height // size, width // size
    x = pixels.reshape(batch, channels, rows, size, cols, size)  # (B, C, r, S, c, S)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, r, c, C, S, S)
    return x.reshape(batch, rows * cols, channels * size * size)  # (B, U, E)


def unpatchify(units: Tensor, size: int, channels: int, grid: tuple[int, int]) -> Tensor:
    """Inverse of :func:`patchify`: ``units (B, U, C*S*S)`` -> ``pixels (B, C, H, W)``."""
    batch = units.shape[0]
    rows, cols = grid
    x = units.reshape(batch, rows, cols, channels, size, size)  # (B, r, c, C, S, S)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, r, S, c, S)
    return x.reshape(batch, channels, rows * size, cols * size)  # (B, C, H, W)


def unit_boxes(config: ImageModelConfig) -> Tensor:
    """``(U, 4)`` long: each unit's pixel box ``[x0, y0, x1, y1]`` (x1, y1 exclusive), row-major."""
    rows, cols = config.grid
    size = config.unit_size
    r = torch.arange(rows).repeat_interleave(cols)  # (U,)
    c = torch.arange(cols).repeat(rows)  # (U,)
    return torch.stack([c * size, r * size, (c + 1) * size, (r + 1) * size], dim=1)  # (U, 4)


class ImageClassifier(AttentionModel):
    """Base of every image classifier: ``embed`` (unit pixels) -> :meth:`forward_units` -> logits + attention.

    Subclasses implement :meth:`forward_units`, taking the unit pixels ``(B, U, E)`` (call :meth:`images_of` for
    the ``(B, C, H, W)`` image a convolution needs) and returning a :class:`ModelOutput` whose
    ``unit_attention`` is ``(B, U)`` over the grid of :attr:`config`.

    Args:
        config: the model's validated config.
    """

    modality: ClassVar[str] = "image"
    unit_name: ClassVar[str] = "patch"
    config: ImageModelConfig

    def __init__(self, config: ImageModelConfig) -> None:
        super().__init__()
        self.config = config

    # -- the contract -----------------------------------------------------------------------------------

    def unit_mask_of(self, inputs: Tensor) -> Tensor:
        """``(B, U)`` all True: images have no padding."""
        return torch.ones(inputs.shape[0], self.config.num_units, dtype=torch.bool, device=inputs.device)

    def embed(self, inputs: Tensor) -> Tensor:
        """``pixels (B, C, H, W)`` -> ``(B, U, C*S*S)`` the pixels of each unit's box."""
        return patchify(inputs, self.config.unit_size)

    def images_of(self, units: Tensor) -> Tensor:
        """``units (B, U, C*S*S)`` -> ``pixels (B, C, H, W)``."""
        return unpatchify(units, self.config.unit_size, self.config.channels, self.config.grid)

    def forward(
        self, inputs: Tensor, unit_mask: Tensor | None = None, *, need_layer_attentions: bool = False
    ) -> ModelOutput:
        """Classify ``pixels (B, C, H, W)``; ``unit_mask (B, U)`` defaults to all units."""
        self._check_pixels(inputs)
        if unit_mask is None:
            unit_mask = self.unit_mask_of(inputs)
        return self.forward_from_embeddings(
            self.embed(inputs), unit_mask, inputs, need_layer_attentions=need_layer_attentions
        )

    def forward_from_embeddings(
        self,
        embeddings: Tensor,
        unit_mask: Tensor,
        inputs: Tensor | None = None,
        *,
        need_layer_attentions: bool = False,
    ) -> ModelOutput:
        expected = (self.config.num_units, self.config.unit_input_dim())
        if embeddings.dim() != 3 or tuple(embeddings.shape[1:]) != expected:
            raise ValueError(
                f"unit embeddings must have shape (batch, {expected[0]}, {expected[1]}), got "
                f"{tuple(embeddings.shape)}"
            )
        if unit_mask.shape != embeddings.shape[:2] or unit_mask.dtype != torch.bool:
            raise ValueError(
                f"unit_mask must be a bool tensor of shape {tuple(embeddings.shape[:2])}, got "
                f"{tuple(unit_mask.shape)} {unit_mask.dtype}"
            )
        return self.forward_units(embeddings, unit_mask, need_layer_attentions=need_layer_attentions)

    def forward_units(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> ModelOutput:
        """``units (B, U, E)`` unit pixels -> :class:`ModelOutput` (subclasses implement it)."""
        raise NotImplementedError

    def remove_units(self, inputs: Tensor, unit_mask: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """``pixels`` with the units where ``keep (B, U)`` is False set to 0 (the training mean); mask unchanged."""
        units = self.embed(inputs)  # (B, U, E)
        units = units * keep.unsqueeze(-1).to(units.dtype)  # (B, U, E)
        return self.images_of(units), unit_mask

    def export_module(self) -> nn.Module:
        return UnitsExportForward(self)

    # -- checks -----------------------------------------------------------------------------------------

    def _check_pixels(self, pixels: Tensor) -> None:
        cfg = self.config
        expected = (cfg.channels, *cfg.image_size)
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != expected or not pixels.is_floating_point():
            raise ValueError(
                f"pixels must be a float tensor of shape (batch, {', '.join(map(str, expected))}), got "
                f"{tuple(pixels.shape)} of dtype {pixels.dtype}; normalize and resize the images as the run's "
                "task does"
            )
