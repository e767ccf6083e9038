"""An exponential moving average of a model's weights (``optim.ema_decay``), the model that is evaluated and kept.

After every optimizer step each floating-point parameter and buffer of the average moves toward the trained
model's: ``average <- average + (1 - d) * (weight - average)``, with ``d = min(ema_decay, (1 + t) / (10 + t))``
at step ``t`` (the warm-up of TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``: early steps are not
dominated by the random initialization). The warm-up reaches ``ema_decay`` only after about
``9 / (1 - ema_decay)`` steps (4,490 for 0.998), so in shorter runs it sets the average: after the 1,408 steps
of ``imdb-bilstm-attn`` the decay is 0.9936 whether ``ema_decay`` is 0.998 or 0.999, and half the average's
weight is on its last 105 steps (90% on the last 319). Integer buffers (BatchNorm's batch counter) are copied.
Non-persistent buffers (an audio front end's STFT kernels and mel basis) are left alone: they are not part of
the state dict, so they are built from the config and never trained, and the copy already holds them.
The average has the trained model's class and state dict, so selection, checkpoints, export and inference use it
unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmed_decay(decay: float, step: int) -> float:
    """The decay used at optimizer step ``step`` (0-based): ``min(decay, (1 + step) / (10 + step))``."""
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage:
    """The moving average of ``model``'s weights; :attr:`model` is a copy of it that holds the average.

    The copy is in eval mode and never trained (no gradients); call :meth:`update` after each optimizer step.
    ``model`` must not be moved or have its tensors replaced afterwards (loading weights into it is fine).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._pairs = self._floating_pairs(model)

    def _floating_pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple]]:
        """(averaged tensors, trained tensors) for the floating-point entries; (average, trained) integer ones."""
        mine = dict(self.model.named_parameters()) | dict(self.model.named_buffers())
        theirs = dict(model.named_parameters()) | dict(model.named_buffers())
        if mine.keys() != theirs.keys():
            raise ValueError("the averaged model and the trained model have different parameters")
        saved = model.state_dict().keys()
        constant = {name for name, _ in model.named_buffers() if name not in saved}  # non-persistent buffers
        averaged, trained, copied = [], [], []
        for name, tensor in mine.items():
            if name in constant:
                continue
            if tensor.is_floating_point():
                averaged.append(tensor)
                trained.append(theirs[name].detach())  # shares the weights' storage: loading updates it too
            else:
                copied.append((tensor, theirs[name]))
        return averaged, trained, copied

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average toward the trained model after optimizer step ``step`` (0-based)."""
        averaged, trained, copied = self._pairs
        weight = 1.0 - warmed_decay(self.decay, step)
        torch._foreach_lerp_(averaged, trained, weight)
        for mine, theirs in copied:
            mine.copy_(theirs)
