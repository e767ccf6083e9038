"""What a model attends to, and whether that is why it decided.

- :func:`explain`: per-token scores of ``attention`` (plus ``rollout`` for transformers), ``gradient``,
  ``grad-input``, ``ig`` (Integrated Gradients, Captum) and ``loo`` (leave-one-out).
- :func:`faithfulness_report`: ERASER comprehensiveness / sufficiency (AOPC), decision flips and rank agreement,
  against random and uniform-attention baselines.
- :mod:`attnkit.explain.synthetic`: a planted-cue task for plausibility (token-F1 / AUPRC against the cues).
"""

from attnkit.explain.explanation import ExplainedToken, Explanation, explain
from attnkit.explain.methods import METHODS, SIGNED, check_methods, compute_scores, delete_tokens

__all__ = [
    "METHODS",
    "SIGNED",
    "ExplainedToken",
    "Explanation",
    "check_methods",
    "compute_scores",
    "delete_tokens",
    "explain",
]
