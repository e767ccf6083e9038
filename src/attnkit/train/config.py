"""Typed run configuration: one source of truth for the CLI flags, the YAML files and the saved run.

A run config is a tree of small dataclasses. ``RunConfig.from_dict`` rejects unknown keys by name, and every
section validates itself in ``__post_init__`` so a mistake is reported before any data is read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key the user can fix."""


@dataclass
class DataConfig:
    """Where the examples come from.

    Attributes:
        train: a file, a folder of per-label folders, or a built-in name (``imdb``, ``20newsgroups``, ``sst2``,
            ``ag_news``, ``mr``, ``embedded``), optionally ``name:split``.
        test: held-out data, used only for the final report (never for model selection). For built-in names the
            official test split is used when this is left empty.
        val: validation data; when empty, ``val_fraction`` of ``train`` is carved out with ``split_seed``.
        val_fraction: share of ``train`` carved out for validation when ``val`` is empty. 0 trains on all of
            ``train`` with no validation: every epoch of ``train.epochs`` runs, the last weights are kept, and no
            temperature is fitted (use it to refit for the number of epochs a validated run selected).
        text_field: text column/field name (auto-detected when empty).
        label_field: label column/field name (auto-detected when empty).
    """

    train: str = "embedded"
    test: str | None = None
    val: str | None = None
    text_field: str | None = None
    label_field: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f"data.val_fraction must be in [0, 0.5), got {self.val_fraction}")

    @property
    def has_validation(self) -> bool:
        """Whether the run holds out a validation split (given as ``val`` or carved with ``val_fraction``)."""
        return bool(self.val) or self.val_fraction > 0


@dataclass
class TokenizerSection:
    """Tokenizer settings (see :class:`attnkit.data.tokenizer.TokenizerConfig`)."""

    level: Literal["word", "char", "auto"] = "auto"
    vocab_size: int = 10_000
    min_freq: int = 1
    lowercase: bool = True
    max_length: int = 500

    def __post_init__(self) -> None:
        if self.level not in ("word", "char", "auto"):
            raise ConfigError(f"tokenizer.level must be word, char or auto, got {self.level!r}")
        if self.vocab_size < 3:
            raise ConfigError(f"tokenizer.vocab_size must be >= 3, got {self.vocab_size}")
        if self.max_length < 1:
            raise ConfigError(f"tokenizer.max_length must be >= 1, got {self.max_length}")


@dataclass
class ModelSection:
    """Which model, and any of its config fields (``embed_dim``, ``hidden_dim``, ``pooling_scorer``...).

    Attributes:
        ensemble: number of members ``M``. Above 1, training fits ``M`` copies of the model with seeds
            ``train.seed, train.seed + 1, ...`` (each a full run in ``RUN_DIR/members/<m>``, early-stopped on
            the same validation split) and the run's model averages their logits
            (:class:`attnkit.models.ensemble.EnsembleClassifier`). Training time grows ``M``-fold.
    """

    name: str = "bilstm-attn"
    options: dict[str, Any] = field(default_factory=dict)
    ensemble: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise ConfigError(f"model.ensemble must be an integer >= 1, got {self.ensemble!r}")

    @property
    def label(self) -> str:
        """How the model is named to users: ``nb-attn``, or ``nb-attn (ensemble of 5)``."""
        return self.name if self.ensemble == 1 else f"{self.name} (ensemble of {self.ensemble})"


@dataclass
class OptimConfig:
    """AdamW with linear warmup then linear or cosine decay, and gradient clipping."""

    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    grad_clip: float = 1.0
    batch_size: int = 64
    eval_batch_size: int = 256
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"optim.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ConfigError(f"optim.schedule must be linear, cosine or constant, got {self.schedule!r}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("optim.batch_size and optim.eval_batch_size must be >= 1")


@dataclass
class TrainConfig:
    """The loop: epochs, early stopping, seed, device.

    Attributes:
        patience: stop after this many epochs without a better validation accuracy.
        max_train_seconds: stop at the first epoch end past this much training time.
        eval_every_steps: also evaluate on validation every N optimizer steps (besides each epoch end).
        track_test: also record test accuracy at each evaluation, for time-to-accuracy reports only; it is
            never used to select a model or to stop.
        calibrate: after training, fit a temperature on the validation split (``calibration.json``); predicted
            probabilities become ``softmax(logits / T)``. Labels never change, only the probabilities.
        refit: after the validated run (kept in ``RUN_DIR/validated``), train again from scratch on train +
            validation for the epochs it selected; the run directory then holds that model (see ``fit``).
    """

    epochs: int = 5
    seed: int = 0
    patience: int = 2
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    max_train_seconds: float | None = None
    eval_every_steps: int | None = None
    track_test: bool = False
    calibrate: bool = True
    refit: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            raise ConfigError(f"train.eval_every_steps must be >= 1, got {self.eval_every_steps}")
        if self.patience < 1:
            raise ConfigError(f"train.patience must be >= 1, got {self.patience}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda", "mps")):
            raise ConfigError(f"train.device must be auto, cpu, cuda[:N] or mps, got {self.device!r}")


@dataclass
class RunConfig:
    """Everything a training run needs; saved as ``config.yaml`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        return _build(cls, raw, "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        try:
            return cls.from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    def with_overrides(self, overrides: list[str]) -> RunConfig:
        """Apply ``section.key=value`` strings (value parsed as YAML), e.g. ``optim.lr=1e-3``."""
        raw = self.to_dict()
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value")
            dotted, value = item.split("=", 1)
            parts = dotted.strip().split(".")
            node = raw
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {item!r}: {part!r} is not a config section")
                node = node[part]
            node[parts[-1]] = yaml.safe_load(value)
        return RunConfig.from_dict(raw)


def _build(cls: type[T], raw: Any, prefix: str) -> T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(raw).__name__}")
    assert dataclasses.is_dataclass(cls)
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        where = f" in {prefix.rstrip('.')}" if prefix else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}{where}; known keys: {', '.join(sorted(known))}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {err}") from None


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Check a YAML scalar against a field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name} = {value!r} does not match {hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{name} must be {hint.__name__}, got {value!r}")
    return value
