"""Renderers for audio explanation JSON: PNG (the spectrogram with each method's scores drawn along time under it),
a standalone offline HTML page that plays the recording and follows it on the score strips, the terminal and JSON.

Every function takes plain audio explanation dicts (``modality: audio``: ``spectrogram`` with a base64 PNG,
``audio`` with the sample rate, duration and optionally a base64 WAV, ``unit``, ``units`` with ``start`` / ``end``
seconds and ``scores``, ``methods``, ``signed``...), as
:meth:`attnkit.explain.audio.AudioExplanation.to_json_dict` writes them; no torch needed.

Colours come from the shared scale of :mod:`attnkit.explain.scale`, as on the text and image pages: attention and
rollout show each unit's ratio to uniform (white at or below ``1/U``, full orange from ``RATIO_CAP`` times
uniform), signed methods are red (supports the target) / blue (against it) scaled to the recording's max
``|score|``, other unsigned methods orange scaled to its max. The spectrogram is drawn in the ``magma`` colour map
(dark = quiet), which the score colours do not use.

Time runs left to right over ``[0, extent]`` seconds, ``extent`` the end of the last unit: spectrogram column
``t`` covers ``[t * hop_seconds, (t + 1) * hop_seconds)`` and unit ``u`` its ``[start, end)``, so a unit sits
exactly over its frames.

Dimension legend: ``U`` units, ``T`` spectrogram frames, ``M`` mel bands.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from attnkit.atomic import atomic_write
from attnkit.explain.images import decode_png, encode_png
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
    MethodScale,
    compact,
    explanation_scale,
    intensity_rgb,
    js_number,
    scales_json,
)

__all__ = [
    "PNG_DPI",
    "TERMINAL_CELLS",
    "audio_png_size",
    "is_audio_explanation",
    "render_audio_html",
    "render_audio_json",
    "render_audio_png",
    "render_audio_terminal",
    "spectrogram_rgb",
    "spectrogram_rgb_level",
    "strip_rgb",
    "unit_intensities",
]

PNG_DPI = 100
"""Pixels per inch of the PNG (its size in pixels: :func:`audio_png_size`)."""
TERMINAL_CELLS = 80
"""The most characters a terminal strip has; longer recordings show the strongest unit of each group."""
SPECTROGRAM_COLORMAP = "magma"

# PNG layout, in inches: fixed, so a figure's size depends only on its number of method rows.
_PNG_WIDTH, _PNG_LEFT, _PNG_RIGHT = 10.0, 1.35, 1.25
_PNG_TITLE, _PNG_SPECTROGRAM, _PNG_STRIP, _PNG_GAP, _PNG_AXIS = 0.55, 2.0, 0.42, 0.1, 0.5

# -------------------------------------------------------------------------------------------- input helpers


def is_audio_explanation(exp: dict[str, Any]) -> bool:
    """Whether ``exp`` is an audio explanation (``modality: audio``, or ``units`` with a ``spectrogram``)."""
    return exp.get("modality") == "audio" or ("units" in exp and "spectrogram" in exp)


def _units(exp: dict[str, Any]) -> list[dict[str, Any]]:
    return list(exp.get("units") or [])


def _unit_name(exp: dict[str, Any]) -> str:
    return str((exp.get("unit") or {}).get("name") or "frame")


def _spans(exp: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(u["start"]), float(u["end"])) for u in _units(exp)]


def _spectrogram(exp: dict[str, Any]) -> dict[str, Any]:
    return dict(exp.get("spectrogram") or {})


def _extent(exp: dict[str, Any]) -> float:
    """Seconds the time axis covers: to the end of the last unit, frame or sample, whichever is latest."""
    spec = _spectrogram(exp)
    frames = float(spec.get("frames", 0)) * float(spec.get("hop_seconds", 0.0))
    spans = _spans(exp)
    duration = float((exp.get("audio") or {}).get("duration", 0.0))
    return max(spans[-1][1] if spans else 0.0, frames, duration)


def _check(exp: dict[str, Any]) -> None:
    if not is_audio_explanation(exp):
        raise ValueError("not an audio explanation: it has no units and spectrogram")
    spec = _spectrogram(exp)
    if "png" not in spec or "hop_seconds" not in spec:
        raise ValueError("audio explanation: spectrogram needs png and hop_seconds")
    previous = 0.0
    for i, (start, end) in enumerate(_spans(exp)):
        if not (math.isfinite(start) and math.isfinite(end) and previous <= start < end):
            raise ValueError(f"unit {i}: [{start}, {end}) s is not a time span after the previous unit's end")
        previous = end


def unit_intensities(exp: dict[str, Any], method: str) -> list[float]:
    """Each unit's display intensity for ``method`` on the shared scale: ``[0, 1]``, or ``[-1, 1]`` if signed."""
    scale = explanation_scale(exp, method)
    return scale.intensities([unit_score(unit, method) for unit in _units(exp)])


def strip_rgb(exp: dict[str, Any], method: str) -> np.ndarray:
    """``(U, 3)`` uint8: the colour of each unit's score for ``method``."""
    kind = explanation_scale(exp, method).kind
    colours = [intensity_rgb(t, kind) for t in unit_intensities(exp, method)]
    return np.asarray(colours, dtype=np.uint8).reshape(len(colours), 3)


def _colour_table() -> np.ndarray:
    """``(256, 3)`` uint8: the ``magma`` colour of each display level."""
    from matplotlib import colormaps

    return np.floor(colormaps[SPECTROGRAM_COLORMAP](np.arange(256))[:, :3] * 255 + 0.5).astype(np.uint8)


def spectrogram_rgb_level(level: int) -> tuple[int, int, int]:
    """The colour of one display level (0 = ``db_low`` or quieter, 255 = the peak)."""
    r, g, b = (int(c) for c in _colour_table()[level])
    return r, g, b


def spectrogram_rgb(exp: dict[str, Any]) -> np.ndarray:
    """``(M, T, 3)`` uint8: the display spectrogram in the ``magma`` colour map (top row = highest band)."""
    levels = decode_png(str(_spectrogram(exp)["png"]))[..., 0]  # (M, T) uint8
    return _colour_table()[levels]  # (M, T, 3)


def _seconds_text(value: float) -> str:
    return f"{value:.3f}"


def _span_text(start: float, end: float) -> str:
    return f"{_seconds_text(start)}–{_seconds_text(end)} s"


def _summary(exp: dict[str, Any], scale: MethodScale, *, colours: bool = True) -> str:
    target = str(exp.get("target", exp.get("label", "")))
    return scale.summary(target, colours=colours, unit=_unit_name(exp), item="recording")


def _strongest(exp: dict[str, Any], method: str, k: int) -> list[int]:
    """The ``k`` units with the largest score (signed methods: largest ``|score|``), ties by time."""
    signed = explanation_scale(exp, method).signed
    values = [unit_score(u, method) for u in _units(exp)]

    def strength(i: int) -> float:
        v = values[i] or 0.0
        return abs(v) if signed else v

    return sorted(range(len(values)), key=lambda i: (-strength(i), i))[:k]


def _shown(value: float | None, signed: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3g}" if signed else f"{value:.3g}"


# --------------------------------------------------------------------------------------------------- JSON


def render_audio_json(explanations: list[dict[str, Any]]) -> str:
    """The audio explanations as pretty JSON, each with its ``scale`` recomputed from its scores."""
    return render_units_json(explanations)


# ---------------------------------------------------------------------------------------------------- PNG


def audio_png_size(methods: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of :func:`render_audio_png` with ``methods`` score rows."""
    height = _PNG_TITLE + _PNG_SPECTROGRAM + methods * (_PNG_STRIP + _PNG_GAP) + _PNG_AXIS
    return round(_PNG_WIDTH * PNG_DPI), round(height * PNG_DPI)


def render_audio_png(explanation: dict[str, Any], path: str | Path, methods: list[str] | None = None) -> None:
    """Write a PNG: the log-mel spectrogram on top, under it one strip per method with each unit's score as a
    colour over the unit's time span (same time axis, in seconds), each with a colour bar labelled like the
    legends. Its size is :func:`audio_png_size` of the number of methods."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from attnkit.explain.render_images import _colour_bar
    from attnkit.fonts import font_context

    exp = explanation
    _check(exp)
    methods = list(methods) if methods is not None else unit_methods(exp)
    unknown = [m for m in methods if m not in unit_methods(exp)]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; this explanation has {unit_methods(exp)}")
    width_px, height_px = audio_png_size(len(methods))
    fig_w, fig_h = width_px / PNG_DPI, height_px / PNG_DPI
    spec = _spectrogram(exp)
    picture = spectrogram_rgb(exp)  # (M, T, 3)
    bands, frames = picture.shape[:2]
    hop = float(spec["hop_seconds"])
    extent = _extent(exp)
    spans = _spans(exp)
    title = unit_title(exp).replace("$", r"\$")
    plot_w = fig_w - _PNG_LEFT - _PNG_RIGHT

    def axes(top: float, height: float) -> Any:
        """An axes ``height`` inches tall whose top edge is ``top`` inches below the figure's top."""
        return fig.add_axes((_PNG_LEFT / fig_w, 1 - (top + height) / fig_h, plot_w / fig_w, height / fig_h))

    def bar_axes(top: float, height: float) -> Any:
        left = (fig_w - _PNG_RIGHT + 0.12) / fig_w
        return fig.add_axes((left, 1 - (top + height) / fig_h, 0.14 / fig_w, height / fig_h))

    with font_context([title, *map(str, (exp.get("probabilities") or {}))]):
        fig = Figure(figsize=(fig_w, fig_h), dpi=PNG_DPI)
        FigureCanvasAgg(fig)
        fig.suptitle(title, fontsize=10, y=1 - 0.2 / fig_h)
        top = _PNG_TITLE
        spec_ax = axes(top, _PNG_SPECTROGRAM)
        spec_ax.imshow(
            picture, aspect="auto", interpolation="nearest", extent=(0.0, frames * hop, 0.0, float(bands))
        )
        spec_ax.set_xlim(0.0, extent)
        spec_ax.set_facecolor(
            tuple(int(c) / 255 for c in spectrogram_rgb_level(0))
        )  # past the last frame: quiet
        spec_ax.set_ylabel(f"log-mel\n({bands} bands)", fontsize=9)
        spec_ax.set_yticks([])
        spec_ax.tick_params(labelbottom=False, labelsize=8)
        db_low, db_high = float(spec.get("db_low", 0.0)), float(spec.get("db_high", 0.0))
        for y, value, align in ((1.0, db_high, "top"), (0.0, db_low, "bottom")):  # the display's dB range
            spec_ax.text(
                1.005, y, f"{value:.0f} dB", transform=spec_ax.transAxes, fontsize=7, va=align, ha="left",
                color="#555",
            )  # fmt: skip
        top += _PNG_SPECTROGRAM + _PNG_GAP
        last = spec_ax
        for method in methods:
            scale = explanation_scale(exp, method)
            strip_ax = axes(top, _PNG_STRIP)
            colours = strip_rgb(exp, method)[None]  # (1, U, 3)
            if spans:
                strip_ax.imshow(
                    colours, aspect="auto", interpolation="nearest", extent=(spans[0][0], spans[-1][1], 0, 1)
                )
            strip_ax.set_xlim(0.0, extent)
            strip_ax.set_ylim(0, 1)
            strip_ax.set_yticks([])
            strip_ax.tick_params(labelbottom=False, labelsize=8)
            strip_ax.set_ylabel(
                f"{method}\n{KIND_LABELS[scale.kind]}".replace("$", r"\$"), fontsize=8, rotation=0,
                ha="right", va="center",
            )  # fmt: skip
            for spine in strip_ax.spines.values():
                spine.set_color("#bbbbbb")
            _colour_bar(bar_axes(top, _PNG_STRIP), scale)
            top += _PNG_STRIP + _PNG_GAP
            last = strip_ax
        last.tick_params(labelbottom=True)
        last.set_xlabel("time (s)", fontsize=9)
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=PNG_DPI))  # folders are created


# ------------------------------------------------------------------------------------------------- terminal


def _cells(exp: dict[str, Any], method: str, count: int) -> list[int]:
    """For each of ``count`` terminal cells, the unit it shows: the strongest of the units it groups."""
    units = _units(exp)
    shades = unit_intensities(exp, method)
    if len(units) <= count:
        return list(range(len(units)))
    group = math.ceil(len(units) / count)
    picks = []
    for first in range(0, len(units), group):
        members = range(first, min(first + group, len(units)))
        picks.append(max(members, key=lambda i: (abs(shades[i]), -i)))
    return picks


def render_audio_terminal(
    explanations: list[dict[str, Any]], console: Console | None = None, *, top_k: int = 5
) -> None:
    """Print each explanation: label and probabilities, then per method a strip of the units over time (one
    character per unit, or per group of units showing its strongest, in the bins of the shared scale; digits 0-9
    of the intensity without colour), the time at its ends and the ``top_k`` strongest units with their times."""
    console = console or Console()
    plain = console.color_system is None or bool(console.no_color)
    for number, exp in enumerate(explanations, 1):
        _check(exp)
        console.print(unit_terminal_header(exp, number))
        audio = exp.get("audio") or {}
        unit = exp.get("unit") or {}
        units = _units(exp)
        console.print(
            Text(
                f"{float(audio.get('duration', 0.0)):.3f} s at {audio.get('sample_rate', '?')} Hz, {len(units)} "
                f"{_unit_name(exp)}s of {1000 * float(unit.get('seconds', 0.0)):g} ms",
                style="dim",
            )
        )
        table = Table.grid(padding=(0, 2))
        for method in unit_methods(exp):
            scale = _TerminalScale(exp, method, console)
            cells = Text()
            for i in _cells(exp, method, TERMINAL_CELLS):
                score = unit_score(units[i], method)
                if plain:
                    t = scale.scale.intensity(score)
                    digit = min(9, int(abs(t) * 9.999))
                    cells.append("-" if t < 0 and digit else str(digit))
                else:
                    cells.append(" ", style=scale.style(score))
            end = f"{_extent(exp):.2f} s"
            ruler = "0 s".ljust(max(len(cells) - len(end), 4)) + end
            top = Text()
            for i in _strongest(exp, method, top_k):
                start, stop = float(units[i]["start"]), float(units[i]["end"])
                top.append(
                    f"{_span_text(start, stop)}  {_shown(unit_score(units[i], method), scale.scale.signed)}\n"
                )
            note = Text(f"{method} {KIND_LABELS[scale.scale.kind]}\n", style="bold")
            note.append(_summary(exp, scale.scale, colours=not plain), style="dim")
            table.add_row(Text.assemble(cells, "\n", (ruler, "dim")), Text.assemble(note, "\n", top))
        console.print(table)
        console.print()


# ------------------------------------------------------------------------------------------------------ HTML

_AUDIO_CSS = """
.ak-source { font-family: ui-monospace, "DejaVu Sans Mono", monospace; color: #333; }
.ak-audio-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5em 1.2em; margin: 0.5em 0; }
.ak-audio-player { width: 22em; max-width: 100%; }
.ak-audio-noaudio { font-size: 0.85em; color: #888; }
.ak-audio-readout { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; color: #333; min-height: 1.4em; }
.ak-audio-timeline { display: grid; grid-template-columns: 9.5em minmax(0, 1fr); gap: 3px 0.6em; align-items: center; }
.ak-audio-name { font-size: 0.82em; font-weight: 600; text-align: right; color: #333; }
.ak-audio-name .ak-kind { display: block; font-weight: normal; color: #888; font-size: 0.85em; }
.ak-audio-track { position: relative; cursor: pointer; border: 1px solid #ddd; background: #fff; }
.ak-audio-spec-track { height: 150px; background: #000004; overflow: hidden; }
.ak-audio-spec { position: absolute; left: 0; top: 0; height: 100%; image-rendering: pixelated; }
.ak-audio-strip { display: block; width: 100%; height: 26px; }
.ak-audio-strip .ak-unit.ak-current { stroke: #111; stroke-width: 2px; vector-effect: non-scaling-stroke; }
.ak-audio-cursor { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px; background: #16a34a;
  pointer-events: none; }
.ak-audio-span { position: absolute; top: 0; bottom: 0; background: rgba(255, 255, 255, 0.28);
  outline: 1px solid #fff; pointer-events: none; display: none; }
.ak-audio-span.ak-on { display: block; }
.ak-audio-axis { position: relative; height: 1.3em; font-size: 0.75em; color: #666; }
.ak-audio-tick { position: absolute; top: 0; transform: translateX(-50%); white-space: nowrap; }
.ak-audio-tick:first-child { transform: none; }
.ak-audio-methods { display: flex; flex-wrap: wrap; gap: 0.8em 2em; margin-top: 0.8em; }
.ak-audio-method { min-width: 18em; max-width: 30em; font-size: 0.9em; }
.ak-audio-method h3 { font-size: 0.95em; margin: 0 0 0.3em; }
.ak-audio-method .ak-legend { grid-column: auto; margin-bottom: 0.4em; }
.ak-audio-top { margin: 0 0 0 1.4em; padding: 0; font-size: 0.88em; font-variant-numeric: tabular-nums; }
.ak-audio-top li { cursor: pointer; }
"""

# Follows the player: on every timeupdate (and every animation frame while playing) the cursor of each track moves
# to the playing time, the unit under it is outlined in every strip and boxed on the spectrogram, and the readout
# gives its time span and scores. Clicking a track (or a listed top unit) seeks there. No network, no dependencies.
_AUDIO_JS = """
(function () {
  "use strict";
  function wire(section) {
    var audio = section.querySelector("audio");
    var extent = parseFloat(section.getAttribute("data-extent")) || 1;
    var readout = section.querySelector(".ak-audio-readout");
    var cursors = Array.prototype.slice.call(section.querySelectorAll(".ak-audio-cursor"));
    var box = section.querySelector(".ak-audio-span");
    var strips = Array.prototype.slice.call(section.querySelectorAll(".ak-audio-strip"));
    var first = strips.length ? strips[0] : null;
    var spans = first ? Array.prototype.slice.call(first.querySelectorAll(".ak-unit")).map(function (r) {
      return [parseFloat(r.getAttribute("data-start")), parseFloat(r.getAttribute("data-end"))];
    }) : [];
    var current = -2;
    function unitAt(t) {
      var lo = 0, hi = spans.length - 1;
      if (!spans.length || t < spans[0][0] || t >= spans[hi][1]) { return -1; }
      while (lo < hi) {
        var mid = (lo + hi + 1) >> 1;
        if (spans[mid][0] <= t) { lo = mid; } else { hi = mid - 1; }
      }
      return lo;
    }
    function describe(i) {
      var parts = [];
      strips.forEach(function (strip) {
        var rect = strip.querySelector('.ak-unit[data-i="' + i + '"]');
        if (rect) { parts.push(strip.getAttribute("data-method") + " = " + rect.getAttribute("data-score")); }
      });
      var rect0 = first.querySelector('.ak-unit[data-i="' + i + '"]');
      return rect0.getAttribute("data-when") + " · " + parts.join(" · ");
    }
    function show(t, quiet) {
      var left = Math.max(0, Math.min(100, 100 * t / extent));
      cursors.forEach(function (c) { c.style.left = left + "%"; });
      var i = unitAt(t);
      section.setAttribute("data-time", String(t));
      if (i === current) { return; }
      current = i;
      section.setAttribute("data-current", String(i));
      strips.forEach(function (strip) {
        Array.prototype.forEach.call(strip.querySelectorAll(".ak-unit.ak-current"), function (r) {
          r.classList.remove("ak-current");
        });
        var rect = strip.querySelector('.ak-unit[data-i="' + i + '"]');
        if (rect) { rect.classList.add("ak-current"); }
      });
      if (box) {
        if (i >= 0) {
          box.style.left = (100 * spans[i][0] / extent) + "%";
          box.style.width = (100 * (spans[i][1] - spans[i][0]) / extent) + "%";
          box.classList.add("ak-on");
        } else {
          box.classList.remove("ak-on");
        }
      }
      if (readout && i >= 0 && !quiet) { readout.textContent = describe(i); }
    }
    function seek(t) {
      if (audio && isFinite(audio.duration)) { audio.currentTime = Math.min(t, audio.duration); }
      show(t);
    }
    if (audio) {
      var playing = false;
      var tick = function () {
        show(audio.currentTime);
        if (playing) { window.requestAnimationFrame(tick); }
      };
      audio.addEventListener("timeupdate", function () { show(audio.currentTime); });
      audio.addEventListener("seeked", function () { show(audio.currentTime); });
      audio.addEventListener("play", function () { playing = true; window.requestAnimationFrame(tick); });
      audio.addEventListener("pause", function () { playing = false; });
      audio.addEventListener("ended", function () { playing = false; show(audio.currentTime); });
    }
    Array.prototype.forEach.call(section.querySelectorAll(".ak-audio-track"), function (track) {
      track.addEventListener("click", function (event) {
        var r = track.getBoundingClientRect();
        seek(extent * (event.clientX - r.left) / r.width);
      });
    });
    Array.prototype.forEach.call(section.querySelectorAll(".ak-audio-top li"), function (item) {
      item.addEventListener("click", function () { seek(parseFloat(item.getAttribute("data-start"))); });
    });
    strips.forEach(function (strip) {
      Array.prototype.forEach.call(strip.querySelectorAll(".ak-unit"), function (rect) {
        rect.addEventListener("mouseenter", function () {
          if (readout) { readout.textContent = describe(rect.getAttribute("data-i")); }
        });
      });
    });
    show(0, true);
  }
  function boot() {
    Array.prototype.forEach.call(document.querySelectorAll(".ak-audio-explanation"), wire);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();
"""


def _legend(exp: dict[str, Any], method: str) -> str:
    sc = explanation_scale(exp, method)
    return _legend_markup(sc, _summary(exp, sc))


def _header(exp: dict[str, Any], number: int) -> str:
    audio = exp.get("audio") or {}
    unit = exp.get("unit") or {}
    return unit_header_html(
        exp,
        number,
        f"{float(audio.get('duration', 0.0)):.3f} s at {html.escape(str(audio.get('sample_rate', '?')))} Hz, "
        f"{len(_units(exp))} {html.escape(_unit_name(exp))}s of {1000 * float(unit.get('seconds', 0.0)):g} ms",
    )


def _ms(seconds: float) -> str:
    """Seconds as milliseconds for an SVG coordinate (the strips' viewBox is in ms)."""
    return js_number(round(1000 * seconds, 3))


def _strip_svg(exp: dict[str, Any], method: str) -> str:
    """One SVG strip over ``[0, extent]`` (viewBox in milliseconds): one rect per unit in its score's colour,
    with its time span and score in a ``<title>`` and ``data-`` attributes for the page's script."""
    extent = _extent(exp)
    scale = explanation_scale(exp, method)
    parts = [
        f'<svg class="ak-audio-strip" data-method="{_attr(method)}" viewBox="0 0 {_ms(extent)} 1" '
        f'preserveAspectRatio="none" role="img" aria-label="{_attr(method)} over time">'
    ]
    for i, (unit, t) in enumerate(zip(_units(exp), unit_intensities(exp, method), strict=True)):
        start, end = float(unit["start"]), float(unit["end"])
        value = unit_score(unit, method)
        score_text = "n/a" if value is None else js_number(value)
        when = f"{_unit_name(exp)} {i} · {_span_text(start, end)}"
        parts.append(
            f'<rect class="ak-unit" data-i="{i}" data-start="{js_number(start)}" data-end="{js_number(end)}" '
            f'data-score="{_attr(score_text)}" data-when="{_attr(when)}" x="{_ms(start)}" y="0" '
            f'width="{_ms(end - start)}" height="1" fill="{_css_rgb(intensity_rgb(t, scale.kind))}">'
            f"<title>{html.escape(f'{when} · {method} = {score_text}')}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _axis(extent: float) -> str:
    """Tick labels under the tracks: about six round times in seconds."""
    raw = extent / 6 if extent > 0 else 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = []
    value = 0.0
    while value <= extent + 1e-9:
        ticks.append(
            f'<span class="ak-audio-tick" style="left: {100 * value / extent if extent else 0:.4f}%">'
            f"{compact(value) if value else '0'} s</span>"
        )
        value = round(value + step, 9)
    return f'<div class="ak-audio-axis">{"".join(ticks)}</div>'


def _top_list(exp: dict[str, Any], method: str, k: int = 5) -> str:
    signed = explanation_scale(exp, method).signed
    units = _units(exp)
    items = "".join(
        f'<li data-i="{i}" data-start="{js_number(float(units[i]["start"]))}">'
        f"{_span_text(float(units[i]['start']), float(units[i]['end']))} "
        f"<b>{html.escape(_shown(unit_score(units[i], method), signed))}</b></li>"
        for i in _strongest(exp, method, k)
    )
    return f'<ol class="ak-audio-top" title="the strongest {html.escape(_unit_name(exp))}s">{items}</ol>'


def _html_explanation(exp: dict[str, Any], index: int) -> str:
    _check(exp)
    methods = unit_methods(exp)
    extent = _extent(exp)
    spec = _spectrogram(exp)
    audio = exp.get("audio") or {}
    frames = int(spec.get("frames", 0))
    spec_width = 100 * frames * float(spec["hop_seconds"]) / extent if extent else 100.0
    wav = audio.get("wav")
    player = (
        f'<audio class="ak-audio-player" controls preload="auto" src="data:audio/wav;base64,{_attr(wav)}">'
        "</audio>"
        if wav
        else '<span class="ak-audio-noaudio">(the recording is not included: explained without audio)</span>'
    )
    rows = [
        '<div class="ak-audio-name">log-mel<span class="ak-kind">spectrogram</span></div>'
        '<div class="ak-audio-track ak-audio-spec-track">'
        f'<img class="ak-audio-spec" alt="log-mel spectrogram" style="width: {spec_width:.4f}%" '
        f'src="data:image/png;base64,{encode_png(spectrogram_rgb(exp))}">'
        '<div class="ak-audio-span"></div><div class="ak-audio-cursor"></div></div>'
    ]
    for method in methods:
        kind = KIND_LABELS[explanation_scale(exp, method).kind]
        rows.append(
            f'<div class="ak-audio-name">{html.escape(method)}<span class="ak-kind">{html.escape(kind)}</span></div>'
            f'<div class="ak-audio-track" data-method="{_attr(method)}">{_strip_svg(exp, method)}'
            '<div class="ak-audio-cursor"></div></div>'
        )
    rows.append(f"<div></div>{_axis(extent)}")
    details = "".join(
        f'<div class="ak-audio-method" data-method="{_attr(method)}"><h3>{html.escape(method)}</h3>'
        f"{_legend(exp, method)}{_top_list(exp, method)}</div>"
        for method in methods
    )
    return (
        f'<section class="ak-explanation ak-audio-explanation" data-index="{index}" '
        f'data-extent="{js_number(extent)}" data-duration="{js_number(float(audio.get("duration", 0.0)))}">'
        f"{_header(exp, index + 1)}"
        f'<div class="ak-audio-bar">{player}'
        '<span class="ak-audio-readout" aria-live="polite">play the clip, or click a strip to seek</span></div>'
        f'<div class="ak-audio-timeline">{"".join(rows)}</div>'
        f'<div class="ak-audio-methods">{details}</div>'
        "</section>"
    )


def render_audio_html(explanations: list[dict[str, Any]], title: str = "attnkit audio explanation") -> str:
    """One standalone HTML page (CSS, script, spectrograms and audio inlined; no external URL) for all audio
    explanations.

    Per recording: the prediction, an ``<audio>`` player with the clip (when the explanation kept it), the
    spectrogram and one colour strip per method on one time axis, the legends and the strongest units. While the
    clip plays (``timeupdate``, and every animation frame), a cursor moves over the spectrogram and the strips,
    the unit playing is outlined in every strip and boxed on the spectrogram, and its scores are written beside
    the player; clicking a strip seeks there. The explanations are embedded as JSON (``#attnkit-data``).
    """
    body = "\n".join(_html_explanation(exp, i) for i, exp in enumerate(explanations))
    data = [{**exp, "scale": scales_json(exp)} for exp in explanations]
    return _page_html(title, [_asset("attnkit-viz.css"), _AUDIO_CSS], body, data, [_AUDIO_JS])
