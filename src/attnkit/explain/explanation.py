"""Explain predictions of a trained text run: one :class:`Explanation` per text, in the JSON format of
``docs/explanation-format.md`` (the only input the renderers, the CLI and the server read). Image runs have
:func:`attnkit.explain.images.explain_images`.

Dimension legend: ``B`` batch, ``T`` tokens, ``L`` layers, ``H`` heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from attnkit.explain.methods import SIGNED, check_methods, compute_scores
from attnkit.explain.scale import scales_json
from attnkit.explain.unread import unread_spans
from attnkit.predictor import Prediction, Predictor


@dataclass
class ExplainedToken:
    """One token: its source span ``text[start:end]`` and one score per method."""

    text: str
    start: int
    end: int
    scores: dict[str, float]


@dataclass
class Explanation:
    """A text, its prediction, the explained class and per-token scores of each method.

    Attributes:
        text: the original text.
        prediction: the predicted label and class probabilities.
        target: the class the scores explain.
        methods: the score keys, in display order.
        tokens: the scored tokens (the first ``max_length`` of the text, or its head and tail with
            ``tokenizer.truncation: head+tail``).
        truncated: whether the text had more tokens than the model reads.
        layer_attentions: ``A[l][h][i][j]`` for models with self-attention when asked, else ``None``.
        unread: the character spans ``[start, end)`` of ``text`` the model did not read (empty unless
            truncated): the tail, or the middle with ``head+tail`` truncation (:func:`~attnkit.explain.unread.unread_gaps`).
    """

    text: str
    prediction: Prediction
    target: str
    methods: list[str]
    tokens: list[ExplainedToken]
    truncated: bool = False
    layer_attentions: list[list[list[list[float]]]] | None = field(default=None, repr=False)
    unread: list[tuple[int, int]] = field(default_factory=list)

    def scores(self, method: str) -> list[float]:
        """The scores of one method, one per token."""
        if method not in self.methods:
            raise KeyError(f"method {method!r} was not computed; have {', '.join(self.methods)}")
        return [token.scores[method] for token in self.tokens]

    def top_tokens(self, method: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring tokens of ``method`` with their scores."""
        scores = self.scores(method)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        return [(self.tokens[i].text, scores[i]) for i in order]

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "label": self.prediction.label,
            "target": self.target,
            "probabilities": self.prediction.probabilities,
            "methods": list(self.methods),
            "signed": {method: SIGNED[method] for method in self.methods},
            "tokens": [
                {"text": t.text, "start": t.start, "end": t.end, "scores": dict(t.scores)}
                for t in self.tokens
            ],
            "truncated": self.truncated,
            "unread": [[start, end] for start, end in self.unread],
            "layers": None if self.layer_attentions is None else {"attention": self.layer_attentions},
        }
        data["scale"] = scales_json(data)  # how renderers colour each method (docs/explanation-format.md)
        return data


def _round(value: float) -> float:
    return float(f"{value:.6g}")


#: Where the explanations of the other modalities are: (function, what the CLI takes).
OTHER_EXPLAINERS = {
    "image": ("attnkit.explain.explain_images", "IMAGE"),
    "audio": ("attnkit.explain.audio.explain_recordings", "CLIP.wav"),
}


def explain(
    predictor: Predictor,
    texts: Sequence[str],
    methods: Sequence[str] = ("attention",),
    *,
    target: str | None = None,
    layers: bool = False,
    ig_steps: int = 50,
    batch_size: int = 16,
) -> list[Explanation]:
    """Predict ``texts`` and score every token with each of ``methods``.

    Args:
        predictor: a loaded run.
        texts: the texts to explain.
        methods: names from :data:`attnkit.explain.METHODS`, or ``all``. For models with self-attention layers,
            ``attention`` also adds ``rollout``.
        target: the label to explain; default: each text's predicted label.
        layers: also return every layer's and head's self-attention map (models with self-attention only).
        ig_steps: integration steps of Integrated Gradients.
        batch_size: texts per forward pass.

    Raises:
        ValueError: an unknown method or target label, ``layers`` for a model without self-attention, or a run
            that is not a text run (explain images with :func:`attnkit.explain.images.explain_images`, recordings
            with :func:`attnkit.explain.audio.explain_recordings`).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got one str; wrap it in a list")
    if predictor.modality != "text":
        how = OTHER_EXPLAINERS.get(predictor.modality, ("attnkit.explain", "FILE"))
        raise ValueError(
            f"{predictor.run_dir} is an {predictor.modality} run: explain its inputs with "
            f"{how[0]} (or `attnkit explain RUN {how[1]}...`)"
        )
    if target is not None and target not in predictor.labels:
        raise ValueError(
            f"unknown target label {target!r}; the model's labels are {', '.join(predictor.labels)}"
        )
    model = predictor.model
    max_length = predictor.tokenizer.config.max_length
    check_methods(list(methods))  # unknown names fail even when there is nothing to explain
    if not texts:
        return []
    has_layers = model.has_layer_attentions()
    if layers and not has_layers:
        raise ValueError(
            f"layer attention maps need a model with self-attention layers; this run's model is "
            f"{predictor.config.model.label} (use the transformer)"
        )
    names = check_methods(list(methods), model, has_layers=has_layers)
    results: list[Explanation] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        encodings, input_ids, mask = predictor.encode(chunk)
        with torch.no_grad():
            out = model(input_ids, mask, need_layer_attentions=layers)
        probabilities = predictor.probabilities(out.logits).cpu()  # (B, C), as predict reports them
        if target is None:
            targets = probabilities.argmax(dim=-1)  # (B,)
        else:
            targets = torch.full((len(chunk),), predictor.labels.index(target), dtype=torch.long)
        targets = targets.to(input_ids.device)
        scores = {
            name: compute_scores(name, model, input_ids, mask, targets, ig_steps=ig_steps).detach().cpu()
            for name in names
        }  # each (B, T)
        for row, (text, enc) in enumerate(zip(chunk, encodings, strict=True)):
            n = len(enc.ids)
            tokens = [
                ExplainedToken(
                    text=text[s:e],
                    start=s,
                    end=e,
                    scores={name: _round(float(scores[name][row, i])) for name in names},
                )
                for i, (s, e) in enumerate(enc.offsets)
            ]
            unread = unread_spans(text, enc.offsets, max_length)
            maps = None
            if layers and out.layer_attentions:  # checked above: the model has them
                stacked = torch.stack(
                    [layer[row, :, :n, :n] for layer in out.layer_attentions]
                )  # (L, H, n, n)
                maps = torch.round(stacked.float().cpu(), decimals=5).tolist()
            results.append(
                Explanation(
                    text=text,
                    prediction=predictor.prediction(text, probabilities[row]),
                    target=predictor.labels[int(targets[row])],
                    methods=names,
                    tokens=tokens,
                    truncated=bool(unread),
                    unread=unread,
                    layer_attentions=maps,
                )
            )
    return results
