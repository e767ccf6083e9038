"""An ensemble of classifiers over the same tokens: its logits are the mean of its members' logits.

Members share the tokenizer (and so the token ids) and the classes; they typically differ only in their random
seed (a deep ensemble). The ensemble satisfies the classifier contract itself, so prediction, calibration,
explanation, serving and export treat it like any other model:

- ``embed(input_ids)`` concatenates the members' token inputs, ``(B, T, E_1 + ... + E_M)``: a gradient or an
  Integrated-Gradients path over it moves every member's inputs at once;
- ``forward_from_embeddings`` splits that back, runs each member and averages their logits;
- ``token_attention`` is the mean of the members' token attention (still a distribution over the real tokens),
  and ``pooling_weights`` ``(B, M, T)`` holds each member's token attention as one row;
- ``token_contributions`` is the mean of the members' contributions: the logits are a mean, so the
  decomposition stays exact;
- no ``layer_attentions``: the members' self-attention layers are separate stacks, not one model's layers, so
  rollout and the layer views do not apply to an ensemble.

Averaging logits (not probabilities) keeps the explanations that are linear in the logits (gradient x input,
Integrated Gradients, attention-value) equal to the mean of the members' explanations. The gradient *norm* is
not such a method (the norm of the concatenated gradients is not the mean of the members' norms), nor is
leave-one-out (it compares probabilities).

Dimension legend: ``B`` batch, ``T`` tokens, ``M`` members, ``E_m`` token input size of member ``m``, ``C``
classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from attnkit.models.base import ClassifierConfig, ClassifierOutput, TextClassifier


def _check_compatible(members: Sequence[TextClassifier]) -> None:
    first = members[0].config
    for index, member in enumerate(members[1:], start=1):
        cfg = member.config
        for name in ("vocab_size", "num_classes", "pad_id"):
            if getattr(cfg, name) != getattr(first, name):
                raise ValueError(
                    f"ensemble member {index} has {name}={getattr(cfg, name)} but member 0 has "
                    f"{getattr(first, name)}: members must share the tokenizer and the classes"
                )


class EnsembleClassifier(TextClassifier):
    """The mean of ``M`` classifiers' logits, with their averaged attention.

    Args:
        members: at least one classifier; all share ``vocab_size``, ``num_classes`` and ``pad_id``.
            ``config`` (the first member's) describes the ensemble's inputs and outputs.
    """

    def __init__(self, members: Sequence[TextClassifier]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        _check_compatible(members)
        nn.Module.__init__(self)  # no embedding or head of its own: the members have them
        self.config: ClassifierConfig = members[0].config
        self.members = nn.ModuleList(members)
        self.input_widths = [member.config.token_input_dim() for member in members]

    @property
    def classifiers(self) -> list[TextClassifier]:
        """The members, typed (iterating ``self.members`` gives plain modules)."""
        return [cast(TextClassifier, member) for member in self.members]

    def set_vocabulary(self, tokens: Sequence[str]) -> None:
        for member in self.classifiers:
            member.set_vocabulary(tokens)

    def init_from_data(self, ids: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        for member in self.classifiers:
            member.init_from_data(ids, labels)

    def embed(self, input_ids: Tensor) -> Tensor:
        """``input_ids (B, T)`` -> ``(B, T, E_1 + ... + E_M)``: every member's token inputs, side by side."""
        return torch.cat([member.embed(input_ids) for member in self.classifiers], dim=-1)

    def forward_from_embeddings(
        self,
        embeddings: Tensor,
        attention_mask: Tensor,
        input_ids: Tensor | None = None,
        *,
        need_layer_attentions: bool = False,
    ) -> ClassifierOutput:
        width = sum(self.input_widths)
        if embeddings.dim() != 3 or embeddings.shape[-1] != width:
            raise ValueError(
                f"embeddings must have shape (batch, tokens, {width}), got {tuple(embeddings.shape)}"
            )
        outputs = [
            member.forward_from_embeddings(
                part, attention_mask, input_ids=input_ids, need_layer_attentions=False
            )
            for member, part in zip(
                self.classifiers, embeddings.split(self.input_widths, dim=-1), strict=True
            )
        ]
        member_logits = torch.stack([out.logits for out in outputs], dim=1)  # (B, M, C)
        member_attention = torch.stack([out.token_attention for out in outputs], dim=1)  # (B, M, T)
        return ClassifierOutput(
            logits=member_logits.mean(dim=1),  # (B, C)
            unit_attention=member_attention.mean(dim=1),  # (B, T)
            pooling_weights=member_attention,  # (B, M, T): one row per member
            layer_attentions=None,  # separate stacks per member: see the module docstring
            extras={"member_logits": member_logits},
        )

    def has_token_contributions(self) -> bool:
        return all(member.has_token_contributions() for member in self.classifiers)

    def token_contributions(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``(B, T, C)``: the mean of the members' token contributions (the logits are their mean)."""
        if not self.has_token_contributions():
            raise NotImplementedError("an ensemble member does not decompose its logits over tokens")
        parts = [member.token_contributions(input_ids, attention_mask) for member in self.classifiers]
        return torch.stack(parts, dim=0).mean(dim=0)  # (B, T, C)

    def export_module(self) -> nn.Module:
        """Each member's export graph, their outputs averaged as :meth:`forward_from_embeddings` does."""
        return _EnsembleExportForward([member.export_module() for member in self.classifiers])


class _EnsembleExportForward(nn.Module):
    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        outputs = [member(input_ids, attention_mask) for member in self.members]
        logits = torch.stack([out[0] for out in outputs], dim=1).mean(dim=1)  # (B, C)
        attention = torch.stack([out[1] for out in outputs], dim=1).mean(dim=1)  # (B, T)
        return logits, attention
