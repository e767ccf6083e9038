"""The served page of an image run in headless Debian Chromium (Playwright): pick or drop an image, see the label,
the probabilities and a heatmap per method drawn over the image on the shared colour scale.

Set ATTNKIT_SCREENSHOTS=<dir> to also save screenshots of the page there, for looking at them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI

from attnkit.explain.images import explain_images
from attnkit.explain.render import score_rgb
from attnkit.explain.scale import explanation_scale
from attnkit.predictor import Predictor
from attnkit.serve import TorchBackend, create_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
#: The page scales a 28-pixel image by 12 (whole multiples of 336 px) and shades boxes at most 70% opaque.
ZOOM = 12
MAX_ALPHA = 0.7

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (./dev.sh installs it)"
)


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("ATTNKIT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def canvas_pixel(page: Any, x: int, y: int) -> list[int]:
    return list(
        page.evaluate(
            "([x, y]) => Array.from(document.querySelector('#heatmap').getContext('2d')"
            ".getImageData(x, y, 1, 1).data)",
            [x, y],
        )
    )


def expected_pixel(exp: dict[str, Any], image: np.ndarray, method: str, unit: int) -> list[int]:
    """The colour at the centre of ``unit``: the model's image blended with the method's full hue."""
    scores = [u["scores"][method] for u in exp["units"]]
    scale = explanation_scale(exp, method)
    t = scale.intensities(scores)[unit]
    hue = score_rgb(1.0 if t >= 0 else -1.0, scale.signed)
    x0, y0, x1, y1 = exp["units"][unit]["box"]
    base = image[(y0 + y1) // 2, (x0 + x1) // 2]
    alpha = round(MAX_ALPHA * abs(t), 3)
    return [round(float(b) * (1 - alpha) + c * alpha) for b, c in zip(base, hue, strict=True)] + [255]


def is_problem(message: Any) -> bool:
    """A console error or warning of the page (not Chromium's hint about this test's own pixel reads)."""
    ours = message.text.startswith("Canvas2D: Multiple readback operations using getImageData")
    return message.type in ("error", "warning") and not ours


def test_pick_or_drop_an_image_and_see_its_heatmaps(
    image_run: Path,
    image_tools: SimpleNamespace,
    tmp_path: Path,
    running_server: Callable[[FastAPI], AbstractContextManager[str]],
) -> None:
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(3)
    stripes = image_tools.png(image_tools.array("stripes", rng, (40, 40)))  # resized to 28x28 by the server
    light = image_tools.png(image_tools.array("light", rng))
    (tmp_path / "stripes.png").write_bytes(stripes)
    (tmp_path / "notes.png").write_bytes(b"these are notes, not a picture")
    predictor = Predictor(image_run)
    want = explain_images(predictor, [stripes], ["attention", "grad-input"])[0]
    expected = want.to_json_dict()
    dropped_label = explain_images(predictor, [light], ["attention"])[0].label
    app = create_app(TorchBackend(predictor))
    problems: list[str] = []
    outside: list[str] = []
    with running_server(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if is_problem(msg) else None)
            page.on("pageerror", lambda err: problems.append(str(err)))
            local = (
                url,
                "blob:",
                "data:",
            )  # the preview's object URL and the explanation's PNG stay in the page
            page.on("request", lambda req: None if req.url.startswith(local) else outside.append(req.url))
            page.goto(url + "/")
            page.wait_for_selector("body[data-state=ready]", timeout=15_000)
            assert page.is_visible("#image-input") and page.is_hidden("#text")
            assert page.inner_text("#methods-legend") == "Heatmaps by" and page.is_checked(
                "#method-attention"
            )
            page.check("#method-grad-input")

            # Picking a file classifies and explains it at once.
            page.set_input_files("#file", str(tmp_path / "stripes.png"))
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            screenshot(page, "image_attention")
            assert page.inner_text("#label") == expected["label"]
            shown = {
                row.get_attribute("data-label"): row.inner_text()
                for row in page.query_selector_all("#probabilities .prob")
            }
            assert set(shown) == set(predictor.labels)
            for label, p in expected["probabilities"].items():
                assert f"{100 * p:.1f}%" in shown[label]
            assert page.is_visible("#preview")

            # The heatmap: the model's 28x28 image scaled up, boxes shaded by the attention on the shared scale.
            canvas = page.locator("#heatmap")
            assert canvas.get_attribute("data-method") == "attention"
            assert page.evaluate(
                "() => [document.querySelector('#heatmap').width, document.querySelector('#heatmap').height]"
            ) == [28 * ZOOM, 28 * ZOOM]
            image = want.image  # (28, 28, 3) uint8: what the model saw
            attention = want.scores("attention")
            top = int(np.argmax(attention))
            scale = explanation_scale(expected, "attention")
            shaded = sum(1 for t in scale.intensities(attention) if t != 0)
            assert shaded > 0 and canvas.get_attribute("data-shaded") == str(shaded)
            x0, y0, x1, y1 = expected["units"][top]["box"]
            got = canvas_pixel(page, (x0 + x1) // 2 * ZOOM + ZOOM // 2, (y0 + y1) // 2 * ZOOM + ZOOM // 2)
            assert np.abs(np.subtract(got, expected_pixel(expected, image, "attention", top))).max() <= 2
            where = canvas.bounding_box()
            assert where is not None
            page.mouse.move(
                where["x"] + (x0 + 1) * where["width"] / 28, where["y"] + (y0 + 1) * where["height"] / 28
            )
            unit = expected["units"][top]
            assert page.inner_text("#explanation .heatmap-readout") == (
                f"cell {top} (row {unit['row']}, col {unit['col']}): attention {unit['scores']['attention']}"
            )
            legend = page.locator("#explanation .ak-legend")
            assert legend.get_attribute("data-kind") == "ratio"
            assert legend.locator(".ak-legend-low").inner_text() == scale.low_label()
            assert legend.locator(".ak-legend-high").inner_text() == scale.high_label()
            assert legend.locator(".ak-legend-note").inner_text() == scale.summary(
                expected["target"], unit="cell", item="image"
            )

            # The method switch redraws the same canvas with grad-input (signed: red and blue).
            buttons = page.locator("#explanation .method-switch button")
            assert buttons.evaluate_all("bs => bs.map(b => b.dataset.method)") == ["attention", "grad-input"]
            page.click("#explanation .method-switch button[data-method='grad-input']")
            assert canvas.get_attribute("data-method") == "grad-input"
            assert legend.get_attribute("data-kind") == "diverging"
            signed = want.scores("grad-input")
            strongest = int(np.argmax(np.abs(signed)))
            x0, y0, x1, y1 = expected["units"][strongest]["box"]
            got = canvas_pixel(page, (x0 + x1) // 2 * ZOOM + ZOOM // 2, (y0 + y1) // 2 * ZOOM + ZOOM // 2)
            assert (
                np.abs(np.subtract(got, expected_pixel(expected, image, "grad-input", strongest))).max() <= 2
            )
            screenshot(page, "image_grad_input")

            # Dropping another image replaces the result.
            page.evaluate(
                """b64 => {
                    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], "light.png", {type: "image/png"}));
                    document.body.setAttribute("data-state", "dropping");
                    document.querySelector("#drop").dispatchEvent(
                        new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
                }""",
                base64.b64encode(light).decode(),
            )
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            assert page.inner_text("#label") == dropped_label
            assert (
                canvas.count() == 1 and page.locator("#heatmap").get_attribute("data-method") == "attention"
            )
            assert problems == [], problems

            # A file that is not an image: the server's message, no result left on screen.
            page.set_input_files("#file", str(tmp_path / "notes.png"))
            page.wait_for_selector("body[data-state=error]", timeout=15_000)
            error = page.inner_text("#error")
            assert error.startswith("Classifying failed") and "not an image" in error and "415" in error
            assert page.is_hidden("#result") and page.locator("#heatmap").count() == 0
            screenshot(page, "image_error")
        finally:
            browser.close()
    assert all("status of 415" in p for p in problems), problems  # only the refused upload
    assert outside == []
