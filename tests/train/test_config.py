from pathlib import Path

import pytest

from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.loop import lr_lambda

CONFIG_DIR = Path(__file__).resolve().parents[2] / "src" / "attnkit" / "configs"


def test_round_trip(tmp_path: Path) -> None:
    config = RunConfig().with_overrides(["optim.lr=0.01", "model.name=cnn-attn", "train.epochs=3"])
    path = tmp_path / "c.yaml"
    config.save_yaml(path)
    loaded = RunConfig.from_yaml(path)
    assert loaded == config
    assert loaded.optim.lr == 0.01 and loaded.model.name == "cnn-attn" and loaded.train.epochs == 3


def test_unknown_key_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) lrr in optim"):
        RunConfig.from_dict({"optim": {"lrr": 1}})


def test_wrong_type_and_range() -> None:
    with pytest.raises(ConfigError, match=r"optim.batch_size must be int"):
        RunConfig.from_dict({"optim": {"batch_size": "big"}})
    with pytest.raises(ConfigError, match=r"train.epochs must be >= 1"):
        RunConfig.from_dict({"train": {"epochs": 0}})
    with pytest.raises(ConfigError, match=r"tokenizer.level must be one of"):
        RunConfig.from_dict({"tokenizer": {"level": "bytes"}})


def test_int_accepted_for_float() -> None:
    assert RunConfig.from_dict({"optim": {"lr": 1}}).optim.lr == 1.0


def test_bad_override() -> None:
    with pytest.raises(ConfigError, match=r"section.key=value"):
        RunConfig().with_overrides(["optim.lr"])


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    from attnkit.models import available_models, model_config_from_dict

    config = RunConfig.from_yaml(path)
    assert config.model.name in available_models(config.modality)
    # The model options must be fields of that model's config (the data-derived fields as the config says).
    fields = config.default_model_fields(num_classes=2, vocab_size=100)
    model_config_from_dict(config.model.name, {**fields, **config.model.options}, modality=config.modality)


def test_there_are_shipped_configs() -> None:
    assert len(list(CONFIG_DIR.glob("*.yaml"))) >= 5


def test_lr_schedule_by_hand() -> None:
    linear = lr_lambda(total_steps=110, warmup_steps=10, schedule="linear")
    assert linear(0) == pytest.approx(0.1)
    assert linear(9) == pytest.approx(1.0)
    assert linear(10) == pytest.approx(1.0)
    assert linear(60) == pytest.approx(0.5)
    assert linear(110) == pytest.approx(0.0)
    cosine = lr_lambda(total_steps=110, warmup_steps=10, schedule="cosine")
    assert cosine(60) == pytest.approx(0.5)
    assert cosine(35) == pytest.approx(0.5 * (1 + 0.7071067811865476))
