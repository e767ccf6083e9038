"""Name -> (config class, model class) for every classifier, and constructors by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnkit.models.bag import BagAttnClassifier, BagAttnConfig
from attnkit.models.base import ClassifierConfig, TextClassifier
from attnkit.models.bilstm import BiLSTMAttnClassifier, BiLSTMAttnConfig
from attnkit.models.cnn import CNNAttnClassifier, CNNAttnConfig
from attnkit.models.han import HANClassifier, HANConfig
from attnkit.models.nb import NBAttnClassifier, NBAttnConfig
from attnkit.models.transformer import TransformerClassifier, TransformerConfig

MODEL_REGISTRY: dict[str, tuple[type[ClassifierConfig], type[TextClassifier]]] = {
    "bilstm-attn": (BiLSTMAttnConfig, BiLSTMAttnClassifier),
    "cnn-attn": (CNNAttnConfig, CNNAttnClassifier),
    "transformer": (TransformerConfig, TransformerClassifier),
    "bag-attn": (BagAttnConfig, BagAttnClassifier),
    "han": (HANConfig, HANClassifier),
    "nb-attn": (NBAttnConfig, NBAttnClassifier),
}


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODEL_REGISTRY)


def _lookup(name: str) -> tuple[type[ClassifierConfig], type[TextClassifier]]:
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available models: {', '.join(available_models())}"
        ) from None


def model_config_from_dict(name: str, data: Mapping[str, Any]) -> ClassifierConfig:
    """The validated config of model ``name`` from a mapping (unknown keys raise ``ValueError``)."""
    config_cls, _ = _lookup(name)
    return config_cls.from_dict(data)


def build_model(name: str, **config_fields: Any) -> TextClassifier:
    """Build model ``name`` with its config's defaults overridden by ``config_fields``.

    Example: ``build_model("bilstm-attn", vocab_size=20_000, num_classes=4)``.
    """
    return build_model_from_config(model_config_from_dict(name, config_fields))


def model_name_of(config: ClassifierConfig) -> str:
    """The registered name whose config class is exactly ``type(config)``."""
    for name, (config_cls, _) in MODEL_REGISTRY.items():
        if type(config) is config_cls:
            return name
    raise ValueError(f"{type(config).__name__} is not the config of a registered model")


def build_model_from_config(config: ClassifierConfig) -> TextClassifier:
    """Build the registered model a config belongs to."""
    _, model_cls = MODEL_REGISTRY[model_name_of(config)]
    return model_cls(config)
