"""Logits, probabilities and evaluation reports of a model over a task's dataset.

Dimension legend: ``N`` examples, ``C`` classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from attnkit.tasks.base import Task
from attnkit.train.calibration import scaled_probabilities


@torch.no_grad()
def predict_logits(
    model: nn.Module, task: Task, dataset: Any, batch_size: int, device: torch.device
) -> torch.Tensor:
    """``(N, C)`` float32 logits in dataset order (batched in the task's fast order, e.g. by length)."""
    model.eval()
    logits: torch.Tensor | None = None
    for index in task.eval_batches(dataset, batch_size):
        batch = task.collate(dataset, index).to(device)
        out = model(batch.inputs, batch.unit_mask).logits.float().cpu()  # (B, C)
        if logits is None:
            logits = torch.zeros(len(dataset), out.shape[1])
        logits[torch.as_tensor(index)] = out
    if logits is None:
        raise ValueError("empty dataset")
    return logits


def predict_dataset(
    model: nn.Module,
    task: Task,
    dataset: Any,
    batch_size: int,
    device: torch.device,
    *,
    temperature: float = 1.0,
) -> np.ndarray:
    """``(N, C)`` class probabilities ``softmax(logits / temperature)`` in dataset order."""
    return scaled_probabilities(predict_logits(model, task, dataset, batch_size, device), temperature).numpy()


def labels_of(dataset: Any) -> list[int]:
    """The class ids of a labelled dataset."""
    if dataset.labels is None:
        raise ValueError("this dataset has no labels")
    return list(dataset.labels)


def evaluate_dataset(
    model: nn.Module,
    task: Task,
    dataset: Any,
    labels: list[str],
    batch_size: int,
    device: torch.device,
    *,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """The task objective's report of the model's logits on ``dataset``."""
    logits = predict_logits(model, task, dataset, batch_size, device)  # (N, C)
    return task.objective.report(logits, labels_of(dataset), labels, temperature=temperature)
