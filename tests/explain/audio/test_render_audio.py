"""The audio renderers on an explanation built by hand: PNG size and pixels, the strips' colours on the shared
scale, JSON, the terminal (top frames with their times) and the HTML page's markup."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from attnkit.explain.images import decode_png
from attnkit.explain.render_audio import (
    audio_png_size,
    is_audio_explanation,
    render_audio_html,
    render_audio_json,
    render_audio_png,
    render_audio_terminal,
    spectrogram_rgb,
    spectrogram_rgb_level,
    strip_rgb,
    unit_intensities,
)
from attnkit.explain.scale import explanation_scale, intensity_rgb

HandExplanation = Callable[..., dict[str, Any]]


def test_png_has_the_size_of_its_rows_and_draws_the_strips(
    hand_explanation: HandExplanation, tmp_path: Path
) -> None:
    exp = hand_explanation()
    for methods in (["attention", "ig"], ["ig"]):
        path = tmp_path / f"{len(methods)}.png"
        render_audio_png(exp, path, methods)
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == audio_png_size(len(methods))
    # 100 dpi; title 0.55 in + spectrogram 2 in + 0.52 in per method row + time axis 0.5 in
    assert audio_png_size(2) == (1000, 409) and audio_png_size(1) == (1000, 357)
    with Image.open(tmp_path / "2.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    # the attention peak (unit 12, full orange: ratio >= 8x uniform) is drawn in the strip's colours
    peak = intensity_rgb(unit_intensities(exp, "attention")[12], "ratio")
    assert (np.abs(pixels.astype(int) - peak).sum(axis=2) <= 3).sum() > 100
    with pytest.raises(ValueError, match="unknown methods"):
        render_audio_png(exp, tmp_path / "x.png", ["loo"])


def test_strip_colours_and_spectrogram_pixels(hand_explanation: HandExplanation) -> None:
    exp = hand_explanation()
    colours = strip_rgb(exp, "ig")
    scale = explanation_scale(exp, "ig")
    assert scale.kind == "diverging" and colours.shape == (26, 3)
    for unit, colour in zip(exp["units"], colours, strict=True):
        assert tuple(colour) == intensity_rgb(unit["scores"]["ig"] / scale.max_abs, "diverging")
    attention = unit_intensities(exp, "attention")
    assert attention[12] == 1.0 and attention[0] == 0.0  # the peak is >= 8x uniform, the edges below uniform
    rgb = spectrogram_rgb(exp)
    assert rgb.shape == (8, 51, 3) and rgb.dtype == np.uint8
    levels = decode_png(exp["spectrogram"]["png"])[..., 0]  # (M, T)
    for row, col in ((0, 0), (3, 17), (7, 50)):
        assert tuple(rgb[row, col]) == spectrogram_rgb_level(int(levels[row, col]))
    assert spectrogram_rgb_level(0) == (0, 0, 4) and spectrogram_rgb_level(255) == (
        252,
        253,
        191,
    )  # magma's ends
    assert is_audio_explanation(exp) and not is_audio_explanation({"tokens": []})


def test_json_keeps_units_with_start_and_end(hand_explanation: HandExplanation) -> None:
    exp = hand_explanation()
    (back,) = json.loads(render_audio_json([exp]))
    assert (
        back["modality"] == "audio"
        and back["units"][12]["start"] == 0.24
        and back["units"][12]["end"] == 0.26
    )
    assert back["scale"]["attention"]["kind"] == "ratio" and back["scale"]["ig"]["kind"] == "diverging"
    assert back["audio"]["wav"] == exp["audio"]["wav"]


def test_terminal_lists_the_top_frames_with_their_times(hand_explanation: HandExplanation) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, no_color=True)
    exp = hand_explanation()
    render_audio_terminal([exp], console, top_k=3)
    out = buffer.getvalue()
    assert "tone.wav: predicted yes (0.800)" in out
    assert "0.500 s at 8000 Hz, 26 frames of 20 ms" in out
    peak = exp["units"][12]["scores"]["attention"]
    assert f"0.240–0.260 s  {peak:.3g}" in out  # the attention peak first
    lines = out.splitlines()
    strip = next(line for line in lines if line.startswith("0000"))  # attention: one digit per unit
    assert len(strip.split()[0]) == 26 and strip.split()[0][12] == "9"
    assert any(line.startswith("0 s") and "0.52 s" in line for line in lines)


def test_terminal_groups_long_recordings(hand_explanation: HandExplanation) -> None:
    exp = hand_explanation()
    exp["units"] = [
        {"index": i, "start": 0.01 * i, "end": 0.01 * (i + 1), "scores": {"attention": 1 / 300, "ig": 0.0}}
        for i in range(300)
    ]
    exp["units"][150]["scores"] = {"attention": 0.5, "ig": 1.0}
    buffer = io.StringIO()
    render_audio_terminal([exp], Console(file=buffer, width=200, no_color=True))
    strip = next(line for line in buffer.getvalue().splitlines() if line.startswith("0000"))
    cells = strip.split()[0]
    assert len(cells) == 75 and cells.index("9") == 150 // 4  # groups of 4 units, each showing its strongest


def test_html_is_self_contained_with_one_strip_per_method(hand_explanation: HandExplanation) -> None:
    exp = hand_explanation()
    page = render_audio_html([exp, hand_explanation(with_audio=False)])
    assert "http://" not in page and "https://" not in page
    assert page.count('class="ak-explanation ak-audio-explanation"') == 2
    assert page.count('<audio class="ak-audio-player"') == 1 and "not included" in page
    assert page.count(f'src="data:audio/wav;base64,{exp["audio"]["wav"]}"') == 1
    assert page.count('<svg class="ak-audio-strip"') == 4 and page.count('class="ak-unit"') == 4 * 26
    assert 'data-extent="0.52"' in page  # the last unit's end
    assert 'viewBox="0 0 520 1"' in page and 'x="240" y="0" width="20"' in page  # ms coordinates
    assert 'data-when="frame 12 · 0.240–0.260 s"' in page
    with pytest.raises(ValueError, match="not an audio explanation"):
        render_audio_html([{"tokens": []}])
