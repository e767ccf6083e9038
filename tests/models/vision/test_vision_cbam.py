"""CBAM gates against a hand-written reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.models.vision import CBAMAttnConfig, ChannelGate, SpatialGate


def test_channel_gate_matches_its_formula() -> None:
    torch.manual_seed(0)
    gate = ChannelGate(8, reduction=4)
    x = torch.randn(2, 8, 5, 6)
    w1, b1 = gate.mlp[0].weight, gate.mlp[0].bias  # (2, 8), (2,)
    w2, b2 = gate.mlp[2].weight, gate.mlp[2].bias  # (8, 2), (8,)
    expected = torch.empty_like(x)
    for b in range(2):
        avg = x[b].reshape(8, -1).mean(1)
        peak = x[b].reshape(8, -1).max(1).values
        mlp = lambda v: w2 @ torch.relu(w1 @ v + b1) + b2  # noqa: E731
        expected[b] = x[b] * torch.sigmoid(mlp(avg) + mlp(peak))[:, None, None]
    torch.testing.assert_close(gate(x), expected, atol=1e-6, rtol=0)


def test_spatial_gate_matches_its_formula() -> None:
    torch.manual_seed(0)
    gate = SpatialGate(kernel_size=3)
    x = torch.randn(2, 4, 5, 6)
    descriptors = torch.stack([x.mean(1), x.max(1).values], dim=1)  # (B, 2, h, w)
    logits = F.conv2d(descriptors, gate.conv.weight, gate.conv.bias, padding=1)  # (B, 1, h, w)
    torch.testing.assert_close(gate(x), x * torch.sigmoid(logits), atol=1e-6, rtol=0)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="spatial_kernel must be an odd"):
        CBAMAttnConfig(spatial_kernel=4)
    with pytest.raises(ValueError, match="reduction must be >= 1"):
        CBAMAttnConfig(reduction=0)
    with pytest.raises(ValueError, match="total stride must equal unit_size=4"):
        CBAMAttnConfig(widths=(8,), strides=(2,))
