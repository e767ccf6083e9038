"""Per-token importance of a classifier's decision, by five methods plus attention rollout.

Every method maps a batch ``input_ids (B, T)``, ``attention_mask (B, T)`` (bool, right-padded) and the class to
explain ``targets (B,)`` to scores ``(B, T)`` that are exactly 0 on padding. They depend only on the classifier
contract of :mod:`attnkit.models.base`: ``forward`` returning ``ClassifierOutput`` and ``embed`` /
``forward_from_embeddings`` for the gradient methods.

- ``attention``: the model's own pooling weights (``token_attention``), >= 0, summing to 1.
- ``rollout``: attention rollout (Abnar & Zuidema 2020) of the self-attention layers, read out through the
  pooling weights; only for models with self-attention (the transformer). >= 0, summing to 1.
- ``attention-value``: the pooling's exact decomposition of the explained score into one term per token: token
  ``t``'s attention weight times what its (value) state adds to the score through the output layer,
  ``a_t * (W v_t)[target]`` (the norm-based view of Kobayashi et al. 2020, signed). The terms add up to the
  explained score minus a constant from the biases. Needs the pooling to run over token states (not HAN).
- ``gradient``: L2 norm of the gradient of the explained score w.r.t. each token's embedding, >= 0.
- ``grad-input``: gradient x input, summed over the embedding: signed.
- ``ig``: Integrated Gradients (Sundararajan et al. 2017, computed by Captum) from the all-zero embedding (the
  padding embedding), summed over the embedding: signed; the scores add up to the score difference between the
  text and the baseline.
- ``loo``: leave-one-out occlusion: the drop in the target's probability when the token is deleted: signed.

The explained score of the gradient methods is the target's *centered logit* ``z_target - mean(z)``: unlike the
raw logit it does not change when all logits shift, and unlike the probability it does not saturate.

Dimension legend: ``B`` batch, ``T`` tokens, ``E`` embedding size, ``C`` classes, ``L`` layers, ``H`` heads.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnkit.models.base import TextClassifier, delete_tokens

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


def supports(method: str, model: TextClassifier, *, has_layers: bool) -> bool:
    """Whether ``method`` applies to ``model``: ``rollout`` needs self-attention layers and ``attention-value``
    a model that decomposes its logits over tokens (not HAN)."""
    if method == "rollout":
        return has_layers
    if method == "attention-value":
        return model.has_token_contributions()
    return True


def check_methods(
    methods: list[str] | tuple[str, ...], model: TextClassifier | None = None, *, has_layers: bool = False
) -> list[str]:
    """Expand ``all`` and validate names; returns the methods in the order given, without duplicates.

    With ``model``, ``all`` leaves out the methods the model does not support (a named one still raises when
    computed, with the reason), and ``attention`` brings ``rollout`` for a model with self-attention layers.
    """
    if isinstance(methods, str):
        methods = [methods]
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


def has_self_attention(model: TextClassifier, input_ids: Tensor, attention_mask: Tensor) -> bool:
    """Whether ``model`` returns per-layer self-attention weights (probes one row)."""
    with torch.no_grad():
        out = model(input_ids[:1], attention_mask[:1], need_layer_attentions=True)
    return bool(out.layer_attentions)


@torch.no_grad()
def attention_scores(model: TextClassifier, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``(B, T)`` the model's pooling attention over tokens."""
    return model(input_ids, attention_mask).token_attention.float()  # (B, T)


def rollout_from_layers(
    layer_attentions: list[Tensor], token_attention: Tensor, attention_mask: Tensor
) -> Tensor:
    """Attention rollout read out through the pooling weights.

    Each layer's head-averaged weights are mixed with the identity for the residual path,
    ``A_l = 0.5 * mean_h(W_l) + 0.5 * I``; the product ``A_L ... A_1`` says how much each top-layer state draws on
    each input token, and the pooling weights over the top-layer states turn that into one score per token.

    Args:
        layer_attentions: ``L`` tensors ``(B, H, T, T)`` (rows = queries, each summing to 1 over kept keys).
        token_attention: ``(B, T)`` pooling weights over the top-layer states.
        attention_mask: ``(B, T)`` bool, True = real token.

    Returns:
        ``(B, T)``: non-negative, summing to 1 over the real tokens, 0 on padding.
    """
    keep = attention_mask.float()  # (B, T)
    length = keep.shape[1]
    eye = torch.eye(length, device=keep.device)  # (T, T)
    # Padding rows carry no weight in the pooling; zero their identity so no mass lands on padding columns.
    eye_real = eye * keep[:, :, None]  # (B, T, T)
    rollout = eye_real
    for weights in layer_attentions:
        mixed = 0.5 * weights.float().mean(dim=1) + 0.5 * eye_real  # (B, T, T)
        rollout = mixed @ rollout  # (B, T, T)
    scores = (token_attention.float()[:, None, :] @ rollout).squeeze(1)  # (B, T)
    return scores * keep


@torch.no_grad()
def rollout_scores(model: TextClassifier, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``(B, T)`` attention rollout; raises ``ValueError`` for models without self-attention layers."""
    out = model(input_ids, attention_mask, need_layer_attentions=True)
    if not out.layer_attentions:
        raise ValueError(
            f"attention rollout needs self-attention layers; {type(model).__name__} has none "
            "(use the transformer model, or the attention method)"
        )
    return rollout_from_layers(out.layer_attentions, out.token_attention, attention_mask)


def token_contributions(model: TextClassifier, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``(B, T, C)``: each token's additive share of the logits through the attention pooling (the model's hook)."""
    if not model.has_token_contributions():
        raise ValueError(
            f"attention-value needs a model that decomposes its logits over tokens; {type(model).__name__} does "
            "not (HAN pools sentence vectors through a recurrent layer)"
        )
    return model.token_contributions(input_ids, attention_mask)


@torch.no_grad()
def attention_value_scores(
    model: TextClassifier, input_ids: Tensor, attention_mask: Tensor, targets: Tensor
) -> Tensor:
    """``(B, T)`` each token's share of the target's centered logit through the attention pooling."""
    contributions = at_least_float32(token_contributions(model, input_ids, attention_mask))  # (B, T, C)
    centered = contributions - contributions.mean(dim=-1, keepdim=True)  # (B, T, C)
    index = targets[:, None, None].expand(-1, centered.shape[1], 1)  # (B, T, 1)
    return centered.gather(2, index).squeeze(2) * attention_mask  # (B, T)


def _embedding_gradient(
    model: TextClassifier, input_ids: Tensor, attention_mask: Tensor, targets: Tensor
) -> tuple[Tensor, Tensor]:
    """The embeddings ``(B, T, E)`` and the gradient of each row's centered target logit w.r.t. them."""
    embeddings = model.embed(input_ids).detach().requires_grad_(True)  # (B, T, E)
    # cuDNN refuses the backward of an RNN in eval mode; the native kernels compute the same gradient.
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        out = model.forward_from_embeddings(embeddings, attention_mask, input_ids=input_ids)
        explained = centered_logits(at_least_float32(out.logits)).gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(explained, embeddings)  # (B, T, E)
    return embeddings.detach(), grad


def gradient_scores(
    model: TextClassifier, input_ids: Tensor, attention_mask: Tensor, targets: Tensor
) -> Tensor:
    """``(B, T)`` L2 norm of the gradient per token."""
    _, grad = _embedding_gradient(model, input_ids, attention_mask, targets)
    return at_least_float32(grad).norm(dim=-1) * attention_mask  # (B, T)


def grad_input_scores(
    model: TextClassifier, input_ids: Tensor, attention_mask: Tensor, targets: Tensor
) -> Tensor:
    """``(B, T)`` gradient x input, summed over the embedding dimension."""
    embeddings, grad = _embedding_gradient(model, input_ids, attention_mask, targets)
    return at_least_float32(grad * embeddings).sum(dim=-1) * attention_mask  # (B, T)


def ig_scores(
    model: TextClassifier,
    input_ids: Tensor,
    attention_mask: Tensor,
    targets: Tensor,
    *,
    steps: int = 50,
    internal_batch_size: int | None = None,
    return_delta: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """``(B, T)`` Integrated Gradients (Captum) from the zero embedding, summed over the embedding dimension.

    With ``return_delta`` also returns Captum's convergence delta ``(B,)``: the sum of the attributions minus the
    score difference between the input and the baseline (0 for an exact integral).
    """
    from captum.attr import IntegratedGradients

    if steps < 1:
        raise ValueError(f"Integrated Gradients needs steps >= 1, got {steps}")

    def forward(embeddings: Tensor, mask: Tensor, ids: Tensor) -> Tensor:
        logits = model.forward_from_embeddings(embeddings, mask, input_ids=ids).logits
        return centered_logits(at_least_float32(logits))  # (N, C)

    embeddings = model.embed(input_ids).detach()  # (B, T, E)
    if internal_batch_size is None:
        # About 64k token positions per forward pass keeps memory modest for long texts.
        internal_batch_size = max(1, 65_536 // max(1, input_ids.shape[1]))
    ig = IntegratedGradients(forward)
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        attributions, delta = ig.attribute(
            embeddings,
            baselines=torch.zeros_like(embeddings),
            target=targets,
            additional_forward_args=(attention_mask, input_ids),
            n_steps=steps,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
    scores = at_least_float32(attributions).sum(dim=-1) * attention_mask  # (B, T)
    return (scores, at_least_float32(delta.detach())) if return_delta else scores


def random_scores(attention_mask: Tensor, seed: int, first_index: int = 0) -> Tensor:
    """``(B, T)`` uniform noise on the real tokens; row ``b`` depends only on ``seed`` and ``first_index + b``,
    so a text gets the same random ranking however the texts are batched."""
    rows = []
    for row in range(attention_mask.shape[0]):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + first_index + row)
        rows.append(torch.rand(attention_mask.shape[1], generator=generator))
    return torch.stack(rows).to(attention_mask.device) * attention_mask


@torch.no_grad()
def target_probabilities(
    model: TextClassifier, input_ids: Tensor, attention_mask: Tensor, targets: Tensor, batch_size: int = 256
) -> Tensor:
    """``(N,)`` float64 probability of each row's target class, computed ``batch_size`` rows at a time.

    The softmax runs in float64 so that small changes of a confident prediction (p close to 1) do not round away.
    """
    out = []
    for start in range(0, input_ids.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        ids, mask = input_ids[rows], attention_mask[rows]
        used = max(1, int(mask.sum(dim=1).max()))  # trim shared padding
        logits = model(ids[:, :used], mask[:, :used]).logits.double()  # (b, C)
        out.append(torch.softmax(logits, dim=-1).gather(1, targets[rows, None]).squeeze(1))
    return torch.cat(out) if out else input_ids.new_zeros(0, dtype=torch.float64)


@torch.no_grad()
def loo_scores(
    model: TextClassifier,
    input_ids: Tensor,
    attention_mask: Tensor,
    targets: Tensor,
    *,
    pad_id: int,
    unk_id: int,
    batch_size: int = 256,
) -> Tensor:
    """``(B, T)`` leave-one-out: ``p(target | text) - p(target | text without token t)`` for every token."""
    full = target_probabilities(model, input_ids, attention_mask, targets, batch_size)  # (B,)
    scores = torch.zeros(input_ids.shape, dtype=torch.float64, device=input_ids.device)  # (B, T)
    for row in range(input_ids.shape[0]):
        n = int(attention_mask[row].sum())
        ids = input_ids[row, :n].expand(n, n)  # (n, n): one copy per deleted token
        keep = ~torch.eye(n, dtype=torch.bool, device=ids.device)  # (n, n)
        deleted_ids, deleted_mask = delete_tokens(
            ids, torch.ones_like(keep), keep, pad_id=pad_id, unk_id=unk_id
        )  # (n, n - 1)
        row_targets = targets[row].expand(n)  # (n,)
        without = target_probabilities(model, deleted_ids, deleted_mask, row_targets, batch_size)  # (n,)
        scores[row, :n] = full[row] - without
    return scores.float()  # differences were taken in float64; float32 holds them without loss that matters


def compute_scores(
    method: str,
    model: TextClassifier,
    input_ids: Tensor,
    attention_mask: Tensor,
    targets: Tensor,
    *,
    pad_id: int,
    unk_id: int,
    ig_steps: int = 50,
    batch_size: int = 256,
    seed: int = 0,
) -> Tensor:
    """``(B, T)`` scores of one method (``random`` gives uniform noise: the baseline of the faithfulness report).

    The model must be in eval mode: dropout would make every score (and every erasure) random.
    """
    if model.training:
        raise ValueError("explanations need the model in eval mode (dropout off); call model.eval() first")
    if method == "attention":
        return attention_scores(model, input_ids, attention_mask)
    if method == "rollout":
        return rollout_scores(model, input_ids, attention_mask)
    if method == "attention-value":
        return attention_value_scores(model, input_ids, attention_mask, targets)
    if method == "gradient":
        return gradient_scores(model, input_ids, attention_mask, targets)
    if method == "grad-input":
        return grad_input_scores(model, input_ids, attention_mask, targets)
    if method == "ig":
        scores = ig_scores(model, input_ids, attention_mask, targets, steps=ig_steps)
        assert isinstance(scores, Tensor)
        return scores
    if method == "loo":
        return loo_scores(
            model, input_ids, attention_mask, targets, pad_id=pad_id, unk_id=unk_id, batch_size=batch_size
        )
    if method == "random":
        return random_scores(attention_mask, seed)
    raise ValueError(f"unknown explanation method {method!r}; choose from {', '.join(METHODS)}")
