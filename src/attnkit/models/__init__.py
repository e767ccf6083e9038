"""Text classifiers that return logits plus the attention they used, and a registry to build them by name."""

from attnkit.models.bag import BagAttnClassifier, BagAttnConfig, bigram_buckets
from attnkit.models.base import ClassifierConfig, ClassifierOutput, TextClassifier, check_right_padded
from attnkit.models.bilstm import BiLSTMAttnClassifier, BiLSTMAttnConfig
from attnkit.models.cnn import CNNAttnClassifier, CNNAttnConfig
from attnkit.models.han import HANClassifier, HANConfig, SentenceSplit, split_sentences
from attnkit.models.nb import NBAttnClassifier, NBAttnConfig, nb_log_count_ratios, ngram_rows
from attnkit.models.registry import (
    MODEL_REGISTRY,
    available_models,
    build_model,
    build_model_from_config,
    model_config_from_dict,
    model_name_of,
)
from attnkit.models.transformer import EncoderBlock, TransformerClassifier, TransformerConfig

__all__ = [
    "MODEL_REGISTRY",
    "BagAttnClassifier",
    "BagAttnConfig",
    "BiLSTMAttnClassifier",
    "BiLSTMAttnConfig",
    "CNNAttnClassifier",
    "CNNAttnConfig",
    "ClassifierConfig",
    "ClassifierOutput",
    "EncoderBlock",
    "HANClassifier",
    "HANConfig",
    "NBAttnClassifier",
    "NBAttnConfig",
    "SentenceSplit",
    "TextClassifier",
    "TransformerClassifier",
    "TransformerConfig",
    "available_models",
    "bigram_buckets",
    "build_model",
    "build_model_from_config",
    "check_right_padded",
    "model_config_from_dict",
    "model_name_of",
    "nb_log_count_ratios",
    "ngram_rows",
    "split_sentences",
]
