"""Run-directory files, written atomically: weights and optimizer state as safetensors (never pickle).

A write goes to a temporary file in the same folder, is flushed to disk, then renamed over the target, so a
run killed at any moment (Ctrl-C, ``kill -9``) leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_FILE = "model.safetensors"
STATE_DIR = "state"  # resumable training state: weights, optimizer, scheduler, progress


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then atomically move ``tmp_path`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, payload: Any) -> None:
    text = json.dumps(payload, indent=2)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def save_weights(model: nn.Module, path: Path) -> None:
    """Save a state dict as safetensors (tensors made contiguous; shared storage is cloned)."""
    tensors = {name: t.detach().contiguous().clone().cpu() for name, t in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


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


def save_training_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: dict[str, Any],
) -> None:
    """Write everything ``--resume`` needs. ``progress.json`` is written last: it names a complete state."""
    state_dir = run_dir / STATE_DIR
    save_weights(model, state_dir / "model.safetensors")
    tensors, scalars = _optimizer_tensors(optimizer)
    atomic_write(state_dir / "optimizer.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    write_json(state_dir / "optimizer.json", scalars)
    write_json(state_dir / "scheduler.json", scheduler.state_dict())
    write_json(state_dir / "progress.json", progress)


def load_training_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote; returns the progress record."""
    state_dir = run_dir / STATE_DIR
    progress_path = state_dir / "progress.json"
    if not progress_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no resumable state ({progress_path} is missing)")
    load_weights(model, state_dir / "model.safetensors")
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
    progress: dict[str, Any] = read_json(progress_path)
    return progress
