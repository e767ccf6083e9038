"""``train.fit_schedule_to_budget``: the epochs that fit a time budget are planned from the measured speed and the
learning-rate schedule is stretched over them, so it ends at the budget with its decay complete.

The runs use a fake clock that advances only in the optimizer step (one "second" a step unless a test slows it),
so every plan, learning rate and stop is known by hand.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import attnkit.train.run as run
from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.loop import fit, refit_config
from attnkit.train.optim import LearningRateSchedule, epochs_within_budget, replan_epochs

from .test_fit import interrupt_after_saves, tiny_config

CAP = 10


def _fake_clock(monkeypatch: pytest.MonkeyPatch, seconds_per_step: Any) -> None:
    """``run.time.perf_counter`` advances by ``seconds_per_step(step)`` in each optimizer step and never else."""
    clock = {"now": 0.0, "steps": 0}
    monkeypatch.setattr(
        run, "time", SimpleNamespace(perf_counter=lambda: clock["now"], process_time=time.process_time)
    )
    real_step = run.torch.optim.AdamW.step

    def timed_step(self: object, *args: object, **kwargs: object) -> object:
        clock["now"] += seconds_per_step(clock["steps"])
        clock["steps"] += 1
        return real_step(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run.torch.optim.AdamW, "step", timed_step)


def _clocked_epoch_steps(
    monkeypatch: pytest.MonkeyPatch, tiny_data: tuple[Path, Path], tmp_path: Path, later: float = 1.0
) -> int:
    """Install the fake clock (1 s a step for the first epoch of the next run, ``later`` s after it) and return
    the steps of one epoch, counted by a one-epoch run that the clock times at 1 s a step."""
    holder: dict[str, float] = {}
    _fake_clock(monkeypatch, lambda step: 1.0 if step < holder.get("steps", math.inf) else later)
    train, test = tiny_data
    steps = _steps_per_epoch(fit(tiny_config(train, test, epochs=1), tmp_path / "probe").metrics["history"])
    holder["steps"] = 2 * steps  # this run's steps, then the next run's first epoch
    return steps


def _config(train: Path, test: Path, budget: float) -> RunConfig:
    return tiny_config(train, test, epochs=CAP).with_overrides(
        [
            "optim.schedule=cosine",
            "optim.warmup_fraction=0.2",
            "train.eval_every_steps=1",  # a record (and its learning rate) after every step
            "train.calibrate=false",
            "train.patience=100",
            f"train.max_train_seconds={budget}",
            "train.fit_schedule_to_budget=true",
        ]
    )


def _steps_per_epoch(history: list[dict[str, Any]]) -> int:
    return next(h["step"] for h in history if h["epoch_progress"] == 1.0)


def test_epochs_within_budget_by_hand() -> None:
    assert epochs_within_budget(600, 45, done=0, cap=30) == 13  # 13 * 45 = 585 <= 600 < 630
    assert epochs_within_budget(600, 40, done=0, cap=30) == 15  # exactly the budget fits
    assert epochs_within_budget(600, 10, done=0, cap=30) == 30  # never more than the cap
    assert epochs_within_budget(100, 45, done=4, cap=30) == 6  # done + what the rest of the budget holds
    assert epochs_within_budget(-5, 45, done=4, cap=30) == 4  # over budget: stop, never before what is done
    assert epochs_within_budget(600, 900, done=0, cap=30) == 1  # at least one epoch


def test_replanning_has_hysteresis_by_hand() -> None:
    """An epoch time wobbling around a boundary (13 epochs of 46 s are 598 s of a 600 s budget) does not flip
    the plan: it grows only with 12 s (2%) to spare and shrinks only when it would overrun."""
    plan = replan_epochs(30, 600, 47.0, done=0, cap=30, margin_seconds=12)  # the probe: 12 fit
    assert plan == 12
    plan = replan_epochs(plan, 600 - 46, 46.0, done=1, cap=30, margin_seconds=12)  # 13 would end at 598 s
    assert plan == 12
    plan = replan_epochs(plan, 600 - 2 * 45, 45.0, done=2, cap=30, margin_seconds=12)  # 13 end at 585 s
    assert plan == 13
    plan = replan_epochs(plan, 600 - 3 * 46, 46.0, done=3, cap=30, margin_seconds=12)  # 13 end at 598 s: kept
    assert plan == 13
    plan = replan_epochs(plan, 600 - 4 * 47, 47.0, done=4, cap=30, margin_seconds=12)  # 13 would end at 611 s
    assert plan == 12


def test_a_plan_does_not_grow_in_its_last_quarter_by_hand() -> None:
    """A machine that speeds up late: after 9 of 11 planned epochs, 2 more of 30 s would leave 200 s, room for
    another epoch. Growing to 12 would stretch the decay again near its end, raising the learning rate from
    11% to 20% of its peak; the plan keeps its 11. Earlier in the plan the same spare time still grows it."""
    late = replan_epochs(11, 260, 30.0, done=9, cap=40, margin_seconds=12)
    assert late == 11
    assert replan_epochs(11, 260, 30.0, done=8, cap=40, margin_seconds=12) == 16  # 8 < 0.75 * 11: it grows
    assert (
        replan_epochs(11, 40, 30.0, done=9, cap=40, margin_seconds=12) == 10
    )  # shrinking is never held back
    # A short plan always may grow: a first-epoch probe that planned one epoch gets the budget it left unused.
    assert replan_epochs(1, 500, 10.0, done=1, cap=40, margin_seconds=12) == 40
    assert replan_epochs(3, 500, 10.0, done=3, cap=40, margin_seconds=12) == 40
    before, after = LearningRateSchedule(11, 0.15, "cosine"), LearningRateSchedule(12, 0.15, "cosine")
    assert before(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * (9 - 1) / (11 - 1))))
    assert after(9) > 1.5 * before(9)  # what growing would have done


def test_a_stretched_schedule_follows_its_new_length_by_hand() -> None:
    schedule = LearningRateSchedule(100, 0.1, "cosine")
    assert (schedule.total_steps, schedule.warmup_steps) == (100, 10)
    assert schedule(4) == pytest.approx(5 / 10)
    schedule.stretch(40)
    assert (schedule.total_steps, schedule.warmup_steps) == (40, 4)
    assert schedule(2) == pytest.approx(3 / 4)
    assert schedule(22) == pytest.approx(0.5)  # half-way through the decay (steps 4..40)
    assert schedule(40) == pytest.approx(0.0)


def test_the_run_fits_its_epochs_and_a_complete_decay_to_the_budget(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_writes: None
) -> None:
    train, test = tiny_data
    steps = _clocked_epoch_steps(monkeypatch, tiny_data, tmp_path)
    budget = 3.5 * steps  # three epochs of one second a step, and half of a fourth
    result = fit(_config(train, test, budget), tmp_path / "run")
    metrics, history = result.metrics, result.metrics["history"]
    assert metrics["epochs_run"] == 3
    assert metrics["train_seconds"] == pytest.approx(3 * steps) and metrics["train_seconds"] <= budget
    probe = max(2, steps // 20)  # planned before step probe + 1 (from the speed of steps 1 .. probe - 1)
    assert probe < steps  # the first epoch has its probe
    lr = 0.01
    before = LearningRateSchedule(CAP * steps, 0.2, "cosine")
    after = LearningRateSchedule(3 * steps, 0.2, "cosine")
    for record in history:  # record n holds the learning rate the scheduler set for step n
        n = record["step"]
        expected = before(n) if n <= probe else after(n)
        assert record["lr"] == pytest.approx(lr * expected, abs=1e-12), n
        assert record["planned_epochs"] == (CAP if n <= probe else 3)
    assert history[-1]["step"] == 3 * steps and history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_a_machine_that_slows_down_gets_fewer_epochs_within_the_budget(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_writes: None
) -> None:
    train, test = tiny_data
    steps = _clocked_epoch_steps(monkeypatch, tiny_data, tmp_path, later=2.0)  # slower from epoch 2 on
    budget = 5.5 * steps
    result = fit(_config(train, test, budget), tmp_path / "run")
    ends = [h for h in result.metrics["history"] if float(h["epoch_progress"]).is_integer()]
    # Planned 5 after epoch 1 (4.5 epochs of time left at 1 s a step), then 3 at 2 s a step: 1 + 2 + 2 = 5 <= 5.5.
    assert [h["planned_epochs"] for h in ends] == [5, 5, 3]
    assert result.metrics["epochs_run"] == 3
    assert result.metrics["train_seconds"] == pytest.approx(5 * steps)
    # The decay was re-stretched over 3 epochs: it still ends at 0 with the last step.
    assert ends[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_a_slowdown_in_the_last_epochs_still_finishes_the_decay(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_writes: None
) -> None:
    """Planned 3 epochs; from epoch 2 on each step takes 1.4 s. After epoch 2 (2.4 epochs of time) the third no
    longer fits the 3.5 left, but budget is left: the run keeps it, ends 0.3 epochs past the budget and its
    learning rate reaches 0, rather than stopping after 2 epochs in mid-decay."""
    train, test = tiny_data
    steps = _clocked_epoch_steps(monkeypatch, tiny_data, tmp_path, later=1.4)
    result = fit(_config(train, test, 3.5 * steps), tmp_path / "run")
    ends = [h for h in result.metrics["history"] if float(h["epoch_progress"]).is_integer()]
    assert [h["planned_epochs"] for h in ends] == [3, 3, 3]
    assert result.metrics["epochs_run"] == 3
    assert result.metrics["train_seconds"] == pytest.approx(3.8 * steps)
    assert ends[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    # The same decision by hand, in epochs of one second a step: 1.1 left, 1.2 an epoch.
    assert replan_epochs(3, 1.1, 1.2, done=2, cap=10, margin_seconds=0.07) == 3
    assert replan_epochs(3, -0.1, 1.2, done=2, cap=10, margin_seconds=0.07) == 2  # no budget left: stop


def test_an_interrupted_budgeted_run_resumes_on_the_same_plan(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_writes: None
) -> None:
    train, test = tiny_data
    steps = _clocked_epoch_steps(monkeypatch, tiny_data, tmp_path)
    config = _config(train, test, 3.5 * steps)
    full = fit(config, tmp_path / "full").metrics
    interrupt_after_saves(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "cut")
    resumed = fit(RunConfig(), tmp_path / "cut", resume=True).metrics
    assert resumed["epochs_run"] == full["epochs_run"] == 3
    keys = ("step", "lr", "planned_epochs", "train_loss")
    assert [{k: h[k] for k in keys} for h in resumed["history"]] == [
        {k: h[k] for k in keys} for h in full["history"]
    ]


def test_fitting_the_schedule_needs_a_budget_and_a_refit_keeps_its_epochs() -> None:
    with pytest.raises(
        ConfigError, match=r"train.fit_schedule_to_budget needs a budget .*train.max_train_seconds"
    ):
        RunConfig().with_overrides(["train.fit_schedule_to_budget=true"])
    config = RunConfig().with_overrides(["train.max_train_seconds=600", "train.fit_schedule_to_budget=true"])
    refit = refit_config(config, 7)
    assert refit.train.epochs == 7 and not refit.train.fit_schedule_to_budget
