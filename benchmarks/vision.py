"""Vision benchmark on Fashion-MNIST: attnkit's image models trained by ``attnkit train``'s own loop from their
shipped configs, beside a scikit-learn baseline on raw pixels in the same process.

Reports test accuracy (the official 10k test set; the weights are selected on 5,000 validation images carved
from train), training wall time (optimizer loop only), time to 90% / 92% / 93% test accuracy (test accuracy is
tracked for this report only, never for selection), training and inference throughput, single-image latency and
parameters. Reads the data from ``$ATTNKIT_DATA/fashion-mnist``.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/vision.py --models cnn-attn vit \
        --set train.threads=2 --out benchmarks/results/fashion-mnist.json [--keep runs/vision]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from attnkit.bench.machine import machine_info
from attnkit.data.vision import load_fashion_mnist
from attnkit.inference.evaluation import predict_dataset
from attnkit.predictor import Predictor
from attnkit.train.config import RunConfig
from attnkit.train.loop import fit

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.90, 0.92, 0.93, 0.935)


def pixel_baseline(kind: str) -> dict[str, Any]:
    """Logistic regression (or a linear SVM) on raw pixels scaled to [0, 1]: fit on all 60k train images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    x_train = train.pixels.reshape(len(train), -1).astype(np.float32) / 255
    x_test = test.pixels.reshape(len(test), -1).astype(np.float32) / 255
    start = time.perf_counter()
    if kind == "logreg":
        classifier: Any = LogisticRegression(max_iter=300, C=1.0)
    else:
        classifier = LinearSVC(C=0.1, dual=False)
    classifier.fit(x_train, train.labels)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = classifier.predict(x_test)
    infer_seconds = time.perf_counter() - start
    return {
        "model": f"pixels-{kind}",
        "test_accuracy": float(np.mean(predictions == np.asarray(test.labels))),
        "train_seconds": train_seconds,
        "inference_examples_per_second": len(test) / infer_seconds,
    }


def time_to(history: list[dict[str, Any]], threshold: float) -> float | None:
    """Training seconds at the first evaluation whose test accuracy reached ``threshold``."""
    for record in history:
        if record.get("test_accuracy", 0.0) >= threshold:
            return float(record["train_seconds"])
    return None


def single_image_latency_ms(predictor: Predictor, images: np.ndarray, repeats: int = 100) -> float:
    for image in images[:5]:
        predictor.predict_proba([image])
    times = []
    for image in images[:repeats]:
        start = time.perf_counter()
        predictor.predict_proba([image])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run_model(model: str, overrides: list[str], config_dir: Path, keep: Path | None = None) -> dict[str, Any]:
    config_path = config_dir / f"fashion-mnist-{model}.yaml"
    if not config_path.exists():
        raise SystemExit(f"no shipped config {config_path}")
    config = RunConfig.from_yaml(config_path).with_overrides(
        ["train.track_test=true", "train.progress=false", *overrides]
    )
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = keep / model if keep is not None else Path(tmp) / "run"
        result = fit(config, run_dir)
        predictor = Predictor(result.run_dir)
        assert result.data.test is not None and result.task is not None
        start = time.perf_counter()
        predict_dataset(predictor.model, result.task, result.data.test, 256, predictor.device)
        infer_seconds = time.perf_counter() - start
        latency = single_image_latency_ms(predictor, load_fashion_mnist("test").pixels[::97])
        params = sum(p.numel() for p in predictor.model.parameters())
    metrics = result.metrics
    epoch_speeds = [
        h["train_examples_per_second"] for h in metrics["history"] if float(h["epoch_progress"]).is_integer()
    ]
    return {
        "model": model,
        "config": str(config_path.relative_to(ROOT))
        if config_path.is_relative_to(ROOT)
        else str(config_path),
        "overrides": overrides,
        "test_accuracy": metrics["test"]["accuracy"],
        "test_macro_f1": metrics["test"]["macro_f1"],
        "val_accuracy": metrics["val"]["accuracy"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "train_seconds": metrics["train_seconds"],
        "time_to": {f"{t:.3f}": time_to(metrics["history"], t) for t in THRESHOLDS},
        "train_examples_per_second": statistics.median(epoch_speeds) if epoch_speeds else None,
        "inference_examples_per_second": len(result.data.test) / infer_seconds,
        "latency_ms": latency,
        "parameters": params,
        "history": [
            {k: h.get(k) for k in ("epoch_progress", "train_seconds", "val_accuracy", "test_accuracy")}
            for h in metrics["history"]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["cnn-attn", "vit"])
    parser.add_argument("--baselines", nargs="*", default=["logreg"], choices=["logreg", "svm"])
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. train.threads=2")
    parser.add_argument(
        "--configs", type=Path, default=ROOT / "configs", help="folder of the shipped configs"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--keep", type=Path, help="keep each trained run in KEEP/MODEL (for `attnkit faithfulness`, serving)"
    )
    args = parser.parse_args()
    if not os.environ.get("ATTNKIT_DATA"):
        raise SystemExit("set ATTNKIT_DATA to the folder holding fashion-mnist/")
    results: dict[str, Any] = {"dataset": "fashion-mnist", "machine": machine_info(), "rows": []}
    started = time.time()
    for kind in args.baselines:
        results["rows"].append(pixel_baseline(kind))
        print(json.dumps(results["rows"][-1]), flush=True)
    for model in args.models:
        results["rows"].append(run_model(model, args.set, args.configs, args.keep))
        print(json.dumps({k: v for k, v in results["rows"][-1].items() if k != "history"}), flush=True)
    results["machine_after"] = machine_info()
    results["wall_seconds"] = time.time() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
