"""The loop records the CPU time it trains for (besides wall-clock time), per evaluation and in total."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from attnkit.train.config import RunConfig
from attnkit.train.loop import fit


def _config(train: Path, test: Path) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {"train": str(train), "test": str(test)},
            "model": {"name": "bag-attn", "options": {"embed_dim": 16}},
            "tokenizer": {"vocab_size": 200, "max_length": 32},
            "train": {"epochs": 2, "progress": False, "calibrate": False, "threads": 1},
        }
    )


def test_cpu_seconds_are_recorded_and_bounded_by_the_wall_clock(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_writes: None
) -> None:
    # A process that only sleeps uses no CPU: a sleep in every step must show in the wall-clock time only.
    import attnkit.train.run as run

    real_step = run.torch.optim.AdamW.step

    def slow_step(self: object, *args: object, **kwargs: object) -> object:
        time.sleep(0.01)
        return real_step(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run.torch.optim.AdamW, "step", slow_step)
    train, test = tiny_data
    result = fit(_config(train, test), tmp_path / "run")
    metrics, history = result.metrics, result.metrics["history"]
    cpu = [h["train_cpu_seconds"] for h in history]
    assert cpu == sorted(cpu) and cpu[0] > 0
    assert metrics["train_cpu_seconds"] == pytest.approx(cpu[-1])
    steps = history[-1]["step"]
    # Each step slept 10 ms: the wall clock has them, the CPU clock does not (1 thread, so CPU <= wall).
    assert metrics["train_seconds"] >= 0.01 * steps
    assert metrics["train_cpu_seconds"] <= metrics["train_seconds"] - 0.008 * steps
