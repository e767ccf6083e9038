"""Which model should ``attnkit train`` use when the user names none? Every registered model, with the default
config and only ``model.name`` changed, on small samples of several datasets (a practitioner's first run), timed
from data to metrics.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/default_model.py \
        --out benchmarks/results/default-model.json

Each dataset is a seeded sample of its official train split (``--train-n``) scored on a seeded sample of its
official test split (``--test-n``); validation is carved from the sample as usual. One torch thread per run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import attnkit
from attnkit.bench.machine import machine_info
from attnkit.data import load_source

DATASETS = {  # name -> (train source, test source)
    "imdb": ("imdb:train", "imdb:test"),
    "sst2": ("sst2:train", "sst2:dev"),
    "20newsgroups": ("20newsgroups:train", "20newsgroups:test"),
    "embedded": ("embedded:train", "embedded:test"),
}
MODELS = ["nb-attn", "bag-attn", "cnn-attn", "bilstm-attn", "transformer"]


def sample(source: str, n: int, seed: int, path: Path) -> Path:
    examples = load_source(source)
    random.Random(seed).shuffle(examples)
    with path.open("w", encoding="utf-8") as handle:
        for ex in examples[:n]:
            handle.write(json.dumps({"text": ex.text, "label": ex.label}, ensure_ascii=False) + "\n")
    return path


def run_one(model: str, train: Path, test: Path, out: Path, epochs: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    clf = attnkit.fit(
        str(train),
        out=out,
        test=str(test),
        model=model,
        epochs=epochs,
        overrides={"train.threads": 1, "train.progress": False},
        overwrite=True,
    )
    wall = time.perf_counter() - start
    metrics = clf.metrics
    return {
        "model": model,
        "test_accuracy": metrics["test"]["accuracy"],
        "val_accuracy": metrics["val"]["accuracy"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": wall,
        "epochs_run": metrics["epochs_run"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--train-n", type=int, default=3000)
    parser.add_argument("--test-n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, help="default: the config's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results: dict[str, Any] = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for dataset in args.datasets:
            train_source, test_source = DATASETS[dataset]
            train = sample(train_source, args.train_n, args.seed, tmp / f"{dataset}-train.jsonl")
            test = sample(test_source, args.test_n, args.seed + 1, tmp / f"{dataset}-test.jsonl")
            for model in args.models:
                row = {"dataset": dataset, **run_one(model, train, test, tmp / "run", args.epochs)}
                rows.append(row)
                print(
                    f"{dataset:<14}{model:<13} test {row['test_accuracy']:.4f}  train {row['train_seconds']:6.1f} s"
                    f"  wall {row['wall_seconds']:6.1f} s  epochs {row['epochs_run']}",
                    flush=True,
                )
                results["rows"] = rows
                if args.out:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
