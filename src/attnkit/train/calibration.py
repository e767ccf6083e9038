"""Temperature scaling (Guo et al. 2017): one scalar ``T > 0`` fitted on held-out logits so that
``softmax(logits / T)`` has the lowest negative log-likelihood there.

Dividing every logit by the same positive number never changes the arg-max, so accuracy, macro-F1 and the
confusion matrix stay exactly as they were; only the probabilities (and the calibration error) move.

The fit minimizes ``nll(beta) = mean_i [logsumexp_c(beta * z_ic) - beta * z_i,y_i]`` over ``beta = 1 / T``.
This is convex in ``beta`` (a log-sum-exp of linear functions minus a linear function), so a bracketing search
on its derivative finds the global minimum; no learning rate, no iteration count to tune.

A temperature is a guess from finite data, and a bad one destroys the probabilities (``T = 1000`` makes every
prediction uniform, ``T = 0.015`` puts 0.97 on wrong answers). :meth:`Calibration.fit` therefore decides, and
records why (``status``):

- ``skipped-too-few``: fewer than :data:`MIN_EXAMPLES` examples; ``T = 1``.
- ``kept-1-worse``: the fitted temperature does not lower the NLL of examples it was *not* fitted on
  (5-fold cross-fitting), so it would make held-out NLL worse; ``T = 1``.
- ``clipped``: the NLL optimum lies outside ``[MIN_TEMPERATURE, MAX_TEMPERATURE]``; ``T`` is the nearer bound.
- ``fitted``: ``T`` is the NLL optimum.

Dimension legend: ``N`` examples, ``C`` classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from attnkit.train import checkpoint as ckpt
from attnkit.train.metrics import expected_calibration_error

CALIBRATION_FILE = "calibration.json"

#: Bounds on the temperature. Our trained classifiers fit T = 1.14-1.43 (six IMDb runs, BENCHMARKS.md,
#: "Calibration"; a bag-attn SST-2 run 1.28), and even a model 3x overconfident needs only T of about 4. At T = 20 a margin of 10 logits becomes a 0.62 probability; at T = 0.05 a margin of 0.2 becomes
#: 0.98. Beyond them the fit is reacting to a degenerate validation split (separable, or the model no better
#: than chance), not to miscalibration: the optimum runs off to 0 or infinity.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
#: Examples needed to fit a temperature. Measured by bootstrap: 200 random subsets of n of the 6,739 validation
#: logits of a bag-attn SST-2 run (T = 1.28 fitted on all of them). The share of subset fits more than a factor
#: 1.5 away from that T was 46% at n = 20 (the 5th percentile was T = 0.001: a separable subset), 18% at 50,
#: 6% at 100 and 1% at 200; the same with the logits scaled x3 (T = 3.83). 100 is the smallest n tried where
#: over 90% of fits land within a factor 1.5; cross-fitting (below) guards the rest.
MIN_EXAMPLES = 100
#: Folds of the cross-fitted check: each fold's NLL is measured at the temperature fitted on the others.
CROSS_FIT_FOLDS = 5

Status = Literal["fitted", "clipped", "skipped-too-few", "kept-1-worse"]
STATUSES: tuple[str, ...] = ("fitted", "clipped", "skipped-too-few", "kept-1-worse")


def _nll_and_slope(logits: torch.Tensor, targets: torch.Tensor, beta: float) -> tuple[float, float]:
    """Mean NLL of ``softmax(beta * logits)`` and its derivative in ``beta`` (float64)."""
    scaled = beta * logits  # (N, C)
    log_probs = torch.log_softmax(scaled, dim=-1)  # (N, C)
    nll = -log_probs.gather(1, targets[:, None]).mean()
    # d/dbeta [logsumexp(beta z) - beta z_y] = E_softmax[z] - z_y
    expected = (log_probs.exp() * logits).sum(dim=-1)  # (N,)
    slope = (expected - logits.gather(1, targets[:, None]).squeeze(1)).mean()
    return float(nll), float(slope)


def _checked(
    logits: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray | Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.long)
    if z.dim() != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, C >= 2), got {tuple(z.shape)}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"targets must have shape ({z.shape[0]},), got {tuple(y.shape)}")
    if z.shape[0] == 0:
        raise ValueError("cannot fit a temperature on zero examples")
    if not torch.isfinite(z).all():
        raise ValueError("logits contain NaN or infinite values")
    if int(y.min()) < 0 or int(y.max()) >= z.shape[1]:
        raise ValueError(f"targets must be class ids in [0, {z.shape[1] - 1}]")
    return z, y


def _fit(
    z: torch.Tensor, y: torch.Tensor, min_temperature: float, max_temperature: float
) -> tuple[float, bool]:
    """``(T, clipped)``: the NLL-optimal temperature within the bounds, and whether the optimum lies outside."""
    low, high = math.log(1.0 / max_temperature), math.log(1.0 / min_temperature)  # log beta
    # The slope is non-decreasing in beta (convexity): the constrained optimum is the clipped unconstrained one.
    if _nll_and_slope(z, y, math.exp(low))[1] >= 0:
        return max_temperature, True
    if _nll_and_slope(z, y, math.exp(high))[1] <= 0:
        return min_temperature, True
    for _ in range(64):  # the bracket (width ln 400 in log beta) shrinks 2^64-fold: below float64 resolution
        mid = 0.5 * (low + high)
        if _nll_and_slope(z, y, math.exp(mid))[1] < 0:
            low = mid
        else:
            high = mid
    return float(1.0 / math.exp(0.5 * (low + high))), False


def fit_temperature(
    logits: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray | Sequence[int],
    *,
    min_temperature: float = MIN_TEMPERATURE,
    max_temperature: float = MAX_TEMPERATURE,
) -> float:
    """The temperature ``T`` in ``[min_temperature, max_temperature]`` minimizing the mean NLL of
    ``softmax(logits / T)`` against ``targets`` (the nearer bound when the optimum lies outside).

    This is the bare fit; :meth:`Calibration.fit` decides whether to use it.

    Args:
        logits: ``(N, C)`` raw class scores, ``C >= 2``.
        targets: ``(N,)`` class ids.
        min_temperature: lower bound, ``> 0``.
        max_temperature: upper bound, ``>= min_temperature``.
    """
    if not 0 < min_temperature <= max_temperature:
        raise ValueError(
            f"need 0 < min_temperature <= max_temperature, got {min_temperature}, {max_temperature}"
        )
    z, y = _checked(logits, targets)
    return _fit(z, y, min_temperature, max_temperature)[0]


def cross_fitted_nll(
    z: torch.Tensor, y: torch.Tensor, folds: int = CROSS_FIT_FOLDS
) -> tuple[float, list[float]]:
    """Mean NLL where example ``i`` is scored at the temperature fitted without its fold.

    Folds are interleaved (example ``i`` is in fold ``i % folds``), so a split sorted by label still gives
    every fold every label.

    Returns:
        ``(mean NLL, the temperature fitted for each fold)``.
    """
    n = z.shape[0]
    fold_of = torch.arange(n) % folds  # (N,)
    total = 0.0
    temperatures: list[float] = []
    for k in range(folds):
        held = fold_of == k
        if not held.any():
            continue
        t, _ = _fit(z[~held], y[~held], MIN_TEMPERATURE, MAX_TEMPERATURE)
        temperatures.append(t)
        total += _nll_and_slope(z[held], y[held], 1.0 / t)[0] * int(held.sum())
    return total / n, temperatures


def scaled_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits (N, C)`` -> ``softmax(logits / T)`` as float32 ``(N, C)``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(logits.float() / temperature, dim=-1)


@dataclass
class Calibration:
    """A run's temperature, what it did on the data it was fitted on, and why it was chosen.

    Attributes:
        temperature: ``T`` in use; predicted probabilities are ``softmax(logits / T)`` (1.0 when skipped or
            kept at 1).
        fitted_on: the data, e.g. ``"validation split"`` or a source name.
        n: examples it was fitted on.
        nll_before, nll_after: mean negative log-likelihood there at ``T = 1`` and at ``temperature``.
        ece_before, ece_after: expected calibration error there (15 equal-width bins).
        status: ``fitted``, ``clipped``, ``skipped-too-few`` or ``kept-1-worse`` (see the module docstring).
        reason: one sentence saying why.
        fitted_temperature: the NLL-optimal temperature within the bounds (``None`` when not fitted).
        cv_nll_after: cross-fitted NLL at the fold temperatures, compared with ``nll_before`` (``None`` when
            not fitted).

    Files written before ``status`` existed load as ``fitted`` (see :meth:`from_dict`).
    """

    temperature: float
    fitted_on: str
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    status: Status = "fitted"
    reason: str = ""
    fitted_temperature: float | None = None
    cv_nll_after: float | None = None

    @classmethod
    def fit(
        cls,
        logits: torch.Tensor | np.ndarray,
        targets: torch.Tensor | np.ndarray | Sequence[int],
        fitted_on: str,
        *,
        min_examples: int = MIN_EXAMPLES,
    ) -> Calibration:
        """Decide the temperature for ``logits (N, C)`` and ``targets (N,)`` and record the numbers.

        Args:
            logits: held-out raw class scores.
            targets: their class ids.
            fitted_on: what the data is, for the record.
            min_examples: fewer examples than this skip the fit (``T = 1``); at least two per cross-fitting
                fold are always needed.
        """
        z, y = _checked(logits, targets)
        n = int(z.shape[0])
        min_examples = max(min_examples, 2 * CROSS_FIT_FOLDS)
        y_np = y.numpy()
        nll_before = _nll_and_slope(z, y, 1.0)[0]
        ece_before = expected_calibration_error(torch.softmax(z, dim=-1).numpy(), y_np)

        def keep_one(status: Status, reason: str, **extra: Any) -> Calibration:
            return cls(
                1.0, fitted_on, n, nll_before, nll_before, ece_before, ece_before, status, reason, **extra
            )

        if n < min_examples:
            return keep_one(
                "skipped-too-few",
                f"{fitted_on} has {n} examples; fitting a temperature needs at least {min_examples} "
                f"({min_examples - n} more), so probabilities stay uncalibrated (T = 1)",
            )
        temperature, clipped = _fit(z, y, MIN_TEMPERATURE, MAX_TEMPERATURE)
        nll_after = _nll_and_slope(z, y, 1.0 / temperature)[0]
        cv_nll, fold_ts = cross_fitted_nll(z, y)
        if not (cv_nll < nll_before and nll_after < nll_before):
            return keep_one(
                "kept-1-worse",
                f"T = {temperature:.3g} would not lower the NLL of held-out examples (cross-fitted over "
                f"{CROSS_FIT_FOLDS} folds, fold temperatures {min(fold_ts):.3g}-{max(fold_ts):.3g}: "
                f"{cv_nll:.4f} vs {nll_before:.4f} at T = 1), so T = 1 is kept",
                fitted_temperature=temperature,
                cv_nll_after=cv_nll,
            )
        ece_after = expected_calibration_error(torch.softmax(z / temperature, dim=-1).numpy(), y_np)
        if clipped:
            side = "below" if temperature == MIN_TEMPERATURE else "above"
            status: Status = "clipped"
            reason = (
                f"the NLL optimum on {fitted_on} lies {side} the bounds [{MIN_TEMPERATURE:g}, "
                f"{MAX_TEMPERATURE:g}], so T = {temperature:g}: the data may be separable (optimum T -> 0) or the "
                "model no better than chance (T -> infinity)"
            )
        else:
            status, reason = "fitted", f"T = {temperature:.4g} minimizes the NLL of {fitted_on}"
        if ece_after > ece_before:
            reason += f"; ECE rose ({ece_before:.4f} -> {ece_after:.4f}) while NLL fell"
        return cls(
            temperature,
            fitted_on,
            n,
            nll_before,
            nll_after,
            ece_before,
            ece_after,
            status,
            reason,
            fitted_temperature=temperature,
            cv_nll_after=cv_nll,
        )

    def describe(self) -> str:
        """One line for logs and the CLI: the decision, the numbers, and why."""
        head = (
            f"temperature {self.temperature:.4g} ({self.status}) on {self.fitted_on} (n={self.n}): "
            f"NLL {self.nll_before:.4f} -> {self.nll_after:.4f}, ECE {self.ece_before:.4f} -> {self.ece_after:.4f}"
        )
        return f"{head}; {self.reason}" if self.reason else head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Calibration:
        """A record from ``calibration.json``; files without ``status`` (older runs) load as ``fitted``.

        Raises:
            ValueError: a required field is missing or ``status`` is unknown.
        """
        names = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in record and f.name in _REQUIRED]
        if missing:
            raise ValueError(f"calibration record lacks {', '.join(missing)}")
        values = {k: v for k, v in record.items() if k in names}
        if values.get("status", "fitted") not in STATUSES:
            raise ValueError(
                f"unknown calibration status {values['status']!r}; expected one of {', '.join(STATUSES)}"
            )
        return cls(**values)

    def save(self, run_dir: str | Path) -> None:
        ckpt.write_json(Path(run_dir) / CALIBRATION_FILE, self.to_dict())


_REQUIRED = ("temperature", "fitted_on", "n", "nll_before", "nll_after", "ece_before", "ece_after")
