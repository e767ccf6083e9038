"""Kill a training run at every write point, resume it, and compare with an uninterrupted run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/resume_faults.py --work /tmp/faults \
        --scenarios plain,refit,ensemble,overwrite --json benchmarks/results/resume-faults.json

A write point is every file-system change a run makes under its directory: each ``os.replace``, ``rename``,
``link``, ``unlink``, ``rmdir`` and ``mkdir`` that changes something (a ``shutil.rmtree`` counts as one, or, with
``--rmtree-files``, each file it deletes). The uninterrupted run is counted first; then, for each point ``k``, a
forked child trains the same run and sends itself ``SIGKILL`` right before its ``k``-th change (a real
``kill -9``: no ``finally``, no cleanup, temporary files stay), and this process resumes the run with
``fit(..., resume=True)`` (or, if the kill came before ``config.yaml`` existed, trains it again, as a user
would). The resumed run directory must then equal the uninterrupted one: every tensor bit for bit, every JSON
file but its timings, every other file byte for byte, and nothing else (no leftover temporary file or half
checkpoint). ``epochs_lost`` counts committed epochs that a resume trained again (the design says 0).

``--in-process`` raises an exception instead of the kill (what the default test suite does, in
``tests/train/test_resume_faults.py``, which imports this file).

Scenarios (bag-attn on 64 synthetic texts, 2 epochs of 3 steps, validated after step 2 and at each epoch's end):
``plain``; ``refit`` (``train.refit``: validated run, then refit); ``ensemble`` (2 members); ``refit-ensemble``
(2 members, each validated for 1 epoch then refitted); ``overwrite`` (the plain run trained over an earlier run
with another config: a kill while that run is cleared must leave it resumable whole).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from attnkit.train import checkpoint as ckpt
from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.loop import fit

POSITIVE, NEGATIVE = ["great", "superb", "loved"], ["awful", "boring", "hated"]
FILLER = ["the", "a", "film", "plot", "was", "and", "very", "it"]
SCENARIOS = ("plain", "refit", "ensemble", "refit-ensemble", "overwrite")


class Killed(BaseException):
    """The in-process kill: a BaseException (like KeyboardInterrupt), so no ``except Exception`` swallows it."""


class WritePoints:
    """Count the file-system changes under ``root``; with ``kill_at = k``, call ``kill`` before the k-th.

    After the kill every later change raises :class:`Killed`, as a dead process changes nothing more. ``events``
    lists ``(op, path, target)`` of each counted change in order (``target``: a rename's, replace's or link's).
    """

    OPS = ("replace", "rename", "link", "unlink", "rmdir", "mkdir")

    def __init__(
        self,
        root: Path,
        kill_at: int | None = None,
        kill: Callable[[str], None] | None = None,
        *,
        rmtree_files: bool = False,
    ) -> None:
        self.root = str(root.resolve())
        self.kill_at = kill_at
        self.kill = kill or self.raise_killed
        self.rmtree_files = rmtree_files
        self.events: list[tuple[str, str, str]] = []
        self.killed = False
        self._in_rmtree = False

    @staticmethod
    def raise_killed(where: str) -> None:
        raise Killed(where)

    def _changes(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        if self._in_rmtree and not self.rmtree_files:
            return False
        if kwargs.get("dir_fd") is not None or kwargs.get("src_dir_fd") is not None:
            return True  # inside shutil.rmtree, under a folder already counted as ours
        path = os.path.abspath(os.fsdecode(args[0]))
        if not path.startswith(self.root):
            return False
        return not os.path.exists(path) if op == "mkdir" else os.path.lexists(path)

    def count(self, op: str, path: str, target: str = "") -> None:
        if self.killed:
            raise Killed(f"{op} {path} after the kill")
        if self.kill_at is not None and len(self.events) + 1 == self.kill_at:
            self.killed = True
            self.kill(f"killed before {op} {path}")
        self.events.append((op, path, target))

    @contextmanager
    def installed(self) -> Iterator[WritePoints]:
        """Patch ``os`` and ``shutil.rmtree`` for the duration (this process only)."""
        saved = {op: getattr(os, op) for op in self.OPS}
        real_rmtree = shutil.rmtree

        def wrap(op: str, real: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if self._changes(op, args, kwargs):
                    target = os.fsdecode(args[1]) if len(args) > 1 and op != "mkdir" else ""
                    self.count(op, os.fsdecode(args[0]), target)
                return real(*args, **kwargs)

            return wrapper

        def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
            if not self._in_rmtree and os.path.lexists(path) and not self.rmtree_files:
                self.count("rmtree", os.fsdecode(path))
            outer, self._in_rmtree = self._in_rmtree, True
            try:
                real_rmtree(path, *args, **kwargs)
            finally:
                self._in_rmtree = outer

        try:
            for op, real in saved.items():
                setattr(os, op, wrap(op, real))
            shutil.rmtree = rmtree  # type: ignore[assignment]
            yield self
        finally:
            for op, real in saved.items():
                setattr(os, op, real)
            shutil.rmtree = real_rmtree  # type: ignore[assignment]


def strip_timings(value: Any) -> Any:
    """``value`` without the entries that measure time (they differ between any two runs)."""
    if isinstance(value, dict):
        return {
            k: strip_timings(v)
            for k, v in value.items()
            if not (k.endswith("seconds") or k.endswith("per_second"))
        }
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    return value


def snapshot(run: Path) -> dict[str, Any]:
    """Every file of a run directory by relative path: tensors, JSON without timings, else bytes (the checkpoint
    manifest, which records JSON file sizes, is left out)."""
    files: dict[str, Any] = {}
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        name = str(path.relative_to(run))
        if path.suffix == ".safetensors":
            files[name] = load_file(str(path))
        elif path.suffix == ".json" and path.name != ckpt.MANIFEST_FILE:
            files[name] = strip_timings(json.loads(path.read_text(encoding="utf-8")))
        elif path.suffix != ".json":
            files[name] = path.read_bytes()
    return files


def differences(reference: dict[str, Any], run: Path) -> list[str]:
    """What differs between ``run`` and a :func:`snapshot` (empty when the runs are the same)."""
    got = snapshot(run)
    found = [f"missing {name}" for name in sorted(set(reference) - set(got))]
    found += [f"extra {name}" for name in sorted(set(got) - set(reference))]
    for name in sorted(set(reference) & set(got)):
        expected, actual = reference[name], got[name]
        if name.endswith(".safetensors"):
            if expected.keys() != actual.keys() or any(
                not torch.equal(expected[k], actual[k]) for k in expected
            ):
                found.append(f"different tensors in {name}")
        elif expected != actual:
            found.append(f"different {name}")
    return found


def committed_epochs(run: Path) -> int:
    """Epochs in the committed checkpoints of ``run`` and of the runs inside it (validated run, members)."""
    total = 0
    for folder in [run, *(p for p in run.rglob("*") if p.is_dir())]:
        progress = ckpt.training_progress(folder)
        total += 0 if progress is None else int(progress["epoch"]) + 1
    return total


def _kill_in_child(config: RunConfig, run: Path, root: Path, k: int, rmtree_files: bool) -> None:
    """Train ``run`` in a forked child that SIGKILLs itself before its k-th write point; wait for it."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:

            def kill(_: str) -> None:
                os.kill(os.getpid(), signal.SIGKILL)

            with WritePoints(root, kill_at=k, kill=kill, rmtree_files=rmtree_files).installed():
                fit(config, run)
            code = 4  # finished without reaching point k
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        raise RuntimeError(f"write point {k}: the child was not killed (wait status {status})")


def sweep(
    config: RunConfig,
    root: Path,
    *,
    real_kill: bool = False,
    prepare: Callable[[Path], None] | None = None,
    rmtree_files: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Kill ``config``'s run at each of its write points in turn and resume it (see the module docstring).

    ``prepare(run_dir)`` first trains an earlier run into every run directory (the ``--overwrite`` case): a kill
    before the new run's ``config.yaml`` replaced the earlier one must resume the earlier run, whole.

    Returns ``points``, ``exact`` (resumes equal to the uninterrupted run), ``started_over`` (no checkpoint
    yet), ``earlier_run_kept`` (overwrite killed before the new config), ``epochs_lost``, ``failures`` and
    ``written_in_place`` (files of the uninterrupted run not moved into place by a rename: must be none).
    """
    root.mkdir(parents=True, exist_ok=True)
    earlier = root / "earlier"
    earlier_config: RunConfig | None = None
    earlier_snapshot: dict[str, Any] = {}
    if prepare is not None:
        prepare(earlier)
        earlier_config, earlier_snapshot = RunConfig.from_yaml(earlier / "config.yaml"), snapshot(earlier)
    reference_dir = root / "reference"
    if prepare is not None:
        shutil.copytree(earlier, reference_dir)
    counter = WritePoints(root, rmtree_files=rmtree_files)
    with counter.installed():
        fit(config, reference_dir)
    reference = snapshot(reference_dir)
    # Every file of the run must have been moved into place whole (a checkpoint's files inside state.new/).
    replaced = {os.path.abspath(t) for op, _, t in counter.events if op == "replace"}
    in_place = [
        str(path.relative_to(reference_dir))
        for path in sorted(reference_dir.rglob("*"))
        if path.is_file()
        and str(path) not in replaced
        and str(path).replace(f"/{ckpt.STATE_DIR}/", f"/{ckpt.STAGING_DIR}/") not in replaced
    ]
    commits = [
        i for i, (_, _, target) in enumerate(counter.events) if target.endswith(f"/{ckpt.MANIFEST_FILE}")
    ]
    totals: dict[str, Any] = {
        "points": len(counter.events),
        "commits": len(commits),
        "exact": 0,
        "started_over": 0,
        "earlier_run_kept": 0,
        "epochs_lost": 0,
        "failures": [],
        "written_in_place": in_place,
    }
    for k in range(1, len(counter.events) + 1):
        run = root / f"kill-{k}"
        if prepare is not None:
            shutil.copytree(earlier, run)
        if real_kill:
            _kill_in_child(config, run, root, k, rmtree_files)
        else:
            try:
                with WritePoints(root, kill_at=k, rmtree_files=rmtree_files).installed():
                    fit(config, run)
                raise RuntimeError(f"write point {k}: the run finished without being killed")
            except Killed:
                pass
        op, path, _ = counter.events[k - 1]
        where = f"kill before point {k} ({op} {os.path.relpath(path, reference_dir)})"
        expected_epochs = sum(1 for i in commits if i < k - 1)  # manifests written before the kill
        try:
            if not (run / "config.yaml").is_file():
                try:
                    fit(RunConfig(), run, resume=True)
                    raise RuntimeError("resume without config.yaml did not refuse")
                except ConfigError:
                    fit(config, run)  # what a user does next: train it again
                totals["started_over"] += 1
                wanted = reference
            elif RunConfig.from_yaml(run / "config.yaml") == earlier_config:
                fit(RunConfig(), run, resume=True)  # killed while the earlier run was cleared
                totals["earlier_run_kept"] += 1
                wanted = earlier_snapshot
            else:
                committed = committed_epochs(run)
                totals["epochs_lost"] += max(0, expected_epochs - committed)
                totals["started_over"] += committed == 0
                fit(RunConfig(), run, resume=True)
                wanted = reference
            found = differences(wanted, run)
        except Exception as err:  # a failed resume is a finding, reported with the others
            found = [f"{type(err).__name__}: {err}"]
        if found:
            totals["failures"].append({"point": k, "where": where, "differences": found[:5]})
        else:
            totals["exact"] += 1
        if log:
            log(f"{where}: {'exact' if not found else '; '.join(found[:3])}")
        shutil.rmtree(run)
    return totals


def _rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def tiny_config(folder: Path) -> RunConfig:
    """bag-attn on 64 short texts: 2 epochs of 3 steps, validated after step 2 of each epoch and at its end."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n, seed in (("train", 64, 1), ("test", 16, 2)):
        paths[split] = folder / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in _rows(n, seed)), encoding="utf-8")
    return RunConfig.from_dict(
        {
            "data": {"train": str(paths["train"]), "test": str(paths["test"]), "val_fraction": 0.25},
            "tokenizer": {"level": "word", "vocab_size": 50, "max_length": 16},
            "model": {"name": "bag-attn", "options": {"embed_dim": 8, "bigram_buckets": 31, "dropout": 0.1}},
            "optim": {"lr": 0.05, "batch_size": 16},
            "train": {"epochs": 2, "seed": 5, "progress": False, "threads": 1, "eval_every_steps": 2},
        }
    )


def scenario(name: str, base: RunConfig) -> tuple[RunConfig, Callable[[Path], None] | None]:
    """The config of a scenario and, for ``overwrite``, the earlier run to train first."""
    if name == "overwrite":
        earlier = base.with_overrides(["optim.lr=0.01", "train.epochs=3"])

        def train_earlier(run: Path) -> None:
            fit(earlier, run)

        return base, train_earlier
    overrides = {
        "plain": [],
        "refit": ["train.refit=true"],
        "ensemble": ["model.ensemble=2"],
        "refit-ensemble": ["model.ensemble=2", "train.refit=true", "train.epochs=1"],
    }[name]
    return base.with_overrides(overrides), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="scratch folder (emptied first)")
    parser.add_argument("--scenarios", default="plain", help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--in-process", action="store_true", help="raise an exception instead of SIGKILL")
    parser.add_argument("--rmtree-files", action="store_true", help="a write point per file rmtree deletes")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--verbose", action="store_true", help="one line per write point")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    base = tiny_config(work / "data")
    report: dict[str, Any] = {
        "kill": "in-process exception" if args.in_process else "SIGKILL",
        "scenarios": [],
    }
    for name in args.scenarios.split(","):
        config, prepare = scenario(name, base)
        began = time.perf_counter()
        totals = sweep(
            config,
            work / name,
            real_kill=not args.in_process,
            prepare=prepare,
            rmtree_files=args.rmtree_files,
            log=print if args.verbose else None,
        )
        totals = {"scenario": name, **totals, "seconds": round(time.perf_counter() - began, 1)}
        report["scenarios"].append(totals)
        print(
            f"{name}: {totals['points']} write points ({totals['commits']} checkpoints), {totals['exact']} resumes "
            f"exact, {totals['started_over']} started over, {totals['earlier_run_kept']} kept the earlier run, "
            f"{totals['epochs_lost']} committed epochs lost, {len(totals['failures'])} failures "
            f"({totals['seconds']} s)",
            flush=True,
        )
        if totals["written_in_place"]:
            print(f"  written in place: {', '.join(totals['written_in_place'])}", flush=True)
        for failure in totals["failures"]:
            print(f"  {failure['where']}: {'; '.join(failure['differences'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    sys.exit(1 if any(s["failures"] or s["written_in_place"] for s in report["scenarios"]) else 0)


if __name__ == "__main__":
    main()
