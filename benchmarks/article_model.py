"""The article's model (Embedding 16 -> BiLSTM 32 -> attention -> Dense) in attnkit and in Keras 3, side by side.

Both train on the same IMDb reviews (attnkit's training split, tokenized once by attnkit's tokenizer with the
article's sizes: vocabulary 10,000, 500 tokens), with the same batch size and thread count, at the same time on
the same machine, then predict the 25,000 test reviews. attnkit runs in this process; Keras runs in its own
environment through ``--keras-python`` (``$ATTNKIT_KERAS_PYTHON``), fed the same ids pre-padded to 500 as the
article's ``pad_sequences`` does. Without a Keras environment the script says so and reports attnkit alone.
Keras is never a dependency of attnkit.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/article_model.py \
        --keras-python ../kerasenv/bin/python --out benchmarks/results/article-model.json

Inference is timed alone, one framework after the other, ``--inference-rounds`` times (default 3, alternating:
Keras reloads its trained weights in a fresh process each round, start-up not timed); each framework's best round
is compared, so that a change in the machine between two measurements does not decide the ratio.

``--limit N`` trains Keras on the first N training reviews only (a quick look at its speed; the table in
BENCHMARKS.md is one full epoch of both).
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

import numpy as np
import torch

from attnkit.bench.machine import machine_info
from attnkit.inference.evaluation import predict_dataset
from attnkit.predictor import Predictor
from attnkit.tasks import task_for
from attnkit.train.config import RunConfig
from attnkit.train.loop import fit

ROOT = Path(__file__).resolve().parents[1]


def article_config(args: argparse.Namespace) -> RunConfig:
    """The shipped ``imdb-bilstm-attn`` config at the article's batch size, for ``--epochs`` epochs."""
    return RunConfig.from_yaml(ROOT / "configs" / "imdb-bilstm-attn.yaml").with_overrides(
        [
            f"optim.batch_size={args.batch_size}",
            f"train.epochs={args.epochs}",
            f"train.threads={args.threads}",
            "train.progress=false",
            "train.calibrate=false",
            "train.patience=100",
        ]
    )


def write_keras_inputs(config: RunConfig, path: Path, limit: int | None) -> dict[str, int]:
    """The run's training and test splits as attnkit's ids, pre-padded / pre-truncated to ``max_length``."""
    task = task_for(config)
    prepared = task.prepare()
    length = config.tokenizer.max_length

    def padded(ids: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(ids), length), dtype=np.int32)  # pad id 0, as pad_sequences
        for row, seq in enumerate(ids):
            seq = seq[-length:]
            if seq:
                out[row, length - len(seq) :] = seq
        return out

    train_ids = prepared.train.ids[:limit] if limit else prepared.train.ids
    train_labels = prepared.train.labels[:limit] if limit else prepared.train.labels
    assert prepared.test is not None
    np.savez(
        path,
        train_ids=padded(train_ids),
        train_labels=np.asarray(train_labels, dtype=np.int32),
        test_ids=padded(prepared.test.ids),
        test_labels=np.asarray(prepared.test.labels, dtype=np.int32),
    )
    return {"train": len(train_ids), "test": len(prepared.test.ids)}


def _keras_command(python: str, data: Path, out: Path, args: argparse.Namespace, *extra: str) -> list[str]:
    """``keras_article_model.py`` in the Keras environment, on ``data``, writing ``out``, plus ``extra``."""
    script = str(ROOT / "benchmarks" / "keras_article_model.py")
    sizes = [str(size) for size in EVAL_BATCH_SIZES]
    common = ["--data", str(data), "--out", str(out), "--threads", str(args.threads)]
    return [python, script, *common, "--eval-batch-sizes", *sizes, *extra]


def _keras_env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads), "CUDA_VISIBLE_DEVICES": ""}


def keras_weights(out: Path) -> Path:
    """Where the Keras training run that writes ``out`` saves its weights (for the inference rounds)."""
    return out.with_suffix(".weights.h5")


def start_keras(python: str, data: Path, out: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    training = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    command = _keras_command(python, data, out, args, *training, "--save-weights", str(keras_weights(out)))
    return subprocess.Popen(command, env=_keras_env(args))


def keras_inference_round(
    python: str, data: Path, weights: Path, out: Path, args: argparse.Namespace
) -> dict:
    """Keras's inference once more, alone (its trained weights, a fresh process; start-up is not timed)."""
    command = _keras_command(python, data, out, args, "--predict-only", str(weights))
    subprocess.run(command, env=_keras_env(args), check=True)
    rates: dict[str, float] = json.loads(out.read_text(encoding="utf-8"))["inference_by_batch_size"]
    return rates


#: Inference batch sizes measured (each framework's best is compared): at 256 the BiLSTM's (B, T, 64) states
#: spill out of the cache, and attnkit is faster at 64.
EVAL_BATCH_SIZES = (64, 256)


def inference_rate(predictor: Predictor, dataset: Any, batch_size: int = 64) -> tuple[float, np.ndarray]:
    """Reviews per second over ``dataset`` (length-sorted batches, as the task batches them)."""
    start = time.perf_counter()
    probs = predict_dataset(predictor.model, predictor.task, dataset, batch_size, predictor.device)
    return len(dataset) / (time.perf_counter() - start), probs


def onnx_inference_rate(predictor: Predictor, dataset: Any, batch_size: int) -> float:
    """Reviews per second of the run's ONNX export in ONNX Runtime (one thread), on the same batches."""
    from attnkit.export import ONNX_FILE, onnx_session, run_onnx

    path = predictor.run_dir / ONNX_FILE
    if not path.exists():  # `attnkit export` as a user runs it (in this process, after fit, the exporter
        # specialized the token axis to the traced length once: a follow-up in the session notes)
        command = [sys.executable, "-m", "attnkit.cli", "export", str(predictor.run_dir), "--format", "onnx"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = onnx_session(path, threads=1)
    batches = [
        predictor.task.collate(dataset, indices)
        for indices in predictor.task.eval_batches(dataset, batch_size)
    ]
    start = time.perf_counter()
    for batch in batches:
        run_onnx(session, batch.inputs, batch.unit_mask)
    return len(dataset) / (time.perf_counter() - start)


def run_attnkit(config: RunConfig, run_dir: Path) -> tuple[dict[str, Any], Predictor, Any]:
    start = time.perf_counter()
    result = fit(config, run_dir)
    wall = time.perf_counter() - start
    metrics = result.metrics
    predictor = Predictor(result.run_dir)
    assert result.data.test is not None
    rate, probs = inference_rate(predictor, result.data.test)
    accuracy = float(np.mean(probs.argmax(1) == np.asarray(result.data.test.labels)))
    history = metrics.get("history", [])
    examples = len(result.data.train) * len(history)  # one evaluation per epoch
    return (
        {
            "framework": f"attnkit (torch {torch.__version__})",
            "train_examples": len(result.data.train),
            "train_seconds": metrics["train_seconds"],
            "train_cpu_seconds": metrics.get("train_cpu_seconds"),
            "train_examples_per_second": examples / metrics["train_seconds"] if examples else None,
            "fit_wall_seconds": wall,
            "test_accuracy": accuracy,
            # measured while the Keras run (if any) still trains on the other core
            "inference_examples_per_second_beside_keras": rate,
            "parameters": sum(p.numel() for p in result.model.parameters()),
            "threads": metrics.get("threads"),
            "history": history,
        },
        predictor,
        result.data.test,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keras-python", default=os.environ.get("ATTNKIT_KERAS_PYTHON"))
    parser.add_argument("--threads", type=int, default=1, help="compute threads of each framework")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="the article's 32")
    parser.add_argument("--limit", type=int, help="train Keras on the first N reviews only (quick looks)")
    parser.add_argument(
        "--inference-rounds",
        type=int,
        default=3,
        help="inference measurements per framework, alternating (the best of each is compared)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    config = article_config(args)
    report: dict[str, Any] = {
        "command": "benchmarks/article_model.py",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "machine": machine_info(),
        "load_average_start": list(os.getloadavg()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        keras = None
        keras_out = Path(tmp) / "keras.json"
        if args.keras_python and Path(args.keras_python).exists():
            report["sizes"] = write_keras_inputs(config, Path(tmp) / "ids.npz", args.limit)
            keras = start_keras(args.keras_python, Path(tmp) / "ids.npz", keras_out, args)
        else:
            print(
                "Keras is not installed for this benchmark (pass --keras-python or set ATTNKIT_KERAS_PYTHON to a "
                "Python with keras and tensorflow): reporting attnkit alone"
            )
        report["attnkit"], predictor, test = run_attnkit(config, Path(tmp) / "run")
        report["load_average_after_attnkit"] = list(os.getloadavg())
        if keras is not None:
            if keras.wait() != 0:
                raise SystemExit(f"the Keras run failed (exit {keras.returncode})")
            report["keras"] = json.loads(keras_out.read_text(encoding="utf-8"))
        # Inference alone, as Keras's was (it predicts after its own training, when attnkit is done).
        ours = report["attnkit"]
        ours["inference_by_batch_size"] = {b: inference_rate(predictor, test, b)[0] for b in EVAL_BATCH_SIZES}
        ours["inference_examples_per_second"] = max(ours["inference_by_batch_size"].values())
        ours["onnx_inference_by_batch_size"] = {
            b: onnx_inference_rate(predictor, test, b) for b in EVAL_BATCH_SIZES
        }
        ours["onnx_inference_examples_per_second"] = max(ours["onnx_inference_by_batch_size"].values())
        if report.get("keras") and args.inference_rounds > 1:
            # The inference rates are measured one framework after the other; a change in the machine between
            # them moves the ratio. More rounds, alternating, and the best of each framework over all rounds.
            rounds = [
                {
                    "attnkit": ours["inference_by_batch_size"],
                    "onnx": ours["onnx_inference_by_batch_size"],
                    "keras": report["keras"]["inference_by_batch_size"],
                }
            ]
            for r in range(1, args.inference_rounds):
                rounds.append(
                    {
                        "keras": keras_inference_round(
                            args.keras_python,
                            Path(tmp) / "ids.npz",
                            keras_weights(keras_out),
                            Path(tmp) / f"keras-round-{r}.json",
                            args,
                        ),
                        "attnkit": {b: inference_rate(predictor, test, b)[0] for b in EVAL_BATCH_SIZES},
                        "onnx": {b: onnx_inference_rate(predictor, test, b) for b in EVAL_BATCH_SIZES},
                    }
                )
            report["inference_rounds"] = rounds
            ours["inference_examples_per_second"] = max(max(r["attnkit"].values()) for r in rounds)
            ours["onnx_inference_examples_per_second"] = max(max(r["onnx"].values()) for r in rounds)
            report["keras"]["inference_examples_per_second"] = max(max(r["keras"].values()) for r in rounds)
    ours, theirs = report["attnkit"], report.get("keras")
    print(
        f"attnkit: {ours['train_examples_per_second']:.0f} train ex/s, "
        f"{ours['inference_examples_per_second']:.0f} test reviews/s (ONNX Runtime "
        f"{ours['onnx_inference_examples_per_second']:.0f}), test {ours['test_accuracy']:.4f}"
    )
    if theirs:
        report["train_speedup"] = ours["train_examples_per_second"] / theirs["train_examples_per_second"]
        report["inference_speedup"] = (
            ours["inference_examples_per_second"] / theirs["inference_examples_per_second"]
        )
        report["onnx_inference_speedup"] = (
            ours["onnx_inference_examples_per_second"] / theirs["inference_examples_per_second"]
        )
        print(
            f"keras:   {theirs['train_examples_per_second']:.0f} train ex/s, "
            f"{theirs['inference_examples_per_second']:.0f} test reviews/s, test {theirs['test_accuracy']:.4f}"
        )
        print(
            f"attnkit / keras: training {report['train_speedup']:.2f}x, inference {report['inference_speedup']:.2f}x"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
