import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit.cli import main
from attnkit.predictor import Predictor, calibrate_run, evaluate_run
from attnkit.runs import read_temperature
from attnkit.train.calibration import (
    CALIBRATION_FILE,
    MAX_TEMPERATURE,
    MIN_EXAMPLES,
    MIN_TEMPERATURE,
    Calibration,
    fit_temperature,
    scaled_probabilities,
)
from attnkit.train.metrics import expected_calibration_error


def mean_nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    """The reference: NLL written out with a plain log-sum-exp."""
    z = logits.double() / temperature
    return float((torch.logsumexp(z, dim=1) - z.gather(1, targets[:, None]).squeeze(1)).mean())


def grid_nll(logits: torch.Tensor, targets: torch.Tensor, grid: np.ndarray) -> np.ndarray:
    """``mean_nll`` at every temperature of ``grid`` at once: ``(G,)``."""
    z = logits.double()[None] / torch.as_tensor(grid, dtype=torch.float64)[:, None, None]  # (G, N, C)
    picked = z.gather(2, targets[None, :, None].expand(len(grid), -1, 1)).squeeze(2)  # (G, N)
    return (torch.logsumexp(z, dim=2) - picked).mean(dim=1).numpy()


def grid_search(logits: torch.Tensor, targets: torch.Tensor, low: float, high: float) -> tuple[float, float]:
    """Brute force: ``(T, NLL)`` at the best of 401 log-spaced temperatures in ``[low, high]``, then of 401 more
    within two steps of it (log step (high / low) / 160,000: a relative error under 4e-5 for [0.05, 20])."""
    coarse = np.exp(np.linspace(np.log(low), np.log(high), 401))
    i = int(np.argmin(grid_nll(logits, targets, coarse)))
    fine = np.exp(np.linspace(np.log(coarse[max(i - 2, 0)]), np.log(coarse[min(i + 2, 400)]), 401))
    nll = grid_nll(logits, targets, fine)
    return float(fine[int(np.argmin(nll))]), float(nll.min())


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
    grid = np.array([0.05, 1.0, 20.0])
    torch.testing.assert_close(  # the vectorized reference is the plain one
        torch.as_tensor(grid_nll(logits, targets, grid)),
        torch.tensor([mean_nll(logits, targets, t) for t in grid], dtype=torch.float64),
    )
    best, best_nll = grid_search(logits, targets, 0.05, 20.0)
    assert fitted == pytest.approx(best, rel=1e-4)
    assert mean_nll(logits, targets, fitted) <= best_nll + 1e-12


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
    assert fit_temperature(logits, torch.tensor([0, 1, 0])) == MIN_TEMPERATURE
    assert fit_temperature(logits, torch.tensor([1, 0, 1])) == MAX_TEMPERATURE  # always wrong: flatten
    assert fit_temperature(logits, torch.tensor([0, 1, 0]), min_temperature=1e-3) == pytest.approx(1e-3)


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
    assert record.status == "fitted" and record.temperature == record.fitted_temperature
    assert record.temperature == pytest.approx(fit_temperature(logits, targets))
    assert record.nll_before == pytest.approx(mean_nll(logits, targets, 1.0))
    assert record.nll_after == pytest.approx(mean_nll(logits, targets, record.temperature))
    assert record.nll_after < record.nll_before
    y = targets.numpy()
    assert record.ece_before == pytest.approx(expected_calibration_error(torch.softmax(logits, 1).numpy(), y))
    scaled = torch.softmax(logits / record.temperature, 1).numpy()
    assert record.ece_after == pytest.approx(expected_calibration_error(scaled, y))
    assert record.ece_after < record.ece_before  # overconfident by 2.5x: the fit must help
    assert record.cv_nll_after is not None and record.cv_nll_after < record.nll_before


# ----------------------------------------------------------------------------------------------------
# The decision: never a temperature that destroys the probabilities (issue 11).


def test_too_few_examples_skip_the_fit_and_say_how_many_are_needed() -> None:
    logits, targets = sample(30, 2, 3.0, seed=5)  # overconfident, but 30 examples cannot say by how much
    record = Calibration.fit(logits, targets, fitted_on="validation split")
    assert (
        record.status == "skipped-too-few" and record.temperature == 1.0 and record.fitted_temperature is None
    )
    assert f"needs at least {MIN_EXAMPLES} ({MIN_EXAMPLES - 30} more)" in record.reason
    assert record.reason.startswith("validation split has 30 examples")
    assert record.nll_after == record.nll_before == pytest.approx(mean_nll(logits, targets, 1.0))
    y = targets.numpy()
    assert (
        record.ece_after
        == record.ece_before
        == pytest.approx(expected_calibration_error(torch.softmax(logits, 1).numpy(), y))
    )
    assert "skipped-too-few" in record.describe() and "needs at least" in record.describe()
    # The same data fits once the threshold allows it.
    assert Calibration.fit(logits, targets, "x", min_examples=30).status != "skipped-too-few"


def test_an_optimum_outside_the_bounds_is_clipped() -> None:
    g = torch.Generator().manual_seed(6)
    margin = 1 + 2 * torch.rand(200, generator=g, dtype=torch.float64)  # (N,)
    targets = torch.randint(0, 2, (200,), generator=g)
    logits = torch.stack([margin, -margin], dim=1)  # (N, 2): class 0 always wins
    logits[targets == 1] = logits[targets == 1].flip(1)  # now every prediction is right: separable
    assert grid_search(logits, targets, 1e-3, 1e3)[0] < MIN_TEMPERATURE  # the unbounded optimum: T -> 0
    record = Calibration.fit(logits, targets, "validation split")
    assert record.status == "clipped" and record.temperature == MIN_TEMPERATURE
    assert "below the bounds [0.05, 20]" in record.reason
    assert record.nll_after == pytest.approx(mean_nll(logits, targets, MIN_TEMPERATURE))
    # Every prediction confidently wrong: the optimum is T -> infinity, clipped at the upper bound.
    wrong = Calibration.fit(logits, 1 - targets, "validation split")
    assert wrong.status == "clipped" and wrong.temperature == MAX_TEMPERATURE
    assert "above the bounds" in wrong.reason


def reference_cross_fitted_nll(logits: torch.Tensor, targets: torch.Tensor, folds: int = 5) -> float:
    """Example i is scored at the grid-search temperature fitted on the examples outside fold i % folds."""
    fold_of = torch.arange(len(targets)) % folds
    total = 0.0
    for k in range(folds):
        train, held = fold_of != k, fold_of == k
        best, _ = grid_search(logits[train], targets[train], MIN_TEMPERATURE, MAX_TEMPERATURE)
        total += mean_nll(logits[held], targets[held], best) * int(held.sum())
    return total / len(targets)


def test_a_temperature_that_would_worsen_held_out_nll_is_never_kept() -> None:
    """Labels drawn from softmax(logits): T = 1 is the truth, and on 120 examples the fitted T is noise.

    Whenever the temperatures fitted without a fold raise that fold's NLL (cross-fitted, computed here by grid
    search), T = 1 must be kept, whatever the in-sample fit says; otherwise the fit is used.
    """
    statuses = []
    for seed in range(12):
        logits, targets = sample(120, 2, 1.0, seed=seed)
        record = Calibration.fit(logits, targets, "validation split")
        cv = reference_cross_fitted_nll(logits, targets)
        nll_one = mean_nll(logits, targets, 1.0)
        assert record.cv_nll_after == pytest.approx(cv, rel=1e-3)
        assert record.fitted_temperature == pytest.approx(fit_temperature(logits, targets))
        if cv > nll_one + 1e-4:
            assert record.status == "kept-1-worse" and record.temperature == 1.0, seed
            assert record.nll_after == record.nll_before and record.ece_after == record.ece_before
            assert "would not lower the NLL of held-out examples" in record.reason
        elif cv < nll_one - 1e-4:
            assert record.status == "fitted" and record.temperature == record.fitted_temperature, seed
        statuses.append(record.status)
    assert {"kept-1-worse", "fitted"} <= set(statuses)  # both branches were exercised


def test_old_calibration_files_still_load(tmp_path: Path) -> None:
    old = {
        "temperature": 1.7,
        "fitted_on": "validation split",
        "n": 500,
        "nll_before": 0.4,
        "nll_after": 0.35,
        "ece_before": 0.05,
        "ece_after": 0.02,
    }
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(old))
    assert read_temperature(tmp_path) == 1.7
    record = Calibration.from_dict(old)
    assert record.status == "fitted" and record.temperature == 1.7 and record.reason == ""
    logits, targets = sample(200, 3, 2.0, seed=7)
    new = Calibration.fit(logits, targets, "x")
    assert Calibration.from_dict(json.loads(json.dumps(new.to_dict()))) == new
    with pytest.raises(ValueError, match="lacks temperature"):
        Calibration.from_dict({k: v for k, v in old.items() if k != "temperature"})
    with pytest.raises(ValueError, match="unknown calibration status 'guessed'"):
        Calibration.from_dict({**old, "status": "guessed"})


def test_a_small_validation_split_keeps_temperature_one(trained_run) -> None:
    run = trained_run("bag-attn")  # 400 training rows: a validation split of 40
    saved = json.loads((run / CALIBRATION_FILE).read_text())
    assert json.loads((run / "metrics.json").read_text())["calibration"] == saved
    assert saved["status"] == "skipped-too-few" and saved["temperature"] == 1.0 and saved["n"] == 40
    assert f"needs at least {MIN_EXAMPLES}" in saved["reason"]
    assert Predictor(run).temperature == 1.0


def test_a_run_is_calibrated_on_validation_and_predictions_use_it(trained_run, tmp_path: Path) -> None:
    run = trained_run("bag-attn", "--set", "data.val_fraction=0.3")  # a validation split of 120
    saved = json.loads((run / CALIBRATION_FILE).read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"] == saved
    assert saved["fitted_on"] == "validation split" and saved["n"] == 120 and saved["temperature"] > 0
    assert saved["status"] in ("fitted", "clipped", "kept-1-worse") and saved["reason"]
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
    assert read_temperature(copy) == 1.0
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
    capsys.readouterr()  # what training the fixture's run printed, when this test is the first to need it
    assert main(["calibrate", str(run), "--data", str(test_file), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((run / CALIBRATION_FILE).read_text())
    assert printed["fitted_on"] == str(test_file) and printed["n"] == 100
    # The stored decision is the one Calibration.fit takes on those logits, and the fit is the NLL minimizer.
    predictor = Predictor(run)
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    _, ids, mask = predictor.encode([r["text"] for r in rows])
    with torch.no_grad():
        logits = predictor.model(ids, mask).logits
    targets = torch.tensor([predictor.labels.index(r["label"]) for r in rows])
    expected = Calibration.fit(logits, targets, fitted_on=str(test_file))
    assert printed["status"] == expected.status and printed["reason"] == expected.reason
    assert printed["temperature"] == pytest.approx(expected.temperature, rel=1e-6)
    assert printed["fitted_temperature"] == pytest.approx(fit_temperature(logits, targets), rel=1e-6)
    # Without --json the command prints the decision and why.
    assert main(["calibrate", str(run), "--data", str(test_file)]) == 0
    assert capsys.readouterr().out.strip() == Calibration.from_dict(printed).describe()
    # Default: the run's own validation split, rebuilt from its config.
    record = calibrate_run(run)
    assert record.fitted_on == "validation split"
    assert record.temperature == pytest.approx(
        json.loads((run / "metrics.json").read_text())["calibration"]["temperature"], rel=1e-5
    )


def test_calibrate_command_errors_cleanly_on_a_missing_run(tmp_path: Path, capsys) -> None:
    assert main(["calibrate", str(tmp_path / "nope")]) != 0
    assert re.search(r"(not an attnkit run directory|no such run directory)", capsys.readouterr().err)


def test_calibrate_never_replaces_a_fitted_temperature_with_one(trained_run, tmp_path: Path, capsys) -> None:
    """``calibrate --data small.csv`` (too few examples: T = 1 unfitted) used to overwrite a fitted T with 1."""
    run = tmp_path / "run"
    shutil.copytree(trained_run("bag-attn", "--set", "data.val_fraction=0.3"), run)
    before = (run / CALIBRATION_FILE).read_bytes()
    saved = json.loads(before)
    assert saved["status"] in ("fitted", "clipped") and saved["temperature"] != 1.0  # the premise
    test_file = trained_run("bag-attn").parent / "test.jsonl"
    small = tmp_path / "small.jsonl"
    small.write_text("".join(test_file.read_text().splitlines(keepends=True)[:50]))
    capsys.readouterr()  # what training the fixture's runs printed
    assert main(["calibrate", str(run), "--data", str(small)]) == 0
    line = capsys.readouterr().out.strip()
    assert (run / CALIBRATION_FILE).read_bytes() == before
    assert Predictor(run).temperature == saved["temperature"]
    assert "(skipped-too-few)" in line and "(n=50)" in line  # this fit's decision, then what happened
    assert f"calibration.json kept as it was: the run still uses T = {saved['temperature']:.4g}" in line
    record = calibrate_run(run, str(small))
    assert (
        record.status == "skipped-too-few" and record.temperature == 1.0 and "kept as it was" in record.reason
    )
    assert (run / CALIBRATION_FILE).read_bytes() == before
    # A damaged file is replaced even by an unfitted T = 1 (its error says to run calibrate), and so is a T = 1.
    (run / CALIBRATION_FILE).write_text('{"temperature": -2}')
    record = calibrate_run(run, str(small))
    assert json.loads((run / CALIBRATION_FILE).read_text()) == record.to_dict()
    assert "kept" not in record.reason and read_temperature(run) == 1.0
    # A fitted temperature replaces the file: the default, the run's validation split, gives its T back.
    record = calibrate_run(run)
    assert (
        record.status == saved["status"]
        and json.loads((run / CALIBRATION_FILE).read_text()) == record.to_dict()
    )
    assert record.temperature == pytest.approx(saved["temperature"], rel=1e-5)
