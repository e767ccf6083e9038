"""What every text classifier shares: the output contract, the config base and the model base.

A classifier maps ``input_ids (B, T)`` and ``attention_mask (B, T)`` (bool, True = real token, right-padded)
to logits plus the attention it used. It never computes the loss.

Dimension legend: ``B`` batch, ``T`` tokens, ``E`` embedding size, ``D`` state size, ``C`` classes,
``R`` pooling queries, ``H`` pooling heads.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from attnkit.layers.pooling import POOLING_SCORERS, AttentionPooling, PoolingOutput

ConfigT = TypeVar("ConfigT", bound="ClassifierConfig")


@dataclass
class ClassifierOutput:
    """What every classifier returns.

    Attributes:
        logits: ``(B, C)`` unnormalized class scores.
        token_attention: ``(B, T)`` one importance per input token from the model's own attention:
            non-negative, summing to 1 over the real tokens of each row and exactly 0 on padding (a row
            without real tokens is all zeros).
        pooling_weights: ``(B, [H,] R, T)`` the raw weights of the attention pooling (0 on padding).
        layer_attentions: per-layer self-attention weights ``(B, H, T, T)`` (the transformer, when called with
            ``need_layer_attentions=True``), else ``None``.
        extras: model-specific intermediates (HAN: word- and sentence-level weights and the sentence split).
    """

    logits: Tensor
    token_attention: Tensor
    pooling_weights: Tensor
    layer_attentions: list[Tensor] | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ClassifierConfig:
    """Fields every classifier config has. Subclasses add their own and may change the defaults.

    Configs are frozen and validated on construction: change one with ``dataclasses.replace`` (which validates
    again). ``to_dict`` gives plain JSON/YAML-safe values; ``from_dict`` rejects unknown keys by name.

    Attributes:
        vocab_size: number of token ids (ids must lie in ``[0, vocab_size)``).
        num_classes: number of logits ``C`` (1 for a single sigmoid logit, as in the seed).
        embed_dim: word embedding size ``E``.
        dropout: dropout probability on embeddings, hidden states and before the output layer.
        pooling_scorer: score function of the attention pooling: ``dot``, ``scaled_dot``, ``general``,
            ``additive`` or ``multihead``.
        pooling_queries: number of learned pooling queries ``R``.
        pooling_heads: heads of the ``multihead`` pooling scorer (must divide the pooled state size).
        max_length: longest input accepted, in tokens.
        pad_id: id of the padding token (its embedding is zero and gets no gradient).
    """

    vocab_size: int = 10_000
    num_classes: int = 2
    embed_dim: int = 64
    dropout: float = 0.1
    pooling_scorer: str = "additive"
    pooling_queries: int = 1
    pooling_heads: int = 1
    max_length: int = 500
    pad_id: int = 0

    def __post_init__(self) -> None:
        self._coerce_types()
        self._require_min("vocab_size", 2)
        self._require_min("num_classes", 1)
        self._require_min("embed_dim", 1)
        self._require_min("pooling_queries", 1)
        self._require_min("pooling_heads", 1)
        self._require_min("max_length", 1)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self._name}.dropout must be in [0, 1), got {self.dropout}")
        if self.pooling_scorer not in POOLING_SCORERS:
            raise ValueError(
                f"{self._name}.pooling_scorer must be one of {', '.join(POOLING_SCORERS)}; "
                f"got {self.pooling_scorer!r}"
            )
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(
                f"{self._name}.pad_id must be a valid token id in [0, vocab_size={self.vocab_size}), "
                f"got {self.pad_id}"
            )
        self._validate_model()
        if self.pooling_scorer == "multihead":
            for dim in self.pooling_dims():
                if dim % self.pooling_heads != 0:
                    raise ValueError(
                        f"{self._name}.pooling_heads={self.pooling_heads} must divide the pooled state size "
                        f"{dim} for the multihead pooling scorer; pick a divisor of {dim}"
                    )

    # -- hooks for subclasses -------------------------------------------------------------------------------

    def _validate_model(self) -> None:
        """Check the fields a subclass adds (raise ``ValueError``)."""

    def pooling_dims(self) -> tuple[int, ...]:
        """State sizes the attention pooling layers run over (one per pooling layer)."""
        return (self.embed_dim,)

    def token_input_dim(self) -> int:
        """Size of the per-token vectors ``embed`` returns and ``forward_from_embeddings`` takes."""
        return self.embed_dim

    # -- serialization --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` with tuples as lists, so that JSON and ``yaml.safe_dump`` accept it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
        """Build a config from a mapping; missing keys take defaults, unknown keys raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__}.from_dict expects a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown field(s) for {cls.__name__}: {', '.join(map(repr, unknown))}; "
                f"valid fields are {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    # -- helpers --------------------------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _require_min(self, name: str, minimum: int) -> None:
        value = getattr(self, name)
        if value < minimum:
            raise ValueError(f"{self._name}.{name} must be >= {minimum}, got {value}")

    def _coerce_types(self) -> None:
        """Check each field against its annotation; ints become floats, lists become tuples where declared."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            hint = hints[f.name]
            where = f"{self._name}.{f.name}"
            if hint is int:
                if not _is_int(value):
                    raise ValueError(f"{where} must be an integer, got {value!r}")
            elif hint is float:
                if not (_is_int(value) or isinstance(value, float)):
                    raise ValueError(f"{where} must be a number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
            elif hint is str:
                if not isinstance(value, str):
                    raise ValueError(f"{where} must be a string, got {value!r}")
            elif typing.get_origin(hint) is tuple:
                if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
                    raise ValueError(f"{where} must be a list of integers, got {value!r}")
                object.__setattr__(self, f.name, tuple(value))


def check_right_padded(attention_mask: Tensor) -> None:
    """Raise ``ValueError`` unless ``attention_mask (B, T)`` is bool with each row's True entries first."""
    if attention_mask.dtype != torch.bool:
        raise ValueError(
            f"attention_mask must be a bool tensor with True = real token, got dtype {attention_mask.dtype}; "
            "convert with `mask.bool()`"
        )
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must have shape (batch, tokens), got {tuple(attention_mask.shape)}")
    # A real token right after padding means the row is not right-padded.
    if bool((attention_mask[:, 1:] & ~attention_mask[:, :-1]).any()):
        raise ValueError(
            "attention_mask must be right-padded: in each row the real tokens (True) come first, then "
            "padding (False). To drop tokens, remove them from input_ids rather than masking them mid-row."
        )


class TextClassifier(nn.Module):
    """Base of every classifier: ``embed`` -> ``forward_features`` -> ``pool`` -> ``forward_head``.

    Subclasses build ``self.pooling`` and ``self.head`` and implement :meth:`forward_features`; a model whose
    pooling is not a single step over the token states (HAN) overrides :meth:`forward_from_embeddings`.

    Args:
        config: the model's validated config.
    """

    config: ClassifierConfig
    pooling: AttentionPooling
    head: nn.Linear

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        self.dropout = nn.Dropout(config.dropout)

    # -- building blocks ------------------------------------------------------------------------------------

    def _make_pooling(self, dim: int) -> AttentionPooling:
        cfg = self.config
        return AttentionPooling(
            dim, scorer=cfg.pooling_scorer, num_queries=cfg.pooling_queries, num_heads=cfg.pooling_heads
        )

    def _init_embedding(self, std: float) -> None:
        nn.init.normal_(self.embedding.weight, std=std)
        with torch.no_grad():
            self.embedding.weight[self.config.pad_id].zero_()

    # -- data-dependent initialisation -------------------------------------------------------------------

    def set_vocabulary(self, tokens: Sequence[str]) -> None:
        """Give the model its vocabulary's strings (default: ignored; models that read the words override it).

        :func:`attnkit.train.loop.build_classifier` calls this right after construction, for new and loaded
        runs alike, so whatever a model derives from the strings is rebuilt from the tokenizer, not saved.

        Args:
            tokens: ``tokens[i]`` is the normalized vocabulary entry of id ``i``; "" for special tokens.
        """

    def init_from_data(self, ids: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        """Set data-dependent parameters from the training split before training (default: nothing).

        The training loop calls this once, with the encoded training split only (never validation or test),
        before the first step of a new run; a resumed run restores them from its saved state instead.

        Args:
            ids: the token ids of every training text.
            labels: the class id of every training text.
        """

    # -- the pipeline ---------------------------------------------------------------------------------------

    def embed(self, input_ids: Tensor) -> Tensor:
        """``input_ids (B, T)`` -> ``(B, T, E)``: the per-token inputs gradients and IG are taken against."""
        return self.embedding(input_ids)  # (B, T, E)

    def forward_features(
        self, embeddings: Tensor, attention_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor] | None]:
        """``embeddings (B, T, E)`` -> token states ``(B, T, D)`` and, if asked and available, layer weights.

        Subclasses implement this; HAN overrides :meth:`forward_from_embeddings` instead.
        """
        raise NotImplementedError

    def pool(self, states: Tensor, attention_mask: Tensor) -> PoolingOutput:
        """Attention pooling of ``states (B, T, D)`` -> ``pooled (B, R*D)``, ``weights (B, [H,] R, T)``."""
        return self.pooling(states, attention_mask)

    def forward_head(self, pooled: Tensor) -> Tensor:
        """``pooled (B, P)`` -> ``logits (B, C)``."""
        return self.head(self.dropout(pooled))

    def forward_from_embeddings(
        self,
        embeddings: Tensor,
        attention_mask: Tensor,
        *,
        input_ids: Tensor | None = None,
        need_layer_attentions: bool = False,
    ) -> ClassifierOutput:
        """Classify from word embeddings, e.g. ``self.embed(input_ids)`` or an interpolation for IG.

        Args:
            embeddings: ``(B, T, E)``.
            attention_mask: ``(B, T)`` bool, True = real token, right-padded.
            input_ids: the ids the embeddings stand for. Only models whose structure depends on the ids need
                them (HAN splits sentences on them); the others ignore them. Passing them is always safe.
            need_layer_attentions: return per-layer self-attention weights (models that have self-attention).
        """
        self._check_embeddings(embeddings, attention_mask)
        states, layer_attentions = self.forward_features(
            embeddings, attention_mask, need_layer_attentions=need_layer_attentions
        )  # (B, T, D)
        pooled = self.pool(states, attention_mask)  # pooled (B, R*D), weights (B, [H,] R, T)
        logits = self.forward_head(pooled.pooled)  # (B, C)
        return ClassifierOutput(
            logits=logits,
            token_attention=pooled.token_weights(),  # (B, T)
            pooling_weights=pooled.weights,
            layer_attentions=layer_attentions,
        )

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, *, need_layer_attentions: bool = False
    ) -> ClassifierOutput:
        """Classify ``input_ids (B, T)`` (long) under ``attention_mask (B, T)`` (bool, True = real token).

        Rows must be right-padded. Returns a :class:`ClassifierOutput`; ``logits`` are ``(B, C)``.
        """
        self._check_ids(input_ids, attention_mask)
        return self.forward_from_embeddings(
            self.embed(input_ids),
            attention_mask,
            input_ids=input_ids,
            need_layer_attentions=need_layer_attentions,
        )

    # -- explanation hooks ----------------------------------------------------------------------------------

    def has_token_contributions(self) -> bool:
        """Whether :meth:`token_contributions` is exact for this model (not for one that changes the pipeline)."""
        cls = type(self)
        if cls.token_contributions is not TextClassifier.token_contributions:
            return True
        return (
            cls.forward_from_embeddings is TextClassifier.forward_from_embeddings
            and cls.pool is TextClassifier.pool
            and cls.forward_head is TextClassifier.forward_head
        )

    def token_contributions(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``(B, T, C)``: each token's additive share of the logits through the attention pooling.

        The logits are linear in the pooled vectors, and each pooled vector is a weighted sum over tokens, so
        ``logits = sum_t contributions[:, t] + constant`` where the constant depends only on biases (in eval mode).
        A model whose pipeline differs overrides this, or it raises ``NotImplementedError``.
        """
        if not self.has_token_contributions():
            raise NotImplementedError(f"{type(self).__name__} does not decompose its logits over tokens")
        states, _ = self.forward_features(self.embed(input_ids), attention_mask)  # (B, T, D)
        parts = self.pooling.token_contributions(states, attention_mask)  # (B, R, T, D)
        weight = self.head.weight.view(
            self.head.out_features, *parts.shape[1:2], parts.shape[-1]
        )  # (C, R, D)
        return torch.einsum("brtd,crd->btc", parts, weight)  # (B, T, C)

    # -- input checks ---------------------------------------------------------------------------------------

    def _check_ids(self, input_ids: Tensor, attention_mask: Tensor) -> None:
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int):
            raise ValueError(
                f"input_ids must be a (batch, tokens) integer tensor, got {tuple(input_ids.shape)} "
                f"of dtype {input_ids.dtype}"
            )
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} must have the shape of input_ids "
                f"{tuple(input_ids.shape)}"
            )
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size):
            raise ValueError(
                f"input_ids must lie in [0, vocab_size={self.config.vocab_size}), got values in "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]; build the model with the tokenizer's "
                "vocabulary size"
            )

    def _check_embeddings(self, embeddings: Tensor, attention_mask: Tensor) -> None:
        width = self.config.token_input_dim()
        if embeddings.dim() != 3 or embeddings.shape[-1] != width:
            raise ValueError(
                f"embeddings must have shape (batch, tokens, {width}), got {tuple(embeddings.shape)}"
            )
        check_right_padded(attention_mask)
        if attention_mask.shape != embeddings.shape[:2]:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} must match the embeddings' (batch, tokens) "
                f"{tuple(embeddings.shape[:2])}"
            )
        length = embeddings.shape[1]
        if length == 0:
            raise ValueError("inputs have 0 tokens; pad every batch to at least one position")
        if length > self.config.max_length:
            raise ValueError(
                f"inputs have {length} tokens but the model accepts at most max_length="
                f"{self.config.max_length}; truncate the inputs or build the model with a larger max_length"
            )
