"""``attnkit demo``: the embedded Chinese review corpus end to end, offline, in a few minutes on a laptop CPU;
``attnkit demo --task vision``: Fashion-MNIST with attention over image regions, heatmaps in the report."""

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


#: Test images the vision demo explains: the first of each class.
VISION_METHODS = ["attention", "ig"]


def vision_demo_config(epochs: int = 2, seed: int = 0) -> RunConfig:
    """The vision demo's run: ``cnn-attn`` (attention pooling over the cells of a convolutional feature map) on
    Fashion-MNIST, a couple of epochs (the shipped ``fashion-mnist-cnn-attn`` config trains longer, for its best
    accuracy)."""
    return RunConfig.from_dict(
        {
            "data": {"train": "fashion-mnist", "modality": "image", "val_fraction": 5000 / 60000},
            "model": {"name": "cnn-attn"},
            "optim": {"lr": 3e-3, "batch_size": 128, "schedule": "cosine", "warmup_fraction": 0.05},
            "train": {"epochs": epochs, "seed": seed, "patience": 2},
        }
    )


def run_vision_demo(out_dir: str | Path = "runs/demo-vision", epochs: int = 2, seed: int = 0) -> DemoResult:
    """Train on Fashion-MNIST (``$ATTNKIT_DATA/fashion-mnist``, else downloaded once and verified), evaluate on
    the official test set, and write ``report.html`` with one test image per class: the image, the heatmap of
    each method over its regions and the overlay.

    Raises:
        attnkit.data.DataError: the data is not there and cannot be downloaded (the message says where it looked).
    """
    import base64
    import html
    import tempfile

    from attnkit.data.vision import load_fashion_mnist
    from attnkit.explain.images import explain_images
    from attnkit.explain.render_images import render_image_png

    config = vision_demo_config(epochs=epochs, seed=seed)
    result = fit(config, out_dir)
    predictor = Predictor(result.run_dir)
    test = load_fashion_mnist("test")
    firsts = [test.labels.index(name) for name in test.classes]  # the first test image of each class
    explanations = explain_images(
        predictor, [test.pixels[i] for i in firsts], VISION_METHODS, sources=[test.sources[i] for i in firsts]
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (item, explanation) in enumerate(zip(firsts, explanations, strict=True)):
            path = Path(tmp) / f"{index}.png"
            render_image_png(explanation.to_json_dict(), path)
            encoded = base64.b64encode(path.read_bytes()).decode("ascii")
            rows.append(
                f"<div class='ex'><div class='pred'>true <b>{html.escape(test.labels[item])}</b>, predicted "
                f"<b>{html.escape(explanation.label)}</b> ({max(explanation.probabilities.values()):.3f})</div>"
                f"<img alt='{html.escape(test.sources[item])}' src='data:image/png;base64,{encoded}'></div>"
            )
    note = (
        "One test image per class: the image, each method's score per region (attention: the pooling weight of "
        "each feature-map cell; ig: Integrated Gradients summed over the cell's pixels) and the overlay. "
        "Attention shows where the model looked; attnkit faithfulness measures whether that is why it decided."
    )
    report = write_report(
        result.run_dir,
        result.metrics,
        [],
        "attnkit demo: Fashion-MNIST with attention over image regions",
        examples_html="".join(rows),
        examples_note=note,
    )
    return DemoResult(run_dir=result.run_dir, metrics=result.metrics, examples=[], report_path=report)
