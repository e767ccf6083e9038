"""Attention layers sharing one contract: scores -> mask -> normalize -> weighted sum -> AttentionOutput."""

from attnkit.layers.attention import Attention, AttentionCore, AttentionOutput, masked_softmax, weighted_sum
from attnkit.layers.efficient import ChunkedAttention, LinearAttention, LocalAttention, elu_feature_map
from attnkit.layers.masks import build_mask, causal_mask, lengths_to_mask
from attnkit.layers.multihead import MultiHeadAttention
from attnkit.layers.pooling import POOLING_SCORERS, AttentionPooling, PoolingOutput
from attnkit.layers.scoring import (
    SCORER_NAMES,
    AdditiveScorer,
    BilinearScorer,
    DotScorer,
    ScaledDotScorer,
    Scorer,
    make_scorer,
)

__all__ = [
    "POOLING_SCORERS",
    "SCORER_NAMES",
    "AdditiveScorer",
    "Attention",
    "AttentionCore",
    "AttentionOutput",
    "AttentionPooling",
    "BilinearScorer",
    "ChunkedAttention",
    "DotScorer",
    "LinearAttention",
    "LocalAttention",
    "MultiHeadAttention",
    "PoolingOutput",
    "ScaledDotScorer",
    "Scorer",
    "build_mask",
    "causal_mask",
    "elu_feature_map",
    "lengths_to_mask",
    "make_scorer",
    "masked_softmax",
    "weighted_sum",
]
