"""Hand-built explanation dicts in the format of docs/explanation-format.md, for the renderer tests."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import pytest

XSS = "</script><script>window.__pwned = 1; alert(1)</script>"

SIGNED = {
    "attention": False,
    "gradient": False,
    "grad-input": True,
    "ig": True,
    "loo": True,
    "rollout": False,
}


def spans(text: str, pattern: str = r"\w+|[^\w\s]") -> list[tuple[int, int]]:
    """Token (start, end) offsets found with a regex, as a tokenizer with offsets would give them."""
    return [m.span() for m in re.finditer(pattern, text)]


def explanation(
    text: str,
    offsets: list[tuple[int, int]],
    scores: dict[str, list[float]],
    *,
    label: str = "pos",
    target: str | None = None,
    probabilities: dict[str, float] | None = None,
    token_texts: list[str] | None = None,
    truncated: bool = False,
    layers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    methods = list(scores)
    tokens = []
    for i, (start, end) in enumerate(offsets):
        tokens.append(
            {
                "text": token_texts[i] if token_texts else text[start:end].lower(),
                "start": start,
                "end": end,
                "scores": {m: scores[m][i] for m in methods},
            }
        )
    return {
        "text": text,
        "label": label,
        "target": target or label,
        "probabilities": probabilities or {"neg": 0.1, "pos": 0.9},
        "methods": methods,
        "signed": {m: SIGNED.get(m, False) for m in methods},
        "tokens": tokens,
        "truncated": truncated,
        "layers": layers,
    }


def five_methods(n: int, seed: int, peak: int) -> dict[str, list[float]]:
    """Scores for the five methods; token ``peak`` is the strongest for every method (a negative one for loo)."""
    rng = random.Random(seed)
    raw = [rng.random() for _ in range(n)]
    raw[peak] = 3.0
    total = sum(raw)
    attention = [v / total for v in raw]
    signed = [rng.uniform(-0.5, 0.5) for _ in range(n)]
    signed[peak] = 1.5
    loo = [rng.uniform(-0.05, 0.05) for _ in range(n)]
    loo[peak] = -0.2  # removing the most important token here helps the target: strongest score is negative
    return {
        "attention": attention,
        "gradient": [abs(v) * 0.01 for v in raw],
        "grad-input": signed,
        "ig": [v * 0.5 for v in signed],
        "loo": loo,
    }


def attention_layers(n: int, layers: int, heads: int, seed: int) -> list[list[list[list[float]]]]:
    """A[l][h][i][j]: softmax rows with one sharp preference per head (rows sum to 1)."""
    rng = random.Random(seed)
    out = []
    for _ in range(layers):
        layer = []
        for h in range(heads):
            matrix = []
            for i in range(n):
                logits = [rng.gauss(0, 0.5) for _ in range(n)]
                logits[(i + h) % n] += 3.0  # head h looks h tokens ahead
                top = max(logits)
                exp = [math.exp(v - top) for v in logits]
                total = sum(exp)
                matrix.append([v / total for v in exp])
            layer.append(matrix)
        out.append(layer)
    return out


def make_ascii() -> dict[str, Any]:
    text = "I like to read books, but this one was dull."
    offsets = spans(text)
    return explanation(text, offsets, five_methods(len(offsets), seed=1, peak=1))


def make_cjk() -> dict[str, Any]:
    text = "这部电影非常好看"
    offsets = [(i, i + 1) for i in range(len(text))]
    return explanation(
        text,
        offsets,
        five_methods(len(offsets), seed=2, peak=6),
        label="正面",
        probabilities={"负面": 0.03, "正面": 0.97},
    )


def make_html_stripped() -> dict[str, Any]:
    # The tokenizer stripped the <br /> tags and lowercased: offsets skip the tags, token texts are lowercase.
    text = "Great acting!<br /><br />The PLOT, however, was thin."
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s<>/]", text) if m.group() != "br"]
    return explanation(text, offsets, five_methods(len(offsets), seed=3, peak=0), label="neg", target="pos")


def make_transformer() -> dict[str, Any]:
    text = "the plot was thin but the acting was great"
    words = spans(text)
    offsets = [(0, 0), *words, (len(text), len(text))]  # [CLS] ... [SEP] have empty spans
    names = ["[CLS]", *[text[s:e] for s, e in words], "[SEP]"]
    n = len(offsets)
    attention = attention_layers(n, layers=2, heads=4, seed=4)
    # attention score = mean over heads of the last layer's [CLS] row; rollout made up but normalized
    cls_row = [sum(attention[-1][h][0][j] for h in range(4)) / 4 for j in range(n)]
    rollout = [v * v for v in cls_row]
    total = sum(rollout)
    scores = {
        "attention": cls_row,
        "rollout": [v / total for v in rollout],
        "grad-input": [0.0, 0.1, 0.4, -0.1, -0.8, 0.05, 0.0, 0.3, 0.0, 1.2, 0.0],
    }
    return explanation(text, offsets, scores, token_texts=names, layers={"attention": attention}, label="pos")


def make_xss() -> dict[str, Any]:
    text = f"Nice {XSS} & <b>bold</b> \"quotes\" 'single' {{{{braces}}}} [bold]markup[/bold]"
    offsets = spans(text, r"\S+")
    n = len(offsets)
    return explanation(
        text,
        offsets,
        {"attention": [1.0 / n] * n, "ig": [0.1 * ((-1) ** i) for i in range(n)]},
        label='<img src=x onerror="window.__pwned=2">',
        probabilities={'<img src=x onerror="window.__pwned=2">': 0.6, "</script>": 0.4},
    )


def make_emoji_truncated() -> dict[str, Any]:
    # Code-point offsets after an astral-plane character; only the first tokens are scored.
    text = "good 👍 film, would watch again and again"
    offsets = spans(text, r"\S+")[:4]
    return explanation(
        text,
        offsets,
        {"attention": [0.1, 0.5, 0.3, 0.1], "loo": [0.02, 0.3, -0.1, 0.0]},
        truncated=True,
    )


def make_head_tail_truncated() -> dict[str, Any]:
    # head+tail truncation: the tokens read are the first three and the last two; the <br /> between the second
    # and the third was read as a space, the middle was not read.
    text = "Great film<br />really. The middle part nobody reads here. Sad ending"
    words = spans(text, r"[A-Za-z]+")
    words = [w for w in words if text[w[0] : w[1]] != "br"]
    kept = words[:3] + words[-2:]
    scores = {"attention": [0.3, 0.1, 0.1, 0.1, 0.4], "ig": [0.2, -0.1, 0.05, 0.0, 0.3]}
    return explanation(text, kept, scores, truncated=True)


def make_zero() -> dict[str, Any]:
    text = "nothing matters here"
    offsets = spans(text)
    n = len(offsets)
    return explanation(text, offsets, {"attention": [0.0] * n, "ig": [0.0] * n})


FIXTURES = {
    "ascii": make_ascii,
    "cjk": make_cjk,
    "html_stripped": make_html_stripped,
    "transformer": make_transformer,
    "xss": make_xss,
    "emoji_truncated": make_emoji_truncated,
    "head_tail_truncated": make_head_tail_truncated,
    "zero": make_zero,
}


@pytest.fixture(params=sorted(FIXTURES))
def any_explanation(request: pytest.FixtureRequest) -> dict[str, Any]:
    return FIXTURES[request.param]()


@pytest.fixture
def all_explanations() -> list[dict[str, Any]]:
    return [make() for make in FIXTURES.values()]


@pytest.fixture(scope="session")
def named() -> dict[str, dict[str, Any]]:
    """Every fixture explanation by name (treat as read-only)."""
    return {name: make() for name, make in FIXTURES.items()}


@pytest.fixture(scope="session")
def xss_payload() -> str:
    return XSS
