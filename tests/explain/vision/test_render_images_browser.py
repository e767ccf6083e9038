"""The image explanation page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): offline,
no errors, method tabs switch views, hovering a box shows its score."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnkit.explain.images import ExplainedUnit, ImageExplanation, grid_boxes
from attnkit.explain.render_images import render_image_html

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

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


def explanation() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(16, 2))
    units = [
        ExplainedUnit(i, i // 4, i % 4, box, {"ig": float(scores[i, 0]), "loo": float(scores[i, 1])})
        for i, box in enumerate(grid_boxes((4, 4), 4))
    ]
    return ImageExplanation(
        image=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        label="cat",
        probabilities={"cat": 0.9, "dog": 0.1},
        target="cat",
        methods=["ig", "loo"],
        units=units,
        grid=(4, 4),
        unit_size=4,
        unit_name="patch",
        source="cat.png",
    ).to_json_dict()


def test_page_works_offline_switches_methods_and_shows_scores(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(render_image_html([explanation()]), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    views = page.locator(".ak-img-view")
    assert views.nth(0).is_visible() and not views.nth(1).is_visible()
    page.click("label.ak-img-tab-1")
    assert views.nth(1).is_visible() and not views.nth(0).is_visible()
    rect = views.nth(1).locator(".ak-img-overlay rect.ak-unit[data-i='5']")
    rect.hover()
    readout = views.nth(1).locator(".ak-img-readout").inner_text()
    assert readout == rect.get_attribute("data-label")
    assert readout.startswith("patch (1, 1) · x 4–8, y 4–8 · loo = ")
    # the same box is outlined in the heatmap too
    twin = views.nth(1).locator(".ak-img-heatmap rect.ak-unit[data-i='5']")
    assert "ak-hover" in (twin.get_attribute("class") or "")
    assert errors == []
    assert requests == [path.as_uri()]  # nothing but the page itself: the image is inlined
    page.close()
