"""Renderers for explanation JSON: terminal (rich), standalone HTML, PNG heatmap and JSON.

Every function takes plain explanation dicts in the format of ``docs/explanation-format.md`` (no torch needed):
``text``, ``label``, ``target``, ``probabilities``, ``methods``, ``signed``, ``tokens`` (``text``, ``start``,
``end``, ``scores``), ``truncated``, ``layers`` (``None`` or ``{"attention": A[layer][head][i][j]}``) and the
derived ``scale`` (recomputed from the scores here, never trusted).

Colour scale: :mod:`attnkit.explain.scale`, shared by every renderer (``assets/attnkit-viz.js`` implements the
same formulas). Attention and rollout show the ratio to uniform (white at or below ``1/T``, full orange from
``RATIO_CAP`` times uniform); signed methods are red (supports the target) / blue (against it) scaled to the
text's max ``|score|``; other unsigned methods are orange scaled to the text's max. Every renderer draws a
legend saying which.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

from attnkit.atomic import atomic_write
from attnkit.explain.scale import (
    KIND_LABELS,
    NEGATIVE_RGB,
    POSITIVE_RGB,
    RATIO_CAP,
    UNSIGNED_RGB,
    MethodScale,
    compact,
    explanation_scale,
    intensity_rgb,
    js_number,
    scales_json,
)
from attnkit.explain.unread import unread_gaps

__all__ = [
    "NEGATIVE_RGB",
    "POSITIVE_RGB",
    "RATIO_CAP",
    "UNSIGNED_RGB",
    "Segment",
    "head_view_html",
    "intensities",
    "js_number",
    "legend_html",
    "model_view_html",
    "reconstruct_text",
    "render_html",
    "render_json",
    "render_png",
    "render_terminal",
    "score_rgb",
    "segments",
    "terminal_bins",
    "text_rgb",
    "tokens_html",
    "unread_spans_of",
    "with_scale",
    "with_unread",
]

_ASSETS = Path(__file__).resolve().parent / "assets"

# PNG layout limits: tokens per heatmap row block, and tokens drawn at all.
PNG_COLUMNS = 40
PNG_MAX_TOKENS = 200

# --------------------------------------------------------------------------------------------- input helpers


def _methods(exp: dict[str, Any]) -> list[str]:
    methods = exp.get("methods")
    if methods is None:
        tokens = exp.get("tokens") or []
        methods = list(tokens[0].get("scores", {})) if tokens else []
    return [str(m) for m in methods]


def _is_signed(exp: dict[str, Any], method: str) -> bool:
    return bool((exp.get("signed") or {}).get(method, False))


def _score(token: dict[str, Any], method: str) -> float | None:
    """The token's score for ``method``, or None when missing or not a finite number."""
    value = (token.get("scores") or {}).get(method)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _scores(exp: dict[str, Any], method: str) -> list[float | None]:
    return [_score(tok, method) for tok in exp.get("tokens") or []]


@dataclass(frozen=True)
class Segment:
    """A piece of the original text: a token span (``token`` = its index) or the characters between tokens."""

    text: str
    token: int | None
    start: int
    end: int


def segments(exp: dict[str, Any]) -> list[Segment]:
    """Split ``exp["text"]`` into token spans and the gaps between them, in order.

    Concatenating the ``text`` of all segments gives back the original text exactly. Tokens whose span is empty
    (special tokens such as ``[CLS]``) or overlaps an earlier token are clamped and come out as empty segments,
    so every token still has exactly one segment. After the last token the rest of the text (for truncated
    inputs: the unscored tail) is one gap segment; with ``head+tail`` truncation the unread middle is the gap
    between two tokens.
    """
    text: str = exp.get("text", "")
    n = len(text)
    out: list[Segment] = []
    cursor = 0
    for i, tok in enumerate(exp.get("tokens") or []):
        start = min(max(int(tok.get("start", cursor)), cursor), n)
        end = min(max(int(tok.get("end", start)), start), n)
        if start > cursor:
            out.append(Segment(text[cursor:start], None, cursor, start))
        out.append(Segment(text[start:end], i, start, end))
        cursor = end
    if cursor < n:
        out.append(Segment(text[cursor:], None, cursor, n))
    return out


def reconstruct_text(exp: dict[str, Any]) -> str:
    """The text rebuilt from token spans and the characters between them (equals ``exp["text"]``)."""
    return "".join(seg.text for seg in segments(exp))


def _token_label(exp: dict[str, Any], i: int) -> str:
    """A short display label for token ``i``: its source span, else its token text (special tokens)."""
    tok = (exp.get("tokens") or [])[i]
    text: str = exp.get("text", "")
    start, end = int(tok.get("start", 0)), int(tok.get("end", 0))
    span = text[start:end] if 0 <= start < end <= len(text) else ""
    label = span if span.strip() else str(tok.get("text", "")) or span
    label = label.replace("\n", "⏎").replace("\r", "").replace("\t", " ")
    return label if label.strip() else "␣"


# ---------------------------------------------------------------------------------------------- colour scale


def intensities(exp: dict[str, Any], method: str) -> list[float]:
    """Each token's display intensity for ``method`` on the shared scale (:mod:`attnkit.explain.scale`):
    in ``[0, 1]``, or ``[-1, 1]`` for signed methods."""
    return explanation_scale(exp, method).intensities(_scores(exp, method))


def score_rgb(intensity: float, signed: bool) -> tuple[int, int, int]:
    """Background colour for an intensity: white at 0, the full hue at 1 (or -1 for signed methods)."""
    return intensity_rgb(intensity, signed)


def with_scale(exp: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``exp`` with ``scale`` (``{method: description}``) computed from its scores."""
    return {**exp, "scale": scales_json(exp)}


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_rgb(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background``."""
    lum = _luminance(background)
    return (0, 0, 0) if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else (255, 255, 255)


def _css_rgb(rgb: tuple[int, int, int]) -> str:
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3g}" if signed else f"{value:.3g}"


# ------------------------------------------------------------------------------------------------- terminal


def _probabilities(exp: dict[str, Any]) -> list[tuple[str, float]]:
    probs = exp.get("probabilities") or {}
    items = [(str(k), float(v)) for k, v in probs.items() if isinstance(v, int | float)]
    return sorted(items, key=lambda kv: -kv[1])


def _plain_console(console: Console) -> bool:
    return console.color_system is None or bool(console.no_color)


# Colour names of the 16-colour terminal palette per hue: the text colour of the weak bin, and the background
# (with a readable text colour) of the strong one. Named ANSI colours, so what is drawn is what the legend shows.
_ANSI_HUES = {"unsigned": "yellow", "positive": "red", "negative": "blue"}
_ANSI_TEXT = {"yellow": "black", "red": "bright_white", "blue": "bright_white"}


def terminal_bins(console: Console) -> int:
    """Colour bins (per sign) the terminal draws: 3 with 256 or more colours, 2 in a 16-colour terminal."""
    return 3 if console.color_system in ("256", "truecolor") else 2


def _bin_style(kind: str, level: int, bins: int, ansi: bool) -> Style:
    """The style of bin ``level`` (``-bins .. bins``, 0 = no colour) on a scale of ``kind``."""
    if level == 0:
        return Style()
    if ansi:
        hue = _ANSI_HUES["unsigned" if kind != "diverging" else ("positive" if level > 0 else "negative")]
        if abs(level) < bins:
            return Style(color=hue)
        return Style(color=_ANSI_TEXT[hue], bgcolor=hue)
    # the colour at the bin's upper edge, so the strongest bin is the full hue
    bg = intensity_rgb(level / bins, kind == "diverging")
    return Style(bgcolor=_css_rgb(bg), color=_css_rgb(text_rgb(bg)))


class _TerminalScale:
    """One method's scale in one text as the terminal draws it: bins, one style per bin, and the legend."""

    def __init__(self, exp: dict[str, Any], method: str, console: Console) -> None:
        self.scale = explanation_scale(exp, method)
        self.bins = terminal_bins(console)
        self.ansi = console.color_system not in ("256", "truecolor")
        self.target = str(exp.get("target", exp.get("label", "")))

    def style(self, score: float | None) -> Style:
        return _bin_style(self.scale.kind, self.scale.bin(score, self.bins), self.bins, self.ansi)

    def level_style(self, level: int) -> Style:
        return _bin_style(self.scale.kind, level, self.bins, self.ansi)

    def _middle(self, level: int) -> str:
        """A middle swatch: blank when it is a background colour, else (coloured text) the bin's bound."""
        if not self.ansi:
            return "   "
        bound = compact(self.scale.edge(abs(level) / self.bins))
        return f" ≤{bound} " if level > 0 else f" ≥−{bound} "

    def legend(self) -> Text:
        """Swatches drawn in the bins' own styles, from no colour (or the most negative) to the full hue."""
        sc, bins = self.scale, self.bins
        out = Text()
        out.append("scale: ", style="dim")
        if sc.kind == "ratio":
            out.append(" ≤×1 (uniform) ")
            for level in range(1, bins + 1):
                low, high = sc.edge((level - 1) / bins), sc.edge(level / bins)
                label = f"×{low:.3g}–{high:.3g}" if level < bins else f"≥×{low:.3g}"
                out.append(f" {label} ", style=self.level_style(level))
            out.append(" of uniform", style="dim")
        else:
            if sc.kind == "diverging":
                out.append(f" {sc.low_label()} ", style=self.level_style(-bins))
                for level in range(-bins + 1, 0):
                    out.append(self._middle(level), style=self.level_style(level))
            out.append(" 0 ")
            for level in range(1, bins):
                out.append(self._middle(level), style=self.level_style(level))
            out.append(f" {sc.high_label()} ", style=self.level_style(bins))
        out.append(f"  {sc.summary(self.target)}", style="dim")
        return out


def render_terminal(
    explanations: list[dict[str, Any]], console: Console | None = None, *, top_k: int = 5
) -> None:
    """Print each explanation: label and probabilities, then per method the original text highlighted by score,
    its ``top_k`` strongest tokens and the method's colour legend.

    With colour, tokens are shaded in a few bins of the shared scale (:mod:`attnkit.explain.scale`): 3 per sign
    with 256 or more colours, 2 in a 16-colour terminal (named ANSI colours: weak = coloured text, strong =
    coloured background). The legend is drawn with the same styles, so it shows exactly the colours used.
    Without colour (``no_color`` or output that is not a terminal) the ``top_k`` strongest coloured tokens are
    marked in the text instead: ``[token]`` for unsigned methods, ``[+token]`` / ``[-token]`` for signed ones.
    """
    console = console or Console()
    plain = _plain_console(console)
    for number, exp in enumerate(explanations, 1):
        console.print(_terminal_header(exp, number))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for method in _methods(exp):
            scale = _TerminalScale(exp, method, console)
            kind = KIND_LABELS[scale.scale.kind]
            grid.add_row(
                Text.assemble(method, (f" {kind}", "dim")), _terminal_text(exp, method, scale, plain, top_k)
            )
            grid.add_row("", _terminal_top(exp, method, scale, plain, top_k))
            if plain:
                grid.add_row(
                    "", Text(f"scale: {scale.scale.summary(scale.target, colours=False)}", style="dim")
                )
            else:
                grid.add_row("", scale.legend())
        console.print(grid)
        console.print()


def _terminal_header(exp: dict[str, Any], number: int) -> Text:
    label = str(exp.get("label", "?"))
    target = str(exp.get("target", label))
    header = Text(f"#{number} ", style="bold")
    header.append(label, style="bold green")
    if target != label:
        header.append(f" (explaining {target})", style="yellow")
    probs = _probabilities(exp)
    if probs:
        header.append("  ")
        header.append(" · ".join(f"{name} {p:.3f}" for name, p in probs), style="dim")
    if exp.get("truncated"):
        header.append("  [truncated: only the scored tokens were read]", style="yellow")
    return header


def _terminal_text(exp: dict[str, Any], method: str, scale: _TerminalScale, plain: bool, top_k: int) -> Text:
    signed = scale.scale.signed
    scores = _scores(exp, method)
    marked = set(_top_tokens(scale.scale, scores, top_k)) if plain else set()
    out = Text()
    unread = unread_spans_of(exp)
    for seg in segments(exp):
        if seg.token is None:
            out.append(seg.text, style="dim" if _is_unread(seg, unread) else "")
            continue
        shown = seg.text or _token_label(exp, seg.token)
        score = scores[seg.token]
        if plain:
            if seg.token in marked:
                sign = ("+" if (score or 0.0) >= 0 else "-") if signed else ""
                out.append(f"[{sign}{shown}]")
            elif seg.text:
                out.append(seg.text)
            continue
        if not seg.text and scale.scale.bin(score, scale.bins) == 0:
            continue  # a special token without a span is shown only when it is coloured
        out.append(shown, style=scale.style(score))
    return out


def unread_spans_of(exp: dict[str, Any]) -> list[tuple[int, int]]:
    """The spans of ``exp["text"]`` its model did not read: its ``unread`` field, or for files written before
    that field, the same rule applied to its text and token offsets (:func:`~attnkit.explain.unread.unread_gaps`)."""
    if not exp.get("truncated"):
        return []
    if isinstance(exp.get("unread"), list):
        return [(int(start), int(end)) for start, end in exp["unread"]]
    tokens = exp.get("tokens") or []
    return unread_gaps(str(exp.get("text", "")), [(int(t["start"]), int(t["end"])) for t in tokens])


def with_unread(exp: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``exp`` with its ``unread`` spans (:func:`unread_spans_of`), for the page's script."""
    return {**exp, "unread": [[start, end] for start, end in unread_spans_of(exp)]}


def _with_derived(exp: dict[str, Any]) -> dict[str, Any]:
    """``exp`` with what renderers derive rather than trust: its ``scale`` and its ``unread`` spans."""
    return with_unread(with_scale(exp))


def _is_unread(seg: Segment, unread: Sequence[tuple[int, int]]) -> bool:
    """True for a gap segment that overlaps text the model did not read (every other character is in a token)."""
    return seg.token is None and any(start < seg.end and seg.start < end for start, end in unread)


def _top_tokens(scale: MethodScale, scores: Sequence[float | None], k: int) -> list[int]:
    """Indices of the ``k`` strongest coloured tokens: highest score, or largest magnitude when signed (for
    attention: only tokens above uniform)."""
    strength = [abs(v) if scale.signed else v for v in (s if s is not None else 0.0 for s in scores)]
    ranked = sorted(range(len(scores)), key=lambda i: (-strength[i], i))
    return [i for i in ranked if scale.intensity(scores[i]) != 0][:k]


def _terminal_top(exp: dict[str, Any], method: str, scale: _TerminalScale, plain: bool, top_k: int) -> Text:
    sc = scale.scale
    scores = _scores(exp, method)
    out = Text()
    out.append("top: ", style="dim")
    top = _top_tokens(sc, scores, top_k)
    if not top:
        if sc.max_abs == 0:
            out.append("(all scores are zero)", style="dim")
        else:  # attention that is nowhere above uniform
            out.append("(no token above uniform)", style="dim")
    for n, i in enumerate(top):
        if n:
            out.append(" · ", style="dim")
        label = _token_label(exp, i)
        out.append(label, style="" if plain else scale.style(scores[i]))
        value = scores[i]
        note = f" {_fmt(value, sc.signed)}"
        if sc.kind == "ratio" and value is not None and sc.total:
            note += f" (×{value * sc.units / sc.total:.2g})"
        out.append(note, style="dim")
    return out


# ------------------------------------------------------------------------------------------------------ JSON


def _json_safe(obj: Any) -> Any:
    """A copy with non-finite floats replaced by None, so the result is valid JSON (JSON.parse rejects NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return _json_safe(obj.tolist())
    return obj


def render_json(explanations: list[dict[str, Any]]) -> str:
    """The explanations as pretty JSON (UTF-8 text kept as is; NaN/inf written as null), each with its
    ``scale`` recomputed from its scores and its ``unread`` spans (derived for files written without them)."""
    data = [_with_derived(exp) for exp in explanations]
    return json.dumps(_json_safe(data), ensure_ascii=False, indent=2)


# ------------------------------------------------------------------------------------------------------ HTML

_ESCAPES_IN_SCRIPT = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _script_json(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``</script>``, ``<!--`` or ``&``."""
    text = json.dumps(_json_safe(data), ensure_ascii=False, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _ESCAPES_IN_SCRIPT[m.group(0)], text)


def _round_layers(exp: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    """The explanation with attention weights rounded (keeps the embedded page small)."""
    layers = exp.get("layers")
    if not layers or "attention" not in layers:
        return exp
    rounded = np.round(np.asarray(layers["attention"], dtype=np.float64), digits).tolist()
    return {**exp, "layers": {**layers, "attention": rounded}}


def _check_layers(exp: dict[str, Any]) -> None:
    """Raise ValueError unless ``exp["layers"]["attention"]`` is a [layer][head][i][j] array, one i and j per token."""
    layers = exp.get("layers")
    if not layers:
        raise ValueError(
            "this explanation has no attention layers (layers is null); the head and model views need a "
            "transformer model explained with --layers"
        )
    attention = layers.get("attention") if isinstance(layers, dict) else None
    n = len(exp.get("tokens") or [])
    try:
        shape = np.asarray(attention, dtype=np.float64).shape
    except (ValueError, TypeError):
        shape = None  # ragged: find where below
    if shape is not None and len(shape) == 4 and shape[0] > 0 and shape[1] > 0 and shape[2:] == (n, n):
        return
    if not isinstance(attention, list) or not attention or not attention[0]:
        raise ValueError('layers["attention"] must be a non-empty array A[layer][head][i][j]')
    heads = len(attention[0])
    for li, layer in enumerate(attention):
        if len(layer) != heads:
            raise ValueError(f"layer {li} has {len(layer)} heads, layer 0 has {heads}")
        for hi, head in enumerate(layer):
            if len(head) != n or any(len(row) != n for row in head):
                raise ValueError(
                    f"attention of layer {li} head {hi} is not {n} x {n} (one row and column per token)"
                )
    raise ValueError(f'layers["attention"] has shape {shape}, expected (layers, heads, {n}, {n})')


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _inline_script(code: str) -> str:
    # An inline script ends at the first "</script" whatever the context; the assets never contain it.
    if "</script" in code.lower():
        raise ValueError("inline script contains </script")
    return f"<script>\n{code}\n</script>"


def _page(title: str, body: str, data: list[dict[str, Any]], boot: str) -> str:
    return _page_html(title, [_asset("attnkit-viz.css")], body, data, [_asset("attnkit-viz.js"), boot])


def _page_html(
    title: str, styles: Sequence[str], body: str, data: list[dict[str, Any]], scripts: Sequence[str]
) -> str:
    """A standalone page: ``styles`` inlined in one ``<style>``, the explanations as ``#attnkit-data`` JSON,
    then each of ``scripts`` inlined (the text, image and audio pages)."""
    style = "\n".join(styles)
    inlined = "".join(f"{_inline_script(code)}\n" for code in scripts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{style}\n</style>\n"
        "</head>\n<body>\n"
        f'<div class="ak-page">\n<h1 class="ak-page-title">{html.escape(title)}</h1>\n{body}\n</div>\n'
        f'<script type="application/json" id="attnkit-data">{_script_json(data)}</script>\n'
        f"{inlined}"
        "</body>\n</html>\n"
    )


def _attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_header(exp: dict[str, Any], number: int) -> str:
    meta = [_target_meta(exp)]
    if exp.get("truncated"):
        meta.append(
            '<span class="ak-truncated">truncated: only the scored tokens were read; '
            "the rest of the text is grey</span>"
        )
    return _header_markup(exp, number, meta)


def _target_meta(exp: dict[str, Any]) -> str:
    target = str(exp.get("target", exp.get("label", "?")))
    return f'target <b class="ak-target">{html.escape(target)}</b>'


def _header_markup(exp: dict[str, Any], number: int, meta: Sequence[str]) -> str:
    """A page's header of one explanation (text, image or audio): the predicted label, ``meta`` joined by
    `` · ``, and a bar per class probability."""
    label = str(exp.get("label", "?"))
    rows = "".join(
        f'<tr><th scope="row">{html.escape(name)}</th><td class="ak-prob-bar">'
        f'<span style="width: {max(0.0, min(p, 1.0)) * 100:.1f}%"></span></td>'
        f'<td class="ak-prob-value">{p:.3f}</td></tr>'
        for name, p in _probabilities(exp)
    )
    return (
        '<header class="ak-header">'
        f'<h2 class="ak-title">#{number} predicted <span class="ak-label">{html.escape(label)}</span></h2>'
        f'<div class="ak-meta">{" · ".join(meta)}</div>'
        f'<table class="ak-probs">{rows}</table>'
        "</header>"
    )


def tokens_html(exp: dict[str, Any], method: str) -> str:
    """The original text as HTML with each token's background coloured by ``method``'s score on the shared
    scale (inline styles, so it reads right without the page's CSS); hovering shows the exact score."""
    signed = _is_signed(exp, method)
    scores = _scores(exp, method)
    shade = intensities(exp, method)
    pieces = []
    unread = unread_spans_of(exp)
    for seg in segments(exp):
        if seg.token is None:
            cls = "ak-gap ak-unscored" if _is_unread(seg, unread) else "ak-gap"
            pieces.append(f'<span class="{cls}">{html.escape(seg.text)}</span>')
            continue
        i = seg.token
        bg = score_rgb(shade[i], signed)
        fg = text_rgb(bg)
        value = scores[i]
        shown = seg.text if seg.text else _token_label(exp, i)
        classes = "ak-tok" if seg.text else "ak-tok ak-special"
        score_text = "n/a" if value is None else js_number(value)
        pieces.append(
            f'<span class="{classes}" data-i="{i}" data-score="{_attr(score_text)}" '
            f'style="background-color: {_css_rgb(bg)}; color: {_css_rgb(fg)}" '
            f'title="{_attr(_token_label(exp, i))} · {_attr(method)} = {_attr(score_text)}">'
            f"{html.escape(shown)}</span>"
        )
    return "".join(pieces)


def _legend_gradient(kind: str) -> str:
    if kind == "diverging":
        stops = [NEGATIVE_RGB, (255, 255, 255), POSITIVE_RGB]
    else:
        stops = [(255, 255, 255), UNSIGNED_RGB]
    return f"linear-gradient(to right, {', '.join(_css_rgb(c) for c in stops)})"


def legend_html(exp: dict[str, Any], method: str) -> str:
    """The colour legend of ``method`` in this text (the same markup as ``legend`` in attnkit-viz.js): the scale's
    ends, a bar in its colours and a note (for attention: how far it is from uniform)."""
    sc = explanation_scale(exp, method)
    return _legend_markup(sc, sc.summary(str(exp.get("target", exp.get("label", "")))))


def _legend_markup(sc: MethodScale, note: str) -> str:
    """A legend (text, image or audio page): the scale's ends, a bar in its colours and ``note``."""
    return (
        f'<div class="ak-legend ak-legend-{sc.kind}" data-kind="{sc.kind}">'
        f'<span class="ak-legend-end ak-legend-low">{html.escape(sc.low_label())}</span>'
        f'<span class="ak-legend-bar" style="background: {_legend_gradient(sc.kind)}"></span>'
        f'<span class="ak-legend-end ak-legend-high">{html.escape(sc.high_label())}</span>'
        f'<span class="ak-legend-note">{html.escape(note)}</span></div>'
    )


def _html_explanation(exp: dict[str, Any], index: int) -> str:
    rows = []
    for method in _methods(exp):
        signed = _is_signed(exp, method)
        kind = KIND_LABELS[explanation_scale(exp, method).kind]
        rows.append(
            f'<div class="ak-method" data-method="{_attr(method)}" data-signed="{str(signed).lower()}">'
            f'<div class="ak-method-name">{html.escape(method)} <span class="ak-kind">{kind}</span></div>'
            f'<div class="ak-text">{tokens_html(exp, method)}</div>'
            f"{legend_html(exp, method)}</div>"
        )
    views = ""
    if exp.get("layers"):
        _check_layers(exp)
        views = f'<div class="ak-layers" data-ak-views="{index}"></div>'
    return (
        f'<section class="ak-explanation" data-index="{index}">'
        f"{_html_header(exp, index + 1)}"
        f'<div class="ak-methods">{"".join(rows)}</div>{views}</section>'
    )


def render_html(explanations: list[dict[str, Any]], title: str = "attnkit explanation") -> str:
    """One standalone HTML page (CSS and JS inlined, no external URL) for all explanations.

    The highlighted texts are plain HTML (readable without JavaScript); the script adds hover tooltips and,
    for explanations with ``layers``, the head view and the model view.
    """
    body = "\n".join(_html_explanation(exp, i) for i, exp in enumerate(explanations))
    data = [_with_derived(_round_layers(exp)) for exp in explanations]
    return _page(title, body, data, "window.attnkit.enhance(document);")


def head_view_html(explanation: dict[str, Any]) -> str:
    """A standalone page with the head view (attention lines between tokens) of a transformer explanation."""
    _check_layers(explanation)
    body = '<div class="ak-standalone" id="ak-view"></div>'
    boot = (
        "var data = window.attnkit.loadData(document);\n"
        "window.attnkit.renderHeadView(document.getElementById('ak-view'), data[0]);"
    )
    return _page("attnkit head view", body, [_with_derived(_round_layers(explanation))], boot)


def model_view_html(explanation: dict[str, Any]) -> str:
    """A standalone page with the model view (all layers x heads); clicking a cell opens it in a head view."""
    _check_layers(explanation)
    body = '<div class="ak-standalone" id="ak-view"></div>'
    boot = (
        "var data = window.attnkit.loadData(document);\n"
        "window.attnkit.renderLayerViews(document.getElementById('ak-view'), data[0], "
        "{modelViewFirst: true});"
    )
    return _page("attnkit model view", body, [_with_derived(_round_layers(explanation))], boot)


# ------------------------------------------------------------------------------------------------------- PNG

_PNG_LEGEND_CELLS = 9  # colour steps in each row's legend bar


def _png_label(exp: dict[str, Any], i: int, limit: int = 16) -> str:
    label = _token_label(exp, i)
    if len(label) > limit:
        label = label[: limit - 1] + "…"
    return label.replace("$", r"\$")  # no mathtext


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def prediction_title(exp: dict[str, Any]) -> str:
    """``predicted LABEL (p)[, explaining TARGET]``: the first line of every rendered explanation."""
    label = str(exp.get("label", "?"))
    title = f"predicted {label}"
    probs = dict(_probabilities(exp))
    if label in probs:
        title += f" ({probs[label]:.3f})"
    target = str(exp.get("target", label))
    if target != label:
        title += f", explaining {target}"
    return title


def _png_title(exp: dict[str, Any], n_tokens: int, n_shown: int, scales: dict[str, MethodScale]) -> str:
    title = prediction_title(exp)
    notes = []
    if n_tokens > n_shown:
        notes.append(f"showing the first {n_shown} of {n_tokens} tokens")
    if exp.get("truncated"):
        notes.append("input truncated by the model")
    if notes:
        title += "\n" + "; ".join(notes)
    for m, sc in scales.items():
        if sc.kind == "ratio" and sc.max_ratio is not None and sc.concentration is not None:
            title += (
                f"\n{m}: peak ×{sc.max_ratio:.3g} of uniform (1/{sc.units}), "
                f"concentration {sc.concentration:.2f} (0 = uniform, 1 = one token)"
            )
    return title.replace("$", r"\$")


def _png_legend(ax: Any, methods: list[str], scales: dict[str, MethodScale]) -> None:
    """Per method row: a bar in the row's colours from its lowest to its highest intensity, ends labelled."""
    cells = _PNG_LEGEND_CELLS
    image = np.ones((len(methods), cells, 3))
    for r, m in enumerate(methods):
        sc = scales[m]
        steps = np.linspace(-1.0 if sc.signed else 0.0, 1.0, cells)
        for c, t in enumerate(steps):
            image[r, c] = np.array(intensity_rgb(float(t), sc.kind)) / 255
        for x, t, text, ha in (
            (-0.4, steps[0], sc.low_label(), "left"),
            (cells - 0.6, 1.0, sc.high_label(), "right"),
        ):
            fg = np.array(text_rgb(intensity_rgb(float(t), sc.kind))) / 255
            ax.text(x, r, text.replace("$", r"\$"), ha=ha, va="center", fontsize=6.5, color=fg)
    ax.imshow(
        image, aspect="auto", interpolation="nearest", extent=(-0.5, cells - 0.5, len(methods) - 0.5, -0.5)
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("colour scale", fontsize=7, color="#555555")
    for spine in ax.spines.values():
        spine.set_color("#cccccc")


def render_png(explanation: dict[str, Any], path: str | Path, methods: list[str] | None = None) -> None:
    """Write a heatmap PNG: one row per method, one column per token, coloured with the shared scale, and a
    legend bar per method (for attention: ratio to uniform, and the title says how far it is from uniform).

    Texts longer than ``PNG_COLUMNS`` tokens wrap into several blocks stacked vertically; at most
    ``PNG_MAX_TOKENS`` tokens are drawn and the title says so when tokens were left out. CJK text uses an
    installed CJK font (:mod:`attnkit.fonts`); without one a warning says which package to install.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from attnkit.fonts import font_context

    exp = explanation
    methods = list(methods) if methods is not None else _methods(exp)
    unknown = [m for m in methods if m not in _methods(exp)]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; this explanation has {_methods(exp)}")
    n_tokens = len(exp.get("tokens") or [])
    shown = list(range(min(n_tokens, PNG_MAX_TOKENS)))
    blocks = list(_chunks(shown, PNG_COLUMNS)) or [[]]
    columns = max(len(b) for b in blocks)
    scales = {m: explanation_scale(exp, m) for m in methods}
    shade = {m: scales[m].intensities(_scores(exp, m)) for m in methods}
    raw = {m: _scores(exp, m) for m in methods}
    annotate = columns <= 25 and len(methods) <= 8
    title = _png_title(exp, n_tokens, len(shown), scales)
    labels = [_png_label(exp, i) for i in shown]

    cell_w, cell_h, label_h, legend_w = 0.42, 0.42, 1.0, 2.0
    heat_w = max(columns, 4) * cell_w
    width = 1.8 + heat_w + legend_w + 0.3
    block_h = max(len(methods), 1) * cell_h + label_h
    footer_h = 0.4
    height = 0.55 + 0.17 * title.count("\n") + len(blocks) * block_h + footer_h
    target = str(exp.get("target", exp.get("label", "?")))

    with font_context([title, target, *labels]):
        fig = Figure(figsize=(width, height), dpi=100)
        FigureCanvasAgg(fig)
        fig.suptitle(title, fontsize=10)
        spec = fig.add_gridspec(len(blocks), 2, width_ratios=[heat_w, legend_w])
        for b, block in enumerate(blocks):
            ax = fig.add_subplot(spec[b, 0])
            image = np.full((len(methods), columns, 3), 1.0)
            for r, m in enumerate(methods):
                for c, i in enumerate(block):
                    image[r, c] = np.array(score_rgb(shade[m][i], scales[m].signed)) / 255
            ax.imshow(
                image,
                aspect="auto",
                interpolation="nearest",
                extent=(-0.5, columns - 0.5, len(methods) - 0.5, -0.5),
            )
            ax.set_yticks(range(len(methods)))
            ax.set_yticklabels([f"{m} {KIND_LABELS[scales[m].kind]}" for m in methods], fontsize=8)
            ax.set_xticks(range(len(block)))
            short = all(len(labels[i]) <= 2 for i in block)  # e.g. CJK characters: upright
            ax.set_xticklabels(
                [labels[i] for i in block],
                rotation=0 if short else 60,
                ha="center" if short else "right",
                fontsize=8,
            )
            ax.set_xlim(-0.5, columns - 0.5)
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if annotate:
                for r, m in enumerate(methods):
                    for c, i in enumerate(block):
                        value = raw[m][i]
                        if value is None:
                            continue
                        fg = np.array(text_rgb(score_rgb(shade[m][i], scales[m].signed))) / 255
                        ax.text(c, r, f"{value:.2g}", ha="center", va="center", fontsize=6, color=fg)
            if b == 0 and methods:  # one legend, beside the first block
                _png_legend(fig.add_subplot(spec[0, 1]), methods, scales)
        fig.text(
            0.01,
            0.1 / height,
            f"× uniform: weight × T, white at or below uniform, full colour from ×{RATIO_CAP:g} · signed: red "
            f"supports {target}, blue is against it, scaled to the text's max |score| · unsigned: scaled to the "
            "text's max".replace("$", r"\$"),
            fontsize=7,
            color="#555555",
            wrap=True,
        )
        fig.tight_layout(rect=(0, footer_h / height, 1, 1))
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))  # folders are created
