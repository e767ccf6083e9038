"""The seed article's worked example, checked against softmax computed by hand with ``math.exp``."""

from __future__ import annotations

import json
import math

import pytest

from attnkit.cli import main
from attnkit.example import format_worked_example, worked_example

SIMILARITIES = [0.2, 0.5, 0.3, 1.0, 0.1]
TOKENS = ["I", "like", "to", "read", "books"]


def hand_softmax(scores: list[float]) -> list[float]:
    exps = [math.exp(s) for s in scores]
    return [e / sum(exps) for e in exps]


def test_weights_are_the_softmax_of_the_similarities() -> None:
    example = worked_example()
    expected = hand_softmax(SIMILARITIES)
    assert example.tokens == TOKENS
    assert example.target == "read"
    assert example.similarities == SIMILARITIES
    # Rounded to 6 decimals by the library: off by at most half a unit in the last place.
    assert example.weights == pytest.approx(expected, abs=5.1e-7)
    # Spot check one value fully by hand: e^1 / (e^.2 + e^.5 + e^.3 + e^1 + e^.1).
    denom = math.exp(0.2) + math.exp(0.5) + math.exp(0.3) + math.exp(1.0) + math.exp(0.1)
    assert example.weights[3] == pytest.approx(math.e / denom, abs=5.1e-7)
    assert example.weights[3] == pytest.approx(0.337950, abs=1e-6)


def test_weights_sum_to_one_unlike_the_articles_numbers() -> None:
    example = worked_example()
    assert sum(example.weights) == pytest.approx(1.0, abs=5e-6)
    assert example.seed_weights_sum == pytest.approx(2.1)
    assert max(example.weights) == example.weights[TOKENS.index("read")]
    # Softmax keeps the order of the similarities.
    order = sorted(range(5), key=lambda i: SIMILARITIES[i])
    assert sorted(range(5), key=lambda i: example.weights[i]) == order


def test_output_equals_weights_for_one_hot_values() -> None:
    example = worked_example()
    assert example.output == example.weights


def test_custom_sentence_and_mismatch_error() -> None:
    example = worked_example(("a", "b"), (0.0, math.log(3.0)), target="b")
    assert example.weights == pytest.approx([0.25, 0.75], abs=5.1e-7)
    with pytest.raises(ValueError, match="one similarity per token"):
        worked_example(("a", "b", "c"), (0.1, 0.2))


def test_text_report_mentions_every_token_and_weight() -> None:
    example = worked_example()
    text = format_worked_example(example)
    for token, weight in zip(example.tokens, example.weights, strict=True):
        assert token in text
        assert f"{weight:.4f}" in text
    assert "sum to 2.1, not 1" in text


def test_cli_example_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["example", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"tokens", "similarities", "weights", "output"} <= payload.keys()
    assert payload["tokens"] == TOKENS
    assert payload["similarities"] == SIMILARITIES
    assert payload["weights"] == pytest.approx(hand_softmax(SIMILARITIES), abs=5.1e-7)
    assert payload["output"] == payload["weights"]


def test_cli_example_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["example"]) == 0
    out = capsys.readouterr().out
    assert "softmax weight" in out
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["like"])
    assert row == ["like", "0.500", f"{hand_softmax(SIMILARITIES)[1]:.4f}"]
    assert "sum       2.100          1.0000" in out


def test_text_report_prints_correctly_rounded_weights() -> None:
    text = format_worked_example(worked_example())
    for token, weight in zip(TOKENS, hand_softmax(SIMILARITIES), strict=True):
        row = next(line.split() for line in text.splitlines() if line.split()[:1] == [token])
        assert row[2] == f"{weight:.4f}", token
