import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion

from attnkit.train.metrics import classification_report, confusion_matrix, expected_calibration_error


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    targets = rng.integers(0, 4, size=500)
    return probs, targets


def test_report_matches_sklearn(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    probs, targets = predictions
    labels = ["a", "b", "c", "d"]
    report = classification_report(probs, targets, labels)
    preds = probs.argmax(axis=1)
    assert report["accuracy"] == pytest.approx(accuracy_score(targets, preds))
    assert report["macro_f1"] == pytest.approx(f1_score(targets, preds, average="macro"))
    precision, recall, f1, support = precision_recall_fscore_support(targets, preds, labels=[0, 1, 2, 3])
    for i, label in enumerate(labels):
        assert report["per_class"][label]["precision"] == pytest.approx(precision[i])
        assert report["per_class"][label]["recall"] == pytest.approx(recall[i])
        assert report["per_class"][label]["f1"] == pytest.approx(f1[i])
        assert report["per_class"][label]["support"] == support[i]
    np.testing.assert_array_equal(
        report["confusion_matrix"], sk_confusion(targets, preds, labels=[0, 1, 2, 3])
    )


def test_confusion_matrix_by_hand() -> None:
    matrix = confusion_matrix(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    np.testing.assert_array_equal(matrix, [[1, 1], [1, 2]])


def test_ece_by_hand() -> None:
    # Two confident predictions (0.9): one right, one wrong -> bin accuracy 0.5, confidence 0.9, gap 0.4.
    # Two at 0.6, both right -> accuracy 1.0, confidence 0.6, gap 0.4. ECE = 0.5 * 0.4 + 0.5 * 0.4 = 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    targets = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, targets, num_bins=10) == pytest.approx(0.4)


def test_ece_zero_when_calibrated() -> None:
    # Confidence 0.75 in every row and exactly 3 of 4 right.
    probs = np.array([[0.75, 0.25]] * 4)
    targets = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probs, targets) == pytest.approx(0.0)
