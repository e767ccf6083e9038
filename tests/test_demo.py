"""`attnkit demo` end to end on the embedded corpus (slow: trains on 13,891 reviews)."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnkit.demo import SHOWCASE, run_demo


@pytest.mark.slow
def test_demo_beats_its_baseline_and_explains_with_contributions(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo")
    test = result.metrics["test"]
    assert test["n"] == 1736  # the held-out split of the de-duplicated corpus
    assert result.baseline is not None and result.baseline["n"] == test["n"]
    assert result.baseline["accuracy"] >= 0.84  # the character n-gram TF-IDF + LR baseline measured 0.8635
    # The three-run ensemble: seed 0 measured 0.8664 against 0.8635 (5 reviews ahead); over seeds 0-2 the mean is
    # ahead (BENCHMARKS.md). Another CPU's float order may move a few predictions: 3 reviews of slack.
    assert test["accuracy"] >= result.baseline["accuracy"] - 3 / test["n"]
    assert result.metrics["train_seconds"] <= 90 and len(result.metrics["members"]) == 3
    showcase = result.examples[0]
    assert showcase.text == SHOWCASE
    for item in result.examples:
        for token in item.tokens:
            assert item.text[token.start : token.end] == token.text
        # attention-value: exact signed shares; they sum to the explained logit margin minus a bias constant,
        # so they are not a distribution, and some tokens speak against the prediction
        assert any(score != 0 for score in item.scores("attention-value"))
    page = result.report_path.read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "http" not in page.split("<body>")[1]
    assert f"{test['accuracy']:.4f}" in page and f"{result.baseline['accuracy']:.4f}" in page


@pytest.mark.slow
def test_the_articles_model_is_one_flag_away(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", epochs=2, model="bilstm-attn", baseline=False)
    test = result.metrics["test"]
    assert test["accuracy"] >= 0.75  # chance is 0.52; the full 4-epoch run measured 0.84
    assert result.baseline is None
    # Chinese words, not characters: 不错 ("good") in issue 11's sentence is one unit, and the examples hold
    # more multi-character words than there are examples.
    showcase = result.examples[0]
    assert showcase.text == SHOWCASE and "不错" in [t.text for t in showcase.tokens]
    assert sum(len(t.text) > 1 for item in result.examples for t in item.tokens) > len(result.examples)
    for item in result.examples:
        assert sum(item.scores("attention")) == pytest.approx(1.0, abs=1e-4)


def test_demo_configs_and_the_report_comparison(tmp_path: Path) -> None:
    from attnkit.demo import char_ngram_baseline, demo_config
    from attnkit.report import write_report

    config = demo_config()
    assert (config.model.name, config.tokenizer.level, config.model.options["max_order"]) == (
        "nb-attn",
        "char",
        3,
    )
    assert (config.model.ensemble, config.train.epochs) == (3, 2)
    assert demo_config(model="bilstm-attn").tokenizer.level == "word-zh"
    with pytest.raises(ValueError, match="nb-attn, bilstm-attn"):
        demo_config(model="han")
    texts = ["好 很好 非常好", "好极了", "差 很差", "太差了", "好的", "差的"]
    labels = ["pos", "pos", "neg", "neg", "pos", "neg"]
    baseline = char_ngram_baseline(texts, labels, ["很好", "很差"], ["pos", "neg"])
    assert baseline["accuracy"] == 1.0 and baseline["n"] == 2  # 好 / 差 separate the classes by themselves
    metrics = {
        "test": {"accuracy": 0.85, "macro_f1": 0.85, "ece": 0.01, "n": 2, "per_class": {}},
        "train_seconds": 3.0,
    }
    page = write_report(tmp_path, metrics, [], "t", baseline={**baseline, "accuracy": 0.9}).read_text("utf-8")
    assert "0.8500" in page and "0.9000" in page and "is below the baseline" in page
    page = write_report(tmp_path, metrics, [], "t", baseline={**baseline, "accuracy": 0.8}).read_text("utf-8")
    assert "matches or beats the baseline" in page
    assert "Trained ? epochs in 3.0 s" in page
    members = [{"member": m, "seed": 5 + m, "best_epoch": 2 - m} for m in range(2)]
    for m in range(2):  # each member's curves are shown (an ensemble has none of its own)
        (tmp_path / "members" / str(m)).mkdir(parents=True)
        (tmp_path / "members" / str(m) / "curves.png").write_bytes(b"\x89PNG member")
    page = write_report(tmp_path, {**metrics, "members": members}, [], "t").read_text("utf-8")
    assert "An ensemble of 2 runs (seeds 5, 6)" in page and "(best epochs 2, 1)" in page
    assert page.count('alt="training curves, member') == 2
    assert "<h3>Member 0 (seed 5)</h3>" in page and "<h3>Member 1 (seed 6)</h3>" in page


def test_the_contribution_note_names_the_colours_the_page_uses() -> None:
    from attnkit.explain.scale import NEGATIVE_RGB, POSITIVE_RGB
    from attnkit.report import CONTRIBUTION_EXAMPLES_NOTE

    red, _, blue = POSITIVE_RGB
    assert red > blue and "red supports it" in CONTRIBUTION_EXAMPLES_NOTE
    red, _, blue = NEGATIVE_RGB
    assert blue > red and "blue speaks against it" in CONTRIBUTION_EXAMPLES_NOTE
