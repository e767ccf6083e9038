"""Speech benchmark on the Free Spoken Digit Dataset: attnkit's audio models trained by ``attnkit train``'s own loop
from their shipped configs, on the official split and on every leave-one-speaker-out split, beside a baseline in
the same process (MFCC statistics + an RBF SVM).

For each model and split it reports test accuracy (the weights are selected on validation recordings carved from
train, stratified by speaker and digit; test is never used for selection), training time (optimizer loop only),
training and inference throughput, single-clip latency and parameters. The baseline is fit on the same training
recordings (train + validation: it has no selection to make). Reads ``$ATTNKIT_DATA/fsdd``.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/speech.py --models crnn-attn transformer \
        --splits all --set train.threads=2 --out benchmarks/results/fsdd.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit.bench.machine import machine_info
from attnkit.data.audio import AudioSet, fsdd_split, load_fsdd
from attnkit.inference.evaluation import predict_dataset
from attnkit.models.audio.features import FeatureConfig, SpectralFrontend
from attnkit.predictor import Predictor
from attnkit.train.config import RunConfig
from attnkit.train.loop import fit

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def split_names(spec: list[str]) -> list[str]:
    """``all`` -> the official split and the six leave-one-speaker-out splits."""
    names: list[str] = []
    for item in spec:
        names += ["official", *(f"speaker:{s}" for s in SPEAKERS)] if item == "all" else [item]
    return names


def mfcc_statistics(audio: AudioSet) -> np.ndarray:
    """``(N, 80)``: per recording, the mean and std over frames of 20 MFCCs and of their first differences."""
    frontend = SpectralFrontend(FeatureConfig(sample_rate=audio.sample_rate, kind="mfcc", n_mfcc=20)).eval()
    rows = []
    with torch.no_grad():
        for wave in audio.waveforms:
            mfcc = frontend(torch.from_numpy(wave)[None])[0]  # (T, 20)
            delta = torch.diff(mfcc, dim=0) if mfcc.shape[0] > 1 else torch.zeros_like(mfcc)
            rows.append(
                torch.cat(
                    [mfcc.mean(0), mfcc.std(0, unbiased=False), delta.mean(0), delta.std(0, unbiased=False)]
                )
            )
    return torch.stack(rows).numpy()


def svm_baseline(everything: AudioSet, split: str) -> dict[str, Any]:
    """MFCC statistics, standardized, then an RBF SVM (C=10, scikit-learn's default gamma)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    train, test = fsdd_split(everything, split)
    start = time.perf_counter()
    x_train, x_test = mfcc_statistics(train), mfcc_statistics(test)
    features_seconds = time.perf_counter() - start
    classifier = make_pipeline(StandardScaler(), SVC(C=10.0))
    start = time.perf_counter()
    classifier.fit(x_train, train.labels)
    train_seconds = time.perf_counter() - start
    predictions = classifier.predict(x_test)
    return {
        "model": "mfcc-stats-svm",
        "split": split,
        "test_accuracy": float(np.mean(predictions == np.asarray(test.labels))),
        "train_seconds": train_seconds,
        "feature_seconds": features_seconds,
        "test_size": len(test),
    }


def single_clip_latency_ms(predictor: Predictor, clips: list[np.ndarray], repeats: int = 50) -> float:
    for clip in clips[:5]:
        predictor.predict_proba([clip])
    times = []
    for clip in clips[:repeats]:
        start = time.perf_counter()
        predictor.predict_proba([clip])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run_model(
    model: str, split: str, overrides: list[str], config_dir: Path, clips: list[np.ndarray], keep: Path | None
) -> dict[str, Any]:
    config_path = config_dir / f"fsdd-{model}.yaml"
    if not config_path.exists():
        raise SystemExit(f"no shipped config {config_path}")
    config = RunConfig.from_yaml(config_path).with_overrides(
        [f"data.split={split}", "train.progress=false", *overrides]
    )
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = keep / f"{model}-{split.replace(':', '-')}" if keep else Path(tmp) / "run"
        if keep is not None and run_dir.exists():
            shutil.rmtree(run_dir)
        result = fit(config, run_dir)
        predictor = Predictor(result.run_dir)
        assert result.data.test is not None and result.task is not None
        start = time.perf_counter()
        predict_dataset(predictor.model, result.task, result.data.test, 256, predictor.device)
        infer_seconds = time.perf_counter() - start
        latency = single_clip_latency_ms(predictor, clips)
        params = sum(p.numel() for p in predictor.model.parameters())
    metrics = result.metrics
    epoch_speeds = [
        h["train_examples_per_second"] for h in metrics["history"] if float(h["epoch_progress"]).is_integer()
    ]
    return {
        "model": model,
        "split": split,
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
        "train_cpu_seconds": metrics.get("train_cpu_seconds"),
        "train_examples_per_second": statistics.median(epoch_speeds) if epoch_speeds else None,
        "inference_examples_per_second": len(result.data.test) / infer_seconds,
        "latency_ms": latency,
        "parameters": params,
        "test_size": len(result.data.test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", default=["crnn-attn", "transformer"])
    parser.add_argument("--splits", nargs="+", default=["all"], help="official, speaker:NAME, or all")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. train.threads=2")
    parser.add_argument(
        "--configs", type=Path, default=ROOT / "configs", help="folder of the shipped configs"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep", type=Path, help="keep the trained runs in this folder (MODEL-SPLIT)")
    args = parser.parse_args()
    if not os.environ.get("ATTNKIT_DATA"):
        raise SystemExit("set ATTNKIT_DATA to the folder holding fsdd/")
    splits = split_names(args.splits)
    everything = load_fsdd("all")
    clips = [wave for wave in everything.waveforms[::60]]
    results: dict[str, Any] = {"dataset": "fsdd v1.0.10", "machine": machine_info(), "rows": []}
    started = time.time()
    for split in splits:
        if not args.no_baseline:
            results["rows"].append(svm_baseline(everything, split))
            print(json.dumps(results["rows"][-1]), flush=True)
        for model in args.models:
            results["rows"].append(run_model(model, split, args.set, args.configs, clips, args.keep))
            print(json.dumps(results["rows"][-1]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(results, indent=2) + "\n"
        )  # after every split: a long run keeps its rows
    summary: dict[str, Any] = {}
    for name in {row["model"] for row in results["rows"]}:
        held_out = [
            r["test_accuracy"] for r in results["rows"] if r["model"] == name and r["split"] != "official"
        ]
        if held_out:
            summary[name] = {"speaker_mean": statistics.mean(held_out), "speakers": len(held_out)}
    results["speaker_independent_mean"] = summary
    results["machine_after"] = machine_info()
    results["wall_seconds"] = time.time() - started
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
