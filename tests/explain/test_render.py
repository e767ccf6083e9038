"""Renderers for explanation JSON: offsets, the shared colour scale, terminal (every colour system), HTML
structure and safety, PNG, JSON."""

from __future__ import annotations

import copy
import html
import io
import itertools
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.style import Style

from attnkit.explain import render, scale
from attnkit.explain.render import (
    head_view_html,
    intensities,
    model_view_html,
    reconstruct_text,
    render_html,
    render_json,
    render_png,
    render_terminal,
    score_rgb,
    segments,
    text_rgb,
    with_scale,
)
from attnkit.explain.scale import RATIO_CAP, explanation_scale, method_scale


def luminance(rgb: tuple[int, int, int]) -> float:
    return render._luminance(rgb)


# ---------------------------------------------------------------------------------------------- offsets


def test_reconstructed_text_equals_original(any_explanation: dict[str, Any]) -> None:
    assert reconstruct_text(any_explanation) == any_explanation["text"]


def test_every_token_has_one_segment_in_order(any_explanation: dict[str, Any]) -> None:
    exp = any_explanation
    token_segments = [s for s in segments(exp) if s.token is not None]
    assert [s.token for s in token_segments] == list(range(len(exp["tokens"])))
    for seg in token_segments:
        tok = exp["tokens"][seg.token]
        assert seg.text == exp["text"][tok["start"] : tok["end"]]


def test_html_stripped_gaps_keep_the_tags(named: dict[str, dict[str, Any]]) -> None:
    exp = named["html_stripped"]
    gaps = [s.text for s in segments(exp) if s.token is None]
    assert "<br /><br />" in gaps
    tokens = [s.text for s in segments(exp) if s.token is not None]
    assert "PLOT" in tokens and exp["tokens"][tokens.index("PLOT")]["text"] == "plot"
    assert not any("br" in t for t in tokens)


def test_cjk_character_tokens(named: dict[str, dict[str, Any]]) -> None:
    exp = named["cjk"]
    assert [s.text for s in segments(exp)] == list("这部电影非常好看")


def test_special_and_overlapping_tokens_do_not_duplicate_text() -> None:
    exp = {
        "text": "ab cd",
        "tokens": [
            {"text": "[CLS]", "start": 0, "end": 0, "scores": {}},
            {"text": "ab", "start": 0, "end": 2, "scores": {}},
            {"text": "b", "start": 1, "end": 2, "scores": {}},  # overlaps the previous token
            {"text": "cd", "start": 3, "end": 99, "scores": {}},  # end past the text
        ],
    }
    segs = segments(exp)
    assert reconstruct_text(exp) == "ab cd"
    assert [(s.text, s.token) for s in segs] == [("", 0), ("ab", 1), ("", 2), (" ", None), ("cd", 3)]


def test_truncated_tail_is_one_gap(named: dict[str, dict[str, Any]]) -> None:
    exp = named["emoji_truncated"]
    last = segments(exp)[-1]
    assert last.token is None and last.text == " watch again and again"
    assert segments(exp)[2].text == "👍"  # code-point offsets after the astral-plane character


def test_the_unread_middle_of_a_head_and_tail_truncation_is_grey() -> None:
    from attnkit.explain.unread import unread_spans

    from .conftest import explanation, make_head_tail_truncated, spans

    text = "great start so so middle part here sad ending"
    words = spans(text, r"\S+")
    kept = words[:2] + words[-2:]  # head + tail: "great start" ... "sad ending"
    assert unread_spans(text, kept, max_length=4)
    assert not unread_spans(text, words[:4] + words[4:], max_length=len(words))  # every token kept
    assert not unread_spans(text, kept, max_length=5)  # not full: nothing was cut
    assert unread_spans(text, words[:4], max_length=4)  # head only: the tail is unread
    exp = explanation(text, kept, {"attention": [0.4, 0.1, 0.1, 0.4]}, truncated=True)
    gaps = [seg.text for seg in segments(exp) if seg.token is None]
    assert gaps == [" ", " so so middle part here ", " "]
    markup = render.tokens_html(exp, "attention")
    # What the tokenizer read as spaces (a <br />) is not unread text.
    fixture = make_head_tail_truncated()
    spans = render.unread_spans_of(fixture)  # a file without "unread": derived with the tokenizer's rule
    unread = [s.text for s in segments(fixture) if render._is_unread(s, spans)]
    assert unread == [". The middle part nobody reads here. "]
    assert "<br />" in fixture["text"] and '"ak-gap">&lt;br /&gt;</span>' in render.tokens_html(fixture, "ig")
    assert (
        markup.count("ak-unscored") == 1
        and '<span class="ak-gap ak-unscored"> so so middle part here </span>' in markup
    )


def test_unread_gaps_by_hand() -> None:
    """What the tokenizer reads as spaces (<br /> in any spelling, zero-width and control characters) is not
    unread text; anything else outside the tokens is, between two tokens or after the last."""
    from attnkit.explain.unread import unread_gaps, unread_spans

    text = "ab<BR/>cd\u200b\x07 ef gh"  # tokens ab (0, 2), cd (7, 9), ef (12, 14), gh (15, 17)
    assert len(text) == 17
    assert unread_gaps(text, [(0, 2), (7, 9), (12, 14)]) == [(14, 17)]  # only the tail " gh"
    assert unread_gaps(text, [(0, 2), (12, 14)]) == [(2, 12), (14, 17)]  # "<BR/>cd..." holds "cd"
    assert unread_gaps(text, [(0, 2), (7, 9), (12, 14), (15, 17)]) == []
    assert unread_gaps(text, [(0, 2), (15, 17)]) == [(2, 15)]
    assert unread_gaps("a b", []) == [(0, 3)]
    assert unread_spans(text, [(0, 2), (7, 9)], max_length=2) == [(9, 17)]
    assert unread_spans(text, [(0, 2), (7, 9)], max_length=3) == []  # not full: nothing was cut


def test_the_json_unread_spans_are_what_every_renderer_greys() -> None:
    """A file's own ``unread`` wins over the rule (the renderers never repeat the tokenizer's rule when the
    explanation says), and a page embeds the spans for its script."""
    from .conftest import make_head_tail_truncated

    exp = {**make_head_tail_truncated(), "unread": []}
    assert "ak-unscored" not in render.tokens_html(exp, "ig")
    middle = exp["text"].index(". The middle")
    exp["unread"] = [[middle, middle + 5]]
    assert render.tokens_html(exp, "ig").count("ak-unscored") == 1
    derived = render.with_unread(make_head_tail_truncated())["unread"]
    end = exp["text"].index("Sad")
    assert derived == [[middle, end]]


# ------------------------------------------------------------------------------------------ colour scale


def reference_intensities(method: str, signed: bool, scores: list[float | None]) -> list[float]:
    """The scale written out naively, for comparison (docs/explanation-format.md, "scale")."""
    finite = [v for v in scores if v is not None and math.isfinite(v)]
    if signed:
        peak = max((abs(v) for v in finite), default=0.0)
        return [0.0 if v is None or not math.isfinite(v) or peak == 0 else v / peak for v in scores]
    finite = [max(v, 0.0) for v in finite]
    if method not in ("attention", "rollout"):
        peak = max(finite, default=0.0)
        return [0.0 if v is None or not math.isfinite(v) or peak == 0 else max(v, 0.0) / peak for v in scores]
    mean = sum(finite) / len(finite) if finite else 0.0
    out = []
    for v in scores:
        ratio = v / mean if v is not None and math.isfinite(v) and mean > 0 else 0.0
        out.append(min(1.0, math.log(ratio, RATIO_CAP)) if ratio > 1 else 0.0)
    return out


def test_attention_shows_the_ratio_to_uniform() -> None:
    # weights 1/2, 1/4, 1/8, 1/8 over T = 4: ratios x2, x1, x0.5, x0.5
    sc = method_scale("attention", False, [0.5, 0.25, 0.125, 0.125])
    assert sc.kind == "ratio" and sc.units == 4 and sc.max_ratio == pytest.approx(2.0)
    assert sc.intensities([0.5, 0.25, 0.125, 0.125]) == pytest.approx([1 / 3, 0.0, 0.0, 0.0])
    # H = 1.75 bits of log2(4) = 2 bits: concentration 1 - 0.875
    assert sc.concentration == pytest.approx(0.125)
    # one-hot over 8 tokens: x8 = full colour, concentration 1; uniform: no colour, concentration 0
    one_hot = method_scale("attention", False, [1.0] + [0.0] * 7)
    assert one_hot.intensity(1.0) == 1.0 and one_hot.concentration == pytest.approx(1.0)
    uniform = method_scale("rollout", False, [0.2] * 5)
    assert uniform.intensities([0.2] * 5) == [0.0] * 5
    assert uniform.concentration == pytest.approx(0.0, abs=1e-12) and uniform.max_ratio == pytest.approx(1.0)


def test_near_uniform_attention_is_pale_and_the_scale_is_the_same_for_every_text() -> None:
    # The old scale divided by the text's max, so the top token of nearly uniform attention was full colour.
    weights = [0.1 + 0.005 * (-1) ** i for i in range(10)]
    shade = method_scale("attention", False, weights).intensities(weights)
    assert max(shade) < 0.03
    assert min(render.score_rgb(t, False)[1] for t in shade) > 245  # every token stays almost white
    # a token at twice uniform has the same colour in a 4-token text and in a 100-token text
    short = method_scale("attention", False, [0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3])
    long = method_scale("attention", False, [0.02] + [0.98 / 99] * 99)
    assert short.intensity(0.5) == pytest.approx(long.intensity(0.02)) == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", ["ascii", "cjk", "html_stripped", "transformer", "emoji_truncated", "zero"])
def test_intensities_match_the_reference(named: dict[str, dict[str, Any]], name: str) -> None:
    exp = named[name]
    for method in exp["methods"]:
        scores = [t["scores"][method] for t in exp["tokens"]]
        expected = reference_intensities(method, exp["signed"][method], scores)
        assert intensities(exp, method) == pytest.approx(expected, abs=1e-12), method


def test_signed_and_sequential_scales() -> None:
    assert method_scale("ig", True, [-2.0, 1.0, 0.0]).intensities([-2.0, 1.0, 0.0]) == [-1.0, 0.5, 0.0]
    gradient = method_scale("gradient", False, [0.1, 0.4, 0.2])
    assert gradient.kind == "sequential"
    assert gradient.intensities([0.1, 0.4, 0.2]) == pytest.approx([0.25, 1.0, 0.5])
    assert method_scale("gradient", False, [-1.0, 2.0]).intensities([-1.0, 2.0]) == [0.0, 1.0]
    diverging = method_scale("loo", True, [0.25, -0.75])
    assert (diverging.low_label(), diverging.high_label()) == ("−0.75", "+0.75")


def test_zero_missing_and_nan_do_not_divide_by_zero() -> None:
    for method, signed in (("attention", False), ("gradient", False), ("ig", True)):
        assert method_scale(method, signed, [0.0, 0.0]).intensities([0.0, 0.0]) == [0.0, 0.0]
        assert method_scale(method, signed, []).intensities([]) == []
    zero = method_scale("attention", False, [0.0, 0.0])
    assert zero.max_ratio is None and zero.concentration is None and zero.summary() == "all weights are 0"
    scores = [None, math.nan, math.inf, 2.0]
    assert method_scale("ig", True, scores).intensities(scores) == [0.0, 0.0, 0.0, 1.0]
    assert method_scale("attention", False, [1.0]).intensity(1.0) == 0.0  # one token is its own uniform
    assert score_rgb(0.0, False) == score_rgb(0.0, True) == (255, 255, 255)
    assert score_rgb(math.nan, True) == (255, 255, 255)


def test_bins() -> None:
    attention = method_scale("attention", False, [0.25] * 4)  # uniform = 0.25
    ratios = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 100.0]
    assert [attention.bin(r * 0.25, 3) for r in ratios] == [0, 0, 1, 1, 2, 2, 3, 3]  # edges x2, x4
    assert [attention.bin(r * 0.25, 2) for r in ratios] == [0, 0, 1, 1, 2, 2, 2, 2]  # edge x8**0.5
    ig = method_scale("ig", True, [-0.9, 0.3, 0.1])
    assert [ig.bin(v, 3) for v in (-0.9, -0.3, 0.0, 0.1, 0.3, 0.9)] == [-3, -1, 0, 1, 1, 3]


def test_number_labels_round_like_javascript() -> None:
    # toPrecision rounds ties away from zero on the exact value; Python's format would give 0.312
    assert [scale.compact(v) for v in (0.3125, -0.3125, 1234.5, 1.2e-5, 1e-7, 0.75)] == [
        "0.313", "-0.313", "1230", "0.000012", "1e-7", "0.75",
    ]  # fmt: skip
    assert scale.fixed(0.125, 2) == "0.13" and scale.fixed(0.0, 2) == "0.00"


def test_scale_json(named: dict[str, dict[str, Any]]) -> None:
    exp = named["ascii"]
    scales = scale.scales_json(exp)
    assert list(scales) == exp["methods"]
    assert {m: s["kind"] for m, s in scales.items()} == {
        "attention": "ratio", "gradient": "sequential", "grad-input": "diverging", "ig": "diverging",
        "loo": "diverging",
    }  # fmt: skip
    weights = [t["scores"]["attention"] for t in exp["tokens"]]
    attention = scales["attention"]
    assert attention["units"] == len(weights) and attention["total"] == pytest.approx(1.0)
    assert attention["max_ratio"] == pytest.approx(max(weights) * len(weights))
    entropy = -sum(w * math.log(w) for w in weights)
    assert attention["concentration"] == pytest.approx(1 - entropy / math.log(len(weights)))
    assert (attention["low"], attention["high"]) == ("×1 (uniform)", "×8 of uniform")
    assert scales["loo"]["max_abs"] == pytest.approx(0.2) and scales["loo"]["low"] == "−0.2"


@pytest.mark.parametrize("method", ["attention", "gradient", "grad-input", "ig", "loo"])
def test_highest_score_gets_most_intense_colour(named: dict[str, dict[str, Any]], method: str) -> None:
    exp = named["ascii"]
    signed = exp["signed"][method]
    scores = [t["scores"][method] for t in exp["tokens"]]
    colours = [score_rgb(v, signed) for v in intensities(exp, method)]
    strength = [abs(v) if signed else v for v in scores]
    strongest = max(range(len(scores)), key=lambda i: strength[i])
    assert strongest == 1  # the fixture's planted peak
    assert luminance(colours[strongest]) == min(luminance(c) for c in colours)
    # within one hue, a larger |score| is never lighter
    for sign in (1, -1):
        order = sorted((i for i in range(len(scores)) if scores[i] * sign >= 0), key=lambda i: strength[i])
        lums = [luminance(colours[i]) for i in order]
        assert all(a >= b - 1e-9 for a, b in itertools.pairwise(lums))


def test_signed_negatives_take_the_other_hue() -> None:
    pos, neg = score_rgb(1.0, True), score_rgb(-1.0, True)
    assert pos == render.POSITIVE_RGB and neg == render.NEGATIVE_RGB
    assert score_rgb(1.0, False) == render.UNSIGNED_RGB
    assert pos[0] > pos[2] and neg[2] > neg[0]  # red vs blue
    half = score_rgb(-0.5, True)
    assert half[2] > half[0] and luminance(half) > luminance(neg)
    # an unsigned scale never turns blue, even for an (invalid) negative
    assert score_rgb(-1.0, False) == (255, 255, 255)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1.0, "1"),
        (-0.25, "-0.25"),
        (1e-05, "0.00001"),
        (1e-07, "1e-7"),
        (-2.5e-08, "-2.5e-8"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123.0e18, "123000000000000000000"),
        (1.5e21, "1.5e+21"),
        (math.nan, "NaN"),
    ],
)
def test_js_number(value: float, text: str) -> None:
    assert render.js_number(value) == text


def test_text_colour_contrasts() -> None:
    assert text_rgb((255, 255, 255)) == (0, 0, 0)
    assert text_rgb((20, 20, 60)) == (255, 255, 255)


# --------------------------------------------------------------------------------------------- terminal


def _console(color: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    if color:
        console = Console(file=out, force_terminal=True, color_system="truecolor", width=100)
    else:
        console = Console(file=out, color_system=None, width=100)
    return console, out


def test_terminal_plain_marks_top_tokens(named: dict[str, dict[str, Any]]) -> None:
    console, out = _console(color=False)
    render_terminal([named["ascii"]], console=console)
    text = out.getvalue()
    assert "\x1b[" not in text
    assert "#1 pos" in text and "pos 0.900 · neg 0.100" in text
    assert "[like]" in text  # unsigned method: strongest token marked
    assert "[+like]" in text  # signed method with a positive peak
    assert "[-like]" in text  # loo: the peak is negative
    for method in named["ascii"]["methods"]:
        assert method in text
    assert text.count("top: like") == 5


def test_terminal_plain_reports_distance_from_uniform(named: dict[str, dict[str, Any]]) -> None:
    out = io.StringIO()
    exp = named["ascii"]
    render_terminal([exp], console=Console(file=out, color_system=None, width=300))
    sc = explanation_scale(exp, "attention")
    assert sc.concentration is not None and sc.max_ratio is not None
    text = out.getvalue()
    assert (
        f"peak ×{scale.compact(sc.max_ratio)} of uniform, concentration {scale.fixed(sc.concentration, 2)}"
        in text
    )
    assert "+ supports pos · − against it" in text and "red" not in text


def ansi_pieces(output: str) -> list[tuple[str, str]]:
    """``(SGR parameters in effect, text)`` for each run of text in rich's output ("" = no style)."""
    pieces, current = [], ""
    for part in re.split(r"(\x1b\[[0-9;]*m)", output):
        if part.startswith("\x1b["):
            params = part[2:-1]
            current = "" if params in ("", "0") else params
        elif part:
            pieces.append((current, part))
    return pieces


def styles_of(pieces: list[tuple[str, str]], text: str) -> set[str]:
    """The SGR of every piece that has ``text`` as a word (a styled token is a piece of its own)."""
    found = {sgr for sgr, piece in pieces if text in piece.split()}
    assert found, text
    return found


def bins_explanation() -> dict[str, Any]:
    """25 tokens: attention with a token in every terminal bin (ratios to uniform x10, x3, x1.5, x0.5, and 21
    fillers at x10/21), and signed scores at both ends and near 0 of both signs."""
    words = [
        "t_high",
        "t_mid",
        "t_low",
        "t_under",
        *[f"f{i}" for i in range(16)],
        "t_neg",
        "t_weakneg",
        "t_zero",
        "t_weakpos",
        "t_pos",
    ]
    text = " ".join(words)
    ratios = [10.0, 3.0, 1.5, 0.5, *[10.0 / 21] * 21]
    signed = [0.0] * 20 + [-1.0, -0.2, 0.0, 0.2, 1.0]
    tokens, cursor = [], 0
    for i, word in enumerate(words):
        scores = {"attention": ratios[i] / 25, "grad-input": signed[i]}
        tokens.append({"text": word, "start": cursor, "end": cursor + len(word), "scores": scores})
        cursor += len(word) + 1
    return {
        "text": text,
        "label": "pos",
        "target": "pos",
        "probabilities": {"neg": 0.2, "pos": 0.8},
        "methods": ["attention", "grad-input"],
        "signed": {"attention": False, "grad-input": True},
        "tokens": tokens,
        "truncated": False,
        "layers": None,
    }


def only(exp: dict[str, Any], method: str) -> dict[str, Any]:
    return {**exp, "methods": [method]}


@pytest.mark.parametrize("system", ["standard", "256", "truecolor"])
def test_terminal_legend_shows_the_colours_drawn(system: str) -> None:
    """In every colour system the legend's swatches are the colours of the lowest and highest bins."""
    exp = bins_explanation()
    assert sum(t["scores"]["attention"] for t in exp["tokens"]) == pytest.approx(1.0)
    outputs = {}
    for method in exp["methods"]:
        # rich caches combined styles with their ANSI codes whatever the colour system; one process normally
        # has one console, these tests have three
        Style._add.cache_clear()
        out = io.StringIO()
        console = Console(file=out, force_terminal=True, color_system=system, width=250)
        render_terminal([only(exp, method)], console=console)
        outputs[method] = out.getvalue()
    bins = 2 if system == "standard" else 3

    pieces = ansi_pieces(outputs["attention"])
    legend = [(sgr, text.strip()) for sgr, text in pieces]
    start = next(i for i, (_, text) in enumerate(legend) if text == "≤×1 (uniform)")
    swatches = legend[start : start + bins + 1]
    assert swatches[0][0] == "" and styles_of(pieces, "t_under") == {""}  # at or below uniform: no colour
    assert swatches[-1][1].startswith("≥×")
    assert styles_of(pieces, "t_high") == {swatches[-1][0]} != {""}  # highest bin
    assert styles_of(pieces, "t_low") == {swatches[1][0]}  # lowest coloured bin
    assert styles_of(pieces, "t_mid") == {swatches[2 if bins == 3 else -1][0]}
    assert len({sgr for sgr, _ in swatches}) == bins + 1  # every bin looks different

    pieces = ansi_pieces(outputs["grad-input"])
    texts = [text.strip() for _, text in pieces]
    zero = texts.index("0")
    negative_end, positive_end = pieces[zero - bins], pieces[zero + bins]
    assert negative_end[1].strip() == "−1" and positive_end[1].strip() == "+1"
    assert styles_of(pieces, "t_pos") == {positive_end[0]} and styles_of(pieces, "t_neg") == {negative_end[0]}
    assert styles_of(pieces, "t_weakpos") == {pieces[zero + 1][0]}
    assert styles_of(pieces, "t_weakneg") == {pieces[zero - 1][0]}

    both = outputs["attention"] + outputs["grad-input"]
    if system == "standard":  # named ANSI colours only, nothing for the terminal to approximate
        assert not re.search(r"\x1b\[[0-9;]*[34]8;[25];", both)
        assert positive_end[0].endswith("41") and negative_end[0].endswith("44")  # red / blue backgrounds
    elif system == "256":
        assert not re.search(r"\x1b\[[0-9;]*[34]8;2;", both)
    else:
        r, g, b = render.UNSIGNED_RGB
        assert f"48;2;{r};{g};{b}" in styles_of(ansi_pieces(outputs["attention"]), "t_high").pop()
        r, g, b = render.NEGATIVE_RGB
        assert f"48;2;{r};{g};{b}" in negative_end[0]
    assert "peak ×10 of uniform" in both
    assert "orange" not in both and "white" not in both  # the legend names no hue that might not be drawn


def test_terminal_shows_original_text_and_no_markup(named: dict[str, dict[str, Any]]) -> None:
    console, out = _console(color=False)
    render_terminal([named["cjk"], named["html_stripped"], named["xss"], named["zero"]], console=console)
    text = out.getvalue()
    assert "这部电影非常好看" in text.replace("[", "").replace("]", "").replace("+", "").replace("-", "")
    assert "<br /><br />" in text
    assert "[bold]markup[/bold]" in text  # rich markup in the text is printed, not interpreted
    assert "explaining pos" in text  # html_stripped explains a class other than the prediction
    assert "(all scores are zero)" in text


def test_terminal_default_console(
    named: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    render_terminal([named["emoji_truncated"]])
    captured = capsys.readouterr().out
    assert "truncated" in captured and "👍" in captured


# ------------------------------------------------------------------------------------------------ HTML


class PageParser(HTMLParser):
    """Collects tags, attributes and the text of each method row's tokens."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.rows: list[dict[str, Any]] = []
        self.sections = 0
        self._stack: list[str] = []
        self._in_script: dict[str, str | None] | None = None
        self._script_text: list[str] = []
        self._in_text = 0  # depth inside .ak-text
        self._title = False
        self.title = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        classes = (a.get("class") or "").split()
        if tag == "script":
            self._in_script, self._script_text = a, []
            return
        if tag == "title":
            self._title = True
        if "ak-explanation" in classes:
            self.sections += 1
        if "ak-method" in classes:
            self.rows.append(
                {"method": a.get("data-method"), "section": self.sections, "text": "", "tokens": []}
            )
        if self._in_text:
            self._in_text += 1
            if "ak-tok" in classes:
                self.rows[-1]["tokens"].append(a)
        elif "ak-text" in classes:
            self._in_text = 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, "".join(self._script_text)))
            self._in_script = None
        if tag == "title":
            self._title = False
        if self._in_text:
            self._in_text -= 1

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self._script_text.append(data)
        elif self._title:
            self.title += data
        elif self._in_text:
            self.rows[-1]["text"] += data


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def test_html_is_standalone(all_explanations: list[dict[str, Any]]) -> None:
    page = render_html(all_explanations)
    lowered = page.lower()
    for needle in ("http://", "https://", "//cdn", "@import", "url("):
        assert needle not in lowered, needle
    parsed = parse(page)
    for tag, attrs in parsed.tags:
        assert "src" not in attrs, (tag, attrs)
        assert "href" not in attrs, (tag, attrs)
    assert [t for t, _ in parsed.tags].count("style") == 1
    assert page.startswith("<!DOCTYPE html>")


def test_html_structure_and_text(all_explanations: list[dict[str, Any]]) -> None:
    page = render_html(all_explanations, title="reviews & <stuff>")
    parsed = parse(page)
    assert parsed.title == "reviews & <stuff>"
    assert parsed.sections == len(all_explanations)
    for index, exp in enumerate(all_explanations, 1):
        rows = [r for r in parsed.rows if r["section"] == index]
        assert [r["method"] for r in rows] == exp["methods"]
        for row in rows:
            special = {i for i, t in enumerate(exp["tokens"]) if t["start"] == t["end"]}
            names = "".join(exp["tokens"][i]["text"] for i in sorted(special))
            # the row's text is the original text plus the chips of the special tokens ([CLS], [SEP])
            assert row["text"].replace("[CLS]", "").replace("[SEP]", "") == exp["text"], names
            assert [int(t["data-i"]) for t in row["tokens"]] == list(range(len(exp["tokens"])))
    # the layer views appear only for the transformer explanation
    views = [a for t, a in parsed.tags if "data-ak-views" in a]
    assert [int(a["data-ak-views"] or -1) for a in views] == [
        i for i, e in enumerate(all_explanations) if e["layers"]
    ]


def test_html_token_colours_follow_scores(named: dict[str, dict[str, Any]]) -> None:
    exp = named["ascii"]
    parsed = parse(render_html([exp]))
    for row in parsed.rows:
        method = row["method"]
        colours = []
        for attrs in row["tokens"]:
            m = re.search(r"background-color: rgb\((\d+), (\d+), (\d+)\)", attrs["style"])
            assert m
            colours.append(tuple(int(x) for x in m.groups()))
        darkest = min(range(len(colours)), key=lambda i: luminance(colours[i]))
        assert darkest == 1, method
        assert row["tokens"][1]["data-score"] == render.js_number(exp["tokens"][1]["scores"][method])


def legends(page: str) -> list[dict[str, str]]:
    """Each legend's kind and the text of its parts, in page order."""
    out = []
    for block in re.findall(r'<div class="ak-legend [^"]*" data-kind="(\w+)">(.*?)</div>', page):
        kind, inner = block
        parts = dict(
            re.findall(r'<span class="ak-legend-(?:end ak-legend-)?(\w+)"[^>]*>([^<]*)</span>', inner)
        )
        out.append({"kind": kind, **{k: html.unescape(v) for k, v in parts.items()}})
    return out


def test_html_legends_say_what_the_colours_mean(named: dict[str, dict[str, Any]]) -> None:
    exp = named["ascii"]
    page = render_html([exp])
    found = legends(page)
    assert [f["kind"] for f in found] == ["ratio", "sequential", "diverging", "diverging", "diverging"]
    attention = explanation_scale(exp, "attention")
    assert attention.concentration is not None and attention.max_ratio is not None
    assert (found[0]["low"], found[0]["high"]) == ("×1 (uniform)", "×8 of uniform")
    assert f"concentration {scale.fixed(attention.concentration, 2)}" in found[0]["note"]
    assert f"peak ×{scale.compact(attention.max_ratio)}" in found[0]["note"]
    loo = max(abs(t["scores"]["loo"]) for t in exp["tokens"])
    assert (found[4]["low"], found[4]["high"]) == (f"−{scale.compact(loo)}", f"+{scale.compact(loo)}")
    assert "supports pos" in found[4]["note"]
    gradient = max(t["scores"]["gradient"] for t in exp["tokens"])
    assert found[1]["high"] == scale.compact(gradient) and "max" in found[1]["note"]
    assert "linear-gradient(to right, rgb(31, 119, 180), rgb(255, 255, 255), rgb(214, 39, 40))" in page


def test_html_near_uniform_attention_stays_pale() -> None:
    text = "one two three four five six seven eight nine ten"
    weights = [0.1 + 0.004 * (-1) ** i for i in range(10)]
    exp = bins_explanation()
    words = text.split()
    starts = [text.index(w) for w in words]  # all words are distinct
    exp = {
        **exp,
        "text": text,
        "methods": ["attention"],
        "tokens": [
            {"text": w, "start": s, "end": s + len(w), "scores": {"attention": v}}
            for w, s, v in zip(words, starts, weights, strict=True)
        ],
    }
    row = parse(render_html([exp])).rows[0]
    colours = [tuple(int(x) for x in re.findall(r"\d+", t["style"])[:3]) for t in row["tokens"]]
    assert all(min(c) >= 245 for c in colours), colours  # the old per-text max scale painted one dark
    assert legends(render_html([exp]))[0]["note"].startswith("no colour at or below uniform (1/10)")


def test_html_escapes_xss(named: dict[str, dict[str, Any]], xss_payload: str) -> None:
    exp = named["xss"]
    page = render_html([exp])
    parsed = parse(page)
    # only our three scripts: the data block, the library and the boot call
    assert [a.get("type") for a, _ in parsed.scripts] == ["application/json", None, None]
    assert xss_payload not in page
    assert "<img" not in page and "<b>bold" not in page
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned" in page
    data_block = parsed.scripts[0][1]
    assert "</" not in data_block and "<" not in data_block
    assert json.loads(data_block)[0]["text"] == exp["text"]
    assert parsed.rows[0]["text"] == exp["text"]


def test_html_embeds_json_roundtrip(named: dict[str, dict[str, Any]]) -> None:
    exps = [named["cjk"], named["transformer"]]
    parsed = parse(render_html(exps))
    data = json.loads(parsed.scripts[0][1])
    assert data[0] == {**with_scale(exps[0]), "unread": []} and data[0]["scale"] == scale.scales_json(exps[0])
    a, b = data[1]["layers"]["attention"], exps[1]["layers"]["attention"]
    assert len(a) == 2 and len(a[0]) == 4
    assert a[1][3][2] == pytest.approx(b[1][3][2], abs=1e-4)  # rounded to keep pages small


def test_html_handles_nan(named: dict[str, dict[str, Any]]) -> None:
    exp = copy.deepcopy(named["ascii"])
    exp["tokens"][0]["scores"]["ig"] = math.nan
    parsed = parse(render_html([exp]))
    assert json.loads(parsed.scripts[0][1])[0]["tokens"][0]["scores"]["ig"] is None
    ig_row = next(r for r in parsed.rows if r["method"] == "ig")
    assert ig_row["tokens"][0]["data-score"] == "n/a"


def test_layer_pages(named: dict[str, dict[str, Any]]) -> None:
    for build in (head_view_html, model_view_html):
        page = build(named["transformer"])
        assert "http://" not in page and "https://" not in page
        assert len(parse(page).scripts) == 3
        with pytest.raises(ValueError, match="no attention layers"):
            build(named["ascii"])


def test_layer_shape_is_checked(named: dict[str, dict[str, Any]]) -> None:
    exp = copy.deepcopy(named["transformer"])
    exp["layers"]["attention"][1][2].pop()
    with pytest.raises(ValueError, match="layer 1 head 2"):
        head_view_html(exp)
    with pytest.raises(ValueError, match="layer 1 head 2"):
        render_html([exp])


# ------------------------------------------------------------------------------------------------- JSON


def test_render_json(all_explanations: list[dict[str, Any]]) -> None:
    text = render_json(all_explanations)
    assert "这部电影非常好看" in text and "\\u" not in text
    assert json.loads(text) == [
        render._json_safe(render.with_unread(with_scale(exp))) for exp in all_explanations
    ]
    stale = {**all_explanations[0], "scale": {"attention": {"kind": "sequential"}}}
    assert json.loads(render_json([stale]))[0]["scale"] == scale.scales_json(stale)  # recomputed, not trusted
    assert "\n  " in text
    assert json.loads(render_json([{"x": math.nan, "y": [math.inf]}])) == [
        {"x": None, "y": [None], "scale": {}, "unread": []}
    ]


# -------------------------------------------------------------------------------------------------- PNG


def _png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image.shape[1], image.shape[0]  # width, height


def _long(n_tokens: int) -> dict[str, Any]:
    words = [f"w{i}" for i in range(n_tokens)]
    text = " ".join(words)
    tokens, cursor = [], 0
    for i, w in enumerate(words):
        tokens.append(
            {"text": w, "start": cursor, "end": cursor + len(w), "scores": {"attention": (i % 7) / 7}}
        )
        cursor += len(w) + 1
    return {
        "text": text,
        "label": "pos",
        "methods": ["attention"],
        "signed": {"attention": False},
        "tokens": tokens,
    }


def test_png_written_and_sized(named: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    sizes = {}
    for name in ("ascii", "cjk", "transformer", "xss", "zero", "emoji_truncated"):
        path = tmp_path / f"{name}.png"
        render_png(named[name], path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        sizes[name] = _png_size(path)
    assert sizes["ascii"][0] > sizes["cjk"][0]  # 13 tokens vs 8
    assert sizes["ascii"][1] > sizes["emoji_truncated"][1]  # 5 method rows vs 2


def test_png_long_texts_wrap_and_are_limited(tmp_path: Path) -> None:
    sizes = {}
    for n in (10, render.PNG_COLUMNS, 3 * render.PNG_COLUMNS, 2 * render.PNG_MAX_TOKENS):
        render_png(_long(n), tmp_path / f"{n}.png")
        sizes[n] = _png_size(tmp_path / f"{n}.png")
    w10, h10 = sizes[10]
    w40, h40 = sizes[render.PNG_COLUMNS]
    w120, h120 = sizes[3 * render.PNG_COLUMNS]
    w_max, h_max = sizes[2 * render.PNG_MAX_TOKENS]
    assert w40 > w10 and h40 == h10  # more tokens: wider
    assert w120 == w40 and h120 > 2 * h40  # past the column limit: wrapped into blocks, not wider
    assert w_max == w40
    blocks_max = render.PNG_MAX_TOKENS // render.PNG_COLUMNS
    assert h_max < h120 * blocks_max  # capped at PNG_MAX_TOKENS tokens


def test_png_methods_subset_and_odd_tokens(named: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    exp = copy.deepcopy(named["ascii"])
    exp["text"] = "$5 and $10 " + exp["text"][11:]  # mathtext delimiters in token labels
    full, subset = tmp_path / "full.png", tmp_path / "subset.png"
    render_png(exp, full)
    render_png(exp, subset, methods=["ig", "attention"])
    assert _png_size(subset)[1] < _png_size(full)[1]
    with pytest.raises(ValueError, match="unknown methods"):
        render_png(exp, tmp_path / "x.png", methods=["shap"])
