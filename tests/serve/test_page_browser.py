"""The served page's colour legend and its errors, in headless Debian Chromium driven by Playwright: the legend
is the shared scale's, and an error never leaves an earlier text's result on screen.

Set ATTNKIT_SCREENSHOTS=<dir> to also save screenshots of the page there, for looking at them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from attnkit.explain import explain
from attnkit.explain.render import intensities, score_rgb
from attnkit.explain.scale import compact, explanation_scale, fixed
from attnkit.predictor import Predictor
from attnkit.serve import TorchBackend, create_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (./dev.sh installs it)"
)

FIRST = "the film was wonderful and the story was great"
SECOND = "an awful plot and a boring actor"


def submit(page: Any, text: str, state: str) -> None:
    page.fill("#text", text)
    page.eval_on_selector("#form", "f => f.requestSubmit()")
    page.wait_for_selector(f"body[data-state={state}]", timeout=30_000)


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("ATTNKIT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def rgb(css: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"rgb\((\d+), (\d+), (\d+)\)", css)
    assert m, css
    r, g, b = (int(x) for x in m.groups())
    return (r, g, b)


def test_legend_matches_the_scale_and_errors_clear_the_result(
    bag_run: Path, running_server: Callable[[FastAPI], AbstractContextManager[str]]
) -> None:
    from playwright.sync_api import sync_playwright

    predictor = Predictor(bag_run)
    expected = explain(predictor, [FIRST], ["attention", "grad-input"])[0].to_json_dict()
    app = create_app(TorchBackend(predictor))
    with running_server(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("body[data-state=ready]", timeout=15_000)
            page.check("#method-grad-input")
            submit(page, FIRST, "done")
            screenshot(page, "served_result")

            # each method has a visible legend with the shared scale's ends and note
            for method in ("attention", "grad-input"):
                row = page.locator(f"#explanation [data-method='{method}']")
                legend = row.locator(".ak-legend")
                assert legend.is_visible() and legend.locator(".ak-legend-bar").is_visible()
                sc = explanation_scale(expected, method)
                assert legend.locator(".ak-legend-low").inner_text() == sc.low_label()
                assert legend.locator(".ak-legend-high").inner_text() == sc.high_label()
                assert legend.locator(".ak-legend-note").inner_text() == sc.summary(expected["target"])
                colours = row.locator(".ak-tok").evaluate_all(
                    "ts => ts.map(t => getComputedStyle(t).backgroundColor)"
                )
                shade = intensities(expected, method)
                assert [rgb(c) for c in colours] == [score_rgb(t, sc.signed) for t in shade]
            attention = explanation_scale(expected, "attention")
            assert attention.concentration is not None and attention.max_ratio is not None
            note = page.inner_text("#explanation [data-method='attention'] .ak-legend-note")
            assert f"peak ×{compact(attention.max_ratio)} of uniform" in note
            assert f"concentration {fixed(attention.concentration, 2)}" in note
            served = page.evaluate(
                """async text => (await (await fetch('explain', {method: 'POST',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({text, methods: ['attention']})})).json()).scale""",
                FIRST,
            )
            assert served["attention"]["kind"] == "ratio"
            assert served["attention"]["concentration"] == pytest.approx(attention.concentration)

            # the explanation fails after a success: nothing of the first text stays, the label is the new text's
            page.route(
                "**/explain",
                lambda route: route.fulfill(
                    status=503,
                    content_type="application/json",
                    body=json.dumps({"error": "overloaded", "detail": "4 explanations are already running"}),
                ),
            )
            submit(page, SECOND, "error")
            screenshot(page, "served_explain_error")
            assert page.locator(".ak-tok").count() == 0 and page.locator(".ak-legend").count() == 0
            error = page.inner_text("#error")
            assert error.startswith("Explaining failed") and "already running (HTTP 503)" in error
            assert page.inner_text("#label") == predictor.predict([SECOND])[0].label
            page.unroute("**/explain")

            # a success clears the error; then classifying fails (a real 422): no result at all stays
            submit(page, FIRST, "done")
            assert page.locator("#error").is_hidden()
            assert page.locator("#explanation .ak-tok").count() > 0
            submit(page, "   ", "error")
            assert page.locator("#result").is_hidden()
            assert page.locator(".ak-tok").count() == 0 and page.inner_text("#label") == ""
            error = page.inner_text("#error")
            assert error.startswith("Classifying failed") and "empty" in error and "422" in error

            # the server cannot be reached
            submit(page, FIRST, "done")
            page.route("**/predict", lambda route: route.abort())
            submit(page, SECOND, "error")
            assert page.locator(".ak-tok").count() == 0 and page.locator("#result").is_hidden()
            assert "could not reach the server" in page.inner_text("#error")
        finally:
            browser.close()


def test_page_asks_for_the_api_key_of_a_guarded_server(
    bag_run: Path, running_server: Callable[[FastAPI], AbstractContextManager[str]]
) -> None:
    from playwright.sync_api import sync_playwright

    from attnkit.serve import ServeConfig, check_exposure

    key = "page-key-" + "y" * 24
    predictor = Predictor(bag_run)
    app = create_app(TorchBackend(predictor), check_exposure(ServeConfig(api_key=key), "127.0.0.1"))
    expected = predictor.predict([FIRST])[0].label
    with running_server(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector(
                "#key-option:not([hidden])", timeout=15_000
            )  # 401 on /model shows the field
            assert "API key" in page.inner_text("#model-info")
            page.fill("#api-key", "wrong-" + "z" * 20)
            page.dispatch_event("#api-key", "change")
            page.wait_for_function("document.querySelector('#model-info').textContent.includes('401')")
            page.fill("#api-key", key)
            page.dispatch_event("#api-key", "change")
            page.wait_for_selector("body[data-state=ready]", timeout=15_000)
            submit(page, FIRST, "done")
            assert page.inner_text("#label") == expected
        finally:
            browser.close()
