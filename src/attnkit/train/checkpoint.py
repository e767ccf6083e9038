"""Run-directory files and the resumable training state, each replaced as one unit (never pickle).

Single files are written atomically (:func:`attnkit.atomic.atomic_write`). The training state is several files
(weights, optimizer, scheduler, progress and the best weights so far) that must change together, so a checkpoint
is a folder:

- it is assembled in ``state.new/``: the best weights when validation improves (:func:`stage_best_weights`),
  then at the end of the epoch everything else (:func:`save_training_state`);
- ``state.new/checkpoint.json`` (each file's size) is written last, once every file is on disk: from that moment
  the checkpoint is committed, and ``state.new/`` with a manifest is preferred to ``state/``;
- ``state/`` is then renamed to ``state.old/``, ``state.new/`` to ``state/``, and ``state.old/`` is deleted;
- finally ``RUN_DIR/model.safetensors`` is made the committed best weights (a hard link to
  ``state/best.safetensors`` where the file system allows it).

So a process killed at any point leaves a run that resumes from its last committed checkpoint, with the best
weights that belong to it: never new weights with old progress, nor best weights that no checkpoint knows of.
:func:`recover` finishes what a kill interrupted (a half-done switch, the published weights) and removes what it
left (an incomplete ``state.new/``, temporary files).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attnkit.atomic import (
    atomic_write,
    clean_leftovers,
    fsync_dir,
    link_or_copy,
    remove_tree,
    write_json,
)

__all__ = [
    "BEST_FILE",
    "MANIFEST_FILE",
    "STAGING_DIR",
    "STATE_DIR",
    "WEIGHTS_FILE",
    "atomic_write",
    "clean_run_leftovers",
    "has_training_state",
    "load_training_state",
    "load_weights",
    "publish_best_weights",
    "read_json",
    "recover",
    "remove_training_state",
    "remove_tree",
    "save_training_state",
    "save_weights",
    "stage_best_weights",
    "training_progress",
    "write_json",
]

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
AVERAGE_FILE = "average.safetensors"  # in STATE_DIR: the weights' moving average (optim.ema_decay)
STATE_DIR = "state"  # resumable training state: weights, optimizer, scheduler, progress, best weights
STAGING_DIR = "state.new"  # the next checkpoint while it is written; committed once it holds its manifest
_OLD_DIR = "state.old"  # the previous checkpoint during the switch; never read
MANIFEST_FILE = "checkpoint.json"
#: Inside a checkpoint: the best weights so far (what ``RUN_DIR/model.safetensors`` is).
BEST_FILE = "best.safetensors"
PROGRESS_FILE = "progress.json"
_FORMAT = "attnkit-checkpoint"
_FORMAT_VERSION = 1


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def save_weights(model: nn.Module, path: Path) -> None:
    """Save a state dict as safetensors (tensors made contiguous; shared storage is cloned)."""
    _save_tensors(
        {name: t.detach().contiguous().clone().cpu() for name, t in model.state_dict().items()}, path
    )


def load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}: is this an attnkit run directory?")
    model.load_state_dict(load_file(str(path)))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able scalars."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars["state"].setdefault(str(param_id), {})[key] = value
    return tensors, scalars


def _is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a committed checkpoint: a readable manifest whose files all have their sizes."""
    try:
        manifest = read_json(folder / MANIFEST_FILE)
        if manifest.get("format") != _FORMAT:
            return False
        return all((folder / name).stat().st_size == size for name, size in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _current_state_dir(run_dir: Path) -> Path | None:
    """The folder of the run's last committed checkpoint, or None; only reads.

    A ``state.new/`` with its manifest is newer than ``state/`` (a kill interrupted the switch). A ``state/``
    without a manifest but with its progress file was written by an attnkit from before manifests.
    """
    staging, state = run_dir / STAGING_DIR, run_dir / STATE_DIR
    for folder in (staging, state):
        if _is_complete(folder):
            return folder
    if (state / PROGRESS_FILE).is_file() and not (state / MANIFEST_FILE).exists():
        return state
    return None


def has_training_state(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a committed checkpoint to resume from."""
    return _current_state_dir(run_dir) is not None


def training_progress(run_dir: Path) -> dict[str, Any] | None:
    """The progress record of the last committed checkpoint (``epoch`` is 0-based), or None without one."""
    folder = _current_state_dir(run_dir)
    if folder is None:
        return None
    progress: dict[str, Any] = read_json(folder / PROGRESS_FILE)
    return progress


def _switch(run_dir: Path) -> None:
    """Make the committed ``state.new/`` the run's ``state/`` (each step leaves a resumable run)."""
    state, old = run_dir / STATE_DIR, run_dir / _OLD_DIR
    if old.exists():
        shutil.rmtree(old)
    if state.exists():
        os.rename(state, old)
    os.rename(run_dir / STAGING_DIR, state)
    fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def publish_best_weights(run_dir: Path) -> None:
    """Make ``RUN_DIR/model.safetensors`` the committed checkpoint's best weights (nothing when it has none)."""
    best = run_dir / STATE_DIR / BEST_FILE
    target = run_dir / WEIGHTS_FILE
    if not best.is_file():
        return
    if target.is_file() and os.path.samefile(best, target):
        return
    link_or_copy(best, target)


def _staging(run_dir: Path) -> Path:
    """``state.new/``, created when missing; a committed one left by an interrupted switch is switched first.

    An incomplete ``state.new/`` is taken as this process's checkpoint in progress: :func:`recover` (on resume)
    and :func:`remove_training_state` (on a fresh start) remove one that a killed process left.
    """
    staging = run_dir / STAGING_DIR
    if _is_complete(staging):
        _switch(run_dir)
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def stage_best_weights(run_dir: Path, model: nn.Module) -> None:
    """Record the model's weights as the best so far in the checkpoint being assembled.

    They reach ``RUN_DIR/model.safetensors`` when :func:`save_training_state` commits that checkpoint.
    """
    save_weights(model, _staging(run_dir) / BEST_FILE)


def save_training_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: dict[str, Any],
    average: nn.Module | None = None,
) -> None:
    """Commit a checkpoint with everything ``--resume`` needs, then publish its best weights.

    ``average`` is the moving average of the weights (``optim.ema_decay``), saved beside them.

    The best weights are those of the last :func:`stage_best_weights` since the previous checkpoint, else the
    previous checkpoint's (else an existing ``RUN_DIR/model.safetensors``, as an older attnkit left it).
    """
    staging = _staging(run_dir)
    save_weights(model, staging / "model.safetensors")
    if average is not None:
        save_weights(average, staging / AVERAGE_FILE)
    tensors, scalars = _optimizer_tensors(optimizer)
    _save_tensors(tensors, staging / "optimizer.safetensors")
    write_json(staging / "optimizer.json", scalars)
    write_json(staging / "scheduler.json", scheduler.state_dict())
    write_json(staging / PROGRESS_FILE, progress)
    if not (staging / BEST_FILE).is_file():
        previous = _current_state_dir(run_dir)
        for source in ([previous / BEST_FILE] if previous else []) + [run_dir / WEIGHTS_FILE]:
            if source.is_file():
                link_or_copy(source, staging / BEST_FILE)
                break
    files = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.name != MANIFEST_FILE}
    write_json(staging / MANIFEST_FILE, {"format": _FORMAT, "version": _FORMAT_VERSION, "files": files})
    _switch(run_dir)
    publish_best_weights(run_dir)


def load_training_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    average: nn.Module | None = None,
) -> dict[str, Any]:
    """Restore the last committed checkpoint (and the weights' moving average into ``average``); returns its
    progress record.

    Raises:
        FileNotFoundError: the run has no committed checkpoint, or ``average`` is given and it has none (the
            run was trained without ``optim.ema_decay``).
    """
    state_dir = _current_state_dir(run_dir)
    if state_dir is None:
        raise FileNotFoundError(f"{run_dir} has no resumable state (no complete {run_dir / STATE_DIR})")
    load_weights(model, state_dir / "model.safetensors")
    if average is not None:
        load_weights(average, state_dir / AVERAGE_FILE)
    tensors = load_file(str(state_dir / "optimizer.safetensors"))
    scalars = read_json(state_dir / "optimizer.json")
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = tensor
    for param_id, values in scalars["state"].items():
        state.setdefault(int(param_id), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})
    scheduler.load_state_dict(read_json(state_dir / "scheduler.json"))
    progress: dict[str, Any] = read_json(state_dir / PROGRESS_FILE)
    return progress


def recover(run_dir: Path) -> None:
    """Repair what a kill left in ``run_dir`` before it is resumed (one process only, before any other writes).

    Finishes an interrupted switch, removes an incomplete ``state.new/`` and every leftover temporary file in
    the run directory and its folders, and republishes the committed best weights.
    """
    staging = run_dir / STAGING_DIR
    if _is_complete(staging):
        _switch(run_dir)
    elif staging.exists():
        log.info("%s: removing an incomplete checkpoint (interrupted while it was written)", run_dir)
        remove_tree(staging)
    remove_tree(run_dir / _OLD_DIR)
    clean_run_leftovers(run_dir)
    publish_best_weights(run_dir)


def remove_training_state(run_dir: Path) -> None:
    """Delete the run's checkpoints (committed, in progress or being switched) and leftover temporary files."""
    for name in (STAGING_DIR, STATE_DIR, _OLD_DIR):
        remove_tree(run_dir / name)
    clean_run_leftovers(run_dir)


def clean_run_leftovers(run_dir: Path) -> int:
    """Delete the temporary files that interrupted writes left in ``run_dir`` and its folders (``tokenizer/``,
    ``state/``; not the runs inside it, which clean their own); returns how many. Only while nothing writes."""
    removed = clean_leftovers(run_dir)
    for folder in run_dir.iterdir() if run_dir.is_dir() else ():
        if folder.is_dir() and not folder.is_symlink():
            removed += clean_leftovers(folder)
    if removed:
        log.info("%s: removed %d leftover temporary file(s) of interrupted writes", run_dir, removed)
    return removed
