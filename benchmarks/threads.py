"""``train.threads``: one thread, every core, and ``auto``, on an idle machine and beside a CPU-bound process.

Trains the shipped IMDb configs of ``--models`` for one epoch on the first ``--train`` training reviews (scored
on ``--test`` test reviews) with each thread setting, first on the machine as it is (run it idle), then with a
second process spinning on one core (``while True: pass``) for the whole measurement. Reports training
examples per second of each run, and the thread counts ``auto`` chose.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/threads.py --out benchmarks/results/threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from attnkit.bench.machine import machine_info
from attnkit.data import load_source
from attnkit.threads import usable_cores
from attnkit.train.config import RunConfig
from attnkit.train.loop import fit

ROOT = Path(__file__).resolve().parents[1]


def write_subset(source: str, n: int, path: Path) -> Path:
    """The first ``n`` reviews of each label of ``source`` as JSONL (IMDb's files are sorted by label)."""
    examples = load_source(source)
    by_label: dict[str, list[Any]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    rows = [ex for group in by_label.values() for ex in group[: n // len(by_label)]]
    with path.open("w", encoding="utf-8") as f:
        for ex in rows:
            f.write(json.dumps({"text": ex.text, "label": ex.label}) + "\n")
    return path


def run(model: str, setting: int | str, train: Path, test: Path, work: Path) -> dict[str, Any]:
    config = RunConfig.from_yaml(ROOT / "configs" / f"imdb-{model}.yaml").with_overrides(
        [
            f"data.train={train}",
            f"data.test={test}",
            "train.epochs=1",
            "train.progress=false",
            "train.calibrate=false",
            f"train.threads={setting}",
        ]
    )
    start = time.perf_counter()
    metrics = fit(config, work / f"{model}-{setting}").metrics
    history = metrics["history"]
    return {
        "model": model,
        "threads": setting,
        "train_examples_per_second": history[-1]["train_examples_per_second"],
        "train_seconds": metrics["train_seconds"],
        "train_cpu_seconds": metrics["train_cpu_seconds"],
        "threads_used": metrics["threads"]["changes"],
        "test_accuracy": metrics["test"]["accuracy"],
        "wall_seconds": time.perf_counter() - start,
        "load_average": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["bag-attn", "bilstm-attn", "nb-attn"])
    parser.add_argument("--settings", nargs="+", default=["1", str(usable_cores()), "auto"])
    parser.add_argument("--train", type=int, default=4000, help="training reviews (half of each label)")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--situations", nargs="+", default=["idle", "busy"], choices=["idle", "busy"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings: list[int | str] = [int(s) if s.isdigit() else s for s in args.settings]
    report: dict[str, Any] = {"machine": machine_info(), "cores": usable_cores(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train = write_subset("imdb:train", args.train, work / "train.jsonl")
        test = write_subset("imdb:test", args.test, work / "test.jsonl")
        for situation in args.situations:
            spinner = None
            if situation == "busy":
                spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            try:
                for model in args.models:
                    for setting in settings:
                        record = run(model, setting, train, test, work / situation)
                        record["situation"] = situation
                        report["runs"].append(record)
                        print(
                            f"{situation:5s} {model:12s} threads={setting!s:5s} "
                            f"{record['train_examples_per_second']:8.0f} ex/s  auto chose "
                            f"{[t for _, t in record['threads_used']]}  load {record['load_average'][0]:.2f}",
                            flush=True,
                        )
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
