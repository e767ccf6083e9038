"""End-to-end training on a tiny synthetic task: learning, determinism, resume, run-directory contents, refit and
ensembles (members equal standalone runs, the ensemble equals their mean logits)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import onnx
import pytest
import torch
from safetensors.torch import load_file

from attnkit.export import export_onnx
from attnkit.inference.evaluation import predict_logits
from attnkit.predictor import Predictor, calibrate_run, evaluate_run
from attnkit.tasks.text import TextClassificationTask
from attnkit.train import checkpoint as ckpt
from attnkit.train.calibration import MIN_EXAMPLES, fit_temperature
from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.loop import fit
from attnkit.train.run import FitResult

QuickWrites = Callable[[], AbstractContextManager[None]]

#: Carves 120 validation examples from tiny_data's 400 rows: at least calibration's MIN_EXAMPLES, so that a
#: temperature is fitted rather than skipped at T = 1 (with the default 0.1, 40 examples, every T would be 1).
CALIBRATED_VAL = "data.val_fraction=0.3"
#: Runs that tests compare with each other (a resumed run with its uninterrupted twin, an ensemble member with its
#: standalone run, a refit with its by-hand twin) take 64 examples a step instead of 16: a quarter of the steps, and
#: nothing compared depends on how many there are.
WIDE_BATCHES = "optim.batch_size=64"


def _fitted_temperature(run: Path) -> float:
    """The run's calibration.json temperature, checked to be a real fit (not a T = 1 kept or skipped)."""
    record = ckpt.read_json(run / "calibration.json")
    assert record["n"] >= MIN_EXAMPLES
    assert record["status"] in ("fitted", "clipped"), record["reason"]
    assert record["temperature"] != 1.0
    return float(record["temperature"])


def tiny_config(train: Path, test: Path, model: str = "bag-attn", epochs: int = 3) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {"train": str(train), "test": str(test)},
            "tokenizer": {"level": "word", "vocab_size": 200, "max_length": 64},
            "model": {"name": model, "options": {"embed_dim": 16, "dropout": 0.0}},
            "optim": {"lr": 0.01, "batch_size": 16},
            "train": {"epochs": epochs, "seed": 3, "progress": False, "patience": 5},
        }
    )


def refit_config(train: Path, test: Path) -> RunConfig:
    """bag-attn, 3 epochs in wide batches, ``train.refit`` with a validation split large enough to fit a
    temperature on."""
    return tiny_config(train, test, epochs=3).with_overrides(
        ["train.refit=true", CALIBRATED_VAL, WIDE_BATCHES]
    )


def ensemble_config(train: Path, test: Path, *extra: str) -> RunConfig:
    """An ensemble of 2 bag-attn members, 2 epochs in wide batches, with a validation split large enough to fit a
    temperature on."""
    return tiny_config(train, test, epochs=2).with_overrides(
        ["model.ensemble=2", CALIBRATED_VAL, WIDE_BATCHES, *extra]
    )


# Runs that several tests share (as a test's own run, or as the uninterrupted reference an interrupted and resumed
# run must equal), trained once for the module on shared_tiny_data. Tests only read them (one also exports the
# ensemble to ONNX beside its weights).
@pytest.fixture(scope="module")
def refit_run(
    shared_tiny_data: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    quick_writes_patch: QuickWrites,
) -> FitResult:
    train, test = shared_tiny_data
    with quick_writes_patch():  # its tests read no plot
        return fit(refit_config(train, test), tmp_path_factory.mktemp("refit") / "run")


@pytest.fixture(scope="module")
def ensemble_run(shared_tiny_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> FitResult:
    train, test = shared_tiny_data
    return fit(ensemble_config(train, test), tmp_path_factory.mktemp("ensemble") / "run")


@pytest.fixture(scope="module")
def refit_ensemble_run(
    shared_tiny_data: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    quick_writes_patch: QuickWrites,
) -> FitResult:
    train, test = shared_tiny_data
    with quick_writes_patch():  # its tests read no plot
        return fit(ensemble_config(train, test, "train.refit=true"), tmp_path_factory.mktemp("rens") / "run")


def test_fit_learns_and_writes_run_dir(tiny_data: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = tiny_data
    result = fit(tiny_config(train, test), tmp_path / "run")
    run = tmp_path / "run"
    for name in [
        "config.yaml",
        "labels.json",
        "model.safetensors",
        "metrics.json",
        "curves.png",
        "confusion.png",
    ]:
        assert (run / name).is_file(), name
    assert (run / "tokenizer").is_dir()
    metrics = ckpt.read_json(run / "metrics.json")
    assert metrics["test"]["accuracy"] >= 0.9  # one planted cue word decides the label
    assert metrics["test"]["n"] == 100 and metrics["val"]["n"] == 40
    assert metrics["epochs_run"] == 3 and len(metrics["history"]) == 3
    # The saved weights are the best validation epoch's, and evaluating them again reproduces the metrics.
    report = evaluate_run(run, str(test))
    assert report["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert report["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    predictor = Predictor(run)
    probs = predictor.predict_proba(["the movie was great and wonderful", "awful boring worst film"])
    assert predictor.labels == ["neg", "pos"]
    assert probs[0, 1] > 0.5 and probs[1, 0] > 0.5
    assert result.metrics["test"]["accuracy"] == metrics["test"]["accuracy"]


def test_same_seed_same_weights(tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None) -> None:
    train, test = tiny_data
    config = tiny_config(train, test, model="bilstm-attn", epochs=2).with_overrides([WIDE_BATCHES])
    fit(config, tmp_path / "a")
    fit(config, tmp_path / "b")
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def interrupt_after_saves(monkeypatch: pytest.MonkeyPatch, saves: int) -> None:
    """Make the ``saves``-th training-state save raise KeyboardInterrupt right after it was written (Ctrl-C)."""
    real_save = ckpt.save_training_state
    calls = {"n": 0}

    def save_then_interrupt(*args: object, **kwargs: object) -> None:
        real_save(*args, **kwargs)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_training_state", save_then_interrupt)


def test_resume_after_interrupt_matches_uninterrupted(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_writes: None
) -> None:
    train, test = tiny_data
    config = tiny_config(train, test, model="cnn-attn", epochs=3).with_overrides([WIDE_BATCHES])
    fit(config, tmp_path / "full")

    interrupt_after_saves(monkeypatch, 1)  # Ctrl-C right after epoch 1 was saved
    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "cut")
    assert ckpt.read_json(tmp_path / "cut" / "state" / "progress.json")["epoch"] == 0
    monkeypatch.undo()
    resumed = fit(RunConfig(), tmp_path / "cut", resume=True)

    full_metrics = ckpt.read_json(tmp_path / "full" / "metrics.json")
    assert [h["train_loss"] for h in resumed.metrics["history"]] == pytest.approx(
        [h["train_loss"] for h in full_metrics["history"]], rel=1e-6
    )
    a = load_file(str(tmp_path / "full" / "state" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "state" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)


def test_test_split_never_selects(tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None) -> None:
    """Tracking test accuracy records it but model selection follows validation only."""
    train, test = tiny_data
    config = tiny_config(train, test, epochs=2).with_overrides(
        ["train.track_test=true", "train.eval_every_steps=5"]
    )
    result = fit(config, tmp_path / "run")
    history = result.metrics["history"]
    assert all("test_accuracy" in h for h in history)
    assert len(history) > 2  # evaluations inside epochs too
    best = max(history, key=lambda h: h["val_accuracy"])
    assert result.metrics["best_val_accuracy"] == best["val_accuracy"]
    times = [h["train_seconds"] for h in history]
    assert times == sorted(times)


def test_fit_initializes_nb_attn_from_the_training_split_only(
    tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None
) -> None:
    train, test = tiny_data
    config = tiny_config(train, test, model="nb-attn", epochs=2).with_overrides(
        ["model.options={embed_dim: 8, ngram_buckets: 101, gate_init: 1.0}"]
    )
    result = fit(config, tmp_path / "run")
    assert result.metrics["init_seconds"] > 0
    assert result.metrics["test"]["accuracy"] >= 0.9
    ratios = load_file(str(tmp_path / "run" / "model.safetensors"))["nb_ratios"]
    model = result.model
    assert isinstance(model, torch.nn.Module)
    # The saved ratios are exactly the ones counted on the training split (validation and test left out).
    expected = model.document_counts(result.data.train.ids, result.data.train.labels)  # type: ignore[operator]
    from attnkit.models import nb_log_count_ratios

    counted = nb_log_count_ratios(expected, alpha=1.0)
    counted[0] = 0.0
    torch.testing.assert_close(ratios, counted)
    # A Predictor rebuilt from the run directory gets them back from the weights file.
    predictor = Predictor(tmp_path / "run")
    torch.testing.assert_close(predictor.model.nb_ratios, counted)  # type: ignore[arg-type]


def test_no_validation_trains_every_epoch_on_all_of_train_and_keeps_the_last_weights(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    """``data.val_fraction=0``: the refit mode. Same steps as a validated run would take on all the data."""
    train, test = tiny_data
    config = tiny_config(train, test, epochs=3).with_overrides(["data.val_fraction=0", "train.patience=1"])
    result = fit(config, tmp_path / "run")
    metrics = result.metrics
    assert metrics["data_sizes"] == {"train": 400, "val": 0, "test": 100}
    assert "val" not in metrics and "calibration" not in metrics
    assert not (tmp_path / "run" / "calibration.json").exists()
    # Patience 1 would stop a validated run early; here every epoch runs and the last one is kept.
    assert metrics["epochs_run"] == 3 and metrics["best_epoch"] == 3 and not metrics["stopped_early"]
    assert [h["val_accuracy"] for h in metrics["history"]] == [None, None, None]
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)
    assert metrics["test"]["accuracy"] >= 0.9
    assert evaluate_run(tmp_path / "run", str(test))["accuracy"] == metrics["test"]["accuracy"]
    assert (tmp_path / "run" / "curves.png").is_file() and (tmp_path / "run" / "confusion.png").is_file()


def test_refit_equals_the_two_step_workflow(
    refit_run: FitResult, shared_tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None
) -> None:
    """``train.refit``: a validated run in RUN_DIR/validated, then the same weights as training by hand on all of
    train for the epochs it selected."""
    train, test = shared_tiny_data
    result = refit_run
    run = refit_run.run_dir
    validated = ckpt.read_json(run / "validated" / "metrics.json")
    epochs = validated["best_epoch"]
    saved_config = RunConfig.from_yaml(run / "config.yaml")
    assert saved_config.data.val_fraction == 0 and saved_config.train.epochs == epochs
    assert not saved_config.train.refit
    metrics = ckpt.read_json(run / "metrics.json")
    assert metrics["epochs_run"] == epochs and metrics["data_sizes"]["train"] == 400
    assert metrics["validated"]["best_epoch"] == epochs
    assert metrics["validated"]["data_sizes"]["val"] == 120
    # The temperature is the validated run's (fitted on its validation split) and predictions use it.
    temperature = _fitted_temperature(run / "validated")
    validated_predictor = Predictor(run / "validated")
    task = TextClassificationTask(validated_predictor.config, validated_predictor.tokenizer)
    val = task.prepare(fitted=True).val
    val_logits = predict_logits(validated_predictor.model, task, val, 64, torch.device("cpu"))
    assert temperature == pytest.approx(fit_temperature(val_logits, list(val.labels)), rel=1e-4)
    assert _fitted_temperature(run) == temperature
    assert Predictor(run).temperature == temperature
    # The reference: the refit done by hand with the same seed.
    by_hand = fit(
        tiny_config(train, test, epochs=epochs).with_overrides(["data.val_fraction=0", WIDE_BATCHES]),
        tmp_path / "by_hand",
    )
    refit_weights = load_file(str(run / "model.safetensors"))
    for key, value in load_file(str(tmp_path / "by_hand" / "model.safetensors")).items():
        torch.testing.assert_close(refit_weights[key], value, rtol=0, atol=0)
    assert result.metrics["test"]["accuracy"] == by_hand.metrics["test"]["accuracy"]


@pytest.mark.parametrize("saves", [1, 4], ids=["validated-stage", "refit-stage"])
def test_refit_resumes_from_either_stage(
    refit_run: FitResult,
    shared_tiny_data: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    quick_writes: None,
    saves: int,
) -> None:
    """Ctrl-C during the validated run (save 1) or during the refit (save 4: the validated run saves 3 epochs).
    The uninterrupted run is :func:`refit_run`."""
    train, test = shared_tiny_data
    full = refit_run.run_dir
    interrupt_after_saves(monkeypatch, saves)
    with pytest.raises(KeyboardInterrupt):
        fit(refit_config(train, test), tmp_path / "cut")
    monkeypatch.undo()
    assert (tmp_path / "cut" / "validated" / "metrics.json").is_file() == (saves == 4)
    resumed = fit(RunConfig(), tmp_path / "cut", resume=True)
    _same_weights(full, tmp_path / "cut")
    full_metrics = ckpt.read_json(full / "metrics.json")
    assert resumed.metrics["validated"]["best_epoch"] == full_metrics["validated"]["best_epoch"]
    assert ckpt.read_json(tmp_path / "cut" / "calibration.json") == ckpt.read_json(full / "calibration.json")
    assert RunConfig.from_yaml(tmp_path / "cut" / "config.yaml") == RunConfig.from_yaml(full / "config.yaml")


def test_a_fresh_run_never_reuses_what_an_earlier_run_left(
    refit_run: FitResult,
    shared_tiny_data: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    quick_writes: None,
) -> None:
    """An earlier refit run in the directory (as after --overwrite): a new plain run, interrupted and resumed, stays
    a plain run; a new refit run, interrupted in its validated stage and resumed, redoes its own validated run.
    The new refit run's uninterrupted reference is :func:`refit_run`; the earlier run is trained once and copied."""
    train, test = shared_tiny_data
    old = tiny_config(train, test, epochs=1).with_overrides(
        ["train.refit=true", "optim.lr=0.05", WIDE_BATCHES]
    )
    plain = tiny_config(train, test, epochs=2).with_overrides(["train.calibrate=false", WIDE_BATCHES])
    fit(plain, tmp_path / "plain-reference")
    fit(old, tmp_path / "old")
    references = {"plain": tmp_path / "plain-reference", "refit": refit_run.run_dir}
    for name, config in (("plain", plain), ("refit", refit_config(train, test))):
        shutil.copytree(tmp_path / "old", tmp_path / name)
        interrupt_after_saves(monkeypatch, 1)
        with pytest.raises(KeyboardInterrupt):
            fit(config, tmp_path / name)
        monkeypatch.undo()
        resumed = fit(RunConfig(), tmp_path / name, resume=True)
        _same_weights(references[name], tmp_path / name)
        reference = ckpt.read_json(references[name] / "metrics.json")
        assert ("validated" in resumed.metrics) == (name == "refit")
        if name == "refit":
            assert resumed.metrics["validated"]["best_epoch"] == reference["validated"]["best_epoch"]
            # Its own validated run (3 epochs), not the old run's (1 epoch).
            assert resumed.metrics["validated"]["epochs_run"] == 3
    assert not (tmp_path / "plain" / "calibration.json").exists()  # the old run's temperature is gone
    assert not (tmp_path / "plain" / "validated").exists()


def test_refit_without_validation_is_a_clear_error(tiny_data: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = tiny_data
    config = tiny_config(train, test).with_overrides(["train.refit=true", "data.val_fraction=0"])
    with pytest.raises(ValueError, match="refit needs a validation split"):
        fit(config, tmp_path / "run")


def _same_weights(a: Path, b: Path, prefix: str = "") -> None:
    """Every tensor of run ``b``'s weights equals ``a``'s tensor ``prefix + name`` exactly."""
    left = load_file(str(a / "model.safetensors"))
    right = load_file(str(b / "model.safetensors"))
    for key, value in right.items():
        torch.testing.assert_close(left[prefix + key], value, rtol=0, atol=0)


def _mean_member_logits(run: Path, members: list[Path], split: str) -> tuple[torch.Tensor, list[int]]:
    """The mean logits of the standalone member runs on the ensemble run's ``split`` (rebuilt from its config)."""
    predictor = Predictor(run)
    task = TextClassificationTask(predictor.config, predictor.tokenizer)
    data = task.prepare(fitted=True)
    dataset = data.val if split == "val" else data.test
    assert dataset is not None
    logits = [predict_logits(Predictor(m).model, task, dataset, 64, torch.device("cpu")) for m in members]
    return torch.stack(logits).mean(dim=0), list(dataset.labels)


def test_ensemble_members_are_standalone_runs_and_the_ensemble_averages_their_logits(
    ensemble_run: FitResult, shared_tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None
) -> None:
    train, test = shared_tiny_data
    config = ensemble_config(train, test)
    result = ensemble_run
    run = ensemble_run.run_dir
    # Member m is the same run as training alone with seed train.seed + m.
    alone = []
    for member in range(2):
        seed = config.train.seed + member
        alone.append(
            fit(
                tiny_config(train, test, epochs=2).with_overrides(
                    [f"train.seed={seed}", CALIBRATED_VAL, WIDE_BATCHES]
                ),
                tmp_path / f"s{seed}",
            )
        )
        _same_weights(run / "members" / str(member), tmp_path / f"s{seed}")
        _same_weights(run, tmp_path / f"s{seed}", prefix=f"members.{member}.")
    metrics = ckpt.read_json(run / "metrics.json")
    assert [m["seed"] for m in metrics["members"]] == [3, 4]
    assert metrics["train_seconds"] == pytest.approx(sum(m["train_seconds"] for m in metrics["members"]))
    assert [m["test_accuracy"] for m in metrics["members"]] == [r.metrics["test"]["accuracy"] for r in alone]
    # The ensemble's test predictions are the argmax of the members' mean logits.
    mean_logits, labels = _mean_member_logits(run, [tmp_path / "s3", tmp_path / "s4"], "test")
    accuracy = float((mean_logits.argmax(dim=1) == torch.tensor(labels)).float().mean())
    assert metrics["test"]["accuracy"] == pytest.approx(accuracy)
    assert result.metrics["test"]["accuracy"] == metrics["test"]["accuracy"]
    # Its temperature is fitted on its own validation logits, and predictions use it.
    val_logits, val_labels = _mean_member_logits(run, [tmp_path / "s3", tmp_path / "s4"], "val")
    temperature = _fitted_temperature(run)
    assert temperature == pytest.approx(fit_temperature(val_logits, val_labels), rel=1e-4)
    predictor = Predictor(run)
    assert predictor.temperature == temperature
    texts = ["the movie was great and wonderful", "awful boring worst film"]
    expected = torch.stack(
        [Predictor(tmp_path / f"s{s}").model(*predictor.encode(texts)[1:]).logits for s in (3, 4)]
    ).mean(dim=0)
    torch.testing.assert_close(predictor.predict_proba(texts), torch.softmax(expected / temperature, dim=-1))
    # Loading, evaluating, exporting and the saved config round-trip; users see it named as an ensemble.
    assert RunConfig.from_yaml(run / "config.yaml").model.ensemble == 2
    assert predictor.config.model.label == "bag-attn (ensemble of 2)"
    report = export_onnx(run)  # checks ONNX Runtime against PyTorch itself (ValueError above 1e-4)
    assert report.model == "bag-attn (ensemble of 2)"
    metadata = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert metadata["attnkit_model"] == "bag-attn (ensemble of 2)"
    assert evaluate_run(run, str(test))["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert (run / "confusion.png").is_file()


def test_interrupted_ensemble_resumes_to_the_same_weights(
    ensemble_run: FitResult,
    shared_tiny_data: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    quick_writes: None,
) -> None:
    """The uninterrupted run is :func:`ensemble_run`."""
    train, test = shared_tiny_data
    interrupt_after_saves(monkeypatch, 3)  # member 0 saved 2 epochs: Ctrl-C after member 1's first epoch
    with pytest.raises(KeyboardInterrupt):
        fit(ensemble_config(train, test), tmp_path / "cut")
    assert (tmp_path / "cut" / "members" / "0" / "metrics.json").is_file()
    assert not (tmp_path / "cut" / "members" / "1" / "metrics.json").exists()
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    monkeypatch.undo()
    fit(RunConfig(), tmp_path / "cut", resume=True)
    _same_weights(ensemble_run.run_dir, tmp_path / "cut")


def test_ensemble_with_refit(refit_ensemble_run: FitResult) -> None:
    """Each member is refitted on all of train; the temperature comes from the validated members' ensemble."""
    run = refit_ensemble_run.run_dir
    metrics = ckpt.read_json(run / "metrics.json")
    assert metrics["data_sizes"]["train"] == 400 and "val" not in metrics
    assert metrics["validated"]["val"]["n"] == 120
    for member in range(2):
        member_metrics = ckpt.read_json(run / "members" / str(member) / "metrics.json")
        assert member_metrics["data_sizes"]["train"] == 400
        assert (run / "members" / str(member) / "validated" / "model.safetensors").is_file()
    validated = [run / "members" / str(m) / "validated" for m in range(2)]
    val_logits, val_labels = _mean_member_logits(validated[0], validated, "val")
    temperature = _fitted_temperature(run)
    assert temperature == pytest.approx(fit_temperature(val_logits, val_labels), rel=1e-4)
    assert metrics["validated"]["val"]["accuracy"] == pytest.approx(
        float((val_logits.argmax(dim=1) == torch.tensor(val_labels)).float().mean())
    )
    refitted = [run / "members" / str(m) for m in range(2)]
    test_logits, test_labels = _mean_member_logits(refitted[0], refitted, "test")
    assert metrics["test"]["accuracy"] == pytest.approx(
        float((test_logits.argmax(dim=1) == torch.tensor(test_labels)).float().mean())
    )
    assert Predictor(run).temperature == temperature
    # Training time counts each member's validated run and its refit.
    member_files = [ckpt.read_json(run / "members" / str(m) / "metrics.json") for m in range(2)]
    assert metrics["train_seconds"] == pytest.approx(
        sum(m["train_seconds"] + m["validated"]["train_seconds"] for m in member_files)
    )
    assert [m["best_epoch"] for m in metrics["members"]] == [
        m["validated"]["best_epoch"] for m in member_files
    ]
    # Nothing held out is left to refit the temperature on: a clear error, not a fit on training data.
    with pytest.raises(ValueError, match="no held-out validation split"):
        calibrate_run(run)


def test_refit_ensemble_resumes_a_member_stopped_in_its_validated_stage(
    refit_ensemble_run: FitResult,
    shared_tiny_data: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    quick_writes: None,
) -> None:
    """The uninterrupted run is :func:`refit_ensemble_run`."""
    train, test = shared_tiny_data
    full = refit_ensemble_run.run_dir
    member_saves = sum(
        ckpt.read_json(full / "members" / "0" / d / "metrics.json")["epochs_run"] for d in ("validated", ".")
    )
    interrupt_after_saves(monkeypatch, member_saves + 1)  # member 1, after its validated run's first epoch
    with pytest.raises(KeyboardInterrupt):
        fit(ensemble_config(train, test, "train.refit=true"), tmp_path / "cut")
    monkeypatch.undo()
    assert (tmp_path / "cut" / "members" / "1" / "validated" / "state").is_dir()
    fit(RunConfig(), tmp_path / "cut", resume=True)
    _same_weights(full, tmp_path / "cut")
    assert ckpt.read_json(tmp_path / "cut" / "calibration.json") == ckpt.read_json(full / "calibration.json")


def test_a_fresh_ensemble_never_reuses_an_earlier_runs_members(
    ensemble_run: FitResult,
    shared_tiny_data: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    quick_writes: None,
) -> None:
    """The new run's uninterrupted reference is :func:`ensemble_run`."""
    train, test = shared_tiny_data
    old = tiny_config(train, test, epochs=1).with_overrides(
        ["model.ensemble=2", "optim.lr=0.0001", WIDE_BATCHES]
    )
    new = ensemble_config(train, test)
    fit(old, tmp_path / "run")
    interrupt_after_saves(monkeypatch, 1)  # the new run stops after member 0's first epoch
    with pytest.raises(KeyboardInterrupt):
        fit(new, tmp_path / "run")
    monkeypatch.undo()
    assert (
        not (tmp_path / "run" / "members" / "1").exists() and not (tmp_path / "run" / "metrics.json").exists()
    )
    fit(RunConfig(), tmp_path / "run", resume=True)
    _same_weights(ensemble_run.run_dir, tmp_path / "run")
    # A member on disk that another config trained is refused on resume.
    RunConfig.from_yaml(tmp_path / "run" / "config.yaml").with_overrides(["optim.lr=0.05"]).save_yaml(
        tmp_path / "run" / "config.yaml"
    )
    with pytest.raises(ValueError, match="another config"):
        fit(RunConfig(), tmp_path / "run", resume=True)


def test_ensemble_size_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"model\.ensemble"):
        RunConfig.from_dict({"model": {"name": "bag-attn", "ensemble": 0}})
