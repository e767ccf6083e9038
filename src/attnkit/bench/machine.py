"""What machine a benchmark ran on: recorded in every results file so that numbers can be compared honestly."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch


def first_line_value(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of ``path`` (``/proc/cpuinfo`` style), or ``None``."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info(**extra: Any) -> dict[str, Any]:
    """CPU model, cores, memory, load, date and library versions, plus any ``extra`` fields."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    total = first_line_value("/proc/meminfo", "MemTotal")
    info: dict[str, Any] = {
        "cpu": first_line_value("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": round(int(total.split()[0]) / 2**20, 1) if total else None,
        "load_average": load_average(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    info.update(extra)
    return info
