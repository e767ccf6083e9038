"""/docs renders offline: Swagger UI from the package's files, in headless Debian Chromium with every request
that is not for the server aborted."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from attnkit.predictor import Predictor
from attnkit.serve import TorchBackend, create_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (./dev.sh installs it)"
)


def test_swagger_ui_renders_with_the_network_off(
    bag_run: Path, running_server: Callable[[FastAPI], AbstractContextManager[str]]
) -> None:
    app = create_app(TorchBackend(Predictor(bag_run)))
    blocked: list[str] = []
    served: list[str] = []
    problems: list[str] = []
    with running_server(app) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()

            def route(request_route: Any) -> None:
                target = request_route.request.url
                if target.startswith((url + "/", "data:")):
                    served.append(target)
                    request_route.continue_()
                else:  # the network is "off": anything else would have come from a CDN
                    blocked.append(target)
                    request_route.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda err: problems.append(str(err)))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(url + "/docs")
            page.wait_for_selector(".opblock", timeout=20_000)
            paths = [e.inner_text() for e in page.query_selector_all(".opblock .opblock-summary-path")]
            assert {"/predict", "/explain", "/health", "/model"} <= set(paths), paths
            assert page.query_selector(".opblock-post") is not None
            assert "attnkit" in page.inner_text(".info .title")
            # One operation opens with its request body schema.
            page.click("#operations-default-predict_predict_post .opblock-summary")
            page.wait_for_selector("#operations-default-predict_predict_post .opblock-body", timeout=10_000)
        finally:
            browser.close()
    assert blocked == [], blocked
    assert any("/docs-assets/" in s and s.endswith(".js") for s in served), served
    assert problems == [], problems
