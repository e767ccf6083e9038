"""Fault injection over a real run directory: every damage, through ``attnkit.cli.main``, is a one-line error.

One tiny run is trained once for the module; each case damages a copy of it (``benchmarks/damaged_runs.py``
holds the catalogue, the commands and the classification; see its docstring) and checks what a user sees:
exit code 2, exactly one line on stderr, ``attnkit CMD: error: ...``, that names the file at fault, and no
traceback. Every damage goes through ``predict`` (and ``train --resume`` where resuming reads the file); every
command goes through a few damages; the full damages x commands matrix is the slow test (and the benchmark).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "damaged_runs.py"


def _load_catalogue() -> ModuleType:
    spec = importlib.util.spec_from_file_location("damaged_runs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


dr = _load_catalogue()
DAMAGES = {damage.name: damage for damage in dr.DAMAGES}
INPUTS = {case.name: case for case in dr.INPUTS}
#: One damage of each file, run through every command that reads a run.
EVERY_COMMAND = ("weights-truncated-half", "labels-extra-class", "config-empty", "tokenizer-json-garbage")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("damaged")
    return {**dr.train_tiny_run(work), "work": work}


def _check(outcome: object, expected: str = "clear") -> None:
    assert outcome.kind == expected, f"{outcome.case} / {outcome.command}: {outcome.kind}: {outcome.message}"  # type: ignore[attr-defined]


def _damage_commands() -> list[tuple[str, str]]:
    pairs = []
    for damage in dr.DAMAGES:
        commands = [c for c in ("predict", "resume") if c in damage.commands] or [damage.commands[0]]
        pairs += [(damage.name, command) for command in commands]
    return pairs


@pytest.mark.parametrize(
    ("damage", "command"), _damage_commands(), ids=[f"{d}/{c}" for d, c in _damage_commands()]
)
def test_every_damage_is_a_one_line_error_naming_the_file(
    trained: dict[str, Path], damage: str, command: str
) -> None:
    _check(dr.run_damage(DAMAGES[damage], command, trained, trained["work"]))


@pytest.mark.parametrize("command", [*dr.LOAD_COMMANDS, "resume"])
def test_every_command_refuses_damaged_runs_in_one_line(trained: dict[str, Path], command: str) -> None:
    for name in EVERY_COMMAND:
        if command in DAMAGES[name].commands:
            _check(dr.run_damage(DAMAGES[name], command, trained, trained["work"]))


@pytest.mark.parametrize("case", list(INPUTS))
def test_every_bad_input_is_a_one_line_error(trained: dict[str, Path], case: str) -> None:
    _check(dr.run_input(INPUTS[case], trained, trained["work"]))


def test_calibrate_replaces_a_damaged_calibration(trained: dict[str, Path]) -> None:
    """The error for a damaged calibration.json says to run calibrate: it must then work, and fix the run."""
    damage = DAMAGES["calibration-empty-object"]
    _check(dr.run_damage(damage, "calibrate", trained, trained["work"]), "accepted")
    run = trained["work"] / "damaged" / damage.name
    from attnkit.runs import read_temperature

    assert read_temperature(run) > 0
    _check(dr.run_cli(dr.fill(dr.LOAD_COMMANDS["predict"], run=run), (), damage.name, "predict"), "accepted")


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("damaged-ensemble")
    return {**dr.train_tiny_ensemble(work), "work": work}


def test_resuming_a_complete_ensemble_works(ensemble: dict[str, Path]) -> None:
    """The reference for the damages below: the same command over an undamaged copy runs."""
    copy = ensemble["work"] / "undamaged"
    shutil.copytree(ensemble["run"], copy)
    _check(dr.run_cli(dr.fill(dr.RESUME["resume"], run=copy), (), "undamaged", "resume"), "accepted")


@pytest.mark.parametrize("damage", [d.name for d in dr.ENSEMBLE_DAMAGES])
def test_resuming_an_ensemble_with_a_damaged_member_is_a_one_line_error(
    ensemble: dict[str, Path], damage: str
) -> None:
    """A truncated member weights file raised SafetensorError and a damaged labels.json a JSONDecodeError."""
    by_name = {d.name: d for d in dr.ENSEMBLE_DAMAGES}
    _check(dr.run_damage(by_name[damage], "resume", ensemble, ensemble["work"]))


@pytest.mark.slow
def test_every_damage_through_every_command(trained: dict[str, Path]) -> None:
    outcomes = [
        dr.run_damage(damage, command, trained, trained["work"])
        for damage in dr.DAMAGES
        for command in damage.commands
    ]
    bad = [f"{o.case} / {o.command}: {o.kind}: {o.message}" for o in outcomes if o.kind != "clear"]
    assert not bad, "\n".join(bad)
