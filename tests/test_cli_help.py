"""--help is a user's manual: every command has a description and an example, options show their defaults, the
model list is the registry's, ``config show`` prints every key ``--set`` accepts, ``-v`` works anywhere."""

from __future__ import annotations

import argparse
import logging

import pytest
import yaml

from attnkit.cli import EXAMPLES, build_parser, configure_logging, main
from attnkit.configs import find_config, shipped_configs
from attnkit.models.registry import available_models
from attnkit.train.config import RunConfig


def _subparsers(parser: argparse.ArgumentParser, path: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                full = f"{path} {name}".strip()
                found[full] = child
                found.update(_subparsers(child, full))
    return found


def test_every_command_has_a_description_and_an_example() -> None:
    commands = _subparsers(build_parser())
    assert {"train", "predict", "explain", "serve", "config show", "data inspect"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description, name
        assert name in EXAMPLES, name
        assert f"attnkit {name}" in parser.format_help(), name  # the example is printed


def test_defaults_are_shown_and_the_model_list_is_complete() -> None:
    text = _subparsers(build_parser())["train"].format_help()
    for model in available_models():
        assert model in text
    assert f"default {RunConfig().model.name}" in text
    assert "(default 5)" in text  # epochs
    serve = _subparsers(build_parser())["serve"].format_help()
    assert "127.0.0.1" in serve


def test_config_show_prints_every_key_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == RunConfig().to_dict()
    assert (
        main(["config", "show", "--config", "imdb-nb-attn", "--set", "optim.lr=0.5", "--model-options"]) == 0
    )
    shown = yaml.safe_load(capsys.readouterr().out)
    expected = RunConfig.from_yaml(find_config("imdb-nb-attn")).with_overrides(["optim.lr=0.5"])
    assert shown["optim"] == expected.to_dict()["optim"]
    assert shown["model"]["name"] == "nb-attn"
    assert "embed_dim" in shown["model"]["options"]  # the model's own fields, with their defaults
    assert "vocab_size" not in shown["model"]["options"]  # set from the data
    assert main(["config", "list"]) == 0
    assert capsys.readouterr().out.split() == shipped_configs()


def test_shipped_configs_are_found_by_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in shipped_configs():
        assert find_config(name).is_file()
        assert find_config(f"{name}.yaml") == find_config(name)
        assert find_config(f"configs/{name}.yaml").name == f"{name}.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("train: {epochs: 2}\n")
    assert find_config(own) == own
    with pytest.raises(ValueError, match=r"shipped configs: .*imdb-nb-attn"):
        find_config("imdb-nope")


def test_verbose_anywhere_on_the_line() -> None:
    parser = build_parser()
    assert parser.parse_args(["-v", "config", "list"]).verbose is True
    assert parser.parse_args(["config", "list", "-v"]).verbose is True
    assert parser.parse_args(["train", "-v", "--out", "x"]).verbose is True
    assert parser.parse_args(["train", "--out", "x"]).verbose is False


def test_only_rank_zero_logs_info(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for rank, level in (("1", logging.WARNING), ("0", logging.INFO)):
            root.handlers.clear()
            monkeypatch.setenv("RANK", rank)
            configure_logging(verbose=False)
            assert root.level == level
        assert logging.getLogger("matplotlib").level == logging.WARNING
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def test_train_refuses_out_that_is_a_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "taken").write_text("x")
    assert main(["train", "--out", str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "RUN", "a text"],
        ["explain", "RUN", "a text"],
        ["evaluate", "RUN", "--data", "x.csv"],
        ["calibrate", "RUN"],
        ["faithfulness", "RUN", "--data", "x.csv"],
    ],
)
def test_inference_commands_take_a_device(
    command: list[str],
    tmp_path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    argv = [str(tmp_path) if part == "RUN" else part for part in command]
    assert build_parser().parse_args(argv).device == "auto"
    assert main([*argv, "--device", "tpu"]) == 2
    assert "device must be auto, cpu" in capsys.readouterr().err
