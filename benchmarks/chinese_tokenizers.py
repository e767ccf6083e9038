"""Chinese tokenization levels on the embedded corpus: the demo model's accuracy over seeds, speed, exact offsets.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/chinese_tokenizers.py --seeds 3 --epochs 2 --segmenters \
        --out /tmp/zh-bench --json benchmarks/results/chinese-tokenizers.json

For each level (``char``, ``word-zh``, ``word-zh+char`` by default) this

- fits the demo's tokenizer (its vocabulary size, ``min_freq`` and ``max_length``) on the training split, encodes
  every text of the corpus and reports tokens/s, tokens per review, the test split's ``[UNK]`` rate, and how many
  tokens break the offset contract (``text[start:end].lower()`` is not the token's vocabulary entry, tokens
  overlap or hold whitespace): that must be 0;
- trains the demo's model (:func:`attnkit.demo.demo_config`, one thread) with seeds ``0 .. N-1`` and reports the
  held-out test accuracy (mean and sample standard deviation over seeds) and the training wall time.

Runs go seed by seed across levels, and the JSON is rewritten after each run, so a stopped benchmark keeps
balanced results. ``--segmenters`` also times the jieba-family segmenters that are installed (``rjieba``,
``jieba``, ``jieba_fast``) on the corpus's Han runs and counts where each one's words differ from rjieba's.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from attnkit.bench.machine import machine_info
from attnkit.data import TextTokenizer, TokenizerConfig, load_embedded
from attnkit.data.text.embedded import read_embedded_corpus
from attnkit.demo import demo_config
from attnkit.train.loop import fit

LEVELS = ("char", "word-zh", "word-zh+char")
_HAN_RUN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")


def tokenization(level: str, train: list[str], corpus: list[str], test: list[str]) -> dict[str, Any]:
    """Speed, length, coverage and offset exactness of ``level`` with the demo's tokenizer settings."""
    section = demo_config().tokenizer
    config = TokenizerConfig(
        level=level,  # type: ignore[arg-type]
        vocab_size=section.vocab_size,
        min_freq=section.min_freq,
        lowercase=section.lowercase,
        max_length=section.max_length,
    )
    began = time.perf_counter()
    tok = TextTokenizer.fit(train, config)
    fit_seconds = time.perf_counter() - began
    began = time.perf_counter()
    encodings = tok.encode_batch(corpus)
    seconds = time.perf_counter() - began
    tokens = sum(len(e) for e in encodings)
    broken = 0
    for enc in encodings:
        previous_end = 0
        for index, (start, end) in zip(enc.ids, enc.offsets, strict=True):
            surface = enc.text[start:end]
            entry_ok = index == tok.unk_id or tok.id_to_token(index) == surface.lower()
            if not (previous_end <= start < end) or not entry_ok or any(c.isspace() for c in surface):
                broken += 1
            previous_end = end
    test_ids = [i for ids in tok.encode_ids(test) for i in ids]
    return {
        "level": level,
        "vocab_size": tok.vocab_size,
        "fit_seconds": fit_seconds,
        "encode_seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "chars_per_second": sum(map(len, corpus)) / seconds,
        "tokens_per_review": tokens / len(corpus),
        "test_unk_rate": sum(i == tok.unk_id for i in test_ids) / max(1, len(test_ids)),
        "broken_offsets": broken,
    }


def train_run(level: str, seed: int, epochs: int, out: Path) -> dict[str, Any]:
    """One demo training run at ``level``: held-out test accuracy and wall time."""
    config = demo_config(epochs=epochs, seed=seed)
    config = dataclasses.replace(config, tokenizer=dataclasses.replace(config.tokenizer, level=level))
    began = time.perf_counter()
    result = fit(config, out / f"{level}-seed{seed}")
    test = result.metrics["test"]
    return {
        "level": level,
        "seed": seed,
        "epochs": epochs,
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "train_seconds": result.metrics["train_seconds"],
        "wall_seconds": time.perf_counter() - began,
    }


def segmenters(corpus: list[str]) -> list[dict[str, Any]]:
    """Each installed jieba-family segmenter on the corpus's Han runs: speed and agreement with rjieba."""
    runs = [m.group() for text in corpus for m in _HAN_RUN.finditer(text)]
    chars = sum(map(len, runs))

    def load(name: str) -> Any:
        module = importlib.import_module(name)
        if name == "rjieba":
            return module.Jieba().cut
        module.setLogLevel(logging.WARNING)
        return module.Tokenizer().lcut  # a fresh instance: the dictionary load is timed below

    rows: list[dict[str, Any]] = []
    reference: list[list[str]] | None = None
    for name in ("rjieba", "jieba", "jieba_fast"):
        try:
            began = time.perf_counter()
            cut = load(name)
            cut(runs[0])  # jieba loads its dictionary on first use
            load_seconds = time.perf_counter() - began
        except ImportError:
            rows.append({"segmenter": name, "installed": False})
            continue
        began = time.perf_counter()
        words = [cut(run) for run in runs]
        seconds = time.perf_counter() - began
        reference = reference if reference is not None else words
        rows.append(
            {
                "segmenter": name,
                "installed": True,
                "version": getattr(importlib.import_module(name), "__version__", None),
                "load_seconds": load_seconds,
                "chars_per_second": chars / seconds,
                "runs": len(runs),
                "not_a_partition": sum("".join(w) != r for w, r in zip(words, runs, strict=True)),
                "runs_differing_from_rjieba": sum(a != b for a, b in zip(words, reference, strict=True)),
            }
        )
    return rows


def summary(results: dict[str, Any]) -> str:
    """The Markdown table: level, accuracy mean +- std over seeds, tokens/s, training wall time."""
    lines = [
        "| level | test accuracy (mean ± std, seeds) | tokens/s | tokens/review | test [UNK] | train wall s |",
        "|---|---|---|---|---|---|",
    ]
    for tok in results["tokenization"]:
        runs = [r for r in results["runs"] if r["level"] == tok["level"]]
        accs = [r["accuracy"] for r in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        acc = f"{statistics.mean(accs):.4f} ± {std:.4f} ({len(accs)})" if accs else "-"
        wall = f"{statistics.mean(r['wall_seconds'] for r in runs):.0f}" if runs else "-"
        lines.append(
            f"| {tok['level']} | {acc} | {tok['tokens_per_second']:,.0f} | {tok['tokens_per_review']:.1f} "
            f"| {tok['test_unk_rate']:.2%} | {wall} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default=",".join(LEVELS), help="comma-separated tokenizer levels")
    parser.add_argument(
        "--seeds", type=int, default=3, help="train seeds 0 .. N-1 per level (0: no training)"
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the demo's default is 4)")
    parser.add_argument("--segmenters", action="store_true", help="also compare the installed segmenters")
    parser.add_argument("--out", default="runs/chinese-tokenizers", help="folder for the run directories")
    parser.add_argument("--json", help="results file (rewritten after every run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    levels = args.levels.split(",")

    splits = load_embedded(seed=demo_config().data.split_seed)
    train = [ex.text for ex in splits.train]
    test = [ex.text for ex in splits.test or []]
    corpus = [ex.text for ex in read_embedded_corpus()[0]]
    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "tokenization": [], "runs": []}

    def save() -> None:
        results["machine"]["load_average_end"] = machine_info()["load_average"]
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(
                json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )

    if args.segmenters:
        results["segmenters"] = segmenters(corpus)
        for row in results["segmenters"]:
            print(json.dumps(row))
    for level in levels:
        results["tokenization"].append(tokenization(level, train, corpus, test))
        print(json.dumps(results["tokenization"][-1]))
    save()
    for seed in range(args.seeds):
        for level in levels:
            results["runs"].append(train_run(level, seed, args.epochs, Path(args.out)))
            print(json.dumps(results["runs"][-1]), flush=True)
            save()
    print(summary(results))


if __name__ == "__main__":
    main()
