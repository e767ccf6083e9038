"""Image renderers on hand-built explanations: heatmap and overlay pixels against the shared scale, the offline
HTML page, the JSON, the terminal and the PNG."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from attnkit.explain.images import ExplainedUnit, ImageExplanation, decode_png, encode_png, grid_boxes
from attnkit.explain.render_images import (
    OVERLAY_ALPHA,
    heatmap_rgb,
    image_rgb,
    is_image_explanation,
    overlay_rgb,
    render_image_html,
    render_image_json,
    render_image_png,
    render_image_terminal,
    unit_intensities,
)
from attnkit.explain.scale import NEGATIVE_RGB, POSITIVE_RGB, UNSIGNED_RGB, explanation_scale, intensity_rgb

XSS = "</script><script>window.__pwned = 1</script>"


def make(
    mode: str = "L", *, source: str | None = "cat.png", label: str = "cat", seed: int = 0
) -> dict[str, Any]:
    """An 8x12 image with 4-pixel units (2 x 3 grid) and three methods with known scores."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (8, 12, 1 if mode == "L" else 3), dtype=np.uint8)
    attention = [0.05, 0.6, 0.05, 0.1, 0.1, 0.1]  # sums to 1; unit 1 at 3.6 x uniform
    ig = [0.2, -0.4, 0.0, 0.1, 0.05, -0.1]
    gradient = [0.0, 1.0, 0.5, 0.25, 0.0, 0.0]
    units = [
        ExplainedUnit(
            i, i // 3, i % 3, box, {"attention": attention[i], "ig": ig[i], "gradient": gradient[i]}
        )
        for i, box in enumerate(grid_boxes((2, 3), 4))
    ]
    exp = ImageExplanation(
        image=image,
        label=label,
        probabilities={label: 0.75, "dog": 0.25},
        target=label,
        methods=["attention", "ig", "gradient"],
        units=units,
        grid=(2, 3),
        unit_size=4,
        unit_name="patch",
        source=source,
    )
    return exp.to_json_dict()


def test_png_codec_round_trips_both_modes() -> None:
    rng = np.random.default_rng(0)
    for channels in (1, 3):
        image = rng.integers(0, 256, (5, 7, channels), dtype=np.uint8)
        assert (decode_png(encode_png(image)) == image).all()


def test_heatmap_is_each_boxs_colour_on_the_shared_scale() -> None:
    exp = make()
    for method in exp["methods"]:
        scale = explanation_scale(exp, method)
        heat = heatmap_rgb(exp, method)
        assert heat.shape == (8, 12, 3)
        shades = unit_intensities(exp, method)
        for unit, t in zip(exp["units"], shades, strict=True):
            x0, y0, x1, y1 = unit["box"]
            assert (heat[y0:y1, x0:x1] == np.array(intensity_rgb(t, scale.kind))).all()
    # by hand: attention is a ratio to uniform (1/6): unit 1 at 3.6 x uniform, units 0 and 2 below uniform
    shades = unit_intensities(exp, "attention")
    assert shades[1] == pytest.approx(np.log(3.6) / np.log(8))
    assert shades[0] == shades[2] == 0.0
    # signed IG scaled to max |score| = 0.4: unit 1 is -1 (full blue), unit 0 is +0.5
    assert unit_intensities(exp, "ig")[:2] == pytest.approx([0.5, -1.0])
    assert (heatmap_rgb(exp, "ig")[0:4, 4:8] == np.array(NEGATIVE_RGB)).all()
    assert (heatmap_rgb(exp, "gradient")[0:4, 4:8] == np.array(UNSIGNED_RGB)).all()


def test_overlay_blends_the_hue_over_the_image() -> None:
    exp = make("RGB")
    picture = image_rgb(exp).astype(float)
    assert (overlay_rgb(exp, "ig", alpha=0.0) == picture).all()
    over = overlay_rgb(exp, "ig")
    # unit 0 (box x 0-4, y 0-4): intensity +0.5 -> red at OVERLAY_ALPHA / 2; unit 2 (score 0) unchanged
    weight = OVERLAY_ALPHA * 0.5
    expected = np.floor(picture[0:4, 0:4] * (1 - weight) + np.array(POSITIVE_RGB) * weight + 0.5)
    assert (over[0:4, 0:4] == expected).all()
    assert (over[0:4, 8:12] == picture[0:4, 8:12]).all()


def test_html_is_standalone_switchable_and_shows_scores() -> None:
    explanations = [make(), make("RGB", source=None, label="dog", seed=1)]
    page = render_image_html(explanations)
    for needle in ("http://", "https://", "//cdn", "@import", "url(", "<link", 'src="'):
        assert needle not in page, needle
    assert page.count('class="ak-explanation ak-image-explanation"') == 2
    # one radio button, tab and view per method; the first method is shown, CSS rules switch the others
    assert page.count('type="radio"') == 6 and page.count(" checked>") == 2
    assert page.count('class="ak-img-view ') == 6
    for j in range(3):
        assert f".ak-img-switch-{j}:checked ~ .ak-img-views .ak-img-view-{j}" in page
    # every view: an overlay (with the image inlined) and a heatmap, one rect per unit with its score on hover
    assert page.count('<image href="data:image/png;base64,') == 6
    assert page.count('<rect class="ak-unit"') == 2 * 3 * 2 * 6
    assert "<title>patch (0, 1) · x 4–8, y 0–4 · ig = -0.4</title>" in page
    assert 'data-score="0.6"' in page
    # the embedded JSON is the explanations (with the scale recomputed)
    match = re.search(r'<script type="application/json" id="attnkit-data">(.*?)</script>', page, re.S)
    assert match is not None
    data = json.loads(match.group(1))
    assert [d["units"] for d in data] == [e["units"] for e in explanations]
    assert data[0]["scale"]["attention"]["kind"] == "ratio"


def test_html_escapes_what_it_shows() -> None:
    exp = make(source=XSS, label=XSS)
    page = render_image_html([exp])
    assert XSS not in page
    assert "&lt;/script&gt;&lt;script&gt;" in page
    assert page.lower().count("</script") == 2  # the data block and the page's own script


def test_json_round_trip_and_recomputed_scale() -> None:
    exp = make()
    stale = {**exp, "scale": {"attention": {"kind": "bogus"}}}
    (back,) = json.loads(render_image_json([stale]))
    assert back["scale"] == exp["scale"]
    again = ImageExplanation.from_json_dict(back)
    assert again.to_json_dict() == exp
    with pytest.raises(ValueError, match="not an image explanation"):
        ImageExplanation.from_json_dict({"units": []})


def test_terminal_shows_the_grid_and_top_units() -> None:
    console = Console(record=True, width=100, color_system=None)
    render_image_terminal([make()], console)
    text = console.export_text()
    assert "cat.png: predicted cat (0.750)" in text
    assert "attention × uniform" in text and "ig signed" in text
    grid_lines = [line for line in text.splitlines() if re.match(r"^( |-)\d( |-)\d( |-)\d ", line)]
    assert len(grid_lines) == 2 * 3  # the 2 x 3 grid, once per method
    assert " 0 6 0" in text  # attention: unit 1 at 3.6 x uniform -> intensity 0.62 -> digit 6
    assert "(0, 1) -0.4" in text  # the strongest IG unit, by magnitude


def test_png_written_and_checked(tmp_path: Path) -> None:
    exp = make()
    render_image_png(exp, tmp_path / "all.png")
    render_image_png(exp, tmp_path / "one.png", methods=["ig"])
    with Image.open(tmp_path / "all.png") as full, Image.open(tmp_path / "one.png") as one:
        assert full.format == one.format == "PNG"
        assert full.width == one.width and full.height - one.height == 2 * 240  # a 2.4-inch row per method
    with pytest.raises(ValueError, match="unknown methods"):
        render_image_png(exp, tmp_path / "x.png", methods=["loo"])
    broken = {**exp, "units": [{**exp["units"][0], "box": [0, 0, 40, 4]}, *exp["units"][1:]]}
    with pytest.raises(ValueError, match="not inside the 12x8 image"):
        render_image_png(broken, tmp_path / "x.png")


def test_is_image_explanation() -> None:
    assert is_image_explanation(make())
    assert not is_image_explanation({"text": "a", "tokens": []})
    assert "scaled to this image's max |score|" in explanation_scale(make(), "ig").summary(item="image")
