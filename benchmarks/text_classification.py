"""Text-classification benchmark: attnkit models and a TF-IDF + linear SVM baseline, in one run.

Reports test accuracy, training wall time, time to reach given test accuracies (test accuracy is tracked for
this report only; model selection uses validation), training throughput, inference throughput and single-text
latency. Reads the official splits from ``$ATTNKIT_DATA``.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/text_classification.py \
        --dataset imdb --models bag-attn bilstm-attn --out benchmarks/results/imdb.json
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
from attnkit.data import load_source
from attnkit.inference.evaluation import predict_dataset
from attnkit.predictor import Predictor
from attnkit.train.config import RunConfig
from attnkit.train.loop import fit, refit_config

ROOT = Path(__file__).resolve().parents[1]
TEST_SPLIT = {"imdb": "test", "20newsgroups": "test", "sst2": "dev"}


def tfidf_svm(dataset: str) -> dict[str, Any]:
    """TF-IDF over word uni+bigrams, linear SVM; fit on the train split, scored on the test split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    train = load_source(f"{dataset}:train")
    test = load_source(f"{dataset}:{TEST_SPLIT[dataset]}")
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_df=0.95, sublinear_tf=True)
    features = vectorizer.fit_transform([ex.text for ex in train])
    classifier = LinearSVC(C=0.5).fit(features, [ex.label for ex in train])
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = classifier.predict(vectorizer.transform([ex.text for ex in test]))
    infer_seconds = time.perf_counter() - start
    accuracy = float(np.mean([p == ex.label for p, ex in zip(predictions, test, strict=True)]))
    return {
        "model": "tfidf-svm",
        "test_accuracy": accuracy,
        "train_seconds": train_seconds,
        "inference_examples_per_second": len(test) / infer_seconds,
    }


def time_to(history: list[dict[str, Any]], threshold: float) -> float | None:
    """Training seconds at the first evaluation whose test accuracy reached ``threshold``."""
    for record in history:
        if record.get("test_accuracy", 0.0) >= threshold:
            return float(record["train_seconds"])
    return None


def single_text_latency_ms(predictor: Predictor, texts: list[str], repeats: int = 100) -> float:
    for text in texts[:5]:
        predictor.predict([text])
    times = []
    for text in texts[:repeats]:
        start = time.perf_counter()
        predictor.predict([text])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def refit(config: RunConfig, epochs: int, run_dir: Path) -> dict[str, Any]:
    """Train again on all of train (no validation) for the ``epochs`` the validated run selected, as
    ``train.refit`` does."""
    result = fit(refit_config(config, epochs).with_overrides(["train.track_test=false"]), run_dir)
    return {
        "epochs": epochs,
        "test_accuracy": result.metrics["test"]["accuracy"],
        "test_macro_f1": result.metrics["test"]["macro_f1"],
        "train_seconds": result.metrics["train_seconds"],
        "init_seconds": result.metrics.get("init_seconds", 0.0),
        "train_size": result.metrics["data_sizes"]["train"],
    }


def run_model(
    dataset: str, model: str, thresholds: list[float], overrides: list[str], with_refit: bool = False
) -> dict[str, Any]:
    config_path = ROOT / "configs" / f"{dataset}-{model}.yaml"
    if not config_path.exists():
        raise SystemExit(f"no shipped config {config_path}")
    config = RunConfig.from_yaml(config_path).with_overrides(
        ["train.track_test=true", "train.progress=false", *overrides]
    )
    if with_refit and config.model.ensemble > 1:
        raise SystemExit("--refit trains one model; for an ensemble use --set train.refit=true")
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(config, Path(tmp) / "run")
        predictor = Predictor(result.run_dir)
        assert result.data.test is not None
        start = time.perf_counter()
        predict_dataset(predictor.model, predictor.task, result.data.test, 256, predictor.device)
        infer_seconds = time.perf_counter() - start
        test_texts = [ex.text for ex in load_source(f"{dataset}:{TEST_SPLIT[dataset]}")[:: max(1, 25)]]
        latency = single_text_latency_ms(predictor, test_texts)
        refitted = refit(config, result.metrics["best_epoch"], Path(tmp) / "refit") if with_refit else None
    metrics = result.metrics
    history = metrics.get("history", [])
    members = metrics.get("members")  # model.ensemble > 1: one record per member, no history of its own
    test_accuracy = metrics["test"]["accuracy"]
    if members:  # the ensemble exists only once every member is trained
        time_to_accuracy = {
            str(t): metrics["train_seconds"] if test_accuracy >= t else None for t in thresholds
        }
    else:
        time_to_accuracy = {str(t): time_to(history, t) for t in thresholds}
    return {
        "model": model,
        "config": str(config_path.relative_to(ROOT)),
        "test_accuracy": test_accuracy,
        "test_macro_f1": metrics["test"]["macro_f1"],
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs_run"),
        "train_seconds": metrics["train_seconds"],
        # Data-dependent initialisation before the first step (nb-attn: Naive-Bayes counts on the training split).
        "init_seconds": metrics.get("init_seconds", 0.0),
        "load_average": os.getloadavg(),
        "time_to_accuracy": time_to_accuracy,
        "best_tracked_test_accuracy": max(
            (h.get("test_accuracy", 0.0) for h in history), default=test_accuracy
        ),
        "train_examples_per_second": (
            statistics.median(h["train_examples_per_second"] for h in history) if history else None
        ),
        "inference_examples_per_second": len(result.data.test) / infer_seconds,
        "single_text_latency_ms": latency,
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "history": history,
        "members": members,
        # With --refit: the same config trained again on train + validation for best_epoch epochs (the
        # selection above is unchanged; the refit's train time comes on top of the validated run's).
        "refit": refitted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, choices=sorted(TEST_SPLIT))
    parser.add_argument(
        "--models", nargs="+", default=["bag-attn", "cnn-attn", "bilstm-attn", "transformer", "han"]
    )
    parser.add_argument("--thresholds", nargs="*", type=float, default=[0.85, 0.874, 0.88, 0.90, 0.92])
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--set", action="append", default=[], help="config override for every model")
    parser.add_argument(
        "--refit",
        action="store_true",
        help="also retrain each model on train + validation for the epochs its validated run selected",
    )
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    args = parser.parse_args()
    if not os.environ.get("ATTNKIT_DATA"):
        raise SystemExit("set ATTNKIT_DATA to the folder holding <name>/<split>.jsonl.gz")
    results: dict[str, Any] = {"dataset": args.dataset, "machine": machine_info(), "runs": []}
    if not args.no_baseline:
        results["runs"].append(tfidf_svm(args.dataset))
        print(json.dumps(results["runs"][-1]), flush=True)
    for model in args.models:
        record = run_model(args.dataset, model, args.thresholds, args.set, with_refit=args.refit)
        results["runs"].append(record)
        print(json.dumps({k: v for k, v in record.items() if k != "history"}), flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
