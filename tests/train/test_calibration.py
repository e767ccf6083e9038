import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit.cli import main
from attnkit.predictor import Predictor, calibrate_run, evaluate_run
from attnkit.train.calibration import (
    CALIBRATION_FILE,
    MAX_BETA,
    Calibration,
    fit_temperature,
    load_temperature,
    scaled_probabilities,
)
from attnkit.train.metrics import expected_calibration_error


def mean_nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    """The reference: NLL written out with a plain log-sum-exp."""
    z = logits.double() / temperature
    return float((torch.logsumexp(z, dim=1) - z.gather(1, targets[:, None]).squeeze(1)).mean())


def sample(num: int, classes: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z); the returned logits are ``scale * z`` (true temperature = ``scale``)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num, classes, generator=g, dtype=torch.float64) * 2
    targets = torch.multinomial(torch.softmax(z, dim=1), 1, generator=g).squeeze(1)
    return z * scale, targets


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_fit_matches_a_grid_search(classes: int, scale: float) -> None:
    logits, targets = sample(2000, classes, scale, seed=classes)
    fitted = fit_temperature(logits, targets)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    best = grid[int(np.argmin([mean_nll(logits, targets, t) for t in grid]))]
    assert fitted == pytest.approx(best, rel=3e-3)
    assert mean_nll(logits, targets, fitted) <= min(mean_nll(logits, targets, t) for t in grid) + 1e-12


def test_recovers_the_temperature_that_generated_the_labels() -> None:
    logits, targets = sample(40_000, 3, 3.0, seed=0)
    assert fit_temperature(logits, targets) == pytest.approx(3.0, rel=0.05)


def test_scaling_keeps_every_label_and_sums_to_one() -> None:
    logits, _ = sample(300, 4, 2.0, seed=1)
    probs = scaled_probabilities(logits.float(), 2.7)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(300))
    assert torch.equal(probs.argmax(dim=1), logits.argmax(dim=1))
    torch.testing.assert_close(probs, torch.softmax(logits.float() / 2.7, dim=1))


def test_separable_data_hits_the_bound_instead_of_diverging() -> None:
    logits = torch.tensor([[2.0, -2.0], [-1.0, 1.0], [3.0, 0.0]])
    assert fit_temperature(logits, torch.tensor([0, 1, 0])) == pytest.approx(1 / MAX_BETA)


@pytest.mark.parametrize(
    ("logits", "targets", "message"),
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), "shape"),
        (torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), "shape"),
        (torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), "targets"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), "zero examples"),
        (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, dtype=torch.long), "NaN"),
    ],
)
def test_bad_inputs_raise(logits: torch.Tensor, targets: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, targets)


def test_calibration_record_against_the_references() -> None:
    logits, targets = sample(3000, 3, 2.5, seed=4)
    record = Calibration.fit(logits, targets, fitted_on="held-out")
    assert record.n == 3000 and record.fitted_on == "held-out"
    assert record.nll_before == pytest.approx(mean_nll(logits, targets, 1.0))
    assert record.nll_after == pytest.approx(mean_nll(logits, targets, record.temperature))
    assert record.nll_after < record.nll_before
    y = targets.numpy()
    assert record.ece_before == pytest.approx(expected_calibration_error(torch.softmax(logits, 1).numpy(), y))
    scaled = torch.softmax(logits / record.temperature, 1).numpy()
    assert record.ece_after == pytest.approx(expected_calibration_error(scaled, y))
    assert record.ece_after < record.ece_before  # overconfident by 2.5x: the fit must help


def test_a_run_is_calibrated_on_validation_and_predictions_use_it(trained_run, tmp_path: Path) -> None:
    run = trained_run("bag-attn")
    saved = json.loads((run / CALIBRATION_FILE).read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"] == saved
    assert saved["fitted_on"] == "validation split" and saved["temperature"] > 0
    predictor = Predictor(run)
    assert predictor.temperature == pytest.approx(saved["temperature"])
    texts = ["the film was wonderful", "a dull and boring plot", "it rained"]
    _, ids, mask = predictor.encode(texts)
    with torch.no_grad():
        logits = predictor.model(ids, mask).logits
    expected = torch.softmax(logits / saved["temperature"], dim=-1)
    torch.testing.assert_close(predictor.predict_proba(texts), expected)
    # The test report carries both calibration errors; accuracy is the same with and without the temperature.
    if saved["temperature"] != 1.0:
        assert "ece_uncalibrated" in metrics["test"]
    # A copy without calibration.json falls back to T = 1 (runs trained before calibration existed).
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / CALIBRATION_FILE).unlink()
    assert load_temperature(copy) == 1.0
    torch.testing.assert_close(Predictor(copy).predict_proba(texts), torch.softmax(logits, dim=-1))


def test_evaluate_reports_the_same_accuracy_with_and_without_the_temperature(
    trained_run, tmp_path: Path
) -> None:
    run = trained_run("bag-attn")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / CALIBRATION_FILE).unlink()
    test_file = run.parent / "test.jsonl"
    calibrated, raw = evaluate_run(run, str(test_file)), evaluate_run(copy, str(test_file))
    assert calibrated["accuracy"] == raw["accuracy"]
    assert calibrated["confusion_matrix"] == raw["confusion_matrix"]
    assert "ece_uncalibrated" not in raw
    if Predictor(run).temperature != 1.0:
        assert calibrated["ece_uncalibrated"] == pytest.approx(raw["ece"])


def test_calibrate_command_refits_on_given_data(trained_run, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run("bag-attn"), run)
    test_file = trained_run("bag-attn").parent / "test.jsonl"
    assert main(["calibrate", str(run), "--data", str(test_file), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((run / CALIBRATION_FILE).read_text())
    assert printed["fitted_on"] == str(test_file) and printed["n"] == 100
    # The stored temperature is the NLL minimizer on that data.
    predictor = Predictor(run)
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    _, ids, mask = predictor.encode([r["text"] for r in rows])
    with torch.no_grad():
        logits = predictor.model(ids, mask).logits
    targets = torch.tensor([predictor.labels.index(r["label"]) for r in rows])
    assert printed["temperature"] == pytest.approx(fit_temperature(logits, targets), rel=1e-6)
    # Default: the run's own validation split, rebuilt from its config.
    record = calibrate_run(run)
    assert record.fitted_on == "validation split"
    assert record.temperature == pytest.approx(
        json.loads((run / "metrics.json").read_text())["calibration"]["temperature"], rel=1e-5
    )


def test_calibrate_command_errors_cleanly_on_a_missing_run(tmp_path: Path, capsys) -> None:
    assert main(["calibrate", str(tmp_path / "nope")]) != 0
    assert "not an attnkit run directory" in capsys.readouterr().err
