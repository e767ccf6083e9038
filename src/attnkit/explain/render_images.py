"""Renderers for image explanation JSON: PNG (image | heatmap | overlay per method), a standalone offline HTML page,
the terminal and JSON.

Every function takes plain image explanation dicts in the format of ``docs/explanation-format.md`` ("Image
explanations": ``image`` with a base64 PNG, ``grid``, ``units`` with pixel ``box`` and ``scores``, ``methods``,
``signed``...), as :meth:`attnkit.explain.images.ImageExplanation.to_json_dict` writes them; no torch needed.

Colours come from the shared scale of :mod:`attnkit.explain.scale`, as on the text pages: attention and rollout
show each unit's ratio to uniform (white at or below ``1/U``, full orange from ``RATIO_CAP`` times uniform),
signed methods are red (supports the target) / blue (against it) scaled to the image's max ``|score|``, other
unsigned methods orange scaled to the image's max. A heatmap pixel has the colour of the box it lies in (nearest
box upsampling); the overlay lays the full hue over the image with opacity ``OVERLAY_ALPHA * |intensity|``.

Dimension legend: ``H`` / ``W`` image height / width, ``U`` units (boxes).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from attnkit.atomic import atomic_write
from attnkit.explain.images import decode_png
from attnkit.explain.render import _asset, _attr, _css_rgb, _legend_markup, _page_html, _TerminalScale
from attnkit.explain.render_units import (
    render_units_json,
    unit_header_html,
    unit_methods,
    unit_score,
    unit_terminal_header,
    unit_title,
)
from attnkit.explain.scale import (
    KIND_LABELS,
    NEGATIVE_RGB,
    POSITIVE_RGB,
    UNSIGNED_RGB,
    MethodScale,
    compact,
    explanation_scale,
    intensity_rgb,
    js_number,
    scales_json,
)

__all__ = [
    "OVERLAY_ALPHA",
    "heatmap_rgb",
    "image_rgb",
    "is_image_explanation",
    "overlay_rgb",
    "render_image_html",
    "render_image_json",
    "render_image_png",
    "render_image_terminal",
    "unit_intensities",
]

OVERLAY_ALPHA = 0.65
"""Opacity of the full hue over the image at intensity 1 (0 leaves the image as it is)."""
HTML_VIEW_PIXELS = 280
"""About how wide (or tall) the HTML page draws each image, in CSS pixels (an integer zoom of the image)."""

# -------------------------------------------------------------------------------------------- input helpers


def is_image_explanation(exp: dict[str, Any]) -> bool:
    """Whether ``exp`` is an image explanation (it has ``units`` and an ``image``), not a text one."""
    return exp.get("modality") == "image" or ("units" in exp and "image" in exp)


def _unit_name(exp: dict[str, Any]) -> str:
    return str((exp.get("grid") or {}).get("unit_name") or "unit")


def _size(exp: dict[str, Any]) -> tuple[int, int]:
    image = exp.get("image") or {}
    return int(image.get("height", 0)), int(image.get("width", 0))


def _boxes(exp: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    return [tuple(int(v) for v in unit["box"]) for unit in exp.get("units") or []]  # type: ignore[misc]


def _check(exp: dict[str, Any]) -> None:
    if not is_image_explanation(exp):
        raise ValueError(
            "not an image explanation: it has no units and image (see docs/explanation-format.md)"
        )
    height, width = _size(exp)
    for i, (x0, y0, x1, y1) in enumerate(_boxes(exp)):
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"unit {i}: box [{x0}, {y0}, {x1}, {y1}] is not inside the {width}x{height} image"
            )


def _summary(exp: dict[str, Any], scale: MethodScale, *, colours: bool = True) -> str:
    target = str(exp.get("target", exp.get("label", "")))
    return scale.summary(target, colours=colours, unit=_unit_name(exp), item="image")


def unit_intensities(exp: dict[str, Any], method: str) -> list[float]:
    """Each unit's display intensity for ``method`` on the shared scale: ``[0, 1]``, or ``[-1, 1]`` if signed."""
    scale = explanation_scale(exp, method)
    return scale.intensities([unit_score(unit, method) for unit in exp.get("units") or []])


def image_rgb(exp: dict[str, Any]) -> np.ndarray:
    """``(H, W, 3)`` uint8: the explained image (grayscale repeated over three channels)."""
    pixels = decode_png(str((exp.get("image") or {}).get("png", "")))  # (H, W, C)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _box_fill(exp: dict[str, Any], values: list[Any], fill: Any) -> np.ndarray:
    """``(H, W, 3)`` float: ``fill`` everywhere, each unit's box set to its value (nearest-box upsampling)."""
    height, width = _size(exp)
    out = np.empty((height, width, 3), dtype=np.float64)
    out[:] = fill
    for value, (x0, y0, x1, y1) in zip(values, _boxes(exp), strict=True):
        out[y0:y1, x0:x1] = value
    return out


def heatmap_rgb(exp: dict[str, Any], method: str) -> np.ndarray:
    """``(H, W, 3)`` uint8: every pixel in the colour of its box's score (white where no box covers it)."""
    scale = explanation_scale(exp, method)
    colours = [intensity_rgb(t, scale.kind) for t in unit_intensities(exp, method)]
    return _box_fill(exp, colours, 255.0).astype(np.uint8)


def overlay_rgb(exp: dict[str, Any], method: str, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``(H, W, 3)`` uint8: the image with the method's full hue laid over each box at ``alpha * |intensity|``."""
    scale = explanation_scale(exp, method)
    shades = unit_intensities(exp, method)
    hues = [_hue(scale, t) for t in shades]
    weights = [alpha * min(abs(t), 1.0) for t in shades]
    hue = _box_fill(exp, hues, 0.0)  # (H, W, 3)
    weight = _box_fill(exp, weights, 0.0)  # (H, W, 3), the same weight in each channel
    blended = image_rgb(exp).astype(np.float64) * (1 - weight) + hue * weight
    return np.clip(np.floor(blended + 0.5), 0, 255).astype(np.uint8)


def _hue(scale: MethodScale, intensity: float) -> tuple[int, int, int]:
    if scale.kind == "diverging":
        return POSITIVE_RGB if intensity >= 0 else NEGATIVE_RGB
    return UNSIGNED_RGB


def _unit_label(exp: dict[str, Any], unit: dict[str, Any]) -> str:
    x0, y0, x1, y1 = (int(v) for v in unit["box"])
    return f"{_unit_name(exp)} ({unit.get('row')}, {unit.get('col')}) · x {x0}–{x1}, y {y0}–{y1}"


# --------------------------------------------------------------------------------------------------- JSON


def render_image_json(explanations: list[dict[str, Any]]) -> str:
    """The image explanations as pretty JSON, each with its ``scale`` recomputed from its scores."""
    return render_units_json(explanations)


# ---------------------------------------------------------------------------------------------------- PNG


def render_image_png(explanation: dict[str, Any], path: str | Path, methods: list[str] | None = None) -> None:
    """Write a PNG with one row per method: the image, the heatmap of the unit scores (with the unit grid and a
    colour bar labelled like the legends) and the heatmap laid over the image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from attnkit.fonts import font_context

    exp = explanation
    _check(exp)
    methods = list(methods) if methods is not None else unit_methods(exp)
    unknown = [m for m in methods if m not in unit_methods(exp)]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; this explanation has {unit_methods(exp)}")
    height, width = _size(exp)
    picture = image_rgb(exp)
    rows = max(len(methods), 1)
    panel, bar_w, gap_w, label_w, top_h = 2.4, 0.18, 0.85, 0.55, 0.75
    fig_w = label_w + 3 * panel + bar_w + gap_w + 0.6
    fig_h = top_h + rows * panel + 0.2
    title = unit_title(exp).replace("$", r"\$")
    grid_x = sorted({b[0] for b in _boxes(exp)} - {0})
    grid_y = sorted({b[1] for b in _boxes(exp)} - {0})
    with font_context([title, *map(str, (exp.get("probabilities") or {}))]):
        fig = Figure(figsize=(fig_w, fig_h), dpi=100)
        FigureCanvasAgg(fig)
        fig.suptitle(title, fontsize=10, y=1 - 0.25 / fig_h)
        spec = fig.add_gridspec(
            rows, 5, width_ratios=[panel, panel, bar_w, gap_w, panel], wspace=0.06, hspace=0.12,
            left=label_w / fig_w, right=1 - 0.15 / fig_w, bottom=0.2 / fig_h, top=1 - top_h / fig_h,
        )  # fmt: skip
        for r, method in enumerate(methods or [None]):
            picture_ax, heat_ax, bar_ax, over_ax = (fig.add_subplot(spec[r, c]) for c in (0, 1, 2, 4))
            for ax in (picture_ax, heat_ax, over_ax):
                ax.set_xticks([])
                ax.set_yticks([])
            picture_ax.imshow(picture, interpolation="nearest")
            if r == 0:
                for ax, name in ((picture_ax, "image"), (heat_ax, "heatmap"), (over_ax, "overlay")):
                    ax.set_title(name, fontsize=9)
            if method is None:
                bar_ax.set_axis_off()
                continue
            scale = explanation_scale(exp, method)
            picture_ax.set_ylabel(f"{method}\n{KIND_LABELS[scale.kind]}".replace("$", r"\$"), fontsize=9)
            heat_ax.imshow(heatmap_rgb(exp, method), interpolation="nearest")
            # the unit grid, faint: two line collections (a patch per box is slow to draw)
            heat_ax.vlines([x - 0.5 for x in grid_x], -0.5, height - 0.5, colors="#00000030", linewidths=0.4)
            heat_ax.hlines([y - 0.5 for y in grid_y], -0.5, width - 0.5, colors="#00000030", linewidths=0.4)
            heat_ax.set_xlim(-0.5, width - 0.5)
            heat_ax.set_ylim(height - 0.5, -0.5)
            _colour_bar(bar_ax, scale)
            over_ax.imshow(overlay_rgb(exp, method), interpolation="nearest")
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))  # folders are created


def _colour_bar(ax: Any, scale: MethodScale) -> None:
    """A vertical bar in the scale's colours, from its lowest intensity (bottom) to the full colour (top),
    with the legend's end labels."""
    low = -1.0 if scale.signed else 0.0
    steps = np.linspace(1.0, low, 64)
    strip = np.array([intensity_rgb(float(t), scale.kind) for t in steps], dtype=np.uint8)[:, None, :]
    ax.imshow(strip, aspect="auto", interpolation="nearest", extent=(0, 1, 0, 1))
    ax.set_xticks([])
    ax.yaxis.tick_right()
    ax.set_yticks([0, 1], [scale.low_label().replace("$", r"\$"), scale.high_label().replace("$", r"\$")])
    ax.tick_params(labelsize=7, length=2)
    for spine in ax.spines.values():
        spine.set_color("#cccccc")


# ------------------------------------------------------------------------------------------------- terminal


def render_image_terminal(
    explanations: list[dict[str, Any]], console: Console | None = None, *, top_k: int = 5
) -> None:
    """Print each explanation: label and probabilities, then per method the unit grid shaded by score (two
    characters per unit, in the bins of the shared scale; digits 0-9 of the intensity without colour) and the
    ``top_k`` strongest units with their boxes."""
    console = console or Console()
    plain = console.color_system is None or bool(console.no_color)
    for number, exp in enumerate(explanations, 1):
        _check(exp)
        console.print(unit_terminal_header(exp, number))
        grid = exp.get("grid") or {}
        cols = int(grid.get("cols", 1))
        table = Table.grid(padding=(0, 2))
        for method in unit_methods(exp):
            scale = _TerminalScale(exp, method, console)
            units = exp.get("units") or []
            cells = Text()
            for i, unit in enumerate(units):
                score = unit_score(unit, method)
                if plain:
                    t = scale.scale.intensity(score)
                    digit = min(9, int(abs(t) * 9.999))
                    cells.append(("-" if t < 0 and digit else " ") + str(digit))
                else:
                    cells.append("  ", style=scale.style(score))
                if (i + 1) % cols == 0 and i + 1 < len(units):
                    cells.append("\n")
            strongest = sorted(
                range(len(units)),
                key=lambda i: (
                    -abs(unit_score(units[i], method) or 0.0)
                    if scale.scale.signed
                    else -(unit_score(units[i], method) or 0.0),
                    i,
                ),
            )[:top_k]
            top = Text()
            for i in strongest:
                value = unit_score(units[i], method)
                shown = (
                    "n/a" if value is None else (f"{value:+.3g}" if scale.scale.signed else f"{value:.3g}")
                )
                top.append(f"({units[i].get('row')}, {units[i].get('col')}) {shown}\n")
            note = Text(f"{method} {KIND_LABELS[scale.scale.kind]}\n", style="bold")
            note.append(_summary(exp, scale.scale, colours=not plain), style="dim")
            table.add_row(cells, Text.assemble(note, "\n", top))
        console.print(table)
        console.print()


# ------------------------------------------------------------------------------------------------------ HTML


def _legend(exp: dict[str, Any], method: str) -> str:
    sc = explanation_scale(exp, method)
    return _legend_markup(sc, _summary(exp, sc))


def _header(exp: dict[str, Any], number: int) -> str:
    grid = exp.get("grid") or {}
    height, width = _size(exp)
    return unit_header_html(
        exp,
        number,
        f"{width}×{height} px, {grid.get('rows')}×{grid.get('cols')} {html.escape(_unit_name(exp))}s of "
        f"{grid.get('unit_size')} px",
    )


def _svg(exp: dict[str, Any], method: str, kind: str) -> str:
    """One SVG: the image under the overlay (``kind="overlay"``) or the heatmap alone; one rect per unit with
    its score in a ``<title>`` (the browser's tooltip) and ``data-`` attributes for the page's script."""
    height, width = _size(exp)
    zoom = max(1, round(HTML_VIEW_PIXELS / max(height, width, 1)))
    scale = explanation_scale(exp, method)
    shades = unit_intensities(exp, method)
    parts = [
        f'<svg class="ak-img-svg ak-img-{kind}" viewBox="0 0 {width} {height}" width="{width * zoom}" '
        f'height="{height * zoom}" role="img" aria-label="{_attr(method)} {kind}">'
    ]
    if kind == "overlay":
        png = str((exp.get("image") or {}).get("png", ""))
        parts.append(
            f'<image href="data:image/png;base64,{png}" x="0" y="0" width="{width}" height="{height}" '
            'preserveAspectRatio="none" class="ak-img-pixels"/>'
        )
    for i, (unit, t) in enumerate(zip(exp.get("units") or [], shades, strict=True)):
        x0, y0, x1, y1 = (int(v) for v in unit["box"])
        value = unit_score(unit, method)
        score_text = "n/a" if value is None else js_number(value)
        if kind == "overlay":
            fill, opacity = _css_rgb(_hue(scale, t)), f"{OVERLAY_ALPHA * min(abs(t), 1.0):.4f}"
        else:
            fill, opacity = _css_rgb(intensity_rgb(t, scale.kind)), "1"
        label = f"{_unit_label(exp, unit)} · {method} = {score_text}"
        parts.append(
            f'<rect class="ak-unit" data-i="{i}" data-score="{_attr(score_text)}" data-label="{_attr(label)}" '
            f'x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="{fill}" fill-opacity="{opacity}">'
            f"<title>{html.escape(label)}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _top_list(exp: dict[str, Any], method: str, k: int = 5) -> str:
    scale = explanation_scale(exp, method)
    units = exp.get("units") or []
    values = [unit_score(u, method) for u in units]

    def strength(i: int) -> float:
        v = values[i] or 0.0
        return abs(v) if scale.signed else v

    order = sorted(range(len(units)), key=lambda i: (-strength(i), i))[:k]
    items = "".join(
        f'<li data-i="{i}">({units[i].get("row")}, {units[i].get("col")}) '
        f"<b>{html.escape('n/a' if values[i] is None else compact(values[i]))}</b></li>"  # type: ignore[arg-type]
        for i in order
    )
    return f'<ol class="ak-img-top" title="the strongest {html.escape(_unit_name(exp))}s">{items}</ol>'


def _html_explanation(exp: dict[str, Any], index: int) -> str:
    _check(exp)
    methods = unit_methods(exp)
    group = f"ak-img-{index}"
    switches, tabs, views = [], [], []
    for j, method in enumerate(methods):
        ident = f"{group}-m{j}"
        checked = " checked" if j == 0 else ""
        switches.append(
            f'<input type="radio" class="ak-img-switch ak-img-switch-{j}" name="{group}" id="{ident}"{checked}>'
        )
        kind = KIND_LABELS[explanation_scale(exp, method).kind]
        tabs.append(
            f'<label class="ak-img-tab ak-img-tab-{j}" for="{ident}">{html.escape(method)} '
            f'<span class="ak-kind">{html.escape(kind)}</span></label>'
        )
        views.append(
            f'<div class="ak-img-view ak-img-view-{j}" data-method="{_attr(method)}">'
            f'<figure class="ak-img-figure">{_svg(exp, method, "overlay")}'
            "<figcaption>image + heatmap</figcaption></figure>"
            f'<figure class="ak-img-figure">{_svg(exp, method, "heatmap")}'
            "<figcaption>heatmap</figcaption></figure>"
            f'<div class="ak-img-side">{_legend(exp, method)}{_top_list(exp, method)}'
            '<div class="ak-img-readout" aria-live="polite">hover a box for its score</div></div>'
            "</div>"
        )
    return (
        f'<section class="ak-explanation ak-image-explanation" data-index="{index}">'
        f"{_header(exp, index + 1)}"
        f"{''.join(switches)}"
        f'<div class="ak-img-tabs" role="tablist">{"".join(tabs)}</div>'
        f'<div class="ak-img-views">{"".join(views)}</div>'
        "</section>"
    )


def _switch_css(count: int) -> str:
    """One rule per method position: the checked radio shows its view and marks its tab (no script needed)."""
    rules = []
    for j in range(count):
        rules.append(f".ak-img-switch-{j}:checked ~ .ak-img-views .ak-img-view-{j} {{ display: flex; }}")
        rules.append(f".ak-img-switch-{j}:checked ~ .ak-img-tabs .ak-img-tab-{j} {{ {_TAB_ON} }}")
    return "\n".join(rules)


_TAB_ON = "background: #fff; border-color: #999; border-bottom-color: #fff; color: #222;"


def render_image_html(explanations: list[dict[str, Any]], title: str = "attnkit image explanation") -> str:
    """One standalone HTML page (CSS, script and images inlined; no external URL) for all image explanations.

    Per image: the prediction, one tab per method (plain radio buttons and CSS, so switching works without
    JavaScript), the image with the heatmap laid over it, the heatmap alone, the legend and the strongest units.
    Hovering a box shows its score (an SVG tooltip; the script also writes it beside the images and outlines the
    same box in both pictures). The explanations are embedded as JSON (``#attnkit-data``).
    """
    body = "\n".join(_html_explanation(exp, i) for i, exp in enumerate(explanations))
    count = max((len(unit_methods(exp)) for exp in explanations), default=0)
    data = [{**exp, "scale": scales_json(exp)} for exp in explanations]
    styles = [_asset("attnkit-viz.css"), _asset("attnkit-image.css"), _switch_css(count)]
    return _page_html(title, styles, body, data, [_asset("attnkit-image.js")])
