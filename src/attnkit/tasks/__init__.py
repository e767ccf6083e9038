"""Tasks: what differs between problems (data -> batches, preparation, loss, metrics, units), one per modality.

:func:`task_for` gives the task of a run config; the loop, evaluation, prediction and explanations use only it
and the model contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attnkit.tasks.base import Batch, BatchSampler, ClassificationObjective, PreparedData, Task, TaskDataset

if TYPE_CHECKING:
    from attnkit.train.config import RunConfig

__all__ = [
    "Batch",
    "BatchSampler",
    "ClassificationObjective",
    "PreparedData",
    "Task",
    "TaskDataset",
    "task_for",
]


def task_for(config: RunConfig) -> Task:
    """The task of a run: text, image or audio classification, from ``data.modality`` (resolved by the config)."""
    if config.modality == "audio":
        from attnkit.tasks.audio import AudioClassificationTask

        return AudioClassificationTask(config)
    if config.modality == "image":
        from attnkit.tasks.image import ImageClassificationTask

        return ImageClassificationTask(config)
    from attnkit.tasks.text import TextClassificationTask

    return TextClassificationTask(config)
