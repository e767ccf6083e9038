"""Where models run: ``auto`` / ``cpu`` / ``cuda[:N]`` / ``mps`` resolved once, for training, inference and serving."""

from __future__ import annotations

import torch

#: The names :func:`resolve_device` accepts (``cuda`` also as ``cuda:N``).
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")

_CHOICES = "device must be auto, cpu, cuda[:N] or mps"


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (one GPU per local rank), else the CPU; others are checked.

    Args:
        preference: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (case and surrounding spaces ignored).
        local_rank: the process's rank on its node; ``auto`` gives it GPU ``local_rank % device_count``.

    Returns:
        The device to place the model on.

    Raises:
        ValueError: an unknown device name, CUDA (or MPS) asked for on a machine without a usable one, or a
            CUDA index past the GPUs this machine has.
    """
    name = preference.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    if not name.startswith(("cpu", "cuda", "mps")):
        raise ValueError(f"{_CHOICES}, got {preference!r}")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{_CHOICES}, got {preference!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name} was asked for but no CUDA device is available; use auto or cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            gpus = (
                "1 CUDA device (cuda:0)"
                if count == 1
                else f"{count} CUDA devices (cuda:0 to cuda:{count - 1})"
            )
            raise ValueError(f"device {name} was asked for but this machine has {gpus}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name} was asked for but MPS is not available; use auto or cpu")
    return device
