"""The CLI is a thin adapter: user mistakes become one-line errors with exit code 2, outputs are JSON."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.train import checkpoint as ckpt


def _train(train: Path, test: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "train", "--data", str(train), "--test", str(test), "--model", "bag-attn", "--out", str(out),
            "--epochs", "3", "--no-progress", "--set", "tokenizer.vocab_size=200", "--set", "optim.lr=0.01", *extra,
        ]
    )  # fmt: skip


def test_train_predict_evaluate(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], quick_writes: None
) -> None:
    train, test = tiny_data
    run = tmp_path / "run"
    assert _train(train, test, run) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["run_dir"] == str(run)

    assert main(["predict", str(run), "great wonderful film", "awful boring film"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["label"] for line in lines] == ["pos", "neg"]
    for line in lines:
        assert set(line["probabilities"]) == {"neg", "pos"}
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    assert main(["evaluate", str(run), "--data", str(test), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = ckpt.read_json(run / "metrics.json")
    assert report["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert {"macro_f1", "ece", "per_class", "confusion_matrix"} <= set(report)


def test_refuses_to_overwrite_a_run(
    tiny_data: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    trained_run: Callable[..., Path],
) -> None:
    train, test = tiny_data
    shutil.copytree(trained_run("bag-attn"), tmp_path / "run")  # a copy: a broken refusal would overwrite it
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert _train(train, test, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ('{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', "class"),
        ('{"text": "a", "label": "x"}\nnot json\n', "line 2"),
        ('{"body": "a", "label": "x"}\n', "text"),
    ],
    ids=["empty-file", "one-class", "bad-json", "missing-column"],
)
def test_bad_data_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "bad.jsonl" in err and message in err
    assert "Traceback" not in err


def test_unknown_model_lists_choices(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = tiny_data
    assert (
        main(
            ["train", "--data", str(train), "--model", "nope", "--out", str(tmp_path / "r"), "--no-progress"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "nope" in err and "bilstm-attn" in err


def test_kill_9_leaves_resumable_run(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], quick_writes: None
) -> None:
    """SIGKILL in the middle of training: every file on disk is complete and --resume finishes the run."""
    train, test = tiny_data
    run = tmp_path / "run"
    args = [
        sys.executable, "-m", "attnkit.cli", "train", "--data", str(train), "--test", str(test),
        "--model", "bag-attn", "--out", str(run), "--epochs", "6", "--no-progress",
        "--set", "tokenizer.vocab_size=200", "--set", "train.patience=100", "--set", "optim.lr=0.01",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    progress = run / "state" / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and not progress.exists():
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere inside a later epoch, possibly mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert progress.exists(), "no epoch finished before the kill"
    done = ckpt.read_json(progress)["epoch"]
    # The resume runs in this process (the killed training above is this command's real process), with
    # placeholder plots: no assertion reads them.
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0, capsys.readouterr().err
    metrics = ckpt.read_json(run / "metrics.json")
    assert metrics["history"][0]["epoch"] == 1
    assert metrics["epochs_run"] >= done + 1
    assert metrics["test"]["accuracy"] >= 0.9


def test_data_inspect_reports_duplicates_and_overlap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    rows = ["good film", "bad film", "good film", "fine film"]
    train.write_text("".join(json.dumps({"text": t, "label": str(i % 2)}) + "\n" for i, t in enumerate(rows)))
    test.write_text(
        json.dumps({"text": "bad film", "label": "1"})
        + "\n"
        + json.dumps({"text": "new", "label": "0"})
        + "\n"
    )
    assert main(["data", "inspect", str(train), "--test", str(test), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # 4 train rows, one exact duplicate ("good film" twice); "bad film" is in both train and test.
    assert report["splits"]["train"]["rows"] == 4
    assert report["splits"]["train"]["labels"] == {"0": 2, "1": 2}
    assert report["splits"]["train"]["duplicates"]["rows"] == 1
    assert report["splits"]["test"]["duplicates"]["rows"] == 0
    assert report["overlap"] == [{"a": "train", "b": "test", "shared_texts": 1}]
    assert report["splits"]["train"]["chars"]["mean"] == pytest.approx((9 + 8 + 9 + 9) / 4)
    assert main(["data", "inspect", str(train), "--test", str(test)]) == 0
    assert "train & test             1" in capsys.readouterr().out


def test_data_inspect_offline_never_downloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only AG News test is present locally: --offline lists train as missing instead of fetching it."""
    import gzip

    from attnkit.data.text import builtin

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download")

    monkeypatch.setattr(builtin, "fetch_url", no_network)
    (tmp_path / "ag_news").mkdir()
    rows = [{"text": f"story {i} about sports", "label": "Sports"} for i in range(3)] + [
        {"text": "a market story", "label": "Business"}
    ]
    with gzip.open(tmp_path / "ag_news" / "test.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    monkeypatch.setenv("ATTNKIT_DATA", str(tmp_path))
    assert main(["data", "inspect", "ag_news", "--offline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["test"]["rows"] == 4
    assert "train" in report["missing"]
