"""``threads: auto``: the cores other processes leave idle, re-checked while a run goes on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from attnkit.threads import (
    CpuSample,
    ThreadGovernor,
    check_thread_setting,
    others_busy_cores,
    sample_cpu,
    threads_for,
    usable_cores,
)
from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.loop import fit


def test_others_busy_cores_subtracts_this_process() -> None:
    before = CpuSample(machine_busy=100.0, own=10.0, wall=50.0)
    after = CpuSample(machine_busy=103.0, own=11.0, wall=52.0)  # 3 CPU-s in 2 s, 1 of them ours
    assert others_busy_cores(before, after) == pytest.approx(1.0)
    # This process alone: nobody else is busy.
    assert others_busy_cores(before, CpuSample(102.0, 12.0, 51.0)) == pytest.approx(0.0)
    assert others_busy_cores(before, before) is None  # no time has passed


@pytest.mark.parametrize(
    ("others", "cores", "cap", "expected"),
    [
        (0.05, 2, None, 2),  # idle: every core
        (1.0, 2, None, 1),  # a CPU-bound process on one of two cores: one thread
        (0.6, 2, None, 1),  # a core 60% busy is not free
        (0.2, 2, None, 2),
        (7.0, 2, None, 1),  # overloaded: still one
        (None, 4, None, 4),  # load unknown: every core
        (0.0, 16, 6, 6),  # capped (a server's predict worker)
        (10.2, 16, None, 6),
    ],
)
def test_threads_for(others: float | None, cores: int, cap: int | None, expected: int) -> None:
    assert threads_for(others, cores, cap) == expected


class FakeMachine:
    """A clock and CPU counters the test moves by hand."""

    def __init__(self) -> None:
        self.now, self.busy, self.own = 0.0, 0.0, 0.0
        self.set_to: list[int] = []

    def run(self, seconds: float, *, others: float, own: float) -> None:
        self.now += seconds
        self.own += own * seconds
        self.busy += (others + own) * seconds

    def sample(self) -> CpuSample:
        return CpuSample(machine_busy=self.busy, own=self.own, wall=self.now)


def test_auto_governor_follows_the_load_of_other_processes() -> None:
    machine = FakeMachine()
    governor = ThreadGovernor(
        "auto",
        interval=5.0,
        sampler=machine.sample,
        setter=machine.set_to.append,
        clock=lambda: machine.now,
        cores=2,
    )
    machine.busy = 1.0
    governor.start()  # no time passes between the fake samples: load unknown, every core
    assert governor.threads == 2
    machine.run(3.0, others=1.0, own=1.0)
    governor.maybe_update()  # before the interval: nothing measured, nothing changed
    assert machine.set_to == [2]
    machine.run(3.0, others=1.0, own=1.0)  # a CPU-bound job started beside the run
    governor.maybe_update()
    assert governor.threads == 1
    machine.run(6.0, others=1.0, own=1.0)
    governor.maybe_update()  # still busy: stays at one thread, no new call
    assert machine.set_to == [2, 1]
    machine.run(6.0, others=0.02, own=1.0)  # the job ended
    governor.maybe_update()
    assert governor.threads == 2 and machine.set_to == [2, 1, 2]
    assert [threads for _, threads in governor.changes] == [2, 1, 2]
    assert [when for when, _ in governor.changes] == [0.0, 6.0, 18.0]


def test_fixed_and_default_settings_never_change() -> None:
    machine = FakeMachine()
    fixed = ThreadGovernor(3, sampler=machine.sample, setter=machine.set_to.append, clock=lambda: machine.now)
    assert fixed.start() == 3
    machine.run(60.0, others=5.0, own=1.0)
    fixed.maybe_update()
    assert machine.set_to == [3]
    untouched = ThreadGovernor(None, sampler=machine.sample, setter=machine.set_to.append)
    assert untouched.start() is None
    untouched.maybe_update()
    assert machine.set_to == [3]


def test_torchrun_ranks_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert ThreadGovernor("auto", cores=16).cap == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert ThreadGovernor("auto", cores=4).cap == 1


def test_the_real_machine_counters_count_this_process_as_its_own() -> None:
    before = sample_cpu()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # 0.3 CPU-s of our own
        pass
    after = sample_cpu()
    assert after.own - before.own >= 0.3
    if before.machine_busy is not None:  # Linux: our own time is in the machine's, and is not "others"
        assert after.machine_busy is not None
        assert after.machine_busy - before.machine_busy >= 0.8 * (after.own - before.own)
    others = others_busy_cores(before, after)
    assert others is None or 0.0 <= others <= usable_cores()


@pytest.mark.parametrize("value", [None, "auto", 1, 3, "2"])
def test_valid_settings(value: object) -> None:
    assert check_thread_setting(value, "train.threads") == (
        int(value) if isinstance(value, str) and value.isdigit() else value
    )


@pytest.mark.parametrize("value", [0, -1, "many", True, 1.5, 10**6])
def test_invalid_settings_name_the_key_and_the_choices(value: object) -> None:
    with pytest.raises(ValueError, match=r"^train.threads must be auto .*null .*\[1, \d+\]"):
        check_thread_setting(value, "train.threads")


def test_a_run_defaults_to_auto_and_records_its_threads(
    tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None
) -> None:
    train, test = tiny_data
    config = RunConfig.from_dict(
        {
            "data": {"train": str(train), "test": str(test)},
            "model": {"name": "bag-attn", "options": {"embed_dim": 8}},
            "tokenizer": {"vocab_size": 100, "max_length": 16},
            "train": {"epochs": 1, "progress": False, "calibrate": False},
        }
    )
    assert config.train.threads == "auto"
    metrics = fit(config, tmp_path / "run").metrics
    assert metrics["threads"]["setting"] == "auto"
    assert all(1 <= threads <= usable_cores() for _, threads in metrics["threads"]["changes"])
    assert metrics["threads"]["changes"][0][0] == 0.0
    with pytest.raises(ConfigError, match=r"train\.threads must be auto"):
        RunConfig.from_dict({"train": {"threads": "lots"}})


def test_commands_take_threads_and_start_a_governor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from attnkit import cli

    started: list[object] = []
    monkeypatch.setattr(
        ThreadGovernor, "start", lambda self, probe_seconds=0.25: started.append(self.setting)
    )
    parser = cli.build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        action.choices["predict"].set_defaults(handler=lambda args: 0)  # type: ignore[index]
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["predict", "RUN", "a text"]) == 0
    assert cli.main(["predict", "RUN", "a text", "--threads", "1"]) == 0
    assert started == ["auto", 1]
    with pytest.raises(SystemExit):
        cli.main(["predict", "RUN", "a text", "--threads", "0"])
    err = capsys.readouterr().err
    assert "--threads must be auto" in err and "null" not in err  # no null to write on a command line
