"""Convolutional classifier: Embedding -> parallel Conv1d ('same') -> ReLU -> attention pooling -> Dense.

Dimension legend: ``B`` batch, ``T`` tokens, ``E`` embedding size, ``F`` filters per kernel size,
``K`` number of kernel sizes, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnkit.models.base import ClassifierConfig, TextClassifier


@dataclass(frozen=True)
class CNNAttnConfig(ClassifierConfig):
    """Config of :class:`CNNAttnClassifier`.

    Attributes:
        num_filters: output channels ``F`` of each convolution.
        kernel_sizes: one convolution per size, run in parallel; states are ``F * len(kernel_sizes)`` wide.
    """

    num_filters: int = 64
    kernel_sizes: tuple[int, ...] = (3, 5)

    def _validate_model(self) -> None:
        self._require_min("num_filters", 1)
        if not self.kernel_sizes or min(self.kernel_sizes) < 1:
            raise ValueError(
                f"{self._name}.kernel_sizes must be a non-empty list of sizes >= 1, "
                f"got {list(self.kernel_sizes)}"
            )

    def pooling_dims(self) -> tuple[int, ...]:
        return (self.num_filters * len(self.kernel_sizes),)


class CNNAttnClassifier(TextClassifier):
    """Parallel 'same' convolutions over the embeddings; padding positions are zeroed before convolving, so a
    real token near the end sees the same zeros whether the row is padded or not."""

    config: CNNAttnConfig

    def __init__(self, config: CNNAttnConfig | None = None) -> None:
        config = config or CNNAttnConfig()
        super().__init__(config)
        convs = [
            nn.Conv1d(config.embed_dim, config.num_filters, kernel_size=k, padding="same")
            for k in config.kernel_sizes
        ]
        for conv in convs:
            nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        self.convs = nn.ModuleList(convs)
        self.pooling = self._make_pooling(config.num_filters * len(config.kernel_sizes))
        self.head = nn.Linear(self.pooling.output_dim, config.num_classes)
        self._init_embedding(std=0.1)

    def forward_features(
        self, embeddings: Tensor, attention_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        x = self.dropout(embeddings) * attention_mask.unsqueeze(-1)  # (B, T, E), zero on padding
        x = x.transpose(1, 2)  # (B, E, T)
        features = torch.cat([torch.relu(conv(x)) for conv in self.convs], dim=1)  # (B, K * F, T)
        return self.dropout(features.transpose(1, 2)), None  # (B, T, K * F)
