"""What the image and audio explanations share: per-unit scores, their JSON head and the scoring of a batch.

An image explanation (:mod:`attnkit.explain.images`) scores boxes, an audio one (:mod:`attnkit.explain.audio`)
scores spans of time; both keep ``methods`` and ``units`` (each with ``scores``), write the same leading JSON
fields (``modality``, ``source``, ``label``, ``target``, ``probabilities``, ``methods``, ``signed``) and score a
batch the same way, through the model contract only.

Dimension legend: ``B`` batch, ``U`` units, ``K`` classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

import torch

from attnkit.explain.methods import SIGNED, compute_scores
from attnkit.predictor import Predictor


class ScoredUnit(Protocol):
    """A unit of an explanation: its scores, one per method."""

    @property
    def scores(self) -> dict[str, float]: ...


Unit = TypeVar("Unit", bound=ScoredUnit)


class UnitScores(Generic[Unit]):
    """Reading an explanation's per-unit scores; mixed into the explanation dataclasses, which hold
    ``methods`` (the score keys, in display order) and ``units`` (in order, ``units[i].index == i``)."""

    methods: list[str]
    units: list[Unit]

    def scores(self, method: str) -> list[float]:
        """The scores of one method, one per unit, in unit order."""
        if method not in self.methods:
            raise KeyError(f"method {method!r} was not computed; have {', '.join(self.methods)}")
        return [unit.scores[method] for unit in self.units]

    def top_units(self, method: str, k: int = 5) -> list[tuple[Unit, float]]:
        """The ``k`` highest-scoring units of ``method`` with their scores (ties: earlier unit first)."""
        scores = self.scores(method)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return [(self.units[i], scores[i]) for i in order]


def json_head(
    modality: str,
    source: str | None,
    label: str,
    target: str,
    probabilities: dict[str, float],
    methods: Sequence[str],
) -> dict[str, Any]:
    """The leading fields of an image or audio explanation's JSON, in order."""
    return {
        "modality": modality,
        "source": source,
        "label": label,
        "target": target,
        "probabilities": dict(probabilities),
        "methods": list(methods),
        "signed": {method: SIGNED[method] for method in methods},
    }


def read_head(data: dict[str, Any]) -> dict[str, Any]:
    """The fields :func:`json_head` wrote, typed, as keyword arguments of the explanation (without
    ``modality``); a missing or bad field raises ``KeyError``, ``TypeError`` or ``ValueError``."""
    return {
        "label": str(data["label"]),
        "probabilities": {str(k): float(v) for k, v in data["probabilities"].items()},
        "target": str(data["target"]),
        "methods": [str(m) for m in data["methods"]],
        "source": None if data.get("source") is None else str(data["source"]),
    }


@contextmanager
def reading(what: str) -> Iterator[None]:
    """Turn a missing or bad field met inside the block into one ``ValueError``: ``not {what} explanation``."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ValueError(
            f"not {what} explanation ({type(err).__name__}: {err}); see docs/explanation-format.md"
        ) from None


def check_target(predictor: Predictor, target: str | None) -> None:
    """Raise ``ValueError`` unless ``target`` is None or one of the run's labels."""
    if target is not None and target not in predictor.labels:
        raise ValueError(
            f"unknown target label {target!r}; the model's labels are {', '.join(predictor.labels)}"
        )


def score_batch(
    predictor: Predictor,
    inputs: torch.Tensor,
    mask: torch.Tensor,
    methods: Sequence[str],
    target: str | None,
    ig_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Predict one encoded batch and score its units with each of ``methods`` (already checked).

    Returns:
        ``(probabilities, targets, scores)`` on the CPU: ``(B, K)`` as predict reports them (with the run's
        temperature), ``(B,)`` the explained class of each row (the predicted one when ``target`` is None)
        and ``{method: (B, U)}``.
    """
    model = predictor.model
    with torch.no_grad():
        logits = model(inputs, mask).logits  # (B, K)
    probabilities = predictor.probabilities(logits).cpu()  # (B, K)
    if target is None:
        targets = probabilities.argmax(dim=-1)  # (B,)
    else:
        targets = torch.full((len(inputs),), predictor.labels.index(target), dtype=torch.long)
    targets = targets.to(inputs.device)
    scores = {
        name: compute_scores(name, model, inputs, mask, targets, ig_steps=ig_steps).detach().cpu()
        for name in methods
    }  # each (B, U)
    return probabilities, targets, scores


def label_probabilities(labels: Sequence[str], probabilities: torch.Tensor) -> dict[str, float]:
    """``(K,)`` probabilities as ``{label: p}``, rounded to 6 decimals."""
    return {label: round(float(p), 6) for label, p in zip(labels, probabilities, strict=True)}


def round_score(value: float) -> float:
    """A score kept to 6 significant digits (what the JSON holds)."""
    return float(f"{value:.6g}")
