"""What a new run may do to its output folder, checked before anything is written: a data mistake leaves no
half-made run behind (the corrected retry just works), a folder of the user's own is never trained into (a fresh
run removes files with run names), --resume refuses flags it would ignore, train.refit refuses a separate
validation file it would drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import attnkit
from attnkit.cli import main
from attnkit.train.config import ConfigError

FAST = ["--model", "bag-attn", "--epochs", "1", "--no-progress", "--set", "train.threads=1",
        "--set", "tokenizer.vocab_size=200"]  # fmt: skip


def one_class(path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": f"text {i}", "label": "a"}) + "\n" for i in range(50)))
    return path


def test_a_data_error_leaves_nothing_that_blocks_the_retry(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], quick_writes: None
) -> None:
    train, test = tiny_data
    out = tmp_path / "run"
    assert main(["train", "--data", str(one_class(tmp_path / "bad.jsonl")), "--out", str(out), *FAST]) == 2
    assert "class" in capsys.readouterr().err
    assert not (
        out / "config.yaml"
    ).exists()  # before: written first, so the retry said "already holds a run"
    assert main(["train", "--data", str(train), "--test", str(test), "--out", str(out), *FAST]) == 0
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("extra", [["--set", "train.refit=true"], ["--set", "model.ensemble=2"]])
def test_refit_and_ensemble_check_the_data_before_writing(
    tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert (
        main(["train", "--data", str(one_class(tmp_path / "bad.jsonl")), "--out", str(out), *FAST, *extra])
        == 2
    )
    capsys.readouterr()
    assert not (out / "config.yaml").exists()


def test_overwrite_with_bad_data_keeps_the_earlier_run(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], quick_writes: None
) -> None:
    train, test = tiny_data
    out = tmp_path / "run"
    assert main(["train", "--data", str(train), "--test", str(test), "--out", str(out), *FAST]) == 0
    weights = (out / "model.safetensors").read_bytes()
    bad = one_class(tmp_path / "bad.jsonl")
    assert main(["train", "--data", str(bad), "--out", str(out), "--overwrite", *FAST]) == 2
    capsys.readouterr()
    assert (out / "model.safetensors").read_bytes() == weights  # before: cleared, then the data error


def test_a_folder_of_the_users_own_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "metrics.json").write_text("{}")  # a name a fresh run would remove
    (mine / "notes.txt").write_text("mine")
    assert main(["train", "--out", str(mine), *FAST]) == 2
    err = capsys.readouterr().err
    assert "is not empty (metrics.json, notes.txt) and holds no attnkit run" in err and "--overwrite" in err
    assert (mine / "metrics.json").read_text() == "{}"
    with pytest.raises(ValueError, match="holds no attnkit run"):
        attnkit.fit(["a", "b"], ["x", "y"], out=mine)


def test_resume_refuses_flags_it_would_ignore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path), "--epochs", "9", "--set", "optim.lr=1"]) == 2
    err = capsys.readouterr().err
    assert "drop --epochs, --set" in err


def test_refit_refuses_a_separate_validation_file(tiny_data: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = tiny_data
    config = attnkit.build_config(
        overrides={"data.train": str(train), "data.val": str(test), "train.refit": True}
    )
    from attnkit.train.loop import fit

    with pytest.raises(ConfigError, match=r"data\.val names a separate file"):
        fit(config, tmp_path / "run")
