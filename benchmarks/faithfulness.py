"""Faithfulness of every explanation method for trained runs (text, image or speech), as JSON and a Markdown table
for BENCHMARKS.md.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/faithfulness.py runs/faith/imdb-bag-attn \
        --data imdb:test --n 500 --out benchmarks/results/faithfulness-imdb-bag-attn.json
    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/faithfulness.py runs/digits --data fsdd:test \
        --n 300 --out benchmarks/results/faithfulness-fsdd-crnn-attn.json
    .venv/bin/python benchmarks/faithfulness.py --table benchmarks/results/faithfulness-imdb-*.json

Each run's report is computed by :func:`attnkit.explain.faithfulness.faithfulness_report` (the same code as
``attnkit faithfulness``) with one torch thread; the JSON also records the run's test accuracy, the machine and the
wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from attnkit.bench.machine import machine_info


def measure(run_dir: str, data: str, n: int, seed: int, ig_steps: int, threads: int) -> dict[str, Any]:
    from tqdm import tqdm

    from attnkit.explain.faithfulness import faithfulness_report, format_report, read_inputs
    from attnkit.predictor import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor(run_dir)
    inputs, labels = read_inputs(predictor, data)  # texts, images or waveforms, as the run's task reads them
    began = time.perf_counter()
    with tqdm(total=min(n, len(inputs)), desc=Path(run_dir).name, file=sys.stderr) as bar:

        def advance(done: int) -> None:
            bar.update(done - bar.n)

        report = faithfulness_report(
            predictor,
            inputs,
            labels=labels,
            n=n,
            seed=seed,
            ig_steps=ig_steps,
            source=data,
            progress=advance,
        )
    print(format_report(report), file=sys.stderr)
    result = report.to_json_dict()
    result["ig_steps"] = ig_steps
    result["wall_seconds"] = time.perf_counter() - began
    result["test_accuracy"] = predictor.metrics.get("test", {}).get("accuracy")
    result["machine"] = machine_info(load_average_at_end=os.getloadavg())
    return result


def table(paths: list[str]) -> str:
    """One row per (model, method): comprehensiveness / sufficiency AOPC, flip rate, Kendall taus."""
    lines = [
        "| model (test acc) | method | comp. AOPC ↑ | suff. AOPC ↓ | flip@1 | τ vs LOO | τ vs grad | s / input |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        accuracy = report.get("test_accuracy")
        model = f"{report['model']} ({accuracy:.1%})" if accuracy else report["model"]
        for m in report["methods"]:
            tau_loo = "" if m["kendall_tau_loo"] is None else f"{m['kendall_tau_loo']:.3f}"
            tau_grad = "" if m["kendall_tau_gradient"] is None else f"{m['kendall_tau_gradient']:.3f}"
            per_text = m["seconds"] / report["n"]
            lines.append(
                f"| {model} | {m['method']} | {m['comprehensiveness_aopc']:.3f} | {m['sufficiency_aopc']:.3f} | "
                f"{m['decision_flip_rate']:.3f} | {tau_loo} | {tau_grad} | {per_text:.3f} |"
            )
        uniform = report["uniform_attention"]
        change = (
            f", accuracy {uniform['accuracy']:.1%} -> {uniform['accuracy_uniform']:.1%}"
            if uniform.get("accuracy") is not None
            else ""
        )
        versus = "; ".join(
            f"{c['method']} - {c['other']} = {c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
            for c in report.get("comparisons", [])
            if c["other"] == "ig"
        )
        notes.append(
            f"- **{report['model']}** (n={report['n']}, IG {report.get('ig_steps', 50)} steps, "
            f"{report['wall_seconds'] / 60:.1f} min): comprehensiveness AOPC differences with 95% bootstrap CIs: "
            f"{versus}. Pooling forced uniform: {uniform['prediction_agreement']:.1%} of predictions kept{change}."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="*")
    parser.add_argument("--data", default="imdb:test")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ig-steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON file (one run) or directory (several runs)")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print the Markdown table of result files")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    for run_dir in args.run_dirs:
        result = measure(run_dir, args.data, args.n, args.seed, args.ig_steps, args.threads)
        if args.out and len(args.run_dirs) == 1 and args.out.endswith(".json"):
            path = Path(args.out)
        else:
            path = Path(args.out or "benchmarks/results") / f"faithfulness-{Path(run_dir).name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
