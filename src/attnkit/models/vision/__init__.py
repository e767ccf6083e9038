"""Image classifiers: attention over image units (ViT patches, CNN feature-map cells)."""

from attnkit.models.vision.base import ImageClassifier, ImageModelConfig, patchify, unit_boxes, unpatchify

__all__ = ["ImageClassifier", "ImageModelConfig", "patchify", "unit_boxes", "unpatchify"]
