"""Classification metrics: accuracy, macro-F1, per-class precision/recall, confusion matrix, calibration error."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts; row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, num_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017): ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``.

    Args:
        probabilities: ``(N, C)`` predicted class probabilities.
        targets: ``(N,)`` true class ids.
    """
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == targets).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # Bins are (lo, hi]; confidence is always > 0, so the first bin starts just above 0.
    bin_ids = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    ece = 0.0
    for b in range(num_bins):
        in_bin = bin_ids == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_report(
    probabilities: np.ndarray, targets: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """All evaluation metrics as a JSON-ready dict.

    Args:
        probabilities: ``(N, C)`` class probabilities.
        targets: ``(N,)`` true class ids.
        labels: the ``C`` class names.
    """
    num_classes = len(labels)
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(targets, predictions, num_classes)
    true_pos = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return {
        "n": len(targets),
        "accuracy": float((predictions == targets).mean()) if len(targets) else 0.0,
        "macro_f1": float(f1.mean()),
        "ece": expected_calibration_error(probabilities, targets) if len(targets) else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(actual[i]),
            }
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
    }
