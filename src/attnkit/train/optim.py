"""The optimizer and the learning-rate schedule of a run."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from attnkit.train.config import RunConfig


def _factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str) -> Any:
    """Multiplier on the base learning rate: linear warmup, then linear/cosine decay to 0 (or constant)."""

    def factor(step: int) -> float:
        return _factor(step, total_steps, warmup_steps, schedule)

    return factor


class LearningRateSchedule:
    """:func:`lr_lambda`'s multiplier over a length that can change during the run (:meth:`stretch`).

    The warmup is ``warmup_fraction`` of the current length. It is a callable object, so ``LambdaLR`` saves its
    fields with the scheduler's state and a resumed run continues on the same length.
    """

    def __init__(self, total_steps: int, warmup_fraction: float, schedule: str) -> None:
        self.warmup_fraction = warmup_fraction
        self.schedule = schedule
        self.total_steps = 0
        self.warmup_steps = 0
        self.stretch(total_steps)

    def stretch(self, total_steps: int) -> None:
        """Make the schedule (warmup and decay) ``total_steps`` long; later steps follow the new length."""
        self.total_steps = total_steps
        self.warmup_steps = int(self.warmup_fraction * total_steps)

    def __call__(self, step: int) -> float:
        return _factor(step, self.total_steps, self.warmup_steps, self.schedule)


# The fraction of a budget plan after which it no longer grows, for plans of at least GROWTH_FLOOR epochs (see
# replan_epochs): a shorter plan, e.g. one epoch from a first-epoch probe that overestimated, always may.
GROWTH_CUTOFF = 0.75
GROWTH_FLOOR = 4


def epochs_within_budget(remaining_seconds: float, epoch_seconds: float, *, done: int, cap: int) -> int:
    """``done`` epochs plus as many more whole ones of ``epoch_seconds`` as fit in ``remaining_seconds``.

    Kept in ``[max(done, 1), cap]``: a plan never ends before the epochs already trained, nor before one epoch.
    """
    more = math.floor(max(remaining_seconds, 0.0) / max(epoch_seconds, 1e-12) + 1e-9)
    return max(done, 1, min(cap, done + more))


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


def replan_epochs(
    current: int,
    remaining_seconds: float,
    epoch_seconds: float,
    *,
    done: int,
    cap: int,
    margin_seconds: float,
) -> int:
    """The plan after ``done`` epochs: what fits (:func:`epochs_within_budget`) when ``current`` would overrun
    the budget, otherwise ``current`` extended only by epochs that fit with ``margin_seconds`` to spare.

    The margin is hysteresis: epoch times that wobble around a boundary do not flip the plan (and with it the
    learning-rate schedule) back and forth between two lengths. A plan with epochs still to go keeps the next
    one while any budget is left, so a machine that slows down near the end finishes its decay in that epoch
    (past the budget by less than an epoch, as ``train.max_train_seconds`` allows) instead of stopping mid-decay.
    A plan of ``GROWTH_FLOOR`` epochs or more does not grow in its last quarter (``done >= GROWTH_CUTOFF *
    current``): stretching an almost finished
    cosine decay over one more epoch would raise the learning rate again near its end (at 9 of 11 epochs, growing
    to 12 nearly doubles it), so a machine that speeds up late leaves the spare time unused.
    """
    fits = epochs_within_budget(remaining_seconds, epoch_seconds, done=done, cap=cap)
    if fits < current:
        keep_next = remaining_seconds > 0 and current > done
        return max(fits, done + 1) if keep_next else fits
    if current >= GROWTH_FLOOR and done >= GROWTH_CUTOFF * current:
        return current
    spare = epochs_within_budget(remaining_seconds - margin_seconds, epoch_seconds, done=done, cap=cap)
    return max(current, spare)
