"""Render text-classification benchmark JSON files as the Markdown tables in BENCHMARKS.md.

.venv/bin/python benchmarks/results_table.py benchmarks/results/imdb-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt_seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def main(paths: list[str]) -> None:
    rows: dict[str, list[dict]] = {}
    for path in paths:
        payload = json.loads(Path(path).read_text())
        rows.setdefault(payload["dataset"], []).extend(payload["runs"])
    for dataset, runs in rows.items():
        thresholds = sorted({t for r in runs for t in r.get("time_to_accuracy", {})}, key=float)
        header = ["model", "test acc", "train time", *[f"to {float(t):.1%}" for t in thresholds]]
        header += ["train ex/s", "infer ex/s", "latency (1 text)", "params"]
        print(f"\n### {dataset}\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in runs:
            cells = [r["model"], f"{r['test_accuracy']:.2%}", f"{r['train_seconds']:.1f} s"]
            cells += [
                fmt_seconds(r.get("time_to_accuracy", {}).get(t)) if "history" in r else ""
                for t in thresholds
            ]
            cells += [
                f"{r['train_examples_per_second']:.0f}" if r.get("train_examples_per_second") else "",
                f"{r['inference_examples_per_second']:.0f}",
                f"{r['single_text_latency_ms']:.2f} ms" if "single_text_latency_ms" in r else "",
                f"{r['parameters']:,}" if "parameters" in r else "",
            ]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
