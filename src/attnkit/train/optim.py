"""The optimizer and the learning-rate schedule of a run."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from attnkit.train.config import RunConfig


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str) -> Any:
    """Multiplier on the base learning rate: linear warmup, then linear/cosine decay to 0 (or constant)."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


def make_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and embeddings' padding-free vectors (1-D parameters)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel (CPU and CUDA) is ~10x faster than the per-tensor loop on large embedding tables.
    try:
        return torch.optim.AdamW(groups, lr=config.optim.lr, fused=True)
    except (RuntimeError, TypeError):  # devices or torch versions without a fused AdamW
        return torch.optim.AdamW(groups, lr=config.optim.lr)
