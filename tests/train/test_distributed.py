"""The same training under torchrun with 2 CPU processes (gloo) matches a single-process run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attnkit.cli import main
from attnkit.train import checkpoint as ckpt


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _train_args(train: Path, test: Path, out: Path) -> list[str]:
    return [
        "train", "--data", str(train), "--test", str(test), "--model", "bilstm-attn", "--out", str(out),
        "--epochs", "2", "--seed", "5", "--no-progress",
        "--set", "model.options={embed_dim: 16, hidden_size: 8, dropout: 0.0}",
        "--set", "tokenizer.vocab_size=200", "--set", "optim.batch_size=16", "--set", "train.threads=1",
    ]  # fmt: skip


def test_two_processes_match_one(
    tiny_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], quick_writes: None
) -> None:
    train, test = tiny_data
    # The single-process reference runs in this process (the same command; a process start less), with
    # placeholder plots (no assertion reads them; the torchrun processes below draw theirs).
    assert main(_train_args(train, test, tmp_path / "single")) == 0, capsys.readouterr().err
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}", "-m", "attnkit.cli",
            *_train_args(train, test, tmp_path / "ddp"),
        ],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr
    a = load_file(str(tmp_path / "single" / "state" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "state" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    m_single = ckpt.read_json(tmp_path / "single" / "metrics.json")
    m_ddp = ckpt.read_json(tmp_path / "ddp" / "metrics.json")
    assert m_ddp["world_size"] == 2 and m_single["world_size"] == 1
    assert abs(m_single["test"]["accuracy"] - m_ddp["test"]["accuracy"]) <= 0.01
    losses_single = [h["train_loss"] for h in m_single["history"]]
    losses_ddp = [h["train_loss"] for h in m_ddp["history"]]
    # Rank 0 reports the loss over its half of each batch: close to, not equal to, the full-batch mean.
    assert all(abs(x - y) < 0.1 for x, y in zip(losses_single, losses_ddp, strict=True))


def test_two_processes_follow_rank_zeros_plan_for_a_time_budget(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    """With ``train.fit_schedule_to_budget`` each rank measures its own speed; rank 0's plan is broadcast, so
    both stop after the same epoch (a rank that stopped alone would leave the other in an all-reduce)."""
    train, test = tiny_data
    args = _train_args(train, test, tmp_path / "ddp")
    args[args.index("--epochs") + 1] = "300"  # a cap no machine reaches in the budget: the plan decides
    args += ["--set", "train.max_train_seconds=2", "--set", "train.fit_schedule_to_budget=true"]
    args += ["--set", "optim.schedule=cosine", "--set", "train.patience=300"]
    ddp = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}", "-m", "attnkit.cli", *args,
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr
    metrics = ckpt.read_json(tmp_path / "ddp" / "metrics.json")
    ends = [h for h in metrics["history"] if float(h["epoch_progress"]).is_integer()]
    assert metrics["epochs_run"] == ends[-1]["planned_epochs"] == len(ends) < 300
    assert ends[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the decay was fitted to the epochs run
