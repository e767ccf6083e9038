"""Where models run: ``auto`` / ``cpu`` / ``cuda[:N]`` / ``mps`` resolved once, for training and inference alike."""

from __future__ import annotations

import torch


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (one GPU per local rank), else the CPU; others are checked.

    Raises:
        ValueError: an unknown device name, or CUDA asked for on a machine without a usable GPU.
    """
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    if not preference.startswith(("cpu", "cuda", "mps")):
        raise ValueError(f"device must be auto, cpu, cuda[:N] or mps, got {preference!r}")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda[:N] or mps, got {preference!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {preference} was asked for but no CUDA device is available; use auto or cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {preference} was asked for but MPS is not available; use auto or cpu")
    return device
