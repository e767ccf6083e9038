"""What every speech (audio) classifier shares: the config fields, the frame units and the contract's operations.

An audio classifier maps ``features (B, U, E)`` -- one row per unit, the normalized log-mel or MFCC vector of a
frame, or of ``stack`` consecutive frames side by side -- under ``unit_mask (B, U)`` (bool, True = real unit,
right-padded: clips have different lengths) to logits plus its attention over the units. The features are
computed from the waveform by the audio task (:mod:`attnkit.tasks.audio`, with :mod:`attnkit.models.audio.features`)
and normalized with the training split's per-channel statistics, so 0 is the training mean.

The unit representation gradient methods differentiate is the feature row itself (``embed`` is the identity):
attributions are per frame, whatever the architecture. A unit is removed by deleting its frame and closing the
gap (:func:`delete_frames`), as a word is deleted from a text: the clip gets shorter, and what the model sees is
still speech, never a made-up value.

Dimension legend: ``B`` batch, ``U`` units (frames, or stacks of frames), ``E`` unit feature size, ``K`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attnkit.models.base import (
    AttentionModel,
    ModelConfig,
    ModelOutput,
    UnitsExportForward,
    check_right_padded,
)


@dataclass(frozen=True)
class AudioModelConfig(ModelConfig):
    """Fields every audio model config has (on top of :class:`~attnkit.models.base.ModelConfig`).

    Both come from the data (the task sets them from the ``audio`` config section).

    Attributes:
        feature_dim: ``E``: features per unit (``audio.n_mels`` or ``audio.n_mfcc``, times ``audio.stack_frames``).
        max_units: the most units an input may have (``audio.max_seconds`` of audio): sizes position tables.
    """

    feature_dim: int = 40
    max_units: int = 1001

    def _validate_inputs(self) -> None:
        self._require_min("feature_dim", 1)
        self._require_min("max_units", 1)

    def unit_input_dim(self) -> int:
        return self.feature_dim


class AudioClassifier(AttentionModel):
    """Base of every audio classifier: feature rows ``(B, U, E)`` -> :meth:`forward_units` -> logits + attention.

    Subclasses implement :meth:`forward_units` (through :class:`~attnkit.models.pooled.PooledUnits` for the
    pooled models) and return ``unit_attention (B, U)``, 0 on padding.

    Args:
        config: the model's validated config.
    """

    modality: ClassVar[str] = "audio"
    unit_name: ClassVar[str] = "frame"
    config: AudioModelConfig

    def __init__(self, config: AudioModelConfig) -> None:
        super().__init__()
        self.config = config

    # -- the contract -----------------------------------------------------------------------------------

    def unit_mask_of(self, inputs: Tensor) -> Tensor:
        """``(B, U)`` all True: feature rows carry no padding marker (0 is the training mean), so a padded batch
        comes with its mask from the task."""
        return torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device)

    def embed(self, inputs: Tensor) -> Tensor:
        """``features (B, U, E)`` -> the same tensor: the per-unit representation gradients are taken against."""
        return inputs

    def forward(
        self, inputs: Tensor, unit_mask: Tensor | None = None, *, need_layer_attentions: bool = False
    ) -> ModelOutput:
        """Classify ``features (B, U, E)`` under ``unit_mask (B, U)`` (default: every unit is real)."""
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
        self._check_features(embeddings, unit_mask)
        return self.forward_units(embeddings, unit_mask, need_layer_attentions=need_layer_attentions)

    def forward_units(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> ModelOutput:
        """``units (B, U, E)`` -> :class:`ModelOutput` (subclasses implement it)."""
        raise NotImplementedError

    def remove_units(self, inputs: Tensor, unit_mask: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """Delete the frames where ``keep`` is False and close the gaps (:func:`delete_frames`)."""
        return delete_frames(inputs, unit_mask, keep)

    def export_module(self) -> nn.Module:
        return UnitsExportForward(self)

    # -- checks -----------------------------------------------------------------------------------------

    def _check_features(self, features: Tensor, unit_mask: Tensor) -> None:
        cfg = self.config
        if features.dim() != 3 or features.shape[-1] != cfg.feature_dim or not features.is_floating_point():
            raise ValueError(
                f"features must be a float tensor of shape (batch, units, {cfg.feature_dim}), got "
                f"{tuple(features.shape)} of dtype {features.dtype}; compute them as the run's audio task does"
            )
        if unit_mask.shape != features.shape[:2]:
            raise ValueError(
                f"unit_mask {tuple(unit_mask.shape)} must match the features' (batch, units) "
                f"{tuple(features.shape[:2])}"
            )
        check_right_padded(unit_mask)
        units = features.shape[1]
        if units == 0:
            raise ValueError("inputs have 0 frames; pad every batch to at least one frame")
        if units > cfg.max_units:
            raise ValueError(
                f"inputs have {units} frames but the model accepts at most max_units={cfg.max_units}; "
                "shorten the recordings or train with a larger audio.max_seconds"
            )


def delete_frames(features: Tensor, unit_mask: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Keep only the units where ``keep (B, U)`` (and ``unit_mask``) is True, in order, packed to the left.

    The rows stay right-padded (padding rows are 0); a row left with no unit gets one zero row (the training
    mean), so the model always sees something.

    Returns:
        ``features (B, U', E)`` and ``unit_mask (B, U')`` with ``U' = max(1, most kept units)``.
    """
    keep = keep & unit_mask  # (B, U)
    lengths = keep.sum(dim=1)  # (B,)
    new_length = max(1, int(lengths.max()) if lengths.numel() else 1)
    # A stable sort of "dropped" flags puts kept positions first, in their original order.
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :new_length]  # (B, U')
    kept = features.gather(1, order.unsqueeze(-1).expand(-1, -1, features.shape[-1]))  # (B, U', E)
    positions = torch.arange(new_length, device=features.device)  # (U',)
    mask = positions[None, :] < lengths[:, None]  # (B, U')
    kept = kept * mask.unsqueeze(-1).to(kept.dtype)  # (B, U', E)
    mask[lengths == 0, 0] = True
    return kept, mask
