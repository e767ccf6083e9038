"""The image models whose logits are a linear head over an attention pooling of unit states.

The pooling, the head and the exact per-unit decomposition are :class:`attnkit.models.pooled.PooledUnits`'s,
shared with the other modalities; an image model says how it makes one state per unit.

With ``test_time_flip`` an evaluating model (``eval()``: validation, test, predict, explain, serve, ONNX)
classifies each image and its mirror image and averages the two passes: logits, pooling weights, unit attention
(the mirror's mapped back onto the original grid), layer attentions and per-unit contributions, so every
explanation describes the function that decides and the contributions still sum to the logits.

Dimension legend: ``B`` batch, ``U`` units, ``E`` unit pixels, ``H`` heads, ``R`` pooling queries, ``K`` classes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnkit.models.base import ModelOutput
from attnkit.models.pooled import PooledUnits
from attnkit.models.vision.base import ImageClassifier, ImageModelConfig


class PooledImageClassifier(PooledUnits, ImageClassifier):
    """Base of the image models: :class:`ImageClassifier`'s units, :class:`PooledUnits`'s head.

    Subclasses build their feature extractor, call :meth:`_build_pooling_head` with the state size ``D`` and
    implement :meth:`forward_features`.
    """

    config: ImageModelConfig

    def _flips(self) -> bool:
        return self.config.test_time_flip and not self.training

    def mirror_index(self) -> Tensor:
        """``(U,)``: the unit at the mirrored position of each unit (left-right), row-major; its own inverse."""
        rows, cols = self.config.grid
        grid = torch.arange(rows * cols).view(rows, cols)  # (rows, cols)
        return grid.flip(1).reshape(-1)  # (U,)

    def forward_units(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> ModelOutput:
        out = super().forward_units(units, unit_mask, need_layer_attentions=need_layer_attentions)
        if not self._flips():
            return out
        mirror = self.mirror_index().to(units.device)  # (U,)
        mirrored_units = self.embed(self.images_of(units).flip(-1))  # (B, U, E)
        other = super().forward_units(
            mirrored_units, unit_mask[:, mirror], need_layer_attentions=need_layer_attentions
        )
        layers = None
        if out.layer_attentions is not None and other.layer_attentions is not None:
            layers = [
                (mine + theirs[..., mirror][..., mirror, :]) / 2  # (B, H, U, U): queries and keys mapped back
                for mine, theirs in zip(out.layer_attentions, other.layer_attentions, strict=True)
            ]
        return ModelOutput(
            logits=(out.logits + other.logits) / 2,  # (B, K)
            unit_attention=(out.unit_attention + other.unit_attention[:, mirror]) / 2,  # (B, U)
            pooling_weights=(out.pooling_weights + other.pooling_weights[..., mirror]) / 2,  # (B, [H,] R, U)
            layer_attentions=layers,
        )

    def unit_contributions(self, inputs: Tensor, unit_mask: Tensor) -> Tensor:
        parts = super().unit_contributions(inputs, unit_mask)  # (B, U, K)
        if not self._flips():
            return parts
        mirror = self.mirror_index().to(inputs.device)  # (U,)
        other = super().unit_contributions(inputs.flip(-1), unit_mask[:, mirror])  # (B, U, K)
        return (parts + other[:, mirror]) / 2
