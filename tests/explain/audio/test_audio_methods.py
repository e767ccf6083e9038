"""Explanation methods on tiny audio models against by-hand references: the feature gradient per frame by
autograd, IG's completeness, occlusion = the probability drop when that frame is deleted by hand, the exact
attention-value decomposition, rollout on the transformer, and a padded batch equal to one clip at a time."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from attnkit.explain.faithfulness import uniform_pooling
from attnkit.explain.methods import (
    METHODS,
    centered_logits,
    check_methods,
    compute_scores,
    ig_scores,
    unit_contributions,
)
from attnkit.models.audio import AudioClassifier

AudioModels = Callable[..., AudioClassifier]
Frames = Callable[..., tuple[Tensor, Tensor]]
NAMES = ["crnn-attn", "transformer"]


@pytest.mark.parametrize("name", NAMES)
def test_gradient_per_frame_is_the_feature_gradient(
    name: str, audio_model: AudioModels, frames: Frames
) -> None:
    """gradient = L2 norm of d centered-logit / d features over each frame's row; grad-input = sum of grad * x."""
    model = audio_model(name).double()
    x, mask = frames([7, 4], seed=1, dtype=torch.float64)
    targets = torch.tensor([1, 2])
    leaf = x.clone().requires_grad_(True)
    explained = centered_logits(model(leaf, mask).logits).gather(1, targets[:, None]).sum()
    (grad,) = torch.autograd.grad(explained, leaf)  # (B, U, E)
    gradient = compute_scores("gradient", model, x, mask, targets)
    grad_input = compute_scores("grad-input", model, x, mask, targets)
    torch.testing.assert_close(gradient, grad.norm(dim=-1) * mask, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad_input, (grad * x).sum(dim=-1) * mask, rtol=1e-9, atol=1e-12)
    assert torch.all(gradient[1, 4:] == 0) and torch.all(grad_input[1, 4:] == 0)  # padding scores nothing


@pytest.mark.parametrize(("name", "tolerance"), [("crnn-attn", 1e-3), ("transformer", 1e-6)])
def test_integrated_gradients_is_complete(
    name: str, tolerance: float, audio_model: AudioModels, frames: Frames
) -> None:
    """The frame scores add up to score(x) - score(all-mean frames: zeros) within ``tolerance`` relative (float64,
    256 steps of Captum's Gauss-Legendre rule), and Captum's convergence delta says the same. Measured: 3e-9 for
    the smooth transformer; 4e-4 for the CRNN, whose ReLUs and max-pooling over frequency put kinks on the path
    (1.5e-3 at 128 steps, 9e-5 at 1024)."""
    model = audio_model(name).double()
    x, mask = frames([9], seed=2, dtype=torch.float64)
    with torch.no_grad():  # the class whose score moves most along the path: completeness is then well posed
        moves = (
            centered_logits(model(x, mask).logits)[0]
            - centered_logits(model(torch.zeros_like(x), mask).logits)[0]
        )
    target = int(moves.abs().argmax())
    scores, delta = ig_scores(model, x, mask, torch.tensor([target]), steps=256, return_delta=True)
    difference = float(moves[target])
    assert abs(difference) > 1e-2  # a real test: the score moves along the path
    assert float(scores.sum()) == pytest.approx(difference, rel=tolerance)
    assert abs(float(delta[0])) < tolerance * abs(difference)


@pytest.mark.parametrize("name", NAMES)
def test_occlusion_is_the_probability_drop_when_the_frame_is_deleted(
    name: str, audio_model: AudioModels, frames: Frames
) -> None:
    """loo[u] = p(target | x) - p(target | x with frame u cut out and the rest closed up), by hand."""
    model = audio_model(name).double()
    x, mask = frames([6, 3], seed=3, dtype=torch.float64)
    targets = torch.tensor([0, 2])
    loo = compute_scores("loo", model, x, mask, targets)
    with torch.no_grad():
        for b, length in enumerate([6, 3]):
            clip = x[b : b + 1, :length]  # (1, n, E): the clip alone, unpadded
            full = torch.softmax(model(clip).logits, dim=-1)[0, targets[b]]
            for u in range(length):
                cut = torch.cat([clip[:, :u], clip[:, u + 1 :]], dim=1)  # (1, n - 1, E)
                without = torch.softmax(model(cut).logits, dim=-1)[0, targets[b]]
                assert float(loo[b, u]) == pytest.approx(float(full - without), abs=1e-6)
    assert torch.all(loo[1, 3:] == 0)


@pytest.mark.parametrize("name", NAMES)
def test_attention_value_is_an_exact_decomposition(
    name: str, audio_model: AudioModels, frames: Frames
) -> None:
    """logits - sum_u contribution_u depends only on biases: the same for every clip, whatever its length."""
    model = audio_model(name).double()
    x, mask = frames([8, 5, 2], seed=4, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x, mask).logits
        contributions = unit_contributions(model, x, mask)  # (B, U, K)
    rest = logits - contributions.sum(dim=1)
    torch.testing.assert_close(rest, rest[:1].expand_as(rest))
    targets = torch.tensor([0, 1, 2])
    scores = compute_scores("attention-value", model, x, mask, targets)
    centered = contributions - contributions.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(scores, centered[torch.arange(3), :, targets] * mask)


def test_attention_brings_rollout_for_the_transformer_only(audio_model: AudioModels, frames: Frames) -> None:
    transformer, crnn = audio_model("transformer"), audio_model("crnn-attn")
    assert check_methods(["attention"], transformer) == ["attention", "rollout"]
    assert check_methods(["attention"], crnn) == ["attention"]
    assert "rollout" not in check_methods(["all"], crnn)
    x, mask = frames([7, 3], seed=5)
    attention = compute_scores("attention", transformer, x, mask, torch.tensor([0, 0]))
    rollout = compute_scores("rollout", transformer, x, mask, torch.tensor([0, 0]))
    for scores in (attention, rollout):
        torch.testing.assert_close(scores.sum(dim=1), torch.ones(2), rtol=1e-5, atol=1e-5)
        assert torch.all(scores[1, 3:] == 0) and torch.all(scores >= 0)
    with pytest.raises(ValueError, match="use the transformer model"):
        compute_scores("rollout", crnn, x, mask, torch.tensor([0, 0]))


@pytest.mark.parametrize("name", NAMES)
def test_a_padded_batch_equals_one_clip_at_a_time(
    name: str, audio_model: AudioModels, frames: Frames
) -> None:
    model = audio_model(name)
    x, mask = frames([9, 5, 2], seed=6)
    targets = torch.tensor([2, 0, 1])
    for method in check_methods(["all"], model):
        batched = compute_scores(method, model, x, mask, targets, ig_steps=8)
        for b, length in enumerate([9, 5, 2]):
            alone = compute_scores(
                method, model, x[b : b + 1, :length], mask[b : b + 1, :length], targets[b : b + 1], ig_steps=8
            )
            torch.testing.assert_close(batched[b, :length], alone[0], rtol=1e-4, atol=1e-6, msg=method)
            assert torch.all(batched[b, length:] == 0), method


@pytest.mark.parametrize("name", NAMES)
def test_uniform_pooling_gives_every_real_frame_the_same_weight(
    name: str, audio_model: AudioModels, frames: Frames
) -> None:
    model = audio_model(name)
    x, mask = frames([6, 4], seed=7)
    with uniform_pooling(model) as patched, torch.no_grad():
        out = model(x, mask)
    assert patched == 1
    torch.testing.assert_close(out.unit_attention[0], torch.full((6,), 1 / 6))
    torch.testing.assert_close(out.unit_attention[1], torch.tensor([0.25] * 4 + [0.0] * 2))
    assert set(METHODS) <= set(check_methods(["all"], model)) | {"rollout"}
