"""Every config value is checked at the boundary: ranges, the model's own options, and a memory estimate that
refuses a model too large for the machine before torch tries to allocate it."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from attnkit.models import available_models, build_model, model_config_from_dict
from attnkit.threads import max_threads
from attnkit.train import config as config_module
from attnkit.train.config import (
    ConfigError,
    RunConfig,
    check_model_memory,
    count_parameters,
    parameter_bound,
)

#: Model fields the data sets (as tests/conftest.py's tiny models use).
COMMON: dict[str, Any] = {"vocab_size": 50, "num_classes": 3, "max_length": 64, "dropout": 0.1}

# (override, pattern of the one-line error): each was a traceback, a silent default or a segfault before.
BAD_OVERRIDES = [
    ("train.threads=-1", r"train.threads must be auto .* null .* or a number in \[1, \d+\]"),
    ("train.threads=0", r"train.threads must be"),
    ("train.threads=100000", r"train.threads must be .*\(4 per CPU core"),
    ("optim.label_smoothing=5", r"optim.label_smoothing must be in \[0, 1\), got 5"),
    ("optim.label_smoothing=1", r"optim.label_smoothing must be in \[0, 1\)"),
    ("optim.label_smoothing=-0.1", r"optim.label_smoothing must be in \[0, 1\)"),
    ("optim.grad_clip=-1", r"optim.grad_clip must be a finite number >= 0"),
    ("optim.grad_clip=.nan", r"optim.grad_clip must be a finite number >= 0"),
    ("optim.weight_decay=-0.01", r"optim.weight_decay must be >= 0"),
    ("optim.weight_decay=100", r"optim.weight_decay must be <= 10"),
    ("optim.weight_decay=.nan", r"optim.weight_decay must be a number in \[0, 10\]"),
    ("optim.lr=.nan", r"optim.lr must be a finite number > 0"),
    ("optim.lr=.inf", r"optim.lr must be a finite number > 0"),
    ("optim.lr=0", r"optim.lr must be a finite number > 0"),
    ("optim.lr=0.5", r"optim.lr \* optim.weight_decay must be < 1"),  # with weight_decay=2 below
    ("optim.batch_size=0", r"optim.batch_size must be >= 1"),
    ("optim.batch_size=100000000", r"optim.batch_size must be <= 1048576"),
    ("optim.eval_batch_size=100000000", r"optim.eval_batch_size must be <= 1048576"),
    ("train.max_train_seconds=0", r"train.max_train_seconds must be null .* or a finite number > 0"),
    ("train.max_train_seconds=-5", r"train.max_train_seconds must be"),
    ("train.max_train_seconds=.inf", r"train.max_train_seconds must be"),
    ("train.epochs=0", r"train.epochs must be >= 1"),
    ("train.epochs=1000000000", r"train.epochs must be <= 100000"),
    ("train.seed=-1", r"train.seed must be >= 0"),
    ("train.seed=100000000000", r"train.seed must be <= 4294967295"),
    ("train.device=cpux", r"train.device must be auto, cpu, cuda\[:N\] or mps"),
    ("tokenizer.vocab_size=1000000000", r"tokenizer.vocab_size must be <= 16777216"),
    ("tokenizer.vocab_size=2", r"tokenizer.vocab_size must be >= 3"),
    ("tokenizer.max_length=0", r"tokenizer.max_length must be >= 1"),
    ("tokenizer.max_length=100000000", r"tokenizer.max_length must be <= 1048576"),
    ("tokenizer.min_freq=0", r"tokenizer.min_freq must be >= 1"),
    ("data.train=''", r"data.train must name the training data"),
    ("model.ensemble=1000", r"model.ensemble must be <= 256"),
    ("model.name=lstm", r"model.name 'lstm' is unknown; choose auto or one of bag-attn, bilstm-attn"),
    (
        "model.options={no_such_option: 1}",
        r"model.options: unknown field\(s\) for BiLSTMAttnConfig: 'no_such_option'",
    ),
    ("model.options={embed_dim: 0}", r"model.options: BiLSTMAttnConfig.embed_dim must be >= 1, got 0"),
    ("model.options={dropout: 1.5}", r"model.options: BiLSTMAttnConfig.dropout must be in \[0, 1\)"),
    ("model.options={embed_dim: big}", r"model.options: BiLSTMAttnConfig.embed_dim must be an integer"),
    ("model.options={vocab_size: 5}", r"model.options.vocab_size cannot be set: .*tokenizer.vocab_size"),
    ("model.options={num_classes: 3}", r"model.options.num_classes cannot be set"),
    ("model.options={max_length: 3}", r"model.options.max_length cannot be set: it is tokenizer.max_length"),
    ("model.options=[1, 2]", r"model.options must be a mapping"),
    ("model.options={embed_dim: 1000000000}", r"model: bilstm-attn would hold about .* parameters .* memory"),
    ("model.options={a: 1", r"override .*: the value is not valid YAML \(line 1, column \d+: "),
]


@pytest.mark.parametrize(("override", "pattern"), BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_values_are_one_line_config_errors(override: str, pattern: str) -> None:
    base = RunConfig().with_overrides(["model.name=bilstm-attn"])  # the messages name its config class
    if override == "optim.lr=0.5":
        base = base.with_overrides(["optim.weight_decay=2"])
    with pytest.raises(ConfigError, match=pattern) as info:
        base.with_overrides([override])
    assert "\n" not in str(info.value)


def test_good_values_at_the_bounds_are_accepted() -> None:
    config = RunConfig().with_overrides(
        [
            f"train.threads={max_threads()}",
            "train.threads=1",
            "optim.label_smoothing=0.99",
            "optim.grad_clip=0",
            "optim.weight_decay=0",
            "train.max_train_seconds=0.5",
            "train.device=cuda:1",
            "model.options={pooling_scorer: multihead, pooling_heads: 4}",
        ]
    )
    assert config.train.threads == 1 and config.optim.label_smoothing == 0.99
    assert max_threads() == 4 * (os.cpu_count() or 1)


def test_empty_config_file_is_an_error_not_the_default(tmp_path: Path) -> None:
    for text in ("", "\n\n", "# only a comment\n"):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=rf"{path}: is empty"):
            RunConfig.from_yaml(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("optim: {lr: [1\n", r"not valid YAML \(line \d+, column \d+: "),
        ("- a\n- b\n", r"the top level must be a mapping of sections, got list"),
        ("optim: {lr: 0}\n", r"optim.lr must be a finite number > 0"),
    ],
)
def test_config_file_errors_name_the_file_in_one_line(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern) as info:
        RunConfig.from_yaml(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_not_utf8_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=rf"{path}: not UTF-8 text"):
        RunConfig.from_yaml(path)


def _real_count(name: str, fields: dict[str, Any]) -> int:
    model = build_model(name, **fields)
    return sum(t.numel() for t in (*model.parameters(), *model.buffers()))


def _sizes(tiny: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for name in available_models("text"):
        cases.append((name, {"vocab_size": 3000, "num_classes": 2}))
        cases.append((name, {**COMMON, **tiny[name]}))
        wide = {"num_classes": 20, "pooling_queries": 3, "pooling_scorer": "multihead", "pooling_heads": 2}
        cases.append((name, {**COMMON, **tiny[name], **wide}))
    cases += [
        ("nb-attn", {**COMMON, **tiny["nb-attn"], "char_buckets": 61}),
        (
            "transformer",
            {"vocab_size": 50, "num_classes": 4, "embed_dim": 64, "ff_dim": 512, "num_layers": 3},
        ),
        (
            "bilstm-attn",
            {"vocab_size": 50, "num_classes": 2, "embed_dim": 32, "hidden_size": 96, "num_layers": 3},
        ),
        ("han", {"vocab_size": 50, "num_classes": 2, "word_hidden_size": 96, "sentence_hidden_size": 80}),
        ("cnn-attn", {"vocab_size": 50, "num_classes": 2, "num_filters": 96, "kernel_sizes": [3, 5, 7]}),
    ]
    return cases


def test_parameter_bound_bounds_the_real_count(tiny_configs: dict[str, dict[str, Any]]) -> None:
    """The reference is the built model's own count, for every registered model at several sizes."""
    for name, fields in _sizes(tiny_configs):
        torch.manual_seed(0)
        real = _real_count(name, fields)
        bound = parameter_bound(model_config_from_dict(name, fields))
        assert real <= bound, (name, fields, real, bound)
        if fields["vocab_size"] == 3000:  # default sizes: the tables dominate and the bound is close
            assert bound <= 20 * real, (name, real, bound)


@pytest.mark.slow  # building on the meta device imports torch._dynamo once (seconds)
def test_count_parameters_is_exact(tiny_configs: dict[str, dict[str, Any]]) -> None:
    for name in available_models("text"):
        fields = {**COMMON, **tiny_configs[name]}
        assert count_parameters(model_config_from_dict(name, fields)) == _real_count(name, fields), name


def _patch_memory(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(config_module, "physical_memory_bytes", lambda: size)


def test_memory_check_refuses_what_cannot_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    # bag-attn at 10k words x E=32 plus 2^17 bigram rows: 4.5M values, 18 MB of float32 weights.
    config = RunConfig().with_overrides(["model.name=bag-attn"])
    model = config.model_config(10_000, 2)
    real = _real_count("bag-attn", model.to_dict())
    # The exact count on the meta device is tested (slow) above; here the decision, with the real count.
    monkeypatch.setattr(config_module, "count_parameters", lambda _: real)
    _patch_memory(monkeypatch, 4 * real - 1)
    with pytest.raises(ConfigError, match=r"model: bag-attn would hold about 4\.\d+e\+06 parameters"):
        check_model_memory(config, 10_000, 2)
    _patch_memory(monkeypatch, 4 * real)  # exactly fits: the exact count decides, not the looser bound
    check_model_memory(config, 10_000, 2)
    # An ensemble multiplies it.
    with pytest.raises(ConfigError, match=r"bag-attn \(ensemble of 2\)"):
        check_model_memory(config.with_overrides(["model.ensemble=2"]), 10_000, 2)


def test_memory_check_uses_the_word_embedding_as_a_cheap_lower_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_meta_build(_: object) -> int:
        raise AssertionError("the embedding alone does not fit: no exact count needed")

    monkeypatch.setattr(config_module, "count_parameters", no_meta_build)
    with pytest.raises(ConfigError, match=r"more than this machine's .* of memory"):
        RunConfig().with_overrides(["model.options={embed_dim: 1000000000}"])


def test_physical_memory_is_read() -> None:
    size = config_module.physical_memory_bytes()
    assert size > 2**26 and math.isfinite(size)


def test_an_image_size_given_as_one_number_is_a_clear_error() -> None:
    """``--set image.size=24`` said "image: object of type 'int' has no len()"."""
    with pytest.raises(
        ConfigError, match=r"image\.size must be \[height, width\] \(two integers\) or null, got 24"
    ):
        RunConfig.from_dict({"image": {"size": 24}})
    from attnkit.train.config import ImageSection

    assert ImageSection(size=(32, 24)).size == [32, 24]  # type: ignore[arg-type]  # a tuple in Python
