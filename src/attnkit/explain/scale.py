"""The one colour scale every renderer uses: a method's scores in one text -> display intensities and a legend.

Dimension legend: ``T`` scored units of one explanation (the tokens of a text, the boxes of an image).

Three kinds of scale, chosen from the method and its ``signed`` flag (:func:`scale_kind`):

- ``ratio`` (attention-like distributions: ``attention``, ``rollout``; >= 0 and summing to 1 over the ``T``
  units): each unit's ratio to uniform ``r = w * T / sum(w)`` (``= w * T`` for attention). Units at or below
  uniform (``r <= 1``) get no colour; above, the intensity is ``log(r) / log(RATIO_CAP)``, full colour from
  ``RATIO_CAP`` times uniform on. The scale is the same for every text, so near-uniform attention stays pale and
  peaked attention is dark. Each text also reports how far it is from uniform: ``max_ratio`` (the largest ``r``)
  and ``concentration = 1 - H / log T`` (0 for uniform weights, 1 when one unit takes everything).
- ``diverging`` (signed methods): ``score / max |score|`` in ``[-1, 1]`` over this text; positive scores take
  the ``POSITIVE_RGB`` hue (support the target), negative ones ``NEGATIVE_RGB``.
- ``sequential`` (unsigned methods that are not distributions, e.g. ``gradient``): ``score / max score`` in
  ``[0, 1]`` over this text.

Intensity 0 is white and 1 (or -1) the full hue (:func:`intensity_rgb`). ``assets/attnkit-viz.js`` implements
the same formulas (``scaleOf`` / ``intensities`` / ``intensityColor``); the browser test compares the two.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

__all__ = [
    "DISTRIBUTION_METHODS",
    "KIND_LABELS",
    "NEGATIVE_RGB",
    "POSITIVE_RGB",
    "RATIO_CAP",
    "UNSIGNED_RGB",
    "MethodScale",
    "compact",
    "explanation_scale",
    "fixed",
    "intensity_rgb",
    "js_number",
    "method_scale",
    "scale_kind",
    "scales_json",
    "scored_units",
]

ScaleKind = Literal["ratio", "diverging", "sequential"]

DISTRIBUTION_METHODS = frozenset({"attention", "rollout"})
"""Unsigned methods whose scores are a distribution over the units (shown as a ratio to uniform)."""
RATIO_CAP = 8.0
"""Ratio to uniform that gets the full colour (``r >= RATIO_CAP``)."""
KIND_LABELS: dict[str, str] = {"ratio": "× uniform", "diverging": "signed", "sequential": "unsigned"}
"""The short name of each scale kind that renderers print beside the method."""

UNSIGNED_RGB = (230, 85, 13)  # ratio and sequential scales: white -> orange
POSITIVE_RGB = (214, 39, 40)  # diverging: supports the target class (white -> red)
NEGATIVE_RGB = (31, 119, 180)  # diverging: speaks against the target class (white -> blue)


def scale_kind(method: str, signed: bool) -> ScaleKind:
    """``diverging`` for signed methods, ``ratio`` for attention-like distributions, else ``sequential``."""
    if signed:
        return "diverging"
    return "ratio" if method in DISTRIBUTION_METHODS else "sequential"


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _half_up(value: float, exponent: int) -> Decimal:
    """``value`` rounded to a multiple of ``10**exponent``, ties away from zero on its exact decimal value (the
    rule of JavaScript's ``toPrecision`` / ``toFixed``, so both languages print the same digits)."""
    return Decimal(value).quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)


def compact(value: float) -> str:
    """Three significant digits written like JavaScript's ``String(Number(v.toPrecision(3)))``: ``0.75``,
    ``3.1``, ``1230``, ``0.000012``, ``1.2e-7``."""
    if value == 0 or not math.isfinite(value):
        return js_number(value)
    return js_number(float(_half_up(value, Decimal(value).adjusted() - 2)))


def fixed(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, like JavaScript's ``toFixed`` (for values below 1e21)."""
    return f"{_half_up(value, -digits):.{digits}f}"


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


@dataclass(frozen=True)
class MethodScale:
    """How one method's scores in one text map to intensities, and what its legend says.

    Attributes:
        method: the method name.
        kind: ``ratio``, ``diverging`` or ``sequential`` (see the module docstring).
        units: ``T``, the units with a finite score.
        max_abs: the largest ``|score|`` (0 when every score is 0 or missing).
        total: ``ratio`` only: the sum of the (non-negative) weights, 1 for attention; else ``None``.
        max_ratio: ``ratio`` only: the largest ratio to uniform (``None`` when all weights are 0).
        concentration: ``ratio`` only: ``1 - H / log T`` of the normalized weights, 0 = uniform, 1 = one unit
            (0 for a single unit; ``None`` when all weights are 0).
        cap: ``ratio`` only: the ratio that gets the full colour.
    """

    method: str
    kind: ScaleKind
    units: int
    max_abs: float
    total: float | None = None
    max_ratio: float | None = None
    concentration: float | None = None
    cap: float | None = None

    @property
    def signed(self) -> bool:
        return self.kind == "diverging"

    def intensity(self, score: float | None) -> float:
        """The display intensity of one score: in ``[0, 1]``, or ``[-1, 1]`` for a diverging scale.

        Missing and non-finite scores give 0 (white).
        """
        value = _finite(score)
        if value is None:
            return 0.0
        if self.kind == "ratio":
            assert self.cap is not None
            if self.total is None or self.total <= 0 or value <= 0:
                return 0.0
            ratio = value * self.units / self.total
            if ratio <= 1.0:
                return 0.0
            return min(math.log(ratio) / math.log(self.cap), 1.0)
        if self.max_abs <= 0:
            return 0.0
        if self.kind == "sequential":
            return min(max(value, 0.0) / self.max_abs, 1.0)
        return max(-1.0, min(value / self.max_abs, 1.0))

    def intensities(self, scores: Sequence[float | None]) -> list[float]:
        """:meth:`intensity` of each score, in order."""
        return [self.intensity(v) for v in scores]

    def bin(self, score: float | None, bins: int) -> int:
        """The intensity rounded up to one of ``bins`` equal steps: 0 (no colour) .. ``bins`` (full colour),
        negative for a diverging scale's negative scores. Terminals draw one colour per bin."""
        t = self.intensity(score)
        if t == 0:
            return 0
        level = min(bins, max(1, math.ceil(abs(t) * bins - 1e-9)))
        return level if t > 0 else -level

    def edge(self, level: float) -> float:
        """The score (``ratio``: the ratio to uniform) at intensity ``level`` in ``[0, 1]``."""
        if self.kind == "ratio":
            assert self.cap is not None
            return float(self.cap**level)
        return self.max_abs * level

    def low_label(self) -> str:
        """The legend's label for intensity 0 (diverging: for -1)."""
        if self.kind == "ratio":
            return "×1 (uniform)"
        if self.kind == "diverging":
            return f"−{compact(self.max_abs)}"
        return "0"

    def high_label(self) -> str:
        """The legend's label for the full colour."""
        if self.kind == "ratio":
            return f"×{compact(self.cap or RATIO_CAP)} of uniform"
        if self.kind == "diverging":
            return f"+{compact(self.max_abs)}"
        return compact(self.max_abs)

    def summary(
        self, target: str | None = None, *, colours: bool = True, unit: str = "token", item: str = "text"
    ) -> str:
        """One line on what the colours mean for this text (the legend's note); ``colours=False`` for output
        without colour (signed methods are then described by their sign). ``unit`` and ``item`` name what is
        scored and in what (``cell`` and ``image`` for an image explanation)."""
        if self.kind == "ratio":
            if self.max_ratio is None or self.concentration is None:
                return "all weights are 0"
            return (
                f"no colour at or below uniform (1/{self.units}); peak ×{compact(self.max_ratio)} of uniform, "
                f"concentration {fixed(self.concentration, 2)} (0 = uniform, 1 = one {unit})"
            )
        who = target if target is not None else "the target"
        if self.kind == "diverging":
            if not colours:
                return f"+ supports {who} · − against it · scaled to this {item}'s max |score|"
            return f"red: supports {who} · blue: against it · scaled to this {item}'s max |score|"
        return f"scaled to this {item}'s max score"

    def to_json(self) -> dict[str, Any]:
        """The description stored under ``scale[method]`` in the explanation JSON."""
        out: dict[str, Any] = {"kind": self.kind, "units": self.units, "max_abs": self.max_abs}
        if self.kind == "ratio":
            out.update(
                total=self.total, max_ratio=self.max_ratio, concentration=self.concentration, cap=self.cap
            )
        out.update(low=self.low_label(), high=self.high_label())
        return out


def method_scale(method: str, signed: bool, scores: Sequence[float | None]) -> MethodScale:
    """The scale of ``method``'s ``scores`` (one per unit; ``None`` or non-finite for a missing score)."""
    kind = scale_kind(method, signed)
    values = [v for v in (_finite(s) for s in scores) if v is not None]
    if kind != "diverging":
        values = [max(v, 0.0) for v in values]  # unsigned negatives (which should not occur) count as 0
    units = len(values)
    max_abs = max((abs(v) for v in values), default=0.0)
    if kind != "ratio":
        return MethodScale(method, kind, units, max_abs)
    total = 0.0
    for v in values:  # left to right, as attnkit-viz.js sums (no fsum / compensated sum)
        total += v
    if total <= 0:
        return MethodScale(method, kind, units, max_abs, total=total, cap=RATIO_CAP)
    max_ratio = max_abs * units / total
    if units > 1:
        entropy = 0.0
        for v in values:
            if v > 0:
                entropy -= (v / total) * math.log(v / total)
        concentration = max(0.0, min(1.0, 1.0 - entropy / math.log(units)))
    else:
        concentration = 0.0
    return MethodScale(method, kind, units, max_abs, total, max_ratio, concentration, RATIO_CAP)


def scored_units(exp: dict[str, Any]) -> list[dict[str, Any]]:
    """The scored units of an explanation dict: a text's ``tokens``, or an image's ``units``."""
    units = exp.get("tokens")
    if units is None:
        units = exp.get("units")
    return list(units or [])


def explanation_scale(exp: dict[str, Any], method: str) -> MethodScale:
    """The scale of ``method`` in an explanation dict (the format of ``docs/explanation-format.md``)."""
    signed = bool((exp.get("signed") or {}).get(method, False))
    scores = [(unit.get("scores") or {}).get(method) for unit in scored_units(exp)]
    return method_scale(method, signed, scores)


def scales_json(exp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{method: scale description}`` for every method of an explanation dict (its ``scale`` field)."""
    methods = exp.get("methods")
    if methods is None:
        tokens = scored_units(exp)
        methods = list(tokens[0].get("scores", {})) if tokens else []
    return {str(m): explanation_scale(exp, str(m)).to_json() for m in methods}


def intensity_rgb(intensity: float, kind: ScaleKind | bool) -> tuple[int, int, int]:
    """Background colour for an intensity: white at 0, the full hue at 1 (or -1 on a diverging scale).

    ``kind`` is a scale kind, or a bool (``True`` = diverging) for callers that only know ``signed``.
    """
    diverging = kind is True or kind == "diverging"
    if not math.isfinite(intensity):
        intensity = 0.0
    if diverging:
        base = POSITIVE_RGB if intensity >= 0 else NEGATIVE_RGB
    else:
        base = UNSIGNED_RGB
        intensity = max(intensity, 0.0)
    t = min(abs(intensity), 1.0)
    # floor(x + 0.5) rather than round(): the same half-up rounding as Math.round in attnkit-viz.js
    r, g, b = (math.floor(255 + (c - 255) * t + 0.5) for c in base)
    return (r, g, b)
