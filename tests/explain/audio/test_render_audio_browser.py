"""The audio explanation page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): offline,
no errors, the <audio> element holds the clip, and moving the playback position moves the cursor and the
highlighted frame to the right time span (seeking, clicking a strip, and playing)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile

from attnkit.explain.render_audio import render_audio_html

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--autoplay-policy=no-user-gesture-required",
]

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # dev.sh installs it; never download a browser from a test
    pytest.skip(
        f"{CHROMIUM} not installed (./dev.sh test installs Debian's chromium)", allow_module_level=True
    )

HandExplanation = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """The page of ``explanations`` opened from a file, with its console errors and requests recorded."""

    def __init__(self, browser: Any, path: Path, explanations: list[dict[str, Any]]) -> None:
        path.write_text(render_audio_html(explanations), encoding="utf-8")
        self.uri = path.as_uri()
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.uri)
        self.section = self.page.locator(".ak-audio-explanation").nth(0)

    def seek(self, seconds: float) -> None:
        """Set the player's ``currentTime`` as a user dragging its slider does, and wait for the page to follow."""
        self.page.evaluate(f"document.querySelector('audio').currentTime = {seconds}")
        self.page.wait_for_function(
            f"Math.abs(parseFloat(document.querySelector('.ak-audio-explanation').getAttribute('data-time')) - "
            f"{seconds}) < 1e-6"
        )

    def current(self) -> int:
        return int(self.section.get_attribute("data-current") or "-2")

    def cursor_left(self) -> float:
        """Where the cursors are, in percent of the tracks' width (they all agree)."""
        lefts = self.section.locator(".ak-audio-cursor").evaluate_all("cs => cs.map(c => c.style.left)")
        assert len(set(lefts)) == 1 and lefts[0].endswith("%"), lefts
        return float(lefts[0][:-1])

    def outlined(self) -> list[tuple[str, str]]:
        """``(method, unit index)`` of every outlined unit, strip by strip."""
        found = self.section.locator(".ak-audio-strip .ak-unit.ak-current").evaluate_all(
            "rs => rs.map(r => [r.closest('svg').getAttribute('data-method'), r.getAttribute('data-i')])"
        )
        return [(method, index) for method, index in found]


def test_the_page_plays_the_clip_and_follows_it(
    browser: Any, tmp_path: Path, hand_explanation: HandExplanation
) -> None:
    exp = hand_explanation()
    page = Page(browser, tmp_path / "page.html", [exp])
    # the clip is in the page: a data URI holding the explanation's WAV, which the browser decodes
    src = page.section.locator("audio").get_attribute("src") or ""
    assert src == "data:audio/wav;base64," + exp["audio"]["wav"]
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), dtype="float32")
    assert rate == 8000 and samples.shape == (4000,)
    page.page.wait_for_function("document.querySelector('audio').readyState >= 1")
    assert page.page.evaluate("document.querySelector('audio').duration") == pytest.approx(0.5, abs=1e-3)
    # seeking moves the cursor to t / extent (extent 0.52 s: the last unit's end) and outlines the unit playing
    for seconds, unit in ((0.25, 12), (0.0, 0), (0.4399, 21), (0.44, 22), (0.499, 24)):
        page.seek(seconds)
        assert page.current() == unit
        assert page.cursor_left() == pytest.approx(100 * seconds / 0.52, abs=1e-3)
        assert page.outlined() == [("attention", str(unit)), ("ig", str(unit))]
        box = page.section.locator(".ak-audio-span")
        assert "ak-on" in (box.get_attribute("class") or "")
        left, width = box.evaluate("b => [b.style.left, b.style.width]")
        assert float(left[:-1]) == pytest.approx(100 * 0.02 * unit / 0.52, abs=1e-3)
        assert float(width[:-1]) == pytest.approx(100 * 0.02 / 0.52, abs=1e-3)
        readout = page.section.locator(".ak-audio-readout").inner_text()
        start = 0.02 * unit
        assert readout.startswith(f"frame {unit} · {start:.3f}–{start + 0.02:.3f} s · attention = ")
    # clicking a strip seeks the player there
    strip = page.section.locator(".ak-audio-track[data-method='ig']")
    box_px = strip.bounding_box()
    strip.click(position={"x": box_px["width"] * 0.125 / 0.52, "y": box_px["height"] / 2})
    page.page.wait_for_function("Math.abs(document.querySelector('audio').currentTime - 0.125) < 0.01")
    page.page.wait_for_function(
        "document.querySelector('.ak-audio-explanation').getAttribute('data-current') === '6'"
    )
    assert page.errors == []
    assert page.requests == [page.uri]  # nothing but the page itself: audio and spectrogram are inlined
    page.page.close()


def test_playing_moves_the_highlight_forward(
    browser: Any, tmp_path: Path, hand_explanation: HandExplanation
) -> None:
    """While the clip plays, the highlighted unit steps forward (animation frames between the timeupdates) and ends
    on the unit of the clip's end: 0.5 s lies in unit 25, [0.50, 0.52)."""
    page = Page(browser, tmp_path / "play.html", [hand_explanation()])
    page.page.wait_for_function("document.querySelector('audio').readyState >= 2")
    page.page.evaluate(
        """() => {
        const section = document.querySelector('.ak-audio-explanation');
        window.seen = [];
        new MutationObserver(() => window.seen.push(+section.getAttribute('data-current')))
            .observe(section, {attributes: true, attributeFilter: ['data-current']});
        document.querySelector('audio').play();
    }"""
    )
    page.page.wait_for_function("document.querySelector('audio').ended", timeout=10_000)
    seen = page.page.evaluate("window.seen")
    assert seen == sorted(seen) and len(set(seen)) >= 8, seen  # forward only, through many units
    assert page.current() == 25
    assert page.cursor_left() == pytest.approx(100 * 0.5 / 0.52, abs=1e-3)
    assert page.errors == []
    page.page.close()


def test_a_page_without_audio_still_follows_clicks(
    browser: Any, tmp_path: Path, hand_explanation: HandExplanation
) -> None:
    page = Page(browser, tmp_path / "silent.html", [hand_explanation(with_audio=False)])
    assert page.section.locator("audio").count() == 0
    assert "not included" in page.section.inner_text()
    strip = page.section.locator(".ak-audio-track[data-method='attention']")
    box_px = strip.bounding_box()
    strip.click(position={"x": box_px["width"] * 0.31 / 0.52, "y": box_px["height"] / 2})
    assert page.current() == 15
    assert page.errors == []
    page.page.close()
