"""The stages of ``attnkit train``: a plain run, an ensemble of runs, a validated run and its refit.

:func:`fit` is the entry point; each stage calls :func:`attnkit.train.run.train_run` for its runs, so every
stage works on every task.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from attnkit.models.ensemble import EnsembleClassifier
from attnkit.runs import (
    CONFIG_FILE,
    LABELS_FILE,
    MEMBERS_DIR,
    METRICS_FILE,
    VALIDATED_DIR,
    build_run_model,
    load_weights,
    read_labels,
    read_metrics,
)
from attnkit.tasks import task_for
from attnkit.tasks.base import Task
from attnkit.train import checkpoint as ckpt
from attnkit.train.calibration import CALIBRATION_FILE
from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.distributed import barrier, init_distributed
from attnkit.train.run import FitResult, train_run
from attnkit.train.selection import final_metrics

log = logging.getLogger("attnkit.train.loop")


def _fit_plain(config: RunConfig, run_dir: Path, *, resume: bool) -> FitResult:
    return train_run(config, run_dir, resume=resume, clear_earlier=_clear_earlier_run)


def _with_preparation_of(task: Task, config: RunConfig) -> Task:
    """A task for ``config`` that prepares inputs as ``task`` does (its fitted tokenizer or statistics)."""
    other = task_for(config)
    other.adopt_preparation(task)
    return other


def fit(config: RunConfig, run_dir: str | Path, *, resume: bool = False) -> FitResult:
    """Train a classifier and write the run directory; continue an interrupted run with ``resume=True``.

    The run directory receives ``config.yaml``, ``tokenizer/``, ``labels.json``, ``model.safetensors`` (best
    validation weights), ``metrics.json``, ``calibration.json`` (with ``train.calibrate``), ``curves.png``,
    ``confusion.png`` and ``state/`` (for resuming).

    With ``train.refit``, the validated run goes to ``RUN_DIR/validated`` and the run directory receives a model
    trained from scratch on train + validation for the ``best_epoch`` that run selected (its ``config.yaml`` is
    the refit's: ``data.val_fraction: 0``, ``train.epochs: best_epoch``). ``--resume`` continues whichever stage
    was interrupted. Its ``metrics.json`` adds ``validated`` (the validated run's selection and scores); it keeps
    the validated run's temperature, since nothing is left to fit one on.

    A fresh (not resumed) run first removes what an earlier run left in ``RUN_DIR`` that could be mistaken for
    its own: ``state/``, ``metrics.json``, ``calibration.json``, the weights, the plots, ``validated/`` and
    ``members/``.

    Killed at any point (Ctrl-C, ``kill -9``), a run resumes from its last committed checkpoint (one per epoch,
    with the best weights so far: :mod:`attnkit.train.checkpoint`) to the same final weights as an uninterrupted
    run; stopped before its first checkpoint, it starts over. Only a kill before ``config.yaml`` was written
    leaves nothing to resume (:class:`ConfigError`).

    With ``model.ensemble = M > 1``, ``M`` members are trained as above into ``RUN_DIR/members/<m>`` (seeds
    ``train.seed + m``) and the run directory receives their :class:`EnsembleClassifier` (no ``curves.png``: each
    member has its own); ``metrics.json`` adds ``members``, and ``train_seconds`` is the members' total.
    """
    run_dir = Path(run_dir)
    if resume:  # the run's own config decides (the one passed in is ignored)
        if not (run_dir / CONFIG_FILE).is_file():
            raise ConfigError(
                f"{run_dir} holds no run to resume (no {CONFIG_FILE}): train it again without --resume"
            )
        config = RunConfig.from_yaml(run_dir / CONFIG_FILE)
        # After the refit stage of a train.refit run wrote its own config, resume the whole run from the original.
        config = _refit_run_of(config, run_dir) or config
        if init_distributed(config.train.device).is_main:  # before anything is written again
            ckpt.clean_run_leftovers(run_dir)  # temporary files of writes that a kill interrupted
    config = config.resolved()  # the modality is decided once, and saved with the run
    if config.model.ensemble > 1:
        return _fit_ensemble(config, run_dir, resume=resume)
    if config.train.refit:
        return _fit_with_refit(config, run_dir, resume=resume)
    return _fit_plain(config, run_dir, resume=resume)


def _refit_run_of(config: RunConfig, run_dir: Path) -> RunConfig | None:
    """The original ``train.refit`` config when ``config`` (read from ``run_dir``) is its refit stage's, else None.

    It is, when ``run_dir/validated`` holds the validated run and ``config`` is exactly that run's refit config.
    """
    validated_config = run_dir / VALIDATED_DIR / CONFIG_FILE
    if config.train.refit or config.model.ensemble != 1 or not validated_config.is_file():
        return None
    original = RunConfig.from_yaml(validated_config).with_overrides(["train.refit=true"])
    return original if refit_config(original, config.train.epochs).to_dict() == config.to_dict() else None


def _clear_earlier_run(run_dir: Path, *, keep_validated: bool = False) -> None:
    """Remove what an earlier run left in ``run_dir`` that a fresh run could mistake for its own (rank 0 only).

    Its checkpoints go first, so that a kill part-way leaves the earlier run resumable as it was or without a
    checkpoint to resume (it then starts over), never a new run on an old checkpoint. Folders are renamed aside
    before they are deleted (:func:`attnkit.atomic.remove_tree`): no half-deleted member or validated run.
    """
    ckpt.remove_training_state(run_dir)
    for folder in (MEMBERS_DIR, *(() if keep_validated else (VALIDATED_DIR,))):
        ckpt.remove_tree(run_dir / folder)
    for name in (METRICS_FILE, CALIBRATION_FILE, ckpt.WEIGHTS_FILE, *_EARLIER_RUN_FILES):
        (run_dir / name).unlink(missing_ok=True)


#: Files of an earlier run that no step of a new run may leave in place (the run's own are rewritten):
#: its plots (an ensemble writes no curves.png), the demo's report and exported ONNX models of other weights.
_EARLIER_RUN_FILES = ("curves.png", "confusion.png", "report.html", "model.onnx", "model.int8.onnx")


def member_config(config: RunConfig, member: int) -> RunConfig:
    """The config of ensemble member ``member``: the same run with one model and seed ``train.seed + member``."""
    return config.with_overrides(["model.ensemble=1", f"train.seed={config.train.seed + member}"])


def _fit_member(config: RunConfig, run_dir: Path, *, resume: bool) -> dict[str, Any]:
    """Train one member; resuming, skip it when finished or continue it where it stopped (either refit stage).

    Raises:
        ValueError: resuming, the member on disk was trained with another config (not this ensemble's member).
    """
    if resume and (run_dir / CONFIG_FILE).is_file():
        saved = RunConfig.from_yaml(run_dir / CONFIG_FILE)
        expected = [config] + ([refit_config(config, saved.train.epochs)] if config.train.refit else [])
        if all(saved.to_dict() != candidate.to_dict() for candidate in expected):
            raise ValueError(
                f"{run_dir} holds a run with another config than this ensemble's member; train again without "
                "--resume (or --overwrite) to start over"
            )
        if (run_dir / METRICS_FILE).is_file():
            metrics = read_metrics(run_dir)  # checked: a JSON object (attnkit.runs)
            if not config.train.refit or "validated" in metrics:  # else stopped before the refit's last write
                log.info("ensemble member %s is complete", run_dir)
                return metrics
        # Started over if it stopped before its first checkpoint.
        return fit(config, run_dir, resume=True).metrics
    return fit(config, run_dir).metrics


def load_ensemble(config: RunConfig, member_dirs: list[Path]) -> tuple[nn.Module, Task, list[str]]:
    """The ensemble of trained member runs, with their (shared) task preparation and labels.

    Every member's files go through the checked readers of :mod:`attnkit.runs`, so that a damaged member
    (resuming an ensemble reads them all) is a one-line error naming the file, not a traceback.

    Raises:
        RunNotFoundError: a member's preparation (tokenizer), labels or weights are missing.
        RunError: one of them is damaged, or the weights do not fit the model (names and shapes are checked).
        ValueError: the members' preparations or labels differ (they were trained on different data).
    """
    task = task_for(config)
    task.load_preparation(member_dirs[0])
    labels = read_labels(member_dirs[0])
    for member_dir in member_dirs[1:]:
        if read_labels(member_dir) != labels:
            raise ValueError(f"{member_dir / LABELS_FILE}: its labels differ from {member_dirs[0]}'s")
        other = task_for(config)
        other.load_preparation(member_dir)
        if not task.same_preparation(other):
            raise ValueError(f"{member_dir}: its {task.preparation_name} differs from {member_dirs[0]}'s")
    model = build_run_model(config.with_overrides([f"model.ensemble={len(member_dirs)}"]), task, len(labels))
    assert isinstance(model, EnsembleClassifier)
    for member, member_dir in zip(model.classifiers, member_dirs, strict=True):
        load_weights(member, member_dir / ckpt.WEIGHTS_FILE)
    return model.eval(), task, labels


def _member_seconds(metrics: dict[str, Any], key: str) -> float:
    """A member's ``train_seconds`` or ``init_seconds``, its validated run's included (with ``train.refit``)."""
    return float(metrics.get(key, 0.0)) + float(metrics.get("validated", {}).get(key, 0.0))


def _member_summary(index: int, config: RunConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """One member's seed, selection, timings and scores (the validated run's selection with ``train.refit``)."""
    summary: dict[str, Any] = {"member": index, "seed": config.train.seed + index}
    selection = metrics.get("validated", metrics)  # a refitted member selected nothing itself
    for key in ("best_epoch", "best_val_accuracy"):
        summary[key] = selection.get(key)
    summary["epochs_run"] = metrics.get("epochs_run")
    for key in ("train_seconds", "init_seconds"):
        summary[key] = _member_seconds(metrics, key)
    for split in ("val", "test"):
        if split in metrics:
            summary[f"{split}_accuracy"] = metrics[split]["accuracy"]
    return summary


def _fit_ensemble(config: RunConfig, run_dir: Path, *, resume: bool) -> FitResult:
    """Train ``model.ensemble`` members one after the other, then assemble and evaluate the ensemble.

    Each member is a complete run in ``RUN_DIR/members/<m>`` (with ``train.refit``, refitted the same way); a
    resumed ensemble skips the finished members and resumes the interrupted one. The ensemble's temperature is
    fitted on its own validation logits (with ``train.refit``: those of the validated members' ensemble).
    """
    ctx = init_distributed(config.train.device)
    count = config.model.ensemble
    member_dirs = [run_dir / MEMBERS_DIR / str(m) for m in range(count)]
    if not resume:
        task_for(
            config
        ).read_splits()  # a data mistake is reported before an earlier run is cleared or a config written
    if ctx.is_main and not resume:  # a fresh start: nothing of an earlier run in RUN_DIR may be reused
        _clear_earlier_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save_yaml(run_dir / CONFIG_FILE)  # written first, so that --resume RUN_DIR finds it
    barrier(ctx)
    member_metrics = []
    for index, member_dir in enumerate(member_dirs):
        log.info("ensemble member %d of %d (seed %d)", index + 1, count, config.train.seed + index)
        member_metrics.append(_fit_member(member_config(config, index), member_dir, resume=resume))
    barrier(ctx)

    temperature: float | None = None
    validated_report: dict[str, Any] = {}
    if config.train.refit:  # no validation split is left: calibrate on the validated members' ensemble
        validated, validated_task, _ = load_ensemble(config, [d / VALIDATED_DIR for d in member_dirs])
        validated_metrics = final_metrics(
            validated.to(ctx.device), validated_task, validated_task.prepare(fitted=True), config, ctx.device
        )
        del validated  # before the refitted members are loaded: one ensemble in memory at a time
        validated_report = {"validated": {"val": validated_metrics["val"]}}
        if "calibration" in validated_metrics:
            validated_report["calibration"] = {
                **validated_metrics["calibration"],
                "fitted_on": f"{MEMBERS_DIR}/*/{VALIDATED_DIR}/: validation split, validated members' ensemble",
            }
            temperature = validated_report["calibration"]["temperature"]
    model, task, labels = load_ensemble(config, member_dirs)
    model = model.to(ctx.device)
    if config.train.refit:  # the refitted members saw train + validation: score them on test only
        task = _with_preparation_of(task, refit_config(config, 1))
    data = task.prepare(fitted=True)
    metrics = final_metrics(model, task, data, config, ctx.device, temperature=temperature)
    metrics.update(validated_report)
    metrics.update(
        {
            "members": [_member_summary(i, config, m) for i, m in enumerate(member_metrics)],
            # With refit, a member's training is its validated run plus its refit.
            "train_seconds": sum(_member_seconds(m, "train_seconds") for m in member_metrics),
            "init_seconds": sum(_member_seconds(m, "init_seconds") for m in member_metrics),
            "world_size": ctx.world_size,
            "data_sizes": data.sizes,
        }
    )
    if ctx.is_main:
        task.save_preparation(run_dir)
        ckpt.write_json(run_dir / LABELS_FILE, labels)
        ckpt.save_weights(model, run_dir / ckpt.WEIGHTS_FILE)
        if "calibration" in metrics:
            ckpt.write_json(run_dir / CALIBRATION_FILE, metrics["calibration"])
        ckpt.write_json(run_dir / METRICS_FILE, metrics)
        held_out = metrics.get("test") or metrics.get("val")
        if held_out is not None:
            from attnkit.train.plots import plot_confusion

            plot_confusion(np.asarray(held_out["confusion_matrix"]), labels, run_dir / "confusion.png")
    barrier(ctx)
    return FitResult(run_dir=run_dir, metrics=metrics, model=model, data=data, task=task)


def refit_config(config: RunConfig, epochs: int) -> RunConfig:
    """``config`` changed to train on all of train (no validation) for ``epochs`` epochs, without refitting again
    (and without re-planning them for a time budget: they are the validated run's choice)."""
    return config.with_overrides(
        [
            "train.refit=false",
            "data.val_fraction=0",
            "data.val=null",
            f"train.epochs={epochs}",
            "train.fit_schedule_to_budget=false",
        ]
    )


def _fit_with_refit(config: RunConfig, run_dir: Path, *, resume: bool = False) -> FitResult:
    """The validated run in ``RUN_DIR/validated``, then the refit in ``RUN_DIR``; ``resume`` continues either stage.

    ``RUN_DIR/config.yaml`` holds ``config`` (``train.refit: true``) until the refit stage starts and writes its own.
    """
    if not config.data.has_validation:
        raise ConfigError("train.refit needs a validation split to select the epochs (data.val_fraction > 0)")
    if config.data.val:
        raise ConfigError(
            f"train.refit retrains on the training data plus the validation split carved from it, but data.val "
            f"names a separate file ({config.data.val}) that the refit would not see: merge it into data.train, or "
            "drop train.refit"
        )
    validated_dir = run_dir / VALIDATED_DIR
    ctx = init_distributed(config.train.device)
    # Decided before either stage runs (the refit stage rewrites RUN_DIR/config.yaml): did the refit start? If it
    # stopped before its first checkpoint, resuming it starts it over.
    refit_stage_started = resume and not RunConfig.from_yaml(run_dir / CONFIG_FILE).train.refit
    if resume and (validated_dir / METRICS_FILE).is_file():
        validated_run = read_metrics(validated_dir)  # checked: a JSON object (attnkit.runs)
    elif resume and (validated_dir / CONFIG_FILE).is_file():  # continued (or started over: no checkpoint yet)
        validated_run = train_run(config, validated_dir, resume=True).metrics
    else:
        task_for(
            config
        ).read_splits()  # a data mistake is reported before an earlier run is cleared or a config written
        if ctx.is_main:  # so that --resume RUN_DIR finds the run while it is in its validated stage
            _clear_earlier_run(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save_yaml(run_dir / CONFIG_FILE)
        barrier(ctx)
        validated_run = train_run(
            config.with_overrides(["train.refit=false"]), validated_dir, clear_earlier=_clear_earlier_run
        ).metrics
    epochs = int(validated_run["best_epoch"])
    log.info("refit on train + validation for %d epoch(s), the validated run's best", epochs)
    result = train_run(
        refit_config(config, epochs),
        run_dir,
        resume=refit_stage_started,
        clear_earlier=lambda path: _clear_earlier_run(path, keep_validated=True),
    )
    validated_metrics = {k: v for k, v in validated_run.items() if k != "history"}
    result.metrics["validated"] = validated_metrics
    calibration = validated_metrics.get("calibration")
    if calibration is not None:
        calibration = {**calibration, "fitted_on": f"{VALIDATED_DIR}/: validation split, validated model"}
        result.metrics["calibration"] = calibration
    if ctx.is_main:
        if calibration is not None:
            ckpt.write_json(run_dir / CALIBRATION_FILE, calibration)
        ckpt.write_json(run_dir / METRICS_FILE, result.metrics)
    barrier(ctx)
    return result
