"""Device names are resolved once, with clear errors for names that cannot work on this machine."""

from __future__ import annotations

import pytest
import torch

from attnkit.devices import resolve_device


def test_auto_and_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no CUDA device is available"):
        resolve_device("cuda")


def test_unknown_names() -> None:
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ValueError, match="device must be auto, cpu"):
            resolve_device(bad)
