"""Renderers for explanation JSON: terminal (rich), standalone HTML, PNG heatmap and JSON.

Every function takes plain explanation dicts in the format of ``docs/explanation-format.md`` (no torch needed):
``text``, ``label``, ``target``, ``probabilities``, ``methods``, ``signed``, ``tokens`` (``text``, ``start``,
``end``, ``scores``), ``truncated`` and ``layers`` (``None`` or ``{"attention": A[layer][head][i][j]}``).

Colour scale (shared with ``assets/attnkit-viz.js``, which implements the same formulas):
scores are normalized per method per text by the largest absolute score, so the strongest token gets the full
colour and a zero score stays white. Unsigned methods (attention, rollout, gradient norm) use one sequential
orange scale; signed methods use red for scores that support the target class and blue for scores against it.
"""

from __future__ import annotations

import html
import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

__all__ = [
    "NEGATIVE_RGB",
    "POSITIVE_RGB",
    "UNSIGNED_RGB",
    "Segment",
    "head_view_html",
    "js_number",
    "model_view_html",
    "normalize_scores",
    "reconstruct_text",
    "render_html",
    "render_json",
    "render_png",
    "render_terminal",
    "score_rgb",
    "segments",
    "text_rgb",
]

UNSIGNED_RGB = (230, 85, 13)  # sequential scale for non-negative scores (white -> orange)
POSITIVE_RGB = (214, 39, 40)  # signed: supports the target class (white -> red)
NEGATIVE_RGB = (31, 119, 180)  # signed: speaks against the target class (white -> blue)
_ASSETS = Path(__file__).resolve().parent / "assets"

# PNG layout limits: tokens per heatmap row block, and tokens drawn at all.
PNG_COLUMNS = 40
PNG_MAX_TOKENS = 200

# Fonts tried, in order, for CJK and other non-Latin glyphs in the PNG; DejaVu Sans stays first for Latin.
_FALLBACK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Arial Unicode MS",
)


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
    inputs: the unscored tail) is one gap segment.
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


def normalize_scores(scores: Sequence[float | None], signed: bool) -> list[float]:
    """Scale scores into [0, 1] (unsigned) or [-1, 1] (signed) by the largest absolute score.

    Missing or non-finite scores become 0; unsigned negatives (which should not occur) are clipped to 0.
    All-zero scores stay zero (no division by zero).
    """
    values = [v if v is not None and math.isfinite(v) else 0.0 for v in scores]
    if not signed:
        values = [max(v, 0.0) for v in values]
    peak = max((abs(v) for v in values), default=0.0)
    if peak <= 0.0:
        return [0.0] * len(values)
    return [v / peak for v in values]


def score_rgb(intensity: float, signed: bool) -> tuple[int, int, int]:
    """Background colour for a normalized score: white at 0, the full hue at 1 (or -1 for signed)."""
    if not math.isfinite(intensity):
        intensity = 0.0
    if signed:
        base = POSITIVE_RGB if intensity >= 0 else NEGATIVE_RGB
    else:
        base = UNSIGNED_RGB
        intensity = max(intensity, 0.0)
    t = min(abs(intensity), 1.0)
    # floor(x + 0.5) rather than round(): the same half-up rounding as Math.round in attnkit-viz.js
    r, g, b = (math.floor(255 + (c - 255) * t + 0.5) for c in base)
    return (r, g, b)


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


def js_number(value: float) -> str:
    """``value`` written as JavaScript's ``String(value)`` writes it: the shortest digits that round-trip.

    The pages show scores this way whether Python or attnkit-viz.js rendered them (``1`` not ``1.0``,
    ``0.00001`` not ``1e-05``).
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    m = re.fullmatch(r"(\d+)(?:\.(\d*))?(?:e([+-]\d+))?", repr(abs(value)))
    assert m is not None
    whole, frac, exp = m.group(1), m.group(2) or "", int(m.group(3) or 0)
    all_digits = whole + frac
    digits = all_digits.lstrip("0")
    point = len(whole) + exp - (len(all_digits) - len(digits))  # value = 0.<digits> * 10**point
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        out = digits + "0" * (point - k)
    elif 0 < point <= 21:
        out = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        out = "0." + "0" * -point + digits
    else:
        e = point - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        out = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + out


def _top_tokens(scores: Sequence[float | None], signed: bool, k: int) -> list[int]:
    """Indices of the ``k`` strongest tokens: highest score, or largest magnitude when signed."""
    scored = [i for i, v in enumerate(scores) if v is not None]

    def strength(i: int) -> float:
        v = scores[i]
        assert v is not None
        return abs(v) if signed else v

    ranked = sorted(scored, key=lambda i: (-strength(i), i))
    return [i for i in ranked[:k] if strength(i) > 0]


# ------------------------------------------------------------------------------------------------- terminal


def _probabilities(exp: dict[str, Any]) -> list[tuple[str, float]]:
    probs = exp.get("probabilities") or {}
    items = [(str(k), float(v)) for k, v in probs.items() if isinstance(v, int | float)]
    return sorted(items, key=lambda kv: -kv[1])


def _plain_console(console: Console) -> bool:
    return console.color_system is None or bool(console.no_color)


def render_terminal(
    explanations: list[dict[str, Any]], console: Console | None = None, *, top_k: int = 5
) -> None:
    """Print each explanation: label and probabilities, then per method the original text highlighted by score
    and its ``top_k`` strongest tokens.

    With colour, token backgrounds follow the shared colour scale. Without colour (``no_color`` or output that
    is not a terminal) the ``top_k`` strongest tokens are marked in the text instead: ``[token]`` for unsigned
    methods, ``[+token]`` / ``[-token]`` for signed ones.
    """
    console = console or Console()
    plain = _plain_console(console)
    if not plain:
        console.print(
            Text.assemble(
                ("colours: ", "dim"),
                ("unsigned", Style(bgcolor=_css_rgb(UNSIGNED_RGB))),
                (" white→orange, darkest = highest score in the text; signed ", "dim"),
                ("supports", Style(bgcolor=_css_rgb(POSITIVE_RGB))),
                (" / ", "dim"),
                ("against", Style(bgcolor=_css_rgb(NEGATIVE_RGB))),
                (" the target", "dim"),
            )
        )
    for number, exp in enumerate(explanations, 1):
        console.print(_terminal_header(exp, number))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for method in _methods(exp):
            signed = _is_signed(exp, method)
            kind = "signed" if signed else "≥0"
            grid.add_row(
                Text.assemble(method, (f" {kind}", "dim")), _terminal_text(exp, method, plain, top_k)
            )
            grid.add_row("", _terminal_top(exp, method, plain, top_k))
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
        header.append("  [truncated: only the first tokens are scored]", style="yellow")
    return header


def _terminal_text(exp: dict[str, Any], method: str, plain: bool, top_k: int) -> Text:
    signed = _is_signed(exp, method)
    scores = _scores(exp, method)
    norm = normalize_scores(scores, signed)
    marked = set(_top_tokens(scores, signed, top_k)) if plain else set()
    out = Text()
    for seg in segments(exp):
        if seg.token is None:
            out.append(seg.text, style="dim" if seg.start > 0 and _after_last(exp, seg) else "")
            continue
        shown = seg.text or _token_label(exp, seg.token)
        if plain:
            if seg.token in marked:
                value = scores[seg.token] or 0.0
                sign = ("+" if value >= 0 else "-") if signed else ""
                out.append(f"[{sign}{shown}]")
            elif seg.text:
                out.append(seg.text)
            continue
        if not seg.text and norm[seg.token] == 0:
            continue  # a special token without a span is shown only when it carries weight
        bg = score_rgb(norm[seg.token], signed)
        out.append(shown, style=Style(bgcolor=_css_rgb(bg), color=_css_rgb(text_rgb(bg))))
    return out


def _after_last(exp: dict[str, Any], seg: Segment) -> bool:
    """True for the unscored tail of a truncated text."""
    return bool(exp.get("truncated")) and seg.end == len(exp.get("text", ""))


def _terminal_top(exp: dict[str, Any], method: str, plain: bool, top_k: int) -> Text:
    signed = _is_signed(exp, method)
    scores = _scores(exp, method)
    norm = normalize_scores(scores, signed)
    out = Text()
    out.append("top: ", style="dim")
    top = _top_tokens(scores, signed, top_k)
    if not top:
        out.append("(all scores are zero)", style="dim")
    for n, i in enumerate(top):
        if n:
            out.append(" · ", style="dim")
        label = _token_label(exp, i)
        if plain:
            out.append(label)
        else:
            bg = score_rgb(norm[i], signed)
            out.append(label, style=Style(bgcolor=_css_rgb(bg), color=_css_rgb(text_rgb(bg))))
        out.append(f" {_fmt(scores[i], signed)}", style="dim")
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
    """The explanations as pretty JSON (UTF-8 text kept as is; NaN/inf written as null)."""
    return json.dumps(_json_safe(explanations), ensure_ascii=False, indent=2)


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
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{_asset('attnkit-viz.css')}\n</style>\n"
        "</head>\n<body>\n"
        f'<div class="ak-page">\n<h1 class="ak-page-title">{html.escape(title)}</h1>\n{body}\n</div>\n'
        f'<script type="application/json" id="attnkit-data">{_script_json(data)}</script>\n'
        f"{_inline_script(_asset('attnkit-viz.js'))}\n"
        f"{_inline_script(boot)}\n"
        "</body>\n</html>\n"
    )


def _attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_header(exp: dict[str, Any], number: int) -> str:
    label = str(exp.get("label", "?"))
    target = str(exp.get("target", label))
    rows = "".join(
        f'<tr><th scope="row">{html.escape(name)}</th><td class="ak-prob-bar">'
        f'<span style="width: {max(0.0, min(p, 1.0)) * 100:.1f}%"></span></td>'
        f'<td class="ak-prob-value">{p:.3f}</td></tr>'
        for name, p in _probabilities(exp)
    )
    meta = [f'target <b class="ak-target">{html.escape(target)}</b>']
    if exp.get("truncated"):
        meta.append(
            '<span class="ak-truncated">truncated: only the first tokens were scored; '
            "the rest of the text is grey</span>"
        )
    return (
        '<header class="ak-header">'
        f'<h2 class="ak-title">#{number} predicted <span class="ak-label">{html.escape(label)}</span></h2>'
        f'<div class="ak-meta">{" · ".join(meta)}</div>'
        f'<table class="ak-probs">{rows}</table>'
        "</header>"
    )


def tokens_html(exp: dict[str, Any], method: str) -> str:
    """The original text as HTML with each token's background coloured by ``method``'s score (inline styles, so
    it reads right without the page's CSS); hovering shows the exact score."""
    signed = _is_signed(exp, method)
    scores = _scores(exp, method)
    norm = normalize_scores(scores, signed)
    truncated = bool(exp.get("truncated"))
    pieces = []
    for seg in segments(exp):
        if seg.token is None:
            tail = truncated and seg.end == len(exp.get("text", "")) and seg.start > 0
            cls = "ak-gap ak-unscored" if tail else "ak-gap"
            pieces.append(f'<span class="{cls}">{html.escape(seg.text)}</span>')
            continue
        i = seg.token
        bg = score_rgb(norm[i], signed)
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


def _html_legend(exp: dict[str, Any], method: str) -> str:
    signed = _is_signed(exp, method)
    scores = [v for v in _scores(exp, method) if v is not None]
    peak = max((abs(v) for v in scores), default=0.0)
    if signed:
        return (
            '<div class="ak-legend ak-legend-signed">'
            f'<span class="ak-legend-end">−{_fmt(peak)}</span>'
            '<span class="ak-legend-bar"></span>'
            f'<span class="ak-legend-end">+{_fmt(peak)}</span>'
            '<span class="ak-legend-note">blue: against the target · red: supports it</span></div>'
        )
    return (
        '<div class="ak-legend ak-legend-unsigned">'
        '<span class="ak-legend-end">0</span><span class="ak-legend-bar"></span>'
        f'<span class="ak-legend-end">{_fmt(peak)}</span>'
        '<span class="ak-legend-note">darkest = highest score in this text</span></div>'
    )


def _html_explanation(exp: dict[str, Any], index: int) -> str:
    rows = []
    for method in _methods(exp):
        signed = _is_signed(exp, method)
        kind = "signed" if signed else "unsigned"
        rows.append(
            f'<div class="ak-method" data-method="{_attr(method)}" data-signed="{str(signed).lower()}">'
            f'<div class="ak-method-name">{html.escape(method)} <span class="ak-kind">{kind}</span></div>'
            f'<div class="ak-text">{tokens_html(exp, method)}</div>'
            f"{_html_legend(exp, method)}</div>"
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
    data = [_round_layers(exp) for exp in explanations]
    return _page(title, body, data, "window.attnkit.enhance(document);")


def head_view_html(explanation: dict[str, Any]) -> str:
    """A standalone page with the head view (attention lines between tokens) of a transformer explanation."""
    _check_layers(explanation)
    body = '<div class="ak-standalone" id="ak-view"></div>'
    boot = (
        "var data = window.attnkit.loadData(document);\n"
        "window.attnkit.renderHeadView(document.getElementById('ak-view'), data[0]);"
    )
    return _page("attnkit head view", body, [_round_layers(explanation)], boot)


def model_view_html(explanation: dict[str, Any]) -> str:
    """A standalone page with the model view (all layers x heads); clicking a cell opens it in a head view."""
    _check_layers(explanation)
    body = '<div class="ak-standalone" id="ak-view"></div>'
    boot = (
        "var data = window.attnkit.loadData(document);\n"
        "window.attnkit.renderLayerViews(document.getElementById('ak-view'), data[0], "
        "{modelViewFirst: true});"
    )
    return _page("attnkit model view", body, [_round_layers(explanation)], boot)


# ------------------------------------------------------------------------------------------------------- PNG


def _font_families() -> list[str]:
    from matplotlib import font_manager

    available = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *[name for name in _FALLBACK_FONTS if name in available]]


def _png_label(exp: dict[str, Any], i: int, limit: int = 16) -> str:
    label = _token_label(exp, i)
    if len(label) > limit:
        label = label[: limit - 1] + "…"
    return label.replace("$", r"\$")  # no mathtext


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def render_png(explanation: dict[str, Any], path: str | Path, methods: list[str] | None = None) -> None:
    """Write a heatmap PNG: one row per method, one column per token, coloured with the shared scale.

    Texts longer than ``PNG_COLUMNS`` tokens wrap into several blocks stacked vertically; at most
    ``PNG_MAX_TOKENS`` tokens are drawn and the title says so when tokens were left out.
    """
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    exp = explanation
    methods = list(methods) if methods is not None else _methods(exp)
    unknown = [m for m in methods if m not in _methods(exp)]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; this explanation has {_methods(exp)}")
    n_tokens = len(exp.get("tokens") or [])
    shown = list(range(min(n_tokens, PNG_MAX_TOKENS)))
    blocks = list(_chunks(shown, PNG_COLUMNS)) or [[]]
    columns = max(len(b) for b in blocks)
    norm = {m: normalize_scores(_scores(exp, m), _is_signed(exp, m)) for m in methods}
    raw = {m: _scores(exp, m) for m in methods}
    annotate = columns <= 25 and len(methods) <= 8

    cell_w, cell_h, label_h = 0.42, 0.42, 1.0
    width = 1.8 + max(columns, 4) * cell_w
    block_h = max(len(methods), 1) * cell_h + label_h
    footer_h = 0.4
    height = 0.9 + len(blocks) * block_h + footer_h
    label = str(exp.get("label", "?"))
    title = f"predicted {label}"
    probs = dict(_probabilities(exp))
    if label in probs:
        title += f" ({probs[label]:.3f})"
    target = str(exp.get("target", label))
    if target != label:
        title += f", explaining {target}"
    notes = []
    if n_tokens > len(shown):
        notes.append(f"showing the first {len(shown)} of {n_tokens} tokens")
    if exp.get("truncated"):
        notes.append("input truncated by the model")
    if notes:
        title += "\n" + "; ".join(notes)

    with warnings.catch_warnings(), rc_context({"font.family": _font_families(), "text.usetex": False}):
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")
        warnings.filterwarnings("ignore", message=r".*findfont.*")
        fig = Figure(figsize=(width, height), dpi=100)
        FigureCanvasAgg(fig)
        fig.suptitle(title.replace("$", r"\$"), fontsize=10)
        axes = fig.subplots(len(blocks), 1, squeeze=False)[:, 0]
        for ax, block in zip(axes, blocks, strict=True):
            image = np.full((len(methods), columns, 3), 1.0)
            for r, m in enumerate(methods):
                for c, i in enumerate(block):
                    image[r, c] = np.array(score_rgb(norm[m][i], _is_signed(exp, m))) / 255
            ax.imshow(
                image,
                aspect="auto",
                interpolation="nearest",
                extent=(-0.5, columns - 0.5, len(methods) - 0.5, -0.5),
            )
            ax.set_yticks(range(len(methods)))
            ax.set_yticklabels([f"{m} {'±' if _is_signed(exp, m) else '≥0'}" for m in methods], fontsize=8)
            ax.set_xticks(range(len(block)))
            ax.set_xticklabels([_png_label(exp, i) for i in block], rotation=60, ha="right", fontsize=8)
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
                        fg = np.array(text_rgb(score_rgb(norm[m][i], _is_signed(exp, m)))) / 255
                        ax.text(c, r, f"{value:.2g}", ha="center", va="center", fontsize=6, color=fg)
        fig.text(
            0.01,
            0.1 / height,
            "rows scaled to their max |score| · ≥0: white→orange · ±: red supports the target, blue is against it",
            fontsize=7,
            color="#555555",
            wrap=True,
        )
        fig.tight_layout(rect=(0, footer_h / height, 1, 1))
        fig.savefig(Path(path), format="png")
