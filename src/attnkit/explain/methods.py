"""Per-unit importance of a classifier's decision, by five methods plus attention rollout, for every modality.

Every method maps a batch ``inputs`` (token ids ``(B, T)``, pixels ``(B, C, H, W)``...), its ``unit_mask
(B, U)`` (bool, True = real unit) and the class to explain ``targets (B,)`` to scores ``(B, U)`` that are exactly
0 where the mask is False. They use only the model contract of :mod:`attnkit.models.base` (never a model's
class): ``forward`` returning a ``ModelOutput`` with ``unit_attention``, ``embed`` / ``forward_from_embeddings``
for the gradient methods, ``remove_units`` for leave-one-out, ``unit_contributions`` for attention-value and
``has_layer_attentions`` for rollout. A unit is a token of a text, a pixel box of an image, a frame (or stack of
frames) of a recording.

- ``attention``: the model's own pooling weights (``unit_attention``), >= 0, summing to 1.
- ``rollout``: attention rollout (Abnar & Zuidema 2020) of the self-attention layers, read out through the
  pooling weights; only for models with self-attention layers (the transformer, ViT). >= 0, summing to 1.
- ``attention-value``: the pooling's exact decomposition of the explained score into one term per unit: unit
  ``u``'s attention weight times what its (value) state adds to the score through the output layer,
  ``a_u * (W v_u)[target]`` (the norm-based view of Kobayashi et al. 2020, signed). The terms add up to the
  explained score minus a constant from the biases. Needs a model with ``has_unit_contributions()`` (not HAN).
- ``gradient``: L2 norm of the gradient of the explained score w.r.t. each unit's representation (a token's
  embedding; the pixels of an image box, over channels too; a frame's normalized features), >= 0.
- ``grad-input``: gradient x input, summed over the unit's representation: signed.
- ``ig``: Integrated Gradients (Sundararajan et al. 2017, computed by Captum) from the all-zero representation
  (the padding embedding; for images the all-mean image and for recordings all-mean frames, since pixels and
  features are normalized with the training mean), summed over each unit: signed; the scores add up to the score
  difference between the input and the baseline.
- ``loo``: leave-one-out: the drop in the target's probability when the unit is removed by the model's
  ``remove_units`` (a token or a frame is deleted; an image box is set to the training mean, i.e. occlusion):
  signed.

The explained score of the gradient methods is the target's *centered logit* ``z_target - mean(z)``: unlike the
raw logit it does not change when all logits shift, and unlike the probability it does not saturate.

Dimension legend: ``B`` batch, ``U`` units (``T`` tokens for text), ``E`` unit representation size, ``C``
classes, ``L`` layers, ``H`` heads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from attnkit.models.base import AttentionModel, delete_tokens

__all__ = [
    "METHODS",
    "SIGNED",
    "at_least_float32",
    "attention_scores",
    "attention_value_scores",
    "centered_logits",
    "check_methods",
    "compute_scores",
    "delete_tokens",
    "grad_input_scores",
    "gradient_scores",
    "has_self_attention",
    "ig_scores",
    "loo_scores",
    "random_scores",
    "rollout_from_layers",
    "rollout_scores",
    "supports",
    "target_probabilities",
    "token_contributions",
    "unit_contributions",
]

METHODS: tuple[str, ...] = ("attention", "attention-value", "gradient", "grad-input", "ig", "loo")
"""Methods a user can ask for. ``rollout`` comes with ``attention`` for models with self-attention layers."""

SIGNED: dict[str, bool] = {
    "attention": False,
    "rollout": False,
    "attention-value": True,
    "gradient": False,
    "grad-input": True,
    "ig": True,
    "loo": True,
    "random": False,
}
"""Whether a method's scores can be negative (positive = supports the target class)."""


def plural(unit: str) -> str:
    """The plural of a unit name: token -> tokens, patch -> patches."""
    return unit + ("es" if unit.endswith(("ch", "sh", "s", "x")) else "s")


def has_self_attention(model: AttentionModel, *_inputs: Any) -> bool:
    """Whether ``model`` returns per-layer self-attention weights (``model.has_layer_attentions()``).

    Extra positional arguments (a batch, from callers written before the contract had the method) are ignored.
    """
    return bool(model.has_layer_attentions())


def supports(method: str, model: AttentionModel, *, has_layers: bool | None = None) -> bool:
    """Whether ``method`` applies to ``model``: ``rollout`` needs self-attention layers (``has_layers``, by
    default the model's ``has_layer_attentions()``) and ``attention-value`` a model that decomposes its logits
    over units (not HAN)."""
    if method == "rollout":
        return model.has_layer_attentions() if has_layers is None else has_layers
    if method == "attention-value":
        return model.has_unit_contributions()
    return True


def check_methods(
    methods: list[str] | tuple[str, ...],
    model: AttentionModel | None = None,
    *,
    has_layers: bool | None = None,
) -> list[str]:
    """Expand ``all`` and validate names; returns the methods in the order given, without duplicates.

    With ``model``, ``all`` leaves out the methods the model does not support (a named one still raises when
    computed, with the reason), and ``attention`` brings ``rollout`` for a model with self-attention layers
    (``has_layers``; by default the model's ``has_layer_attentions()``).
    """
    if isinstance(methods, str):
        methods = [methods]
    if model is not None and has_layers is None:
        has_layers = model.has_layer_attentions()
    expanded: list[str] = []
    for name in methods:
        if name == "all":
            chosen = [m for m in METHODS if model is None or supports(m, model, has_layers=has_layers)]
        else:
            chosen = [name]
        for method in chosen:
            if method not in METHODS and method != "rollout":
                raise ValueError(
                    f"unknown explanation method {method!r}; choose from {', '.join(METHODS)} or all"
                )
            if method not in expanded:
                expanded.append(method)
    if not expanded:
        raise ValueError(f"no explanation method given; choose from {', '.join(METHODS)} or all")
    if model is not None and has_layers and "attention" in expanded and "rollout" not in expanded:
        expanded.insert(expanded.index("attention") + 1, "rollout")
    return expanded


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32, or unchanged if it is already float32 or float64 (low-precision models score in f32)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def centered_logits(logits: Tensor) -> Tensor:
    """``(B, C)`` -> ``(B, C)`` logits minus their mean over classes."""
    return logits - logits.mean(dim=-1, keepdim=True)


@torch.no_grad()
def attention_scores(model: AttentionModel, inputs: Tensor, unit_mask: Tensor) -> Tensor:
    """``(B, U)`` the model's pooling attention over units."""
    return model(inputs, unit_mask).unit_attention.float()  # (B, U)


def rollout_from_layers(layer_attentions: list[Tensor], unit_attention: Tensor, unit_mask: Tensor) -> Tensor:
    """Attention rollout read out through the pooling weights.

    Each layer's head-averaged weights are mixed with the identity for the residual path,
    ``A_l = 0.5 * mean_h(W_l) + 0.5 * I``; the product ``A_L ... A_1`` says how much each top-layer state draws on
    each input unit, and the pooling weights over the top-layer states turn that into one score per unit.

    Args:
        layer_attentions: ``L`` tensors ``(B, H, U, U)`` (rows = queries, each summing to 1 over kept keys).
        unit_attention: ``(B, U)`` pooling weights over the top-layer states.
        unit_mask: ``(B, U)`` bool, True = real unit.

    Returns:
        ``(B, U)``: non-negative, summing to 1 over the real units, 0 on padding.
    """
    keep = unit_mask.float()  # (B, U)
    length = keep.shape[1]
    eye = torch.eye(length, device=keep.device)  # (U, U)
    # Padding rows carry no weight in the pooling; zero their identity so no mass lands on padding columns.
    eye_real = eye * keep[:, :, None]  # (B, U, U)
    rollout = eye_real
    for weights in layer_attentions:
        mixed = 0.5 * weights.float().mean(dim=1) + 0.5 * eye_real  # (B, U, U)
        rollout = mixed @ rollout  # (B, U, U)
    scores = (unit_attention.float()[:, None, :] @ rollout).squeeze(1)  # (B, U)
    return scores * keep


#: The models with self-attention layers, by modality, for the message when rollout is asked of another.
ROLLOUT_MODELS = {
    "text": "the transformer model",
    "image": "the vit or hybrid-vit model",
    "audio": "the transformer model",
}


def _no_layers_error(model: AttentionModel) -> ValueError:
    hint = f"use {ROLLOUT_MODELS.get(model.modality, 'a model with self-attention layers')}"
    return ValueError(
        f"attention rollout needs self-attention layers; {type(model).__name__} has none "
        f"({hint}, or the attention method)"
    )


@torch.no_grad()
def rollout_scores(model: AttentionModel, inputs: Tensor, unit_mask: Tensor) -> Tensor:
    """``(B, U)`` attention rollout; raises ``ValueError`` for models without self-attention layers."""
    if not model.has_layer_attentions():
        raise _no_layers_error(model)
    out = model(inputs, unit_mask, need_layer_attentions=True)
    if not out.layer_attentions:
        raise _no_layers_error(model)
    return rollout_from_layers(out.layer_attentions, out.unit_attention, unit_mask)


def unit_contributions(model: AttentionModel, inputs: Tensor, unit_mask: Tensor) -> Tensor:
    """``(B, U, C)``: each unit's additive share of the logits through the attention pooling (the model's hook).

    Raises:
        ValueError: the model does not decompose its logits over units.
    """
    if not model.has_unit_contributions():
        why = " (HAN pools sentence vectors through a recurrent layer)" if model.modality == "text" else ""
        raise ValueError(
            f"attention-value needs a model that decomposes its logits over {plural(model.unit_name)}; "
            f"{type(model).__name__} does not{why}"
        )
    return model.unit_contributions(inputs, unit_mask)


#: The text name of :func:`unit_contributions`.
token_contributions = unit_contributions


@torch.no_grad()
def attention_value_scores(
    model: AttentionModel, inputs: Tensor, unit_mask: Tensor, targets: Tensor
) -> Tensor:
    """``(B, U)`` each unit's share of the target's centered logit through the attention pooling."""
    contributions = at_least_float32(unit_contributions(model, inputs, unit_mask))  # (B, U, C)
    centered = contributions - contributions.mean(dim=-1, keepdim=True)  # (B, U, C)
    index = targets[:, None, None].expand(-1, centered.shape[1], 1)  # (B, U, 1)
    return centered.gather(2, index).squeeze(2) * unit_mask  # (B, U)


def _embedding_gradient(
    model: AttentionModel, inputs: Tensor, unit_mask: Tensor, targets: Tensor
) -> tuple[Tensor, Tensor]:
    """The unit representations ``(B, U, E)`` and the gradient of each row's centered target logit w.r.t. them."""
    embeddings = model.embed(inputs).detach().requires_grad_(True)  # (B, U, E)
    # cuDNN refuses the backward of an RNN in eval mode; the native kernels compute the same gradient.
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        out = model.forward_from_embeddings(embeddings, unit_mask, inputs)
        explained = centered_logits(at_least_float32(out.logits)).gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(explained, embeddings)  # (B, U, E)
    return embeddings.detach(), grad


def gradient_scores(model: AttentionModel, inputs: Tensor, unit_mask: Tensor, targets: Tensor) -> Tensor:
    """``(B, U)`` L2 norm of the gradient per unit (over its representation)."""
    _, grad = _embedding_gradient(model, inputs, unit_mask, targets)
    return at_least_float32(grad).norm(dim=-1) * unit_mask  # (B, U)


def grad_input_scores(model: AttentionModel, inputs: Tensor, unit_mask: Tensor, targets: Tensor) -> Tensor:
    """``(B, U)`` gradient x input, summed over each unit's representation."""
    embeddings, grad = _embedding_gradient(model, inputs, unit_mask, targets)
    return at_least_float32(grad * embeddings).sum(dim=-1) * unit_mask  # (B, U)


def ig_scores(
    model: AttentionModel,
    inputs: Tensor,
    unit_mask: Tensor,
    targets: Tensor,
    *,
    steps: int = 50,
    internal_batch_size: int | None = None,
    return_delta: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """``(B, U)`` Integrated Gradients (Captum) from the zero representation, summed over each unit.

    With ``return_delta`` also returns Captum's convergence delta ``(B,)``: the sum of the attributions minus the
    score difference between the input and the baseline (0 for an exact integral).
    """
    from captum.attr import IntegratedGradients

    if steps < 1:
        raise ValueError(f"Integrated Gradients needs steps >= 1, got {steps}")

    def forward(embeddings: Tensor, mask: Tensor, raw: Tensor) -> Tensor:
        logits = model.forward_from_embeddings(embeddings, mask, raw).logits
        return centered_logits(at_least_float32(logits))  # (N, C)

    embeddings = model.embed(inputs).detach()  # (B, U, E)
    if internal_batch_size is None:
        # About 64k unit positions per forward pass keeps memory modest for long texts and large grids.
        internal_batch_size = max(1, 65_536 // max(1, embeddings.shape[1]))
    ig = IntegratedGradients(forward)
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        attributions, delta = ig.attribute(
            embeddings,
            baselines=torch.zeros_like(embeddings),
            target=targets,
            additional_forward_args=(unit_mask, inputs),
            n_steps=steps,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
    scores = at_least_float32(attributions).sum(dim=-1) * unit_mask  # (B, U)
    return (scores, at_least_float32(delta.detach())) if return_delta else scores


def random_scores(unit_mask: Tensor, seed: int, first_index: int = 0) -> Tensor:
    """``(B, U)`` uniform noise on the real units; row ``b`` depends only on ``seed`` and ``first_index + b``,
    so an input gets the same random ranking however the inputs are batched."""
    rows = []
    for row in range(unit_mask.shape[0]):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + first_index + row)
        rows.append(torch.rand(unit_mask.shape[1], generator=generator))
    return torch.stack(rows).to(unit_mask.device) * unit_mask


@torch.no_grad()
def target_probabilities(
    model: AttentionModel, inputs: Tensor, unit_mask: Tensor, targets: Tensor, batch_size: int = 256
) -> Tensor:
    """``(N,)`` float64 probability of each row's target class, computed ``batch_size`` rows at a time.

    The softmax runs in float64 so that small changes of a confident prediction (p close to 1) do not round away.
    """
    out = []
    for start in range(0, inputs.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        logits = model(inputs[rows], unit_mask[rows]).logits.double()  # (b, C)
        out.append(torch.softmax(logits, dim=-1).gather(1, targets[rows, None]).squeeze(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=inputs.device)


@torch.no_grad()
def loo_scores(
    model: AttentionModel,
    inputs: Tensor,
    unit_mask: Tensor,
    targets: Tensor,
    *,
    batch_size: int = 256,
) -> Tensor:
    """``(B, U)`` leave-one-out: ``p(target | x) - p(target | x without unit u)`` for every real unit ``u``.

    A unit is taken out by ``model.remove_units``: a token is deleted, an image box is set to the training mean
    (occlusion of that box).
    """
    full = target_probabilities(model, inputs, unit_mask, targets, batch_size)  # (B,)
    scores = torch.zeros(unit_mask.shape, dtype=torch.float64, device=unit_mask.device)  # (B, U)
    for row in range(inputs.shape[0]):
        positions = torch.nonzero(unit_mask[row]).squeeze(1)  # (n,) the real units
        n = int(positions.numel())
        if n == 0:
            continue
        copies = inputs[row : row + 1].expand(n, *inputs.shape[1:])  # (n, ...): one copy per removed unit
        mask = unit_mask[row].expand(n, -1)  # (n, U)
        keep = mask.clone()
        keep[torch.arange(n, device=keep.device), positions] = False  # (n, U)
        removed, removed_mask = model.remove_units(copies, mask, keep)
        row_targets = targets[row].expand(n)  # (n,)
        without = target_probabilities(model, removed, removed_mask, row_targets, batch_size)  # (n,)
        scores[row, positions] = full[row] - without
    return scores.float()  # differences were taken in float64; float32 holds them without loss that matters


def compute_scores(
    method: str,
    model: AttentionModel,
    inputs: Tensor,
    unit_mask: Tensor,
    targets: Tensor,
    *,
    pad_id: int | None = None,
    unk_id: int | None = None,
    ig_steps: int = 50,
    batch_size: int = 256,
    seed: int = 0,
) -> Tensor:
    """``(B, U)`` scores of one method (``random`` gives uniform noise: the baseline of the faithfulness report).

    The model must be in eval mode: dropout would make every score (and every erasure) random. ``pad_id`` and
    ``unk_id`` are accepted for callers written before the contract had ``remove_units`` and are not used: the
    model removes its own units (a text model deletes tokens with its own padding and ``[UNK]`` ids).
    """
    del pad_id, unk_id  # the model's remove_units decides
    if model.training:
        raise ValueError("explanations need the model in eval mode (dropout off); call model.eval() first")
    if method == "attention":
        return attention_scores(model, inputs, unit_mask)
    if method == "rollout":
        return rollout_scores(model, inputs, unit_mask)
    if method == "attention-value":
        return attention_value_scores(model, inputs, unit_mask, targets)
    if method == "gradient":
        return gradient_scores(model, inputs, unit_mask, targets)
    if method == "grad-input":
        return grad_input_scores(model, inputs, unit_mask, targets)
    if method == "ig":
        scores = ig_scores(model, inputs, unit_mask, targets, steps=ig_steps)
        assert isinstance(scores, Tensor)
        return scores
    if method == "loo":
        return loo_scores(model, inputs, unit_mask, targets, batch_size=batch_size)
    if method == "random":
        return random_scores(unit_mask, seed)
    raise ValueError(f"unknown explanation method {method!r}; choose from {', '.join(METHODS)}")
