"""The image models whose logits are a linear head over an attention pooling of unit states.

The pooling, the head and the exact per-unit decomposition are :class:`attnkit.models.pooled.PooledUnits`'s,
shared with the other modalities; an image model says how it makes one state per unit.
"""

from __future__ import annotations

from attnkit.models.pooled import PooledUnits
from attnkit.models.vision.base import ImageClassifier, ImageModelConfig


class PooledImageClassifier(PooledUnits, ImageClassifier):
    """Base of the image models: :class:`ImageClassifier`'s units, :class:`PooledUnits`'s head.

    Subclasses build their feature extractor, call :meth:`_build_pooling_head` with the state size ``D`` and
    implement :meth:`forward_features`.
    """

    config: ImageModelConfig
