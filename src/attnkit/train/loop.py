"""Training entry points: :func:`fit` (every stage, any task) and the pieces a caller may want on their own.

The work is split by job: :mod:`attnkit.train.stages` (plain run, ensemble, refit), :mod:`attnkit.train.run` (one
run: set-up, epochs, evaluation, finish), :mod:`attnkit.train.optim` (optimizer, schedule),
:mod:`attnkit.train.selection` (calibration and the final report), :mod:`attnkit.tasks` (data, batches, loss,
metrics) and :mod:`attnkit.inference.evaluation` (logits and reports over a dataset).
"""

from __future__ import annotations

from attnkit.train.optim import lr_lambda, make_optimizer
from attnkit.train.run import FitResult, train_run
from attnkit.train.selection import final_metrics
from attnkit.train.stages import fit, load_ensemble, member_config, refit_config

__all__ = [
    "FitResult",
    "final_metrics",
    "fit",
    "load_ensemble",
    "lr_lambda",
    "make_optimizer",
    "member_config",
    "refit_config",
    "train_run",
]
