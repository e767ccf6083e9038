"""Modality -> name -> (config class, model class) for every model, and constructors by name.

A name is unique within a modality; the same name may mean one idea in several modalities (``cnn-attn``: a
convolutional encoder with attention pooling, over tokens for text and over feature-map cells for images).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnkit.models.audio.crnn import CRNNClassifier, CRNNConfig
from attnkit.models.audio.transformer import AudioTransformerClassifier, AudioTransformerConfig
from attnkit.models.bag import BagAttnClassifier, BagAttnConfig
from attnkit.models.base import AttentionModel, ModelConfig
from attnkit.models.bilstm import BiLSTMAttnClassifier, BiLSTMAttnConfig
from attnkit.models.cnn import CNNAttnClassifier, CNNAttnConfig
from attnkit.models.han import HANClassifier, HANConfig
from attnkit.models.nb import NBAttnClassifier, NBAttnConfig
from attnkit.models.transformer import TransformerClassifier, TransformerConfig
from attnkit.models.vision.cbam import CBAMAttnClassifier, CBAMAttnConfig
from attnkit.models.vision.cnn import ImageCNNAttnClassifier, ImageCNNAttnConfig
from attnkit.models.vision.hybrid import HybridViTClassifier, HybridViTConfig
from attnkit.models.vision.vit import ViTClassifier, ViTConfig

ModelEntry = tuple[type[ModelConfig], type[AttentionModel]]

#: Every registered model, by modality.
REGISTRY: dict[str, dict[str, ModelEntry]] = {
    "text": {
        "bilstm-attn": (BiLSTMAttnConfig, BiLSTMAttnClassifier),
        "cnn-attn": (CNNAttnConfig, CNNAttnClassifier),
        "transformer": (TransformerConfig, TransformerClassifier),
        "bag-attn": (BagAttnConfig, BagAttnClassifier),
        "han": (HANConfig, HANClassifier),
        "nb-attn": (NBAttnConfig, NBAttnClassifier),
    },
    "image": {
        "vit": (ViTConfig, ViTClassifier),
        "cnn-attn": (ImageCNNAttnConfig, ImageCNNAttnClassifier),
        "cbam-attn": (CBAMAttnConfig, CBAMAttnClassifier),
        "hybrid-vit": (HybridViTConfig, HybridViTClassifier),
    },
    "audio": {
        "crnn-attn": (CRNNConfig, CRNNClassifier),
        "transformer": (AudioTransformerConfig, AudioTransformerClassifier),
    },
}
#: The text models (the registry before other modalities existed).
MODEL_REGISTRY: dict[str, ModelEntry] = REGISTRY["text"]
#: The model ``model.name: auto`` trains, per modality (BENCHMARKS.md: "Which model by default", "Vision").
DEFAULT_MODELS: dict[str, str] = {"text": "nb-attn", "image": "cnn-attn", "audio": "crnn-attn"}
#: Modalities in the order they are shown.
MODALITIES: tuple[str, ...] = tuple(REGISTRY)


def available_models(modality: str | None = None) -> list[str]:
    """Registered model names of ``modality`` (of every modality when None), sorted."""
    if modality is None:
        return sorted({name for models in REGISTRY.values() for name in models})
    return sorted(_models_of(modality))


def modalities_of(name: str) -> list[str]:
    """The modalities that have a model called ``name``."""
    return [modality for modality, models in REGISTRY.items() if name in models]


def _models_of(modality: str) -> dict[str, ModelEntry]:
    try:
        return REGISTRY[modality]
    except KeyError:
        raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}") from None


def _lookup(name: str, modality: str) -> ModelEntry:
    models = _models_of(modality)
    try:
        return models[name]
    except KeyError:
        raise ValueError(
            f"unknown {modality} model {name!r}; available {modality} models: {', '.join(sorted(models))}"
        ) from None


def model_config_from_dict(name: str, data: Mapping[str, Any], *, modality: str = "text") -> ModelConfig:
    """The validated config of model ``name`` from a mapping (unknown keys raise ``ValueError``)."""
    config_cls, _ = _lookup(name, modality)
    return config_cls.from_dict(data)


def build_model(name: str, *, modality: str = "text", **config_fields: Any) -> AttentionModel:
    """Build model ``name`` with its config's defaults overridden by ``config_fields``.

    Example: ``build_model("bilstm-attn", vocab_size=20_000, num_classes=4)``.
    """
    return build_model_from_config(model_config_from_dict(name, config_fields, modality=modality))


def model_name_of(config: ModelConfig) -> str:
    """The registered name whose config class is exactly ``type(config)``."""
    for models in REGISTRY.values():
        for name, (config_cls, _) in models.items():
            if type(config) is config_cls:
                return name
    raise ValueError(f"{type(config).__name__} is not the config of a registered model")


def build_model_from_config(config: ModelConfig) -> AttentionModel:
    """Build the registered model a config belongs to."""
    for models in REGISTRY.values():
        for config_cls, model_cls in models.values():
            if type(config) is config_cls:
                return model_cls(config)
    raise ValueError(f"{type(config).__name__} is not the config of a registered model")
