"""Configs: defaults, validation messages, dict round trips, and the registry."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml

from attnkit.models import (
    MODEL_REGISTRY,
    BiLSTMAttnClassifier,
    BiLSTMAttnConfig,
    ClassifierConfig,
    HANConfig,
    TransformerConfig,
    available_models,
    build_model,
    build_model_from_config,
    model_config_from_dict,
    model_name_of,
)

MODELS = available_models("text")


@pytest.mark.parametrize("name", MODELS)
def test_config_round_trip(name: str, tiny_configs: dict[str, dict[str, Any]]) -> None:
    config_cls, _ = MODEL_REGISTRY[name]
    config = config_cls.from_dict({"vocab_size": 123, **tiny_configs[name]})
    plain = config.to_dict()
    assert plain == json.loads(json.dumps(plain))  # JSON-safe: lists, not tuples
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain  # YAML-safe
    assert config_cls.from_dict(plain) == config
    assert config_cls.from_dict(plain).to_dict() == plain
    assert config_cls.from_dict(dataclasses.asdict(config)) == config
    assert model_config_from_dict(name, plain) == config
    assert model_name_of(config) == name
    # Defaults survive the trip too.
    assert config_cls.from_dict(config_cls().to_dict()) == config_cls()


@pytest.mark.parametrize("name", MODELS)
def test_unknown_keys_are_rejected_by_name(name: str) -> None:
    with pytest.raises(
        ValueError, match=r"unknown field\(s\) for \w+Config: 'hiden_size', 'zzz'; valid fields"
    ):
        model_config_from_dict(name, {"hiden_size": 3, "zzz": 1})
    with pytest.raises(ValueError, match="'colour'"):
        build_model(name, colour="red")


def test_seed_defaults_and_parameter_count() -> None:
    config = BiLSTMAttnConfig()
    assert (config.vocab_size, config.embed_dim, config.hidden_size, config.max_length) == (
        10_000,
        16,
        32,
        500,
    )
    model = BiLSTMAttnClassifier(config)
    embedding = 10_000 * 16
    lstm = 2 * (4 * 32 * (16 + 32) + 2 * 4 * 32)  # two directions; torch keeps two bias vectors per gate
    pooling = 64 + 64 * 64  # learned query + bilinear W of the "general" scorer
    head = 64 * 2 + 2
    assert sum(p.numel() for p in model.parameters()) == embedding + lstm + pooling + head == 177_090


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("bilstm-attn", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("bilstm-attn", {"pooling_scorer": "cosine"}, "pooling_scorer must be one of dot, scaled_dot"),
        ("bilstm-attn", {"pad_id": 10_000}, "pad_id must be a valid token id"),
        ("bilstm-attn", {"vocab_size": "10000"}, "vocab_size must be an integer"),
        ("bilstm-attn", {"num_classes": True}, "num_classes must be an integer"),
        ("bilstm-attn", {"hidden_size": 0}, "hidden_size must be >= 1"),
        (
            "bilstm-attn",
            {"pooling_scorer": "multihead", "pooling_heads": 5},
            "must divide the pooled state size 64",
        ),
        ("cnn-attn", {"kernel_sizes": []}, "kernel_sizes must be a non-empty list"),
        ("cnn-attn", {"kernel_sizes": [3, "5"]}, "kernel_sizes must be a list of integers"),
        ("transformer", {"num_heads": 3}, "num_heads=3 must divide embed_dim=128"),
        ("transformer", {"max_length": 0}, "max_length must be >= 1"),
        ("transformer", {"attention_dropout": -0.1}, r"attention_dropout must be in \[0, 1\)"),
        ("bag-attn", {"bigram_buckets": 1}, "bigram_buckets must be 0"),
        ("han", {"sentence_end_ids": [5, 0]}, r"other than pad_id=0; got \[0\]"),
        ("han", {"max_sentences": 0}, "max_sentences must be >= 1"),
        ("han", {"pooling_scorer": "multihead", "pooling_heads": 3}, "must divide the pooled state size"),
    ],
)
def test_validation_messages(name: str, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model_config_from_dict(name, fields)


def test_coercion_of_plain_values() -> None:
    config = model_config_from_dict("han", {"dropout": 0, "sentence_end_ids": [7, 5]})
    assert isinstance(config, HANConfig)
    assert config.dropout == 0.0 and isinstance(config.dropout, float)
    assert config.sentence_end_ids == (7, 5)


def test_configs_are_frozen_and_replace_validates() -> None:
    config = TransformerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_heads = 8  # type: ignore[misc]
    assert dataclasses.replace(config, num_heads=8).num_heads == 8
    with pytest.raises(ValueError, match="num_heads=5 must divide"):
        dataclasses.replace(config, num_heads=5)


def test_registry_errors_and_builders() -> None:
    with pytest.raises(
        ValueError, match="unknown text model 'lstm'; available text models: bag-attn, bilstm-attn, cnn-attn"
    ):
        build_model("lstm")
    with pytest.raises(ValueError, match="available text models"):
        model_config_from_dict("gpt", {})
    with pytest.raises(ValueError, match="unknown modality 'smell'; choose one of text, image"):
        build_model("bag-attn", modality="smell")
    for name in MODELS:
        config_cls, model_cls = MODEL_REGISTRY[name]
        assert issubclass(config_cls, ClassifierConfig)
        small = {"bigram_buckets": 16} if name == "bag-attn" else {}
        model = build_model(name, vocab_size=40, num_classes=4, **small)
        assert type(model) is model_cls
        assert model.config.num_classes == 4
        assert type(build_model_from_config(model.config)) is model_cls
    with pytest.raises(ValueError, match="not the config of a registered model"):
        build_model_from_config(ClassifierConfig())
