"""Temperature scaling (Guo et al. 2017): one scalar ``T > 0`` fitted on held-out logits so that
``softmax(logits / T)`` has the lowest negative log-likelihood there.

Dividing every logit by the same positive number never changes the arg-max, so accuracy, macro-F1 and the
confusion matrix stay exactly as they were; only the probabilities (and the calibration error) move.

The fit minimizes ``nll(beta) = mean_i [logsumexp_c(beta * z_ic) - beta * z_i,y_i]`` over ``beta = 1 / T``.
This is convex in ``beta`` (a log-sum-exp of linear functions minus a linear function), so a bracketing search
on its derivative finds the global minimum; no learning rate, no iteration count to tune.

Dimension legend: ``N`` examples, ``C`` classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit.train import checkpoint as ckpt
from attnkit.train.metrics import expected_calibration_error

CALIBRATION_FILE = "calibration.json"
#: The temperature is kept in [1 / MAX_BETA, 1 / MIN_BETA]: wide enough for any trained classifier, and it
#: keeps a held-out set the model separates perfectly (NLL falling forever as ``beta`` grows) finite.
MIN_BETA, MAX_BETA = 1e-3, 1e3


def _nll_and_slope(logits: torch.Tensor, targets: torch.Tensor, beta: float) -> tuple[float, float]:
    """Mean NLL of ``softmax(beta * logits)`` and its derivative in ``beta`` (float64)."""
    scaled = beta * logits  # (N, C)
    log_probs = torch.log_softmax(scaled, dim=-1)  # (N, C)
    nll = -log_probs.gather(1, targets[:, None]).mean()
    # d/dbeta [logsumexp(beta z) - beta z_y] = E_softmax[z] - z_y
    expected = (log_probs.exp() * logits).sum(dim=-1)  # (N,)
    slope = (expected - logits.gather(1, targets[:, None]).squeeze(1)).mean()
    return float(nll), float(slope)


def fit_temperature(
    logits: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray | Sequence[int]
) -> float:
    """The temperature ``T`` minimizing the mean NLL of ``softmax(logits / T)`` against ``targets``.

    Args:
        logits: ``(N, C)`` raw class scores, ``C >= 2``.
        targets: ``(N,)`` class ids.

    Returns:
        ``T`` in ``[1 / MAX_BETA, 1 / MIN_BETA]``.
    """
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
    # The slope is non-decreasing in beta (convexity). Bisect on it in log space between the bounds.
    low, high = math.log(MIN_BETA), math.log(MAX_BETA)
    if _nll_and_slope(z, y, MIN_BETA)[1] >= 0:
        return 1.0 / MIN_BETA
    if _nll_and_slope(z, y, MAX_BETA)[1] <= 0:
        return 1.0 / MAX_BETA
    for _ in range(100):  # the bracket shrinks 2^100-fold: far below float64 resolution
        mid = 0.5 * (low + high)
        if _nll_and_slope(z, y, math.exp(mid))[1] < 0:
            low = mid
        else:
            high = mid
    return float(1.0 / math.exp(0.5 * (low + high)))


def scaled_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits (N, C)`` -> ``softmax(logits / T)`` as float32 ``(N, C)``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(logits.float() / temperature, dim=-1)


@dataclass
class Calibration:
    """A run's fitted temperature and what it did on the data it was fitted on.

    Attributes:
        temperature: ``T``; predicted probabilities are ``softmax(logits / T)``.
        fitted_on: the data, e.g. ``"validation split"`` or a source name.
        n: examples it was fitted on.
        nll_before, nll_after: mean negative log-likelihood there at ``T = 1`` and at the fitted ``T``.
        ece_before, ece_after: expected calibration error there (15 equal-width bins).
    """

    temperature: float
    fitted_on: str
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    @classmethod
    def fit(
        cls, logits: torch.Tensor, targets: torch.Tensor | np.ndarray | Sequence[int], fitted_on: str
    ) -> Calibration:
        """Fit ``T`` on ``logits (N, C)`` and ``targets (N,)`` and record the before/after numbers."""
        z = torch.as_tensor(logits, dtype=torch.float64)
        y = torch.as_tensor(targets, dtype=torch.long)
        temperature = fit_temperature(z, y)
        y_np = y.numpy()
        before = torch.softmax(z, dim=-1).numpy()
        after = torch.softmax(z / temperature, dim=-1).numpy()
        return cls(
            temperature=temperature,
            fitted_on=fitted_on,
            n=int(z.shape[0]),
            nll_before=_nll_and_slope(z, y, 1.0)[0],
            nll_after=_nll_and_slope(z, y, 1.0 / temperature)[0],
            ece_before=expected_calibration_error(before, y_np),
            ece_after=expected_calibration_error(after, y_np),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, run_dir: str | Path) -> None:
        ckpt.write_json(Path(run_dir) / CALIBRATION_FILE, self.to_dict())


def load_temperature(run_dir: str | Path) -> float:
    """The run's fitted temperature, or 1.0 (no scaling) for a run without ``calibration.json``."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return 1.0
    temperature = float(ckpt.read_json(path)["temperature"])
    if not temperature > 0:
        raise ValueError(f"{path}: temperature must be > 0, got {temperature}")
    return temperature
