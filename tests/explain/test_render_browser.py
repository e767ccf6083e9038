"""The standalone explanation pages in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Set ATTNKIT_SCREENSHOTS=<dir> to also save one screenshot per view there, for looking at them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attnkit.explain.render import (
    head_view_html,
    intensities,
    js_number,
    model_view_html,
    render_html,
    with_unread,
)
from attnkit.explain.scale import scales_json

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # dev.sh installs it; never download a browser from a test
    pytest.skip(
        f"{CHROMIUM} not installed (./dev.sh test installs Debian's chromium)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page with its console errors, uncaught exceptions and dialogs recorded."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", self._request)
        self.requests: list[str] = []

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, request: Any) -> None:
        if not request.url.startswith(("data:", "about:")):
            self.requests.append(request.url)

    def load(self, html: str) -> Any:
        self.page.set_content(html)
        return self.page


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    errors, dialogs, requests = p.errors, p.dialogs, p.requests
    p.page.close()
    assert errors == [], errors
    assert dialogs == [], dialogs
    assert requests == [], requests


def rgb(css: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"rgb\((\d+), (\d+), (\d+)\)", css)
    assert m, css
    r, g, b = (int(x) for x in m.groups())
    return (r, g, b)


def lum(c: tuple[int, int, int]) -> float:
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]


def screenshot(locator: Any, name: str) -> None:
    folder = os.environ.get("ATTNKIT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        locator.screenshot(path=str(Path(folder) / f"{name}.png"))


ROW_TOKENS = """section => Array.from(section.querySelectorAll('.ak-method')).map(row => ({
    method: row.dataset.method,
    text: Array.from(row.querySelector('.ak-text').childNodes)
        .filter(n => !(n.classList && n.classList.contains('ak-special'))).map(n => n.textContent).join(''),
    tokens: Array.from(row.querySelectorAll('.ak-tok')).map(t => [
        Number(t.dataset.i), t.textContent, getComputedStyle(t).backgroundColor, t.dataset.score]),
    kind: row.querySelector('.ak-kind').textContent,
    unread: Array.from(row.querySelectorAll('.ak-unscored')).map(n => n.textContent),
    legend: Array.from(row.querySelectorAll('.ak-legend > span')).map(part => [
        part.className, part.textContent, getComputedStyle(part).backgroundImage]),
}))"""


def test_api_is_exposed(page: Page, named: dict[str, dict[str, Any]]) -> None:
    p = page.load(render_html([named["ascii"]]))
    kinds = p.evaluate(
        "['renderTokens', 'renderHeadView', 'renderModelView', 'renderExplanation'].map(k => typeof window.attnkit[k])"
    )
    assert kinds == ["function"] * 4


def test_numbers_are_written_like_javascript(page: Page) -> None:
    values = [0.0, 1.0, -0.25, 1e-5, 1e-7, 2.5e-6, 0.1 + 0.2, 1.2345e20, 1.5e21, 5e-324, 0.123456789012345678]
    p = page.load("<!DOCTYPE html><title>numbers</title>")
    assert p.evaluate(f"{json.dumps(values)}.map(String)") == [js_number(v) for v in values]


def test_static_tokens_and_colour_order(page: Page, named: dict[str, dict[str, Any]]) -> None:
    exp = named["ascii"]
    p = page.load(render_html([exp, named["cjk"], named["html_stripped"]]))
    sections = p.locator(".ak-explanation")
    assert sections.count() == 3
    rows = sections.nth(0).evaluate(ROW_TOKENS)
    assert [r["method"] for r in rows] == exp["methods"]
    spans = [exp["text"][t["start"] : t["end"]] for t in exp["tokens"]]
    for row in rows:
        assert row["text"] == exp["text"]
        assert [t[1] for t in row["tokens"]] == spans
        colours = [rgb(t[2]) for t in row["tokens"]]
        darkest = min(range(len(colours)), key=lambda i: lum(colours[i]))
        assert darkest == 1, row["method"]  # the planted peak, "like"
        values = [t["scores"][row["method"]] for t in exp["tokens"]]
        strength = [abs(v) for v in values]
        assert lum(colours[strength.index(min(strength))]) == max(lum(c) for c in colours)
        r, _, b = colours[1]
        assert (b > r) == (row["method"] == "loo")  # loo's peak is negative: the blue hue
    cjk = sections.nth(1).evaluate(ROW_TOKENS)[0]
    assert [t[1] for t in cjk["tokens"]] == list("这部电影非常好看")
    stripped = sections.nth(2).evaluate(ROW_TOKENS)[0]
    assert stripped["text"] == named["html_stripped"]["text"]
    assert "<br /><br />" in stripped["text"] and not any("br" in t[1] for t in stripped["tokens"])
    screenshot(sections.nth(0), "tokens")


def test_js_renderer_matches_python(page: Page, all_explanations: list[dict[str, Any]]) -> None:
    """window.attnkit.renderExplanation (used by served pages) draws what the Python page shows."""
    p = page.load(render_html(all_explanations))
    static = p.locator(".ak-explanation").evaluate_all(f"sections => sections.map({ROW_TOKENS})")
    dynamic = p.evaluate(
        f"""() => window.attnkit.loadData(document).map((exp) => {{
            const host = document.createElement('div');
            document.body.appendChild(host);
            window.attnkit.renderExplanation(host, exp);
            return ({ROW_TOKENS})(host.querySelector('.ak-explanation'));
        }})"""
    )
    assert dynamic == static
    for exp, rows in zip(all_explanations, dynamic, strict=True):
        assert all(r["text"] == exp["text"] for r in rows)  # incl. the emoji: offsets are code points
    assert p.locator(".ak-headview").count() == 2  # the static page's and the JS-rendered transformer


def test_js_greys_the_spans_the_json_says_were_unread(page: Page, named: dict[str, dict[str, Any]]) -> None:
    """The script follows the JSON's ``unread`` spans (attnkit.explain.unread's rule) and repeats no tokenizer
    rule: the <br /> between two read tokens stays white, and the spans it is given are what it greys."""
    exp = named["head_tail_truncated"]
    middle, end = exp["text"].index(". The middle"), exp["text"].index("Sad")
    br = exp["text"].index("<br />")
    cases = [
        with_unread(exp),
        {**exp, "unread": []},
        {**exp, "unread": [[br, br + 6]]},  # not what the rule says: the script still follows it
        {**exp, "truncated": False},
    ]
    p = page.load(render_html([named["ascii"]]))
    unread = p.evaluate(
        f"""cases => cases.map((exp) => {{
            const host = document.createElement('div');
            document.body.appendChild(host);
            window.attnkit.renderExplanation(host, exp);
            return ({ROW_TOKENS})(host.querySelector('.ak-explanation'))[0].unread;
        }})""",
        cases,
    )
    middle_text = ". The middle part nobody reads here. "
    assert unread == [[middle_text], [], ["<br />"], []]
    assert "<br />" in exp["text"] and cases[0]["unread"] == [[middle, end]]


def scale_cases(all_explanations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fixtures plus scores at the scale's corners: an exact tie for 2-decimal rounding (concentration
    0.125), uniform, one-hot, all zero, missing and non-finite scores, a lone token."""

    def exp(method: str, signed: bool, scores: list[Any]) -> dict[str, Any]:
        text = " ".join(f"w{i}" for i in range(len(scores)))
        tokens = [
            {
                "text": f"w{i}",
                "start": 3 * i if i < 10 else 30 + 4 * (i - 10),
                "end": 0,
                "scores": {method: v},
            }
            for i, v in enumerate(scores)
        ]
        for tok in tokens:
            tok["end"] = tok["start"] + len(tok["text"])
        return {"text": text, "label": "pos", "target": "neg", "methods": [method], "signed": {method: signed},
                "tokens": tokens}  # fmt: skip

    return [
        *all_explanations,
        exp("attention", False, [0.5, 0.25, 0.125, 0.125]),
        exp("attention", False, [0.2] * 5),
        exp("rollout", False, [1.0] + [0.0] * 7),
        exp("attention", False, [0.0, 0.0]),
        exp("attention", False, [0.7, None, 0.3, "x"]),
        exp("attention", False, [1.0]),
        exp("gradient", False, [0.3125, 0.1, -1.0]),
        exp("ig", True, [-0.3125, 0.1, 0.0, None]),
        exp("loo", True, [1234.5, -7.0, 1e-7]),
    ]


def test_js_scale_matches_python(page: Page, all_explanations: list[dict[str, Any]]) -> None:
    """attnkit-viz.js's scaleOf / intensities (the served page's scale) equal attnkit.explain.scale's."""
    cases = scale_cases(all_explanations)
    p = page.load(render_html(cases))
    static = p.locator(".ak-explanation").evaluate_all(f"sections => sections.map({ROW_TOKENS})")
    dynamic = p.evaluate(
        f"""() => window.attnkit.loadData(document).map((exp) => {{
            const host = document.createElement('div');
            document.body.appendChild(host);
            window.attnkit.renderExplanation(host, exp);
            return ({ROW_TOKENS})(host.querySelector('.ak-explanation'));
        }})"""
    )
    assert dynamic == static  # tokens, colours and legend texts (e.g. concentration 0.125 -> "0.13")
    notes = [part[1] for rows in static for row in rows for part in row["legend"] if "note" in part[0]]
    assert "concentration 0.13 (0 = uniform, 1 = one token)" in " ".join(notes)
    js = p.evaluate(
        """cases => cases.map(exp => Object.fromEntries(exp.methods.map(m => [m, {
            scale: window.attnkit.scaleOf(exp, m),
            intensities: window.attnkit.intensities(exp, m),
            colours: window.attnkit.intensities(exp, m).map(t => window.attnkit.intensityColor(
                t, window.attnkit.scaleOf(exp, m).kind)),
        }])))""",
        cases,
    )
    from attnkit.explain.render import score_rgb

    for exp, got in zip(cases, js, strict=True):
        expected = scales_json(exp)
        for method in exp["methods"]:
            scale, want = got[method]["scale"], expected[method]
            assert scale.keys() == want.keys(), method
            for key, value in want.items():
                if isinstance(value, float):
                    assert scale[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (method, key)
                else:
                    assert scale[key] == value, (method, key)
            shade = intensities(exp, method)
            assert got[method]["intensities"] == pytest.approx(shade, abs=1e-12)
            assert [tuple(c) for c in got[method]["colours"]] == [
                score_rgb(t, exp["signed"][method]) for t in shade
            ]


def test_legends_are_visible_and_honest(page: Page, named: dict[str, dict[str, Any]]) -> None:
    exp = named["ascii"]
    p = page.load(render_html([exp]))
    legends = p.locator(".ak-legend")
    assert legends.count() == len(exp["methods"])
    for i in range(legends.count()):
        assert legends.nth(i).is_visible()
        assert legends.nth(i).locator(".ak-legend-bar").bounding_box()["width"] > 50
    attention = p.locator('.ak-method[data-method="attention"] .ak-legend')
    assert attention.locator(".ak-legend-low").inner_text() == "×1 (uniform)"
    assert attention.locator(".ak-legend-high").inner_text() == "×8 of uniform"
    assert "concentration" in attention.locator(".ak-legend-note").inner_text()
    bar = attention.locator(".ak-legend-bar").evaluate("b => getComputedStyle(b).backgroundImage")
    assert bar == "linear-gradient(to right, rgb(255, 255, 255), rgb(230, 85, 13))"
    screenshot(p.locator(".ak-explanation"), "legends")


def test_hover_shows_exact_score(page: Page, named: dict[str, dict[str, Any]]) -> None:
    exp = named["ascii"]
    p = page.load(render_html([exp]))
    tip = p.locator(".ak-tooltip")
    token = p.locator('.ak-method[data-method="ig"] .ak-tok[data-i="1"]')
    token.hover()
    assert tip.is_visible()
    score = exp["tokens"][1]["scores"]["ig"]
    assert tip.inner_text() == f"like · ig = {js_number(score)}"
    # the same token is outlined in every method row
    assert p.locator('.ak-tok.ak-peer[data-i="1"]').count() == len(exp["methods"])
    p.mouse.move(5, 5)
    assert not tip.is_visible()
    assert p.locator(".ak-tok[title]").count() == 0  # native titles replaced by the tooltip


def test_xss_payload_does_not_run(page: Page, named: dict[str, dict[str, Any]], xss_payload: str) -> None:
    exp = named["xss"]
    p = page.load(render_html([exp], title=xss_payload))
    assert p.evaluate("window.__pwned") is None
    assert p.locator("img").count() == 0 and p.locator(".ak-text b").count() == 0
    assert p.locator("script").count() == 3
    assert p.title() == xss_payload
    assert p.locator(".ak-label").inner_text() == exp["label"]
    rows = p.locator(".ak-explanation").evaluate(ROW_TOKENS)
    assert rows[0]["text"] == exp["text"]
    # the same through the JS renderer
    p.evaluate(
        "() => { const d = document.createElement('div'); document.body.appendChild(d);"
        " window.attnkit.renderExplanation(d, window.attnkit.loadData(document)[0]); }"
    )
    assert p.evaluate("window.__pwned") is None
    assert p.locator("img").count() == 0


def embedded_attention(p: Any) -> list[list[list[list[float]]]]:
    data: list[list[list[list[float]]]] = p.evaluate("window.attnkit.loadData(document)[0].layers.attention")
    return data


def _weights(exp: dict[str, Any], layer: int, head: int) -> list[list[float]]:
    return exp["layers"]["attention"][layer][head]


def test_head_view_lines(page: Page, named: dict[str, dict[str, Any]]) -> None:
    exp = named["transformer"]
    n = len(exp["tokens"])
    p = page.load(render_html([exp]))
    view = p.locator(".ak-headview")
    lines = view.locator("line.ak-hv-line")
    # options are labelled from 1; pick by label (Playwright's value= also matches labels)
    view.locator("select.ak-hv-layer").select_option(label="2")
    view.locator("select.ak-hv-head").select_option(label="3")
    assert view.locator("select.ak-hv-layer").input_value() == "1"
    A = embedded_attention(p)[1][2]  # the page embeds weights rounded to 4 decimals
    assert A[4] == pytest.approx(_weights(exp, 1, 2)[4], abs=1e-4)
    expected = sum(1 for row in A for w in row if w >= 0.01)
    assert lines.count() == expected > n
    assert view.locator(".ak-hv-status").inner_text().startswith(f"{expected} of {n * n} lines")
    assert set(lines.evaluate_all("ls => ls.map(l => l.dataset.head)")) == {"2"}
    stroke = lines.first.get_attribute("stroke")
    assert stroke == "rgb(44, 160, 44)"  # the colour of head 3
    assert view.locator(".ak-hv-chip.ak-selected").get_attribute("data-head") == "2"
    screenshot(view, "head_view")

    # hovering a query token keeps only its lines and writes its weights next to the keys
    view.locator('.ak-hv-from[data-i="4"]').hover()
    assert set(lines.evaluate_all("ls => ls.map(l => l.dataset.from)")) == {"4"}
    weights = view.locator("text.ak-hv-weight").all_text_contents()
    assert weights == [f"{w:.3f}" for w in A[4]]
    widths = view.locator("rect.ak-hv-bar").evaluate_all("rs => rs.map(r => Number(r.getAttribute('width')))")
    assert widths.index(max(widths)) == max(range(n), key=lambda j: A[4][j])
    screenshot(view, "head_view_focus")

    # hovering a key token shows who attends to it; clicking pins it
    key = view.locator('.ak-hv-to[data-i="7"]')
    key.click()
    p.mouse.move(3, 3)
    assert set(lines.evaluate_all("ls => ls.map(l => l.dataset.to)")) == {"7"}
    key.click()  # unpin
    p.mouse.move(3, 3)
    assert lines.count() == expected

    # all heads overlaid, one colour per head
    view.locator("select.ak-hv-head").select_option(label="all heads")
    heads = lines.evaluate_all("ls => ls.map(l => l.dataset.head + ' ' + l.getAttribute('stroke'))")
    assert len(set(heads)) == 4
    screenshot(view, "head_view_all")


def test_model_view_opens_cell_in_head_view(page: Page, named: dict[str, dict[str, Any]]) -> None:
    exp = named["transformer"]
    p = page.load(render_html([exp]))
    cells = p.locator(".ak-mv-cell")
    assert cells.count() == 2 * 4
    assert p.locator(".ak-mv-cell canvas").count() == 8
    # the heatmap is painted: the darkest pixel of layer 1 head 2 is where its row maximum is
    pixel = p.locator('.ak-mv-cell[data-layer="0"][data-head="1"] canvas').evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
    )
    n = len(exp["tokens"])
    A = embedded_attention(p)[0][1]
    peak = max(range(n * n), key=lambda k: A[k // n][k % n])
    brightness = [sum(pixel[4 * k : 4 * k + 3]) for k in range(n * n)]
    assert brightness.index(min(brightness)) == peak
    screenshot(p.locator(".ak-view-model"), "model_view")

    p.locator('.ak-mv-cell[data-layer="1"][data-head="3"]').click()
    view = p.locator(".ak-headview")
    assert view.locator("select.ak-hv-layer").input_value() == "1"
    assert view.locator("select.ak-hv-head").input_value() == "3"
    svg = view.locator("svg.ak-hv-svg")
    assert (svg.get_attribute("data-layer"), svg.get_attribute("data-head")) == ("1", "3")
    assert set(view.locator("line.ak-hv-line").evaluate_all("ls => ls.map(l => l.dataset.head)")) == {"3"}
    selected = p.locator(".ak-mv-cell.ak-selected")
    assert selected.count() == 1 and selected.get_attribute("data-layer") == "1"
    # and the other way round: picking a head in the head view marks its model-view cell
    view.locator("select.ak-hv-head").select_option(label="1")
    assert p.locator(".ak-mv-cell.ak-selected").get_attribute("data-head") == "0"
    # hovering a heatmap cell names the tokens and the weight
    p.locator('.ak-mv-cell[data-layer="0"][data-head="0"] canvas').hover(position={"x": 2, "y": 2})
    expected = f"layer 1, head 1: [CLS] → [CLS] = {embedded_attention(p)[0][0][0][0]:.4f}"
    assert p.locator(".ak-tooltip").inner_text() == expected


def test_standalone_layer_pages(page: Page, named: dict[str, dict[str, Any]]) -> None:
    exp = named["transformer"]
    p = page.load(head_view_html(exp))
    assert p.locator("line.ak-hv-line").count() > 0
    assert p.locator(".ak-modelview").count() == 0
    screenshot(p.locator("body"), "head_view_page")

    p = page.load(model_view_html(exp))
    order = p.evaluate("Array.from(document.querySelectorAll('.ak-view')).map(v => v.className)")
    assert order == ["ak-view ak-view-model", "ak-view ak-view-head"]
    p.locator('.ak-mv-cell[data-layer="1"][data-head="2"]').click()
    assert p.locator("svg.ak-hv-svg").get_attribute("data-head") == "2"
    screenshot(p.locator("body"), "model_view_page")


def test_renderers_reject_explanations_without_layers(page: Page, named: dict[str, dict[str, Any]]) -> None:
    p = page.load(render_html([named["ascii"]]))
    message = p.evaluate(
        f"""() => {{ try {{ window.attnkit.renderHeadView(document.body, {json.dumps(named["ascii"])}); }}
        catch (e) {{ return e.message; }} }}"""
    )
    assert "no attention layers" in message


def test_head_view_caps_lines_for_long_texts(page: Page, named: dict[str, dict[str, Any]]) -> None:
    p = page.load(render_html([named["ascii"]]))
    status = p.evaluate(
        """() => {
            const n = 80, text = Array.from({length: n}, (_, i) => 'w' + i).join(' ');
            let cursor = 0;
            const tokens = text.split(' ').map(w => {
                const t = {text: w, start: cursor, end: cursor + w.length, scores: {attention: 1 / n}};
                cursor += w.length + 1;
                return t;
            });
            const row = i => Array.from({length: n}, (_, j) => (j === i ? 0.2 : 0.8 / (n - 1)));
            const A = [[Array.from({length: n}, (_, i) => row(i))]];
            const exp = {text, tokens, methods: ['attention'], signed: {attention: false},
                         layers: {attention: A}};
            const host = document.createElement('div');
            document.body.appendChild(host);
            const view = window.attnkit.renderHeadView(host, exp);
            const all = host.querySelectorAll('line.ak-hv-line');
            const strongest = Array.from(all).filter(l => Number(l.dataset.weight) === 0.2).length;
            const before = host.querySelector('.ak-hv-status').textContent;
            view.focus(3, 'from');
            return [all.length, strongest, host.querySelectorAll('line.ak-hv-line').length, before];
        }"""
    )
    drawn, diagonal, focused, text = status
    assert drawn == 4000 and diagonal == 80  # capped, keeping the strongest lines
    assert focused == 80
    assert text == "4000 of 6400 lines (weights ≥ 0.01), only the 4000 strongest drawn"
