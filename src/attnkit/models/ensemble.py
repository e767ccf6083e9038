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

from attnkit.models.base import AttentionModel, ClassifierOutput

#: The config fields members must share, by modality: what makes their inputs and units the same.
SHARED_FIELDS = {
    "text": ("vocab_size", "num_classes", "pad_id"),
    "image": ("image_size", "channels", "unit_size", "num_classes"),
}


def _check_compatible(members: Sequence[AttentionModel]) -> None:
    first = members[0]
    for index, member in enumerate(members[1:], start=1):
        if member.modality != first.modality:
            raise ValueError(
                f"ensemble member {index} is a {member.modality} model but member 0 is a {first.modality} model"
            )
        for name in SHARED_FIELDS.get(first.modality, ("num_classes",)):
            if getattr(member.config, name) != getattr(first.config, name):
                raise ValueError(
                    f"ensemble member {index} has {name}={getattr(member.config, name)} but member 0 has "
                    f"{getattr(first.config, name)}: members must share their inputs, units and classes"
                )


class EnsembleClassifier(AttentionModel):
    """The mean of ``M`` models' logits, with their averaged attention, for any modality.

    Args:
        members: at least one model; all of one modality, sharing their inputs and classes (text:
            ``vocab_size``, ``num_classes``, ``pad_id``; images: size, channels, unit size, classes).
            ``config`` (the first member's) describes the ensemble's inputs and outputs.
    """

    def __init__(self, members: Sequence[AttentionModel]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        _check_compatible(members)
        super().__init__()
        self.config = members[0].config
        self.modality = members[0].modality  # type: ignore[misc]
        self.unit_name = members[0].unit_name  # type: ignore[misc]
        self.members = nn.ModuleList(members)
        self.input_widths = [member.config.unit_input_dim() for member in members]

    @property
    def classifiers(self) -> list[AttentionModel]:
        """The members, typed (iterating ``self.members`` gives plain modules)."""
        return [cast(AttentionModel, member) for member in self.members]

    def set_vocabulary(self, tokens: Sequence[str]) -> None:
        for member in self.classifiers:
            member.set_vocabulary(tokens)  # type: ignore[operator]

    def init_from_data(self, ids: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        for member in self.classifiers:
            init = getattr(member, "init_from_data", None)
            if init is not None:
                init(ids, labels)

    def forward(
        self, inputs: Tensor, unit_mask: Tensor | None = None, *, need_layer_attentions: bool = False
    ) -> ClassifierOutput:
        first = self.classifiers[0]
        if unit_mask is None:
            unit_mask = first.unit_mask_of(inputs)
        check = getattr(first, "_check_ids", None) or getattr(first, "_check_pixels", None)
        if check is not None:  # the members' own input checks (ids in range, pixel shape)
            check(inputs, unit_mask) if first.modality == "text" else check(inputs)
        return self.forward_from_embeddings(self.embed(inputs), unit_mask, inputs)

    def unit_mask_of(self, inputs: Tensor) -> Tensor:
        return self.classifiers[0].unit_mask_of(inputs)

    def remove_units(self, inputs: Tensor, unit_mask: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        return self.classifiers[0].remove_units(inputs, unit_mask, keep)

    def has_unit_contributions(self) -> bool:
        return self.has_token_contributions()

    def unit_contributions(self, inputs: Tensor, unit_mask: Tensor) -> Tensor:
        return self.token_contributions(inputs, unit_mask)

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
            member.forward_from_embeddings(part, attention_mask, input_ids, need_layer_attentions=False)
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
        return all(member.has_unit_contributions() for member in self.classifiers)

    def token_contributions(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``(B, T, C)``: the mean of the members' token contributions (the logits are their mean)."""
        if not self.has_token_contributions():
            raise NotImplementedError("an ensemble member does not decompose its logits over tokens")
        parts = [member.unit_contributions(input_ids, attention_mask) for member in self.classifiers]
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
