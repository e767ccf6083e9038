"""Renderers for explanation JSON: offsets, colour scale, terminal, HTML structure and safety, PNG, JSON."""

from __future__ import annotations

import copy
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

from attnkit.explain import render
from attnkit.explain.render import (
    head_view_html,
    model_view_html,
    normalize_scores,
    reconstruct_text,
    render_html,
    render_json,
    render_png,
    render_terminal,
    score_rgb,
    segments,
    text_rgb,
)


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


# ------------------------------------------------------------------------------------------ colour scale


def test_normalize_unsigned_and_signed() -> None:
    assert normalize_scores([0.1, 0.4, 0.2], signed=False) == pytest.approx([0.25, 1.0, 0.5])
    assert normalize_scores([-2.0, 1.0, 0.0], signed=True) == pytest.approx([-1.0, 0.5, 0.0])
    assert normalize_scores([-1.0, 2.0], signed=False) == [0.0, 1.0]  # unsigned negatives clip to 0


def test_normalize_zero_missing_and_nan_do_not_divide_by_zero() -> None:
    assert normalize_scores([0.0, 0.0, 0.0], signed=False) == [0.0, 0.0, 0.0]
    assert normalize_scores([0.0, -0.0], signed=True) == [0.0, 0.0]
    assert normalize_scores([], signed=True) == []
    assert normalize_scores([None, math.nan, math.inf, 2.0], signed=True) == [0.0, 0.0, 0.0, 1.0]
    assert score_rgb(0.0, False) == score_rgb(0.0, True) == (255, 255, 255)
    assert score_rgb(math.nan, True) == (255, 255, 255)


@pytest.mark.parametrize("method", ["attention", "gradient", "grad-input", "ig", "loo"])
def test_highest_score_gets_most_intense_colour(named: dict[str, dict[str, Any]], method: str) -> None:
    exp = named["ascii"]
    signed = exp["signed"][method]
    scores = [t["scores"][method] for t in exp["tokens"]]
    colours = [score_rgb(v, signed) for v in normalize_scores(scores, signed)]
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


def test_terminal_colour_uses_the_scale(named: dict[str, dict[str, Any]]) -> None:
    console, out = _console(color=True)
    render_terminal([named["ascii"]], console=console)
    text = out.getvalue()
    r, g, b = render.UNSIGNED_RGB
    assert f"48;2;{r};{g};{b}" in text  # the top attention token has the full orange background
    r, g, b = render.NEGATIVE_RGB
    assert f"48;2;{r};{g};{b}" in text  # loo's strongest token is negative: full blue


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
    assert data[0] == exps[0]
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
    assert json.loads(text) == all_explanations
    assert "\n  " in text
    assert json.loads(render_json([{"x": math.nan, "y": [math.inf]}])) == [{"x": None, "y": [None]}]


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
