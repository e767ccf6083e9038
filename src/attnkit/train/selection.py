"""The final report of the selected weights: calibration on validation, then validation and test scores.

Dimension legend: ``N`` examples, ``C`` classes.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from attnkit.inference.evaluation import evaluate_dataset, labels_of, predict_logits
from attnkit.tasks.base import PreparedData, Task
from attnkit.train.calibration import Calibration
from attnkit.train.config import RunConfig

log = logging.getLogger("attnkit.train.loop")


def final_metrics(
    model: nn.Module,
    task: Task,
    data: PreparedData,
    config: RunConfig,
    device: torch.device,
    *,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Validation and (when present) test metrics of the selected weights.

    With ``train.calibrate`` and a validation split, the temperature is decided on the validation logits first
    (``metrics["calibration"]``: fitted, clipped to its bounds, or kept at 1 when the split is too small or the
    fit would not lower held-out NLL; see :meth:`Calibration.fit`) and every report uses it. The validation
    ECE is then measured on the data the temperature was fitted on (optimistic); the test ECE is the honest
    one. A given ``temperature`` (fitted elsewhere) is used as it is instead.
    """
    batch_size = config.optim.eval_batch_size
    metrics: dict[str, Any] = {}
    fit_temperature = temperature is None and config.train.calibrate
    temperature = 1.0 if temperature is None else temperature
    if len(data.val) > 0:
        val_logits = predict_logits(model, task, data.val, batch_size, device)  # (N, C)
        if fit_temperature:
            calibration = Calibration.fit(val_logits, labels_of(data.val), fitted_on="validation split")
            # Worth a warning: no temperature (too few examples, or no held-out gain), a clipped one, or a rise in ECE.
            quiet = calibration.status == "fitted" and calibration.ece_after <= calibration.ece_before
            log.log(logging.INFO if quiet else logging.WARNING, "calibration: %s", calibration.describe())
            temperature = calibration.temperature
            metrics["calibration"] = calibration.to_dict()
        metrics["val"] = task.objective.report(
            val_logits, labels_of(data.val), data.labels, temperature=temperature
        )
    if data.test is not None:
        metrics["test"] = evaluate_dataset(
            model, task, data.test, data.labels, batch_size, device, temperature=temperature
        )
    return metrics
