"""CJK text in the PNG figures (explain heatmap, confusion matrix): real glyphs with a CJK font, one warning
naming the package to install without one, and no matplotlib DEBUG flood under ``-v``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnkit import fonts
from attnkit.explain.render import render_png
from attnkit.train.plots import plot_confusion

HAS_CJK_FONT = fonts.find_cjk_font() is not None
needs_cjk_font = pytest.mark.skipif(
    not HAS_CJK_FONT, reason="no CJK font installed (./dev.sh test installs Debian's fonts-noto-cjk)"
)


def glyph(char: str, families: list[str]) -> np.ndarray:
    """The bitmap matplotlib draws for ``char`` with ``font.family = families`` (grey levels, 60 x 60)."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with rc_context({"font.family": families}):
        fig = Figure(figsize=(0.6, 0.6), dpi=100)
        canvas = FigureCanvasAgg(fig)
        fig.text(0.5, 0.5, char, fontsize=30, ha="center", va="center")
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[:, :, 0].copy()


def png_pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(str(path)))


def explanation(text: str) -> dict[str, Any]:
    """One token per character with fixed scores; label and title in ASCII, so only the glyphs differ."""
    weights = [0.05, 0.05, 0.1, 0.1, 0.1, 0.15, 0.2, 0.25][: len(text)]
    return {
        "text": text,
        "label": "pos",
        "target": "pos",
        "probabilities": {"neg": 0.1, "pos": 0.9},
        "methods": ["attention"],
        "signed": {"attention": False},
        "tokens": [
            {"text": c, "start": i, "end": i + 1, "scores": {"attention": w}}
            for i, (c, w) in enumerate(zip(text, weights, strict=True))
        ],
        "truncated": False,
        "layers": None,
    }


@pytest.fixture
def no_cjk_font(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on a machine without a CJK font, with the once-per-process warning armed again."""
    monkeypatch.setattr(fonts, "find_cjk_font", lambda: None)
    fonts._warn_no_cjk_font.cache_clear()
    yield
    fonts._warn_no_cjk_font.cache_clear()


def test_contains_cjk() -> None:
    assert fonts.contains_cjk("这本书写得很不错")
    assert fonts.contains_cjk("ok，")  # full-width punctuation
    assert fonts.contains_cjk("カタカナ") and fonts.contains_cjk("한국어") and fonts.contains_cjk("𠀀")
    assert not fonts.contains_cjk("plain ASCII, café, naïve — “quotes” 👍")


@pytest.mark.filterwarnings("ignore:Glyph .* missing")
def test_boxes_are_what_the_glyph_check_detects() -> None:
    # DejaVu Sans has no Han glyphs: two different characters come out as the same box
    assert np.array_equal(glyph("书", ["DejaVu Sans"]), glyph("好", ["DejaVu Sans"]))
    assert not np.array_equal(glyph("a", ["DejaVu Sans"]), glyph("b", ["DejaVu Sans"]))


@needs_cjk_font
def test_a_cjk_font_is_chosen_and_draws_real_glyphs() -> None:
    family = fonts.find_cjk_font()
    assert family in fonts.CJK_FONTS
    families = fonts.font_families(["这本书"])
    assert families == ["DejaVu Sans", family]
    book, good = glyph("书", families), glyph("好", families)
    assert not np.array_equal(book, good)
    assert (book < 128).any() and (good < 128).any()  # ink was drawn
    assert np.array_equal(glyph("a", families), glyph("a", ["DejaVu Sans"]))  # Latin text looks as before


@needs_cjk_font
def test_explain_png_draws_cjk_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        render_png(explanation("这本书写得很不错"), tmp_path / "a.png")
        render_png(explanation("一二三四五六七八"), tmp_path / "b.png")
    a, b = png_pixels(tmp_path / "a.png"), png_pixels(tmp_path / "b.png")
    assert a.shape == b.shape and not np.array_equal(a, b)  # with boxes both would be identical
    assert not [r for r in caplog.records if r.name == "attnkit.fonts"]


@needs_cjk_font
def test_confusion_matrix_draws_cjk_labels(tmp_path: Path) -> None:
    matrix = np.array([[5, 1], [2, 7]])
    plot_confusion(matrix, ["负面", "正面"], tmp_path / "a.png")
    plot_confusion(matrix, ["中性", "其他"], tmp_path / "b.png")
    a, b = png_pixels(tmp_path / "a.png"), png_pixels(tmp_path / "b.png")
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_without_a_cjk_font_one_warning_names_the_package(
    no_cjk_font: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        render_png(explanation("plain text"[:8]), tmp_path / "ascii.png")
        assert not caplog.records  # nothing to warn about without CJK text
        render_png(explanation("这本书写得很不错"), tmp_path / "a.png")
        render_png(explanation("一二三四五六七八"), tmp_path / "b.png")
        plot_confusion(np.eye(2, dtype=int), ["负面", "正面"], tmp_path / "c.png")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once, not once per glyph or figure
    assert warnings[0].name == "attnkit.fonts" and "fonts-noto-cjk" in warnings[0].getMessage()
    assert png_pixels(tmp_path / "a.png").shape == png_pixels(tmp_path / "b.png").shape


def test_matplotlib_debug_records_stay_out_of_verbose_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from matplotlib import font_manager

    logging.getLogger("matplotlib").setLevel(logging.NOTSET)  # as before the renderers quiet it
    font_manager.FontManager._findfont_cached.cache_clear()  # font lookups (and their DEBUG lines) run again
    with caplog.at_level(logging.DEBUG):
        render_png(explanation("这本书写得很不错"), tmp_path / "a.png")
        plot_confusion(np.eye(2, dtype=int), ["neg", "pos"], tmp_path / "b.png")
    assert [r for r in caplog.records if r.name.startswith("matplotlib")] == []
    assert logging.getLogger("matplotlib").level == logging.WARNING
