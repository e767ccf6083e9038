"""Device names are resolved once, with clear errors for names that cannot work on this machine."""

from __future__ import annotations

import pytest
import torch

from attnkit import serve
from attnkit.devices import resolve_device


def test_auto_and_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no CUDA device is available"):
        resolve_device("cuda")


def _pretend_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("count", [1, 2])
def test_cuda_index_past_the_gpus_names_the_count(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    _pretend_gpus(monkeypatch, count)
    last = torch.device("cuda", count - 1)
    assert resolve_device(f"cuda:{count - 1}") == last
    assert resolve_device("cuda") == torch.device("cuda")
    expected = (
        "1 CUDA device \\(cuda:0\\)"
        if count == 1
        else f"{count} CUDA devices \\(cuda:0 to cuda:{count - 1}\\)"
    )
    with pytest.raises(
        ValueError, match=f"device cuda:{count} was asked for but this machine has {expected}"
    ):
        resolve_device(f"cuda:{count}")
    # auto spreads local ranks over the GPUs there are.
    assert resolve_device("auto", local_rank=count) == torch.device("cuda", 0)


def test_unknown_names() -> None:
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ValueError, match="device must be auto, cpu"):
            resolve_device(bad)


def test_serve_uses_the_same_resolver() -> None:
    assert serve.resolve_device is resolve_device
