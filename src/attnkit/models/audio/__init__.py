"""Speech (audio) classifiers over frames: the base contract, a CRNN and a transformer.

- :class:`AudioClassifier` / :class:`AudioModelConfig`: feature rows ``(B, U, E)`` + ``unit_mask`` -> logits and
  attention over frames; :func:`delete_frames` removes units.
- :class:`CRNNClassifier` (``crnn-attn``): convolutions, a BiGRU, attention pooling over frames.
- :class:`AudioTransformerClassifier` (``transformer``): encoder blocks over frames, attention pooling.
- :mod:`attnkit.models.audio.features`: the log-mel / MFCC front end the audio task computes features with.
"""

from attnkit.models.audio.base import AudioClassifier, AudioModelConfig, delete_frames
from attnkit.models.audio.crnn import CRNNClassifier, CRNNConfig
from attnkit.models.audio.transformer import AudioTransformerClassifier, AudioTransformerConfig

__all__ = [
    "AudioClassifier",
    "AudioModelConfig",
    "AudioTransformerClassifier",
    "AudioTransformerConfig",
    "CRNNClassifier",
    "CRNNConfig",
    "delete_frames",
]
