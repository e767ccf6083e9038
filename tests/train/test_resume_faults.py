"""A kill at every write point of a run, then ``--resume``: the same run directory as an uninterrupted run.

The machinery (write points, the kill, the comparison) is ``benchmarks/resume_faults.py``; see its docstring.
Here the kill is an exception raised before the k-th file-system change (and at every later one, so that, as after
``kill -9``, nothing more is written or cleaned up); the slow test runs the real ``SIGKILL`` sweep.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "resume_faults.py"


def _load_faults() -> ModuleType:
    spec = importlib.util.spec_from_file_location("resume_faults", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


faults = _load_faults()


def _check(totals: dict[str, object]) -> None:
    assert totals["failures"] == [], json.dumps(totals["failures"], indent=1)
    assert totals["written_in_place"] == []  # every file of the run was renamed into place whole
    assert totals["exact"] == totals["points"]
    assert totals["epochs_lost"] == 0


def test_a_kill_at_every_write_point_resumes_to_the_uninterrupted_run(
    tmp_path: Path, quick_writes: None
) -> None:
    """Plots are written as tiny files (the same write points, without matplotlib's time), and fsync is skipped (it
    matters for power loss, not for a killed process)."""
    config, _ = faults.scenario("plain", faults.tiny_config(tmp_path / "data"))
    totals = faults.sweep(config, tmp_path / "runs")
    _check(totals)
    # 2 epochs: both committed, and the points before the first commit start over.
    assert totals["commits"] == 2 and totals["points"] >= 30 and 0 < totals["started_over"] < totals["points"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["overwrite", "refit", "ensemble"])
def test_a_kill_at_every_write_point_of_other_runs(tmp_path: Path, quick_writes: None, name: str) -> None:
    """``overwrite``: a kill while the earlier run is cleared leaves that run resumable whole, never the new config
    on its checkpoint; ``refit`` and ``ensemble`` resume through the same checkpoints in their sub-runs."""
    config, prepare = faults.scenario(name, faults.tiny_config(tmp_path / "data"))
    totals = faults.sweep(config, tmp_path / "runs", prepare=prepare)
    _check(totals)
    if name == "overwrite":
        assert totals["earlier_run_kept"] > 0


@pytest.mark.slow
def test_a_real_kill_9_at_every_write_point(tmp_path: Path) -> None:
    """The benchmark's own sweep: a forked child SIGKILLs itself at each write point (rmtree file by file)."""
    out = tmp_path / "faults.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--work", str(tmp_path / "work"), "--rmtree-files", "--json", str(out)],
        check=True,
        timeout=3000,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    for totals in json.loads(out.read_text(encoding="utf-8"))["scenarios"]:
        _check(totals)
