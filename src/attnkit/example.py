"""The seed article's worked example (section 4.3), computed with attnkit's attention core.

The article scores each word of "I like to read books" against the target "read" (similarities 0.2, 0.5, 0.3,
1, 0.1), then prints those same numbers as the "softmax weights". They are the raw similarities: they sum to 2.1,
not 1. Here the weights are a real softmax and the output is the weighted sum of one-hot word vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from attnkit.layers.attention import masked_softmax, weighted_sum

SEED_TOKENS: tuple[str, ...] = ("I", "like", "to", "read", "books")
SEED_SIMILARITIES: tuple[float, ...] = (0.2, 0.5, 0.3, 1.0, 0.1)
SEED_TARGET = "read"


@dataclass(frozen=True)
class WorkedExample:
    """The three steps of attention on one sentence.

    Attributes:
        tokens: the words.
        target: the word the similarities were measured against.
        similarities: step 1, one score per word.
        weights: step 2, ``softmax(similarities)``: non-negative, summing to 1.
        output: step 3, ``sum_i weights[i] * onehot(word_i)``; with one-hot word vectors it equals the weights.
        seed_weights_sum: what the article's printed "weights" add up to (they are the raw similarities).
    """

    tokens: list[str]
    target: str
    similarities: list[float]
    weights: list[float]
    output: list[float]
    seed_weights_sum: float

    def to_json_dict(self) -> dict[str, object]:
        return asdict(self)


def worked_example(
    tokens: tuple[str, ...] = SEED_TOKENS,
    similarities: tuple[float, ...] = SEED_SIMILARITIES,
    target: str = SEED_TARGET,
) -> WorkedExample:
    """Run similarity -> softmax -> weighted sum on ``tokens`` with one-hot word vectors."""
    if len(tokens) != len(similarities):
        raise ValueError(
            f"need one similarity per token, got {len(tokens)} tokens and {len(similarities)} scores"
        )
    scores = torch.tensor(similarities, dtype=torch.float64).view(1, 1, -1)  # (B=1, Q=1, K)
    values = torch.eye(len(tokens), dtype=torch.float64).unsqueeze(0)  # (B=1, K, Dv=K): one-hot words
    weights = masked_softmax(scores, mask=None)  # (1, 1, K)
    output = weighted_sum(weights, values)  # (1, 1, K)
    return WorkedExample(
        tokens=list(tokens),
        target=target,
        similarities=[float(s) for s in similarities],
        weights=[float(w) for w in weights.flatten()],
        output=[float(o) for o in output.flatten()],
        seed_weights_sum=float(sum(similarities)),
    )


def format_worked_example(example: WorkedExample) -> str:
    """Human-readable report of :func:`worked_example`."""
    lines = [
        f'Attention over "{" ".join(example.tokens)}" with target "{example.target}"',
        "",
        f"{'token':>8}  {'similarity':>10}  {'softmax weight':>14}",
    ]
    for token, sim, weight in zip(example.tokens, example.similarities, example.weights, strict=True):
        lines.append(f"{token:>8}  {sim:>10.3f}  {weight:>14.4f}")
    lines += [
        f"{'sum':>8}  {example.seed_weights_sum:>10.3f}  {sum(example.weights):>14.4f}",
        "",
        "output = sum_i weight_i * onehot(word_i) = [" + ", ".join(f"{o:.4f}" for o in example.output) + "]",
        "",
        "Note: the article prints the raw similarities (0.2, 0.5, 0.3, 1, 0.1) as its softmax weights. They are",
        f"not a softmax: they sum to {example.seed_weights_sum:g}, not 1. The softmax weights above do sum to 1, and",
        f'"{example.target}" still gets the largest share. (Its one-hot vectors also give "books" the zero vector;',
        "here each word has its own one-hot vector.)",
    ]
    return "\n".join(lines)
