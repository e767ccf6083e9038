"""The seed article's classifier: Embedding -> BiLSTM -> attention pooling -> Dense.

Dimension legend: ``B`` batch, ``T`` tokens, ``E`` embedding size, ``Hd`` LSTM units per direction,
``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from attnkit.models.base import ClassifierConfig, TextClassifier
from attnkit.models.recurrent import UnpackedBiLSTM, init_recurrent_, run_bidirectional


@dataclass(frozen=True)
class BiLSTMAttnConfig(ClassifierConfig):
    """Config of :class:`BiLSTMAttnClassifier`; defaults are the seed's sizes.

    Attributes:
        embed_dim: 16, as in the seed.
        hidden_size: LSTM units per direction (the seed's 32); the states are ``2 * hidden_size`` wide.
        num_layers: stacked BiLSTM layers (dropout between them).
        pooling_scorer: ``general``, the seed's ``h^T W x`` score.
    """

    embed_dim: int = 16
    pooling_scorer: str = "general"
    hidden_size: int = 32
    num_layers: int = 1

    def _validate_model(self) -> None:
        self._require_min("hidden_size", 1)
        self._require_min("num_layers", 1)

    def pooling_dims(self) -> tuple[int, ...]:
        return (2 * self.hidden_size,)


class BiLSTMAttnClassifier(TextClassifier):
    """Embedding -> BiLSTM (each direction within each row's length: padding never enters either) -> attention
    pooling -> Dense."""

    config: BiLSTMAttnConfig

    def __init__(self, config: BiLSTMAttnConfig | None = None) -> None:
        config = config or BiLSTMAttnConfig()
        super().__init__(config)
        self.lstm = nn.LSTM(
            config.embed_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        state_dim = 2 * config.hidden_size
        self.pooling = self._make_pooling(state_dim)
        self.head = nn.Linear(self.pooling.output_dim, config.num_classes)
        self._init_embedding(std=0.1)
        init_recurrent_(self.lstm)

    def forward_features(
        self, embeddings: Tensor, attention_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        lengths = attention_mask.sum(dim=1)  # (B,)
        states = run_bidirectional(self.lstm, self.dropout(embeddings), lengths)  # (B, T, 2 * Hd)
        return self.dropout(states), None

    def export_module(self) -> nn.Module:
        """The packed BiLSTM (lengths as Python ints) traced through :class:`UnpackedBiLSTM`, same outputs."""
        return _BiLSTMExportForward(self)


class _BiLSTMExportForward(nn.Module):
    def __init__(self, model: BiLSTMAttnClassifier) -> None:
        super().__init__()
        self.model = model
        self.lstm = UnpackedBiLSTM(model.lstm)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        model = self.model
        states = self.lstm(model.embed(input_ids), attention_mask.sum(dim=1))  # (B, T, 2H)
        pooled = model.pool(states, attention_mask)  # pooled (B, P), weights (B, [H,] R, T)
        return model.forward_head(pooled.pooled), pooled.token_weights()  # (B, C), (B, T)
