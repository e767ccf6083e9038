"""What the image and audio renderers (:mod:`attnkit.explain.render_images`, :mod:`attnkit.explain.render_audio`)
share: reading ``methods`` and unit ``scores``, the title, the HTML header and legend, the terminal header and
the JSON output. The colours and the page shell are :mod:`attnkit.explain.render`'s, as on the text pages.

Dimension legend: ``U`` units.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from rich.text import Text

from attnkit.explain.render import (
    _header_markup,
    _json_safe,
    _probabilities,
    _target_meta,
    prediction_title,
)
from attnkit.explain.scale import scales_json


def unit_methods(exp: dict[str, Any]) -> list[str]:
    """``exp["methods"]``, else the score keys of its first unit."""
    methods = exp.get("methods")
    if methods is None:
        units = exp.get("units") or []
        methods = list(units[0].get("scores", {})) if units else []
    return [str(m) for m in methods]


def unit_score(unit: dict[str, Any], method: str) -> float | None:
    """The unit's score for ``method``, or None when missing or not a finite number."""
    value = (unit.get("scores") or {}).get(method)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def unit_title(exp: dict[str, Any]) -> str:
    """``[source: ]predicted LABEL (p)[, explaining TARGET]``."""
    title = prediction_title(exp)
    if exp.get("source"):
        title = f"{exp['source']}: {title}"
    return title


def unit_terminal_header(exp: dict[str, Any], number: int) -> Text:
    """``#n`` and :func:`unit_title` in bold, then the class probabilities dimmed."""
    header = Text(f"#{number} ", style="bold")
    header.append(unit_title(exp), style="bold green")
    probs = _probabilities(exp)
    if probs:
        header.append("  " + " · ".join(f"{name} {p:.3f}" for name, p in probs), style="dim")
    return header


def unit_header_html(exp: dict[str, Any], number: int, description: str) -> str:
    """The page header of one explanation: its source (if any), target and ``description`` (markup)."""
    meta = [_target_meta(exp)]
    if exp.get("source"):
        meta.insert(0, f'<span class="ak-source">{html.escape(str(exp["source"]))}</span>')
    meta.append(description)
    return _header_markup(exp, number, meta)


def render_units_json(explanations: list[dict[str, Any]]) -> str:
    """Image or audio explanations as pretty JSON, each with its ``scale`` recomputed from its scores."""
    return json.dumps(
        _json_safe([{**exp, "scale": scales_json(exp)} for exp in explanations]), ensure_ascii=False, indent=2
    )
