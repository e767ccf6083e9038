"""The web page end to end in headless Debian Chromium driven by Playwright (no browser download)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi import FastAPI

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


def test_paste_classify_highlight_and_head_view(
    transformer_run: Path, running_server: Callable[[FastAPI], AbstractContextManager[str]]
) -> None:
    from playwright.sync_api import sync_playwright

    predictor = Predictor(transformer_run)
    text = "The acting was wonderful, and the story  <b>really</b> worked."
    expected = predictor.predict([text])[0]
    app = create_app(TorchBackend(predictor))
    problems: list[str] = []
    outside: list[str] = []
    with running_server(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on(
                "console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None
            )
            page.on("pageerror", lambda err: problems.append(str(err)))
            page.on("request", lambda req: None if req.url.startswith(url) else outside.append(req.url))
            page.goto(url + "/")
            page.wait_for_selector("body[data-state=ready]", timeout=15_000)
            assert "transformer" in page.inner_text("#model-info")
            assert page.is_checked("#method-attention")
            page.check("#method-grad-input")
            page.fill("#text", text)
            page.click("#submit")
            page.wait_for_selector("body[data-state=done]", timeout=30_000)

            assert page.inner_text("#label") == expected.label
            shown = {
                row.get_attribute("data-label"): row.inner_text()
                for row in page.query_selector_all("#probabilities .prob")
            }
            assert set(shown) == set(predictor.labels)
            top = f"{100 * expected.probabilities[expected.label]:.1f}%"
            assert top in shown[expected.label]

            # One highlighted row per method (attention, rollout for the transformer, grad-input).
            methods = [
                m.get_attribute("data-method") for m in page.query_selector_all("#explanation [data-method]")
            ]
            assert methods[:3] == ["attention", "rollout", "grad-input"]
            encoding = predictor.tokenizer.encode_batch([text])[0]
            for method in ("attention", "grad-input"):
                spans = page.query_selector_all(f"#explanation [data-method='{method}'] .ak-tok")
                assert [s.inner_text() for s in spans] == encoding.tokens
                scores = [float(s.get_attribute("data-score") or "nan") for s in spans]
                if method == "attention":
                    assert sum(scores) == pytest.approx(1.0, abs=1e-3)
                    colours = {s.evaluate("e => getComputedStyle(e).backgroundColor") for s in spans}
                    assert len(colours) > 1  # tokens are shaded by score
            # The text is shown as pasted (HTML is text, not markup).
            row_text = page.inner_text("#explanation [data-method='attention']")
            assert "<b>really</b>" in row_text
            assert page.query_selector("#explanation b") is None

            # Head view and model view (the shared renderer): every layer and head of the transformer.
            assert len(page.query_selector_all("#layers-view .ak-headview")) == 1
            assert len(page.query_selector_all("#layers-view .ak-hv-layer option")) == 2  # layers
            assert len(page.query_selector_all("#layers-view .ak-hv-head option")) == 3  # "all" and 2 heads
            assert len(page.query_selector_all("#layers-view .ak-mv-cell")) == 4  # layers x heads
            page.select_option("#layers-view .ak-hv-layer", "1")
            assert len(page.query_selector_all("#layers-view .ak-hv-line")) > 0
            assert problems == [], problems

            # A bad request shows the server's message and the page keeps working.
            page.fill("#text", "   ")
            page.eval_on_selector("#form", "f => f.requestSubmit()")
            page.wait_for_selector("body[data-state=error]", timeout=15_000)
            assert "empty" in page.inner_text("#error")
        finally:
            browser.close()
    assert all("status of 422" in p for p in problems), problems  # only the refused request
    assert outside == []
