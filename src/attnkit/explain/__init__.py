"""What a model attends to, and whether that is why it decided, for every modality.

- :func:`explain`: per-token scores of a text run's predictions by ``attention`` (plus ``rollout`` for
  transformers), ``attention-value``, ``gradient``, ``grad-input``, ``ig`` (Integrated Gradients, Captum) and
  ``loo`` (leave-one-out); :func:`explain_images`: the same methods per unit box of an image run's predictions
  (``loo`` is then occlusion of each box); :func:`explain_recordings`: the same methods per frame (or stack of
  frames) of an audio run's recordings (``loo`` deletes the frame).
- :func:`faithfulness_report`: ERASER comprehensiveness (deletion) / sufficiency and insertion (AOPC), decision
  flips and rank agreement, against random and uniform-attention baselines, on text, image and audio runs.
- :mod:`attnkit.explain.render` / :mod:`attnkit.explain.render_images` / :mod:`attnkit.explain.render_audio`:
  terminal, HTML, PNG and JSON renderers (the audio page plays the clip and follows it on the score strips).
- :mod:`attnkit.explain.synthetic`: a planted-cue task for plausibility (token-F1 / AUPRC against the cues).
"""

from attnkit.explain.audio import AudioExplanation, ExplainedFrame, explain_recordings
from attnkit.explain.explanation import ExplainedToken, Explanation, explain
from attnkit.explain.images import ExplainedUnit, ImageExplanation, explain_images
from attnkit.explain.methods import METHODS, SIGNED, check_methods, compute_scores, delete_tokens

__all__ = [
    "METHODS",
    "SIGNED",
    "AudioExplanation",
    "ExplainedFrame",
    "ExplainedToken",
    "ExplainedUnit",
    "Explanation",
    "ImageExplanation",
    "check_methods",
    "compute_scores",
    "delete_tokens",
    "explain",
    "explain_images",
    "explain_recordings",
]
