"""Temperature scaling on trained runs: fit on each run's validation split, report held-out NLL and ECE.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/calibration.py runs/faith/imdb-* \
        --data imdb:test --out benchmarks/results/calibration-imdb.json

For every run this calls :func:`attnkit.predictor.calibrate_run` (the code behind ``attnkit calibrate``; it writes
the run's ``calibration.json``), then scores ``--data`` with and without the fitted temperature. Accuracy is the
same both ways (dividing logits by ``T > 0`` keeps every label); the test NLL and ECE are the numbers that matter,
since the temperature never saw that data.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit.bench.machine import machine_info


def measure(run_dir: str, data: str, threads: int) -> dict[str, Any]:
    from attnkit.data import load_source
    from attnkit.inference.evaluation import predict_logits
    from attnkit.predictor import Predictor, calibrate_run
    from attnkit.train.metrics import expected_calibration_error

    torch.set_num_threads(threads)
    began = time.perf_counter()
    record = calibrate_run(run_dir)
    predictor = Predictor(run_dir)
    dataset = predictor.task.encode(load_source(data), predictor.labels)
    logits = predict_logits(
        predictor.model, predictor.task, dataset, 256, predictor.device
    ).double()  # (N, C)
    targets = torch.as_tensor(dataset.labels)

    def scores(temperature: float) -> dict[str, float]:
        log_probs = torch.log_softmax(logits / temperature, dim=-1)  # (N, C)
        nll = float(-log_probs.gather(1, targets[:, None]).mean())
        ece = expected_calibration_error(log_probs.exp().numpy(), targets.numpy())
        return {"nll": nll, "ece": ece}

    return {
        "run": run_dir,
        "model": predictor.config.model.name,
        "data": data,
        "n": len(dataset),
        "accuracy": float(np.mean(logits.argmax(dim=-1).numpy() == targets.numpy())),
        "calibration": record.to_dict(),
        "uncalibrated": scores(1.0),
        "calibrated": scores(predictor.temperature),  # what the run uses (a skipped fit keeps the old one)
        "seconds": time.perf_counter() - began,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| run (model) | test acc | T | val NLL before -> after | test NLL before -> after | test ECE before -> after |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        c, u, k = r["calibration"], r["uncalibrated"], r["calibrated"]
        lines.append(
            f"| {Path(r['run']).name} ({r['model']}) | {100 * r['accuracy']:.2f}% | {c['temperature']:.3f} "
            f"| {c['nll_before']:.4f} -> {c['nll_after']:.4f} | {u['nll']:.4f} -> {k['nll']:.4f} "
            f"| {u['ece']:.4f} -> {k['ece']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data", required=True, help="held-out labelled data, e.g. imdb:test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for run in args.runs:
        results.append(measure(run, args.data, args.threads))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    if args.out:
        args.out.write_text(
            json.dumps({"machine": machine_info(threads=args.threads), "runs": results}, indent=1)
        )


if __name__ == "__main__":
    main()
