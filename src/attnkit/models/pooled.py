"""The head most non-text models share: unit states -> attention pooling -> dropout -> linear head.

A model says how it turns its unit representations into one state per unit (:meth:`PooledUnits.forward_features`:
a ViT's encoder over patch tokens, a CNN's feature-map cells, a CRNN's frames); pooling, the head and the exact
per-unit decomposition of the logits are written once here, for every modality.

Dimension legend: ``B`` batch, ``U`` units, ``E`` unit representation size, ``D`` state size, ``R`` pooling
queries, ``K`` classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from attnkit.layers.pooling import AttentionPooling
from attnkit.models.base import ModelConfig, ModelOutput


class PooledUnits:
    """Mixin for a modality's model base (before it in the bases): ``forward_units`` through an attention pooling.

    The model calls :meth:`_build_pooling_head` with the state size ``D`` and implements :meth:`forward_features`.
    Because the logits are linear in the pooled vector, and the pooled vector is a weighted sum over units,
    :meth:`unit_contributions` splits the logits exactly over units.
    """

    config: ModelConfig
    pooling: AttentionPooling
    head: nn.Linear
    dropout: nn.Dropout

    if TYPE_CHECKING:  # provided by the modality's base class, which follows this mixin in the bases

        def embed(self, inputs: Tensor) -> Tensor: ...

    def _build_pooling_head(self, dim: int) -> None:
        cfg = self.config
        self.dropout = nn.Dropout(cfg.dropout)
        self.pooling = AttentionPooling(
            dim, scorer=cfg.pooling_scorer, num_queries=cfg.pooling_queries, num_heads=cfg.pooling_heads
        )
        self.head = nn.Linear(self.pooling.output_dim, cfg.num_classes)

    def forward_features(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        """``units (B, U, E)`` -> unit states ``(B, U, D)`` and, if asked and available, per-layer weights."""
        raise NotImplementedError

    def forward_units(
        self, units: Tensor, unit_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> ModelOutput:
        states, layer_attentions = self.forward_features(
            units, unit_mask, need_layer_attentions=need_layer_attentions
        )  # (B, U, D)
        pooled = self.pooling(states, unit_mask)  # pooled (B, R*D), weights (B, [H,] R, U)
        logits = self.head(self.dropout(pooled.pooled))  # (B, K)
        return ModelOutput(
            logits=logits,
            unit_attention=pooled.token_weights(),  # (B, U)
            pooling_weights=pooled.weights,
            layer_attentions=layer_attentions,
        )

    def has_unit_contributions(self) -> bool:
        return True

    def unit_contributions(self, inputs: Tensor, unit_mask: Tensor) -> Tensor:
        """``(B, U, K)``: each unit's additive share of the logits through the attention pooling.

        ``logits = sum_u contributions[:, u] + constant`` in eval mode, where the constant comes from the biases
        only (the head's, plus the multihead pooling scorer's output bias through the head). A unit's share is
        its pooling weight times its state, through the head; units where ``unit_mask`` is False get 0.
        """
        states, _ = self.forward_features(self.embed(inputs), unit_mask)  # (B, U, D)
        parts = self.pooling.token_contributions(states, unit_mask)  # (B, R, U, D)
        weight = self.head.weight.view(self.head.out_features, parts.shape[1], parts.shape[-1])  # (K, R, D)
        return torch.einsum("brud,krd->buk", parts, weight)  # (B, U, K)
