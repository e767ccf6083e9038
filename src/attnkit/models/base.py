"""The model contract every attnkit model honours, whatever its input units, and the text classifier base.

A model maps a batch of inputs to logits plus the attention it used over its input *units*: tokens of a text,
patches or feature-map cells of an image, frames of a recording, items of a history. It never computes the loss
(a task does: :mod:`attnkit.tasks`). The contract (:class:`AttentionModel`) is what the training loop,
explanations, faithfulness, serving and export rely on, so none of them names a model's class:

- ``forward(inputs, unit_mask)`` -> :class:`ModelOutput` (``logits (B, C)``, ``unit_attention (B, U)``);
- ``embed(inputs) -> (B, U, E)``, the per-unit representations gradient methods differentiate, and
  ``forward_from_embeddings(embeddings, unit_mask, inputs)``, the rest of the model from them;
- ``remove_units(inputs, unit_mask, keep)``: the inputs with some units taken out (occlusion, leave-one-out,
  deletion AOPC);
- ``has_unit_contributions()`` / ``unit_contributions``: an exact per-unit decomposition of the logits, if any;
- ``layer_attentions`` in the output when asked (self-attention models: rollout);
- ``export_module()``: a traceable ``(inputs, unit_mask) -> (logits, unit_attention)`` graph for ONNX.

A text classifier maps ``input_ids (B, T)`` and ``attention_mask (B, T)`` (bool, True = real token, right-padded):
its units are tokens.

Dimension legend: ``B`` batch, ``U`` units (``T`` tokens for text), ``E`` unit representation size, ``D`` state
size, ``C`` classes, ``R`` pooling queries, ``H`` pooling heads.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from attnkit.data.text.tokenizer import UNK_ID
from attnkit.layers.pooling import POOLING_SCORERS, AttentionPooling, PoolingOutput

ConfigT = TypeVar("ConfigT", bound="ModelConfig")


@dataclass
class ModelOutput:
    """What every model returns.

    Attributes:
        logits: ``(B, C)`` unnormalized class scores (or ranking scores).
        unit_attention: ``(B, U)`` one importance per input unit from the model's own attention: non-negative,
            summing to 1 over the real units of each row and exactly 0 on padding (a row without real units is
            all zeros).
        pooling_weights: ``(B, [H,] R, U)`` the raw weights of the attention pooling (0 on padding).
        layer_attentions: per-layer self-attention weights ``(B, H, U, U)`` (self-attention models, when called
            with ``need_layer_attentions=True``), else ``None``.
        extras: model-specific intermediates (HAN: word- and sentence-level weights and the sentence split).
    """

    logits: Tensor
    unit_attention: Tensor
    pooling_weights: Tensor
    layer_attentions: list[Tensor] | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def token_attention(self) -> Tensor:
        """``unit_attention`` under its text name: ``(B, T)`` over tokens."""
        return self.unit_attention


#: The text classifiers' name for :class:`ModelOutput`.
ClassifierOutput = ModelOutput


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModelConfig:
    """Fields every model config has, whatever its inputs. Subclasses add their own and may change the defaults.

    Configs are frozen and validated on construction: change one with ``dataclasses.replace`` (which validates
    again). ``to_dict`` gives plain JSON/YAML-safe values; ``from_dict`` rejects unknown keys by name.

    Attributes:
        num_classes: number of logits ``C`` (1 for a single sigmoid logit, as in the seed).
        dropout: dropout probability on unit representations, hidden states and before the output layer.
        pooling_scorer: score function of the attention pooling: ``dot``, ``scaled_dot``, ``general``,
            ``additive`` or ``multihead``.
        pooling_queries: number of learned pooling queries ``R``.
        pooling_heads: heads of the ``multihead`` pooling scorer (must divide the pooled state size).
    """

    num_classes: int = 2
    dropout: float = 0.1
    pooling_scorer: str = "additive"
    pooling_queries: int = 1
    pooling_heads: int = 1

    def __post_init__(self) -> None:
        self._coerce_types()
        self._require_min("num_classes", 1)
        self._require_min("pooling_queries", 1)
        self._require_min("pooling_heads", 1)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self._name}.dropout must be in [0, 1), got {self.dropout}")
        if self.pooling_scorer not in POOLING_SCORERS:
            raise ValueError(
                f"{self._name}.pooling_scorer must be one of {', '.join(POOLING_SCORERS)}; "
                f"got {self.pooling_scorer!r}"
            )
        self._validate_inputs()
        self._validate_model()
        if self.pooling_scorer == "multihead":
            for dim in self.pooling_dims():
                if dim % self.pooling_heads != 0:
                    raise ValueError(
                        f"{self._name}.pooling_heads={self.pooling_heads} must divide the pooled state size "
                        f"{dim} for the multihead pooling scorer; pick a divisor of {dim}"
                    )

    def _validate_inputs(self) -> None:
        """Check the fields a modality's base config adds (raise ``ValueError``)."""

    # -- hooks for subclasses -------------------------------------------------------------------------------

    def _validate_model(self) -> None:
        """Check the fields a subclass adds (raise ``ValueError``)."""

    def pooling_dims(self) -> tuple[int, ...]:
        """State sizes the attention pooling layers run over (one per pooling layer)."""
        raise NotImplementedError

    def unit_input_dim(self) -> int:
        """Size ``E`` of the per-unit vectors ``embed`` returns and ``forward_from_embeddings`` takes."""
        raise NotImplementedError

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


@dataclass(frozen=True)
class ClassifierConfig(ModelConfig):
    """Fields every text classifier config has (on top of :class:`ModelConfig`).

    Attributes:
        vocab_size: number of token ids (ids must lie in ``[0, vocab_size)``).
        embed_dim: word embedding size ``E``.
        max_length: longest input accepted, in tokens.
        pad_id: id of the padding token (its embedding is zero and gets no gradient).
    """

    vocab_size: int = 10_000
    embed_dim: int = 64
    max_length: int = 500
    pad_id: int = 0

    def _validate_inputs(self) -> None:
        self._require_min("vocab_size", 2)
        self._require_min("embed_dim", 1)
        self._require_min("max_length", 1)
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(
                f"{self._name}.pad_id must be a valid token id in [0, vocab_size={self.vocab_size}), "
                f"got {self.pad_id}"
            )

    def pooling_dims(self) -> tuple[int, ...]:
        return (self.embed_dim,)

    def unit_input_dim(self) -> int:
        return self.token_input_dim()

    def token_input_dim(self) -> int:
        """Size of the per-token vectors ``embed`` returns and ``forward_from_embeddings`` takes."""
        return self.embed_dim


#: Text model configs by their modality-explicit name.
TextModelConfig = ClassifierConfig


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


class AttentionModel(nn.Module):
    """The contract of every model: inputs over units -> :class:`ModelOutput` with the attention it used.

    A modality's base class (:class:`TextClassifier`, :class:`attnkit.models.vision.ImageClassifier`, ...)
    implements it; code above the models (the loop, explanations, faithfulness, export, serving) calls only these
    methods. ``inputs`` is the model's input tensor (token ids ``(B, T)``, pixels ``(B, C, H, W)``...) and
    ``unit_mask (B, U)`` says which units are real (True) and which are padding.

    Class attributes:
        modality: ``"text"``, ``"image"``, ... (which task pipelines feed it).
        unit_name: what one unit is called in explanations (``"token"``, ``"patch"``, ``"cell"``, ``"frame"``).
    """

    modality: ClassVar[str] = ""
    unit_name: ClassVar[str] = "unit"
    config: ModelConfig

    def forward(
        self, inputs: Tensor, unit_mask: Tensor | None = None, *, need_layer_attentions: bool = False
    ) -> ModelOutput:
        raise NotImplementedError

    def unit_mask_of(self, inputs: Tensor) -> Tensor:
        """``(B, U)`` bool: the units ``inputs`` holds (all True for inputs without padding)."""
        raise NotImplementedError

    def embed(self, inputs: Tensor) -> Tensor:
        """``inputs`` -> ``(B, U, E)``: the per-unit representations gradients and IG are taken against."""
        raise NotImplementedError

    def forward_from_embeddings(
        self,
        embeddings: Tensor,
        unit_mask: Tensor,
        inputs: Tensor | None = None,
        *,
        need_layer_attentions: bool = False,
    ) -> ModelOutput:
        """The rest of the model from ``embeddings (B, U, E)`` (``self.embed(inputs)`` or an IG interpolation).

        ``inputs`` are those the embeddings stand for; only models whose structure depends on them (HAN splits
        sentences on token ids) read them. Passing them is always safe.
        """
        raise NotImplementedError

    def remove_units(self, inputs: Tensor, unit_mask: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """The inputs with the units where ``keep (B, U)`` is False taken out, and their unit mask.

        How a unit is taken out belongs to the modality: tokens are deleted (the text re-packed), image units are
        replaced by the baseline (0, the training mean after normalization). A row left with no unit still gets
        one position, so the model always sees something.
        """
        raise NotImplementedError

    def has_unit_contributions(self) -> bool:
        """Whether :meth:`unit_contributions` is exact for this model."""
        return False

    def unit_contributions(self, inputs: Tensor, unit_mask: Tensor) -> Tensor:
        """``(B, U, C)``: each unit's additive share of the logits (plus a constant from the biases)."""
        raise NotImplementedError(f"{type(self).__name__} does not decompose its logits over units")

    def has_layer_attentions(self) -> bool:
        """Whether the model returns self-attention ``layer_attentions`` when asked (rollout applies)."""
        return False

    def export_module(self) -> nn.Module:
        """A traceable ``(inputs, unit_mask) -> (logits (B, C), unit_attention (B, U))`` module for ONNX.

        Raises:
            ValueError: the model cannot be exported (the message says why).
        """
        return _ExportForward(self)


class _ExportForward(nn.Module):
    """``forward`` as a two-output graph; models whose ``forward`` does not trace override ``export_module``."""

    def __init__(self, model: AttentionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, unit_mask: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model.forward_from_embeddings(self.model.embed(inputs), unit_mask, inputs)
        return out.logits, out.unit_attention  # (B, C), (B, U)


class UnitsExportForward(nn.Module):
    """``(inputs, unit_mask) -> (logits, unit_attention)`` through ``model.forward_units(model.embed(inputs))``,
    without ``forward``'s value checks (tracing cannot read tensor values; the server checks inputs first): the
    export graph of the image and audio models."""

    def __init__(self, model: AttentionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, unit_mask: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model.forward_units(self.model.embed(inputs), unit_mask)  # type: ignore[operator]
        return out.logits, out.unit_attention  # (B, K), (B, U)


class TextClassifier(AttentionModel):
    """Base of every classifier: ``embed`` -> ``forward_features`` -> ``pool`` -> ``forward_head``.

    Subclasses build ``self.pooling`` and ``self.head`` and implement :meth:`forward_features`; a model whose
    pooling is not a single step over the token states (HAN) overrides :meth:`forward_from_embeddings`.

    Args:
        config: the model's validated config.
    """

    modality: ClassVar[str] = "text"
    unit_name: ClassVar[str] = "token"
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

        :func:`attnkit.runs.build_run_model` (through the text task) calls this right after construction, for new and loaded
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
        input_ids: Tensor | None = None,
        *,
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
            unit_attention=pooled.token_weights(),  # (B, T)
            pooling_weights=pooled.weights,
            layer_attentions=layer_attentions,
        )

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, *, need_layer_attentions: bool = False
    ) -> ClassifierOutput:
        """Classify ``input_ids (B, T)`` (long) under ``attention_mask (B, T)`` (bool, True = real token).

        Rows must be right-padded; without a mask, every id other than ``pad_id`` is a real token. Returns a
        :class:`ClassifierOutput`; ``logits`` are ``(B, C)``.
        """
        if attention_mask is None:
            attention_mask = self.unit_mask_of(input_ids)
        self._check_ids(input_ids, attention_mask)
        return self.forward_from_embeddings(
            self.embed(input_ids),
            attention_mask,
            input_ids=input_ids,
            need_layer_attentions=need_layer_attentions,
        )

    # -- the contract's unit operations ----------------------------------------------------------------------

    def unit_mask_of(self, inputs: Tensor) -> Tensor:
        """``(B, T)``: True where ``inputs`` is not the padding id."""
        return inputs != self.config.pad_id

    def remove_units(self, inputs: Tensor, unit_mask: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """Delete the tokens where ``keep`` is False (:func:`delete_tokens`); rows stay right-padded."""
        return delete_tokens(inputs, unit_mask, keep, pad_id=self.config.pad_id, unk_id=UNK_ID)

    def has_unit_contributions(self) -> bool:
        return self.has_token_contributions()

    def unit_contributions(self, inputs: Tensor, unit_mask: Tensor) -> Tensor:
        return self.token_contributions(inputs, unit_mask)

    def export_module(self) -> nn.Module:
        """``embed -> forward_features -> pool -> forward_head`` without ``forward``'s value checks (tracing
        cannot read tensor values; the server checks inputs before they get here)."""
        return _TextExportForward(self)

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


class _TextExportForward(nn.Module):
    """The traceable ``(input_ids, attention_mask) -> (logits, token_attention)`` graph of a text classifier."""

    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        model = self.model
        states, _ = model.forward_features(model.embed(input_ids), attention_mask)  # (B, T, D)
        pooled = model.pool(states, attention_mask)  # pooled (B, P), weights (B, [H,] R, T)
        return model.forward_head(pooled.pooled), pooled.token_weights()  # (B, C), (B, T)


def delete_tokens(
    input_ids: Tensor, attention_mask: Tensor, keep: Tensor, *, pad_id: int, unk_id: int
) -> tuple[Tensor, Tensor]:
    """Keep only the tokens where ``keep (B, T)`` is True, in their order, re-packed to the left.

    Deleting (rather than masking) keeps every row right-padded, which the models require. A row left with no
    token gets a single ``[UNK]`` so the model still sees one position.

    Returns:
        ``input_ids (B, T')`` and ``attention_mask (B, T')`` with ``T' = max(1, most kept tokens)``.
    """
    keep = keep & attention_mask  # (B, T)
    lengths = keep.sum(dim=1)  # (B,)
    new_length = max(1, int(lengths.max()) if lengths.numel() else 1)
    # A stable sort of "dropped" flags puts kept positions first, in their original order.
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :new_length]  # (B, T')
    ids = input_ids.gather(1, order)  # (B, T')
    positions = torch.arange(new_length, device=input_ids.device)  # (T',)
    mask = positions[None, :] < lengths[:, None]  # (B, T')
    ids = torch.where(mask, ids, torch.full_like(ids, pad_id))
    empty = lengths == 0  # (B,)
    if bool(empty.any()):
        ids[empty, 0] = unk_id
        mask[empty, 0] = True
    return ids, mask
