"""``attnkit demo`` as a user runs it, against the character n-gram baseline at every C of a grid.

Runs the whole command (``attnkit demo``, a fresh process: reading the corpus, training, the baseline, the
explanations, the report) for each ``--seeds`` seed and each ``--models`` model, timing it on the wall clock,
then fits the baseline (character 1-3-gram TF-IDF + logistic regression on train + validation) for each C of
``--c-grid`` on the same split, so the demo's fixed C is seen against the whole grid (with each C's validation
accuracy when fitted on train alone: the C a practitioner would pick).

    .venv/bin/python benchmarks/demo.py --out benchmarks/results/demo.json
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
from attnkit.data import load_embedded
from attnkit.demo import char_ngram_baseline


def run_command(model: str, seed: int, work: Path) -> dict[str, Any]:
    out = work / f"{model}-{seed}"
    command = [
        sys.executable,
        "-m",
        "attnkit.cli",
        "demo",
        "--out",
        str(out),
        "--model",
        model,
        "--seed",
        str(seed),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return {
        "model": model,
        "seed": seed,
        "command_seconds": wall,
        "train_seconds": metrics["train_seconds"],
        "test_accuracy": metrics["test"]["accuracy"],
        "threads": metrics.get("threads"),
        "load_average": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["nb-attn", "bilstm-attn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--c-grid", nargs="+", type=float, default=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine_info(), "runs": [], "baseline": []}
    corpus = load_embedded(seed=0)
    seen = corpus.train + (corpus.val or [])
    test = corpus.test or []
    val = corpus.val or []
    for c in args.c_grid:
        result = char_ngram_baseline(
            [ex.text for ex in seen],
            [ex.label for ex in seen],
            [ex.text for ex in test],
            [ex.label for ex in test],
            c,
        )
        # How a practitioner would pick C: fitted on train alone, scored on validation.
        on_val = char_ngram_baseline(
            [ex.text for ex in corpus.train],
            [ex.label for ex in corpus.train],
            [ex.text for ex in val],
            [ex.label for ex in val],
            c,
        )
        report["baseline"].append({"C": c, **result, "val_accuracy_fit_on_train": on_val["accuracy"]})
        print(
            f"baseline C={c:g}: test {result['accuracy']:.4f} ({result['train_seconds']:.1f} s); "
            f"validation {on_val['accuracy']:.4f} fitted on train alone",
            flush=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for seed in args.seeds:
                record = run_command(model, seed, Path(tmp))
                report["runs"].append(record)
                print(
                    f"{model} seed {seed}: test {record['test_accuracy']:.4f}, training {record['train_seconds']:.1f} s, "
                    f"whole command {record['command_seconds']:.1f} s, load {record['load_average'][0]:.2f}",
                    flush=True,
                )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
