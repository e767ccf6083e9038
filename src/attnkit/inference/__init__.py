"""Inference on any task: logits over a dataset, evaluation reports. Never imports the training loop."""

from attnkit.inference.evaluation import evaluate_dataset, predict_dataset, predict_logits

__all__ = ["evaluate_dataset", "predict_dataset", "predict_logits"]
