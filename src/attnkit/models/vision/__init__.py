"""Image classifiers: attention over image units (ViT patches, CNN feature-map cells)."""

from attnkit.models.vision.base import ImageClassifier, ImageModelConfig, patchify, unit_boxes, unpatchify
from attnkit.models.vision.cbam import CBAMAttnClassifier, CBAMAttnConfig, CBAMBlock, ChannelGate, SpatialGate
from attnkit.models.vision.cnn import ImageCNNAttnClassifier, ImageCNNAttnConfig, conv_bn_relu, conv_stack
from attnkit.models.vision.hybrid import HybridViTClassifier, HybridViTConfig
from attnkit.models.vision.pooled import PooledImageClassifier
from attnkit.models.vision.vit import ViTClassifier, ViTConfig

__all__ = [
    "CBAMAttnClassifier",
    "CBAMAttnConfig",
    "CBAMBlock",
    "ChannelGate",
    "HybridViTClassifier",
    "HybridViTConfig",
    "ImageCNNAttnClassifier",
    "ImageCNNAttnConfig",
    "ImageClassifier",
    "ImageModelConfig",
    "PooledImageClassifier",
    "SpatialGate",
    "ViTClassifier",
    "ViTConfig",
    "conv_bn_relu",
    "conv_stack",
    "patchify",
    "unit_boxes",
    "unpatchify",
]
