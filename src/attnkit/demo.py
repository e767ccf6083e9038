"""``attnkit demo``: the embedded Chinese review corpus end to end, offline, in a few minutes on a laptop CPU."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from attnkit.explain import Explanation, explain
from attnkit.predictor import Predictor
from attnkit.report import write_report
from attnkit.train.config import (
    DataConfig,
    ModelSection,
    OptimConfig,
    RunConfig,
    TokenizerSection,
    TrainConfig,
)
from attnkit.train.loop import fit

log = logging.getLogger(__name__)

#: Issue 11's sentence, "this book is very well written", shown first: 不错 ("not bad", i.e. good) is one word.
SHOWCASE = "这本书写得很不错"


def demo_config(epochs: int = 4, seed: int = 0) -> RunConfig:
    """The demo's run: the seed's BiLSTM + attention model on the embedded corpus, in Chinese words.

    ``word-zh`` (jieba words) is what ``auto`` picks for Chinese: on this corpus it is more accurate than
    characters and than words with unknown ones split into characters (``benchmarks/chinese_tokenizers.py``),
    and its explanations highlight words.
    """
    return RunConfig(
        data=DataConfig(train="embedded"),
        tokenizer=TokenizerSection(level="word-zh", vocab_size=6000, min_freq=2, max_length=200),
        model=ModelSection(name="bilstm-attn", options={"embed_dim": 64, "hidden_size": 64}),
        optim=OptimConfig(lr=3e-3, batch_size=64),
        # One thread: on a shared 2-core machine a second OpenMP thread spin-waits and can make LSTM steps 10x slower.
        train=TrainConfig(epochs=epochs, seed=seed, patience=2, threads=1),
    )


@dataclass
class DemoResult:
    run_dir: Path
    metrics: dict
    examples: list[Explanation]
    report_path: Path


def run_demo(
    out_dir: str | Path = "runs/demo", epochs: int = 4, seed: int = 0, num_examples: int = 6
) -> DemoResult:
    """Train, evaluate on the held-out split, explain :data:`SHOWCASE` and some test reviews, write ``report.html``."""
    config = demo_config(epochs=epochs, seed=seed)
    result = fit(config, out_dir)
    predictor = Predictor(result.run_dir)
    from attnkit.data import load_embedded

    test = load_embedded(seed=config.data.split_seed).test or []
    # A few short reviews of each label, in a fixed order.
    picks = []
    for label in sorted({ex.label for ex in test}):
        picks += [ex.text for ex in test if ex.label == label and 12 <= len(ex.text) <= 60][
            : num_examples // 2
        ]
    examples = explain(predictor, [SHOWCASE, *picks], ["attention"])
    report = write_report(result.run_dir, result.metrics, examples, "attnkit demo: Chinese review sentiment")
    return DemoResult(run_dir=result.run_dir, metrics=result.metrics, examples=examples, report_path=report)
