"""The served page of an audio run in headless Debian Chromium (Playwright): pick, drop or record a clip, see the
label, the probabilities and the log-mel spectrogram with each unit's time span shaded by its score, the strip of
scores under it on the shared colour scale, and the player's cursor.

Chromium's fake microphone (``--use-fake-device-for-media-stream``: a beep) stands in for a real one, so the
record button goes through MediaRecorder, the in-page WAV conversion and the upload like a user's recording.
Set ATTNKIT_SCREENSHOTS=<dir> to also save screenshots of the page there, for looking at them.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from fastapi import FastAPI

from attnkit.explain.audio import explain_recordings
from attnkit.explain.images import decode_png
from attnkit.explain.scale import explanation_scale, intensity_rgb
from attnkit.predictor import Predictor
from attnkit.serve import TorchBackend, create_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
RATE = 8000
TONES = {"low": 300.0, "mid": 900.0, "high": 2000.0}
#: The page draws the spectrogram 720 x 160 px and a 28 px strip under it; shading is at most 70% opaque.
WIDTH, HEIGHT, STRIP = 720, 160, 28
MAX_ALPHA = 0.7

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (./dev.sh installs it)"
)


def tone(freq: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.03 * rng.standard_normal(t.shape)).astype(np.float32)


def wav_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny crnn-attn (one frame per unit) trained for two epochs on 24 WAVs of three tones."""
    from attnkit.train.config import RunConfig
    from attnkit.train.loop import fit

    root = tmp_path_factory.mktemp("audio-page")
    rng = np.random.default_rng(0)
    for label, freq in TONES.items():
        (root / "clips" / label).mkdir(parents=True)
        for i in range(8):
            clip = tone(freq, float(rng.uniform(0.2, 0.6)), seed=int(rng.integers(1 << 30)))
            (root / "clips" / label / f"{i}.wav").write_bytes(wav_bytes(clip))
    config = RunConfig.from_dict(
        {
            "data": {"train": str(root / "clips")},
            "model": {"name": "crnn-attn", "options": {"conv_channels": [4], "hidden_dim": 8}},
            "audio": {"n_mels": 16, "max_seconds": 3.0},
            "optim": {"lr": 0.01},
            "train": {"epochs": 2, "progress": False, "threads": 1},
        }
    )
    fit(config, root / "run")
    return root / "run"


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("ATTNKIT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def pixel(page: Any, canvas: str, x: int, y: int) -> list[int]:
    return list(
        page.evaluate(
            "([id, x, y]) => Array.from(document.getElementById(id).getContext('2d').getImageData(x, y, 1, 1).data)",
            [canvas, x, y],
        )
    )


def extent(exp: dict[str, Any]) -> float:
    """Seconds the page's time axis covers."""
    spec = exp["spectrogram"]
    return max(exp["units"][-1]["end"], spec["frames"] * spec["hop_seconds"], exp["audio"]["duration"])


def unit_x(exp: dict[str, Any], unit: int) -> int:
    """The canvas column in the middle of ``unit``'s span."""
    u = exp["units"][unit]
    return int((u["start"] + u["end"]) / 2 / extent(exp) * WIDTH)


def expected_spectrogram_pixel(exp: dict[str, Any], method: str, unit: int, y: int) -> list[int]:
    """The colour at column :func:`unit_x`, row ``y``: the spectrogram's grey blended with the method's hue."""
    image = decode_png(exp["spectrogram"]["png"])[..., 0]  # (M, T)
    spec = exp["spectrogram"]
    drawn = (
        spec["frames"] * spec["hop_seconds"] / extent(exp) * WIDTH
    )  # the spectrogram's width on the canvas
    x = unit_x(exp, unit) + 0.5
    grey = float(
        image[int(y * spec["bands"] / HEIGHT), min(int(x * spec["frames"] / drawn), spec["frames"] - 1)]
    )
    scale = explanation_scale(exp, method)
    t = scale.intensities([u["scores"][method] for u in exp["units"]])[unit]
    hue = intensity_rgb(1.0 if t >= 0 else -1.0, scale.kind)
    alpha = round(MAX_ALPHA * abs(t), 3)
    return [round(grey * (1 - alpha) + c * alpha) for c in hue] + [255]


def is_problem(message: Any) -> bool:
    """A console error or warning of the page (not Chromium's hint about this test's own pixel reads)."""
    ours = message.text.startswith("Canvas2D: Multiple readback operations using getImageData")
    return message.type in ("error", "warning") and not ours


def test_upload_drop_or_record_a_clip_and_see_its_spectrogram(
    audio_run: Path, tmp_path: Path, running_server: Callable[[FastAPI], AbstractContextManager[str]]
) -> None:
    from playwright.sync_api import sync_playwright

    high = wav_bytes(tone(2000.0, 0.5, seed=1))
    low = wav_bytes(tone(300.0, 0.4, seed=2))
    (tmp_path / "high.wav").write_bytes(high)
    (tmp_path / "notes.wav").write_bytes(b"these are notes, not a recording")
    predictor = Predictor(audio_run)
    expected = explain_recordings(predictor, [high], methods=["attention", "grad-input"])[0].to_json_dict()
    dropped_label = explain_recordings(predictor, [low])[0].label
    app = create_app(TorchBackend(predictor))
    problems: list[str] = []
    outside: list[str] = []
    with running_server(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = browser.new_context()
            context.grant_permissions(["microphone"], origin=url)
            page = context.new_page()
            page.on("console", lambda msg: problems.append(msg.text) if is_problem(msg) else None)
            page.on("pageerror", lambda err: problems.append(str(err)))
            # The player's object URL and the spectrogram PNG stay in the page.
            local = (url, "blob:", "data:")
            page.on("request", lambda req: None if req.url.startswith(local) else outside.append(req.url))
            page.goto(url + "/")
            page.wait_for_selector("body[data-state=ready]", timeout=15_000)
            assert (
                page.is_visible("#audio-input") and page.is_hidden("#text") and page.is_hidden("#image-input")
            )
            assert page.inner_text("#methods-legend") == "Highlight frames by"
            assert page.is_checked("#method-attention") and page.is_enabled("#record")
            page.check("#method-grad-input")

            # Picking a file classifies and explains it at once; the player gets the clip.
            page.set_input_files("#audio-file", str(tmp_path / "high.wav"))
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            screenshot(page, "audio_attention")
            assert page.inner_text("#label") == expected["label"]
            shown = {
                row.get_attribute("data-label"): row.inner_text()
                for row in page.query_selector_all("#probabilities .prob")
            }
            assert set(shown) == set(predictor.labels)
            for label, p in expected["probabilities"].items():
                assert f"{100 * p:.1f}%" in shown[label]
            assert page.is_visible("#player")
            assert page.get_attribute("#player", "src").startswith("blob:")

            # The spectrogram, each unit's span shaded by its attention, and the strip of scores under it.
            canvas, strip = page.locator("#spectrogram"), page.locator("#strip")
            assert canvas.get_attribute("data-method") == "attention"
            assert page.evaluate("() => [spectrogram.width, spectrogram.height, strip.height]") == [
                WIDTH,
                HEIGHT,
                STRIP,
            ]
            attention = [u["scores"]["attention"] for u in expected["units"]]
            scale = explanation_scale(expected, "attention")
            intensities = scale.intensities(attention)
            shaded = sum(1 for t in intensities if t != 0)
            assert shaded > 0 and canvas.get_attribute("data-shaded") == str(shaded)
            assert strip.get_attribute("data-units") == str(len(expected["units"])) == "51"  # 1 + 4000 // 80
            top = int(np.argmax(attention))
            x = unit_x(expected, top)
            assert pixel(page, "strip", x, STRIP // 2) == [*intensity_rgb(intensities[top], scale.kind), 255]
            got = pixel(page, "spectrogram", x, HEIGHT // 3)
            want = expected_spectrogram_pixel(expected, "attention", top, HEIGHT // 3)
            assert np.abs(np.subtract(got, want)).max() <= 2, (got, want)
            quiet = next(i for i, t in enumerate(intensities) if t == 0)
            grey = pixel(page, "spectrogram", unit_x(expected, quiet), HEIGHT // 2)
            assert grey[0] == grey[1] == grey[2]  # unshaded: the spectrogram itself
            legend = page.locator("#explanation .ak-legend")
            assert legend.get_attribute("data-kind") == "ratio"
            assert legend.locator(".ak-legend-low").inner_text() == scale.low_label()
            assert legend.locator(".ak-legend-high").inner_text() == scale.high_label()

            # Pointing at a unit reads its score; clicking plays from there (the cursor marks that unit).
            where = canvas.bounding_box()
            assert where is not None
            unit = expected["units"][top]
            page.mouse.move(where["x"] + x * where["width"] / WIDTH, where["y"] + where["height"] / 2)
            assert page.inner_text("#explanation .heatmap-readout") == (
                f"frame {top} ({unit['start']:.2f}–{unit['end']:.2f} s): attention {unit['scores']['attention']}"
            )
            page.mouse.click(where["x"] + x * where["width"] / WIDTH, where["y"] + where["height"] / 2)
            seconds = page.evaluate("() => player.currentTime")
            assert unit["start"] - 0.02 <= seconds <= unit["end"] + 0.02
            page.wait_for_function("() => spectrogram.dataset.playingUnit !== undefined", timeout=5_000)

            # The method switch redraws with grad-input (signed: red and blue).
            page.click("#explanation .method-switch button[data-method='grad-input']")
            assert canvas.get_attribute("data-method") == strip.get_attribute("data-method") == "grad-input"
            assert legend.get_attribute("data-kind") == "diverging"
            signed = [u["scores"]["grad-input"] for u in expected["units"]]
            scale = explanation_scale(expected, "grad-input")
            strongest = int(np.argmax(np.abs(signed)))
            t = scale.intensities(signed)[strongest]
            assert pixel(page, "strip", unit_x(expected, strongest), STRIP // 2) == [
                *intensity_rgb(t, scale.kind),
                255,
            ]
            screenshot(page, "audio_grad_input")

            # Dropping another clip replaces the result.
            page.evaluate(
                """b64 => {
                    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], "low.wav", {type: "audio/wav"}));
                    document.body.setAttribute("data-state", "dropping");
                    document.querySelector("#audio-drop").dispatchEvent(
                        new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
                }""",
                base64.b64encode(low).decode(),
            )
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            assert page.inner_text("#label") == dropped_label
            assert page.locator("#spectrogram").count() == 1
            assert page.locator("#strip").get_attribute("data-units") == str(1 + 3200 // 80)

            # Recording (the fake microphone's beep): MediaRecorder -> a WAV made in the page -> the same upload.
            page.evaluate("() => document.body.setAttribute('data-state', 'recording')")
            page.click("#record")
            page.wait_for_function("() => record.getAttribute('aria-pressed') === 'true'", timeout=5_000)
            page.wait_for_timeout(1200)
            page.click("#record")
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            assert page.inner_text("#record-status").startswith("recorded ")
            assert page.inner_text("#label") in predictor.labels
            # What was uploaded: the player's clip, the WAV the page made of the recording.
            wav = base64.b64decode(
                page.evaluate(
                    """async () => {
                        const bytes = new Uint8Array(await (await fetch(player.src)).arrayBuffer());
                        let text = "";
                        bytes.forEach(b => { text += String.fromCharCode(b); });
                        return btoa(text);
                    }"""
                )
            )
            samples, rate = soundfile.read(io.BytesIO(wav))
            assert wav[:4] == b"RIFF" and rate == 48000 and samples.ndim == 1
            assert 0.8 < len(samples) / rate < 3.0
            assert np.abs(samples).max() > 0.01  # the beep, not silence
            screenshot(page, "audio_recorded")
            assert problems == [], problems

            # A file that is not audio: the server's message, no result left on screen.
            page.set_input_files("#audio-file", str(tmp_path / "notes.wav"))
            page.wait_for_selector("body[data-state=error]", timeout=15_000)
            error = page.inner_text("#error")
            assert error.startswith("Classifying failed") and "not audio" in error and "415" in error
            assert page.is_hidden("#result") and page.locator("#spectrogram").count() == 0
            screenshot(page, "audio_error")
        finally:
            browser.close()
    assert all("status of 415" in p for p in problems), problems  # only the refused upload
    assert outside == []
