"""Shared fixtures for the layer tests: devices to run on, one CPU thread, a deterministic seed per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

# Every device test runs on CPU, and on CUDA too when it is there.
DEVICES: list[str] = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed() -> None:
    # Each test draws the same tensors however the suite is ordered or filtered.
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread() -> Iterator[None]:
    # The tensors here are tiny: intra-op threads only add synchronization, and on a busy 2-core machine
    # OpenMP spin-waiting made these tests 4x slower. Restored afterwards for other test folders.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
