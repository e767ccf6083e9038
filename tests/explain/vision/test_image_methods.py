"""Explanation methods on image models against by-hand references: pixel autograd summed over each box, IG's
completeness and a Riemann sum, occlusion of one box by hand, rollout by a naive product, the exact
attention-value decomposition, and batch independence."""

from __future__ import annotations

import copy
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
    supports,
    unit_contributions,
)
from attnkit.models.vision import ImageClassifier, unit_boxes

ImageModels = Callable[..., ImageClassifier]
Pixels = Callable[..., Tensor]
NAMES = ["cnn-attn", "vit", "cbam-attn", "hybrid-vit"]


def scores_of(
    method: str, model: ImageClassifier, pixels: Tensor, targets: Tensor, steps: int = 16
) -> Tensor:
    return compute_scores(method, model, pixels, model.unit_mask_of(pixels), targets, ig_steps=steps)


def centered_target(model: ImageClassifier, pixels: Tensor, target: int) -> Tensor:
    """``(B,)`` the explained score straight from the pixels (the model's forward, not the unit path)."""
    return centered_logits(model(pixels).logits)[:, target]


@pytest.mark.parametrize("name", NAMES)
def test_gradient_per_unit_is_the_pixel_gradient_over_the_box(
    name: str, image_model: ImageModels, pixels: Pixels
) -> None:
    """gradient = L2 norm of d score / d pixels over the box's pixels; grad-input = sum of grad * pixel there."""
    model = image_model(name).double()
    x = pixels(2, seed=1, dtype=torch.float64)
    targets = torch.tensor([1, 2])
    grad_norm = scores_of("gradient", model, x, targets)
    grad_input = scores_of("grad-input", model, x, targets)
    leaf = x.clone().requires_grad_(True)
    explained = sum(centered_target(model, leaf[b : b + 1], int(targets[b]))[0] for b in range(2))
    (pixel_grad,) = torch.autograd.grad(explained, leaf)  # (B, 1, 28, 28)
    for u, (x0, y0, x1, y1) in enumerate(unit_boxes(model.config).tolist()):
        box_grad = pixel_grad[:, :, y0:y1, x0:x1].flatten(1)  # (B, C*S*S)
        box_pixels = x[:, :, y0:y1, x0:x1].flatten(1)
        torch.testing.assert_close(grad_norm[:, u], box_grad.norm(dim=1), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(
            grad_input[:, u], (box_grad * box_pixels).sum(dim=1), rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("name", NAMES)
def test_integrated_gradients_is_complete(name: str, image_model: ImageModels, pixels: Pixels) -> None:
    """The unit scores add up to score(x) - score(all-mean image) within 1e-3 relative (Captum's Gauss-Legendre
    rule, 256 steps, float64: the ReLU kinks of the path need them), and Captum's convergence delta says the same."""
    model = image_model(name).double()
    x = pixels(1, seed=2, dtype=torch.float64)
    with torch.no_grad():  # the class whose score moves most along the path: completeness is then well posed
        moves = [
            float(centered_target(model, x, c)[0] - centered_target(model, torch.zeros_like(x), c)[0])
            for c in range(model.config.num_classes)
        ]
    target = max(range(len(moves)), key=lambda c: abs(moves[c]))
    scores, delta = ig_scores(
        model, x, model.unit_mask_of(x), torch.tensor([target]), steps=256, return_delta=True
    )
    difference = moves[target]
    assert abs(difference) > 1e-3  # a real test: the score moves along the path (by 100x the tolerance)
    assert float(scores.sum()) == pytest.approx(difference, rel=1e-3, abs=1e-5)
    assert abs(float(delta[0])) < 1e-3 * max(1.0, abs(difference))


def test_integrated_gradients_matches_a_riemann_sum_over_each_box(
    image_model: ImageModels, pixels: Pixels
) -> None:
    """On the ViT (smooth: GELU, softmax; a ReLU CNN's path integrand has kinks that no fixed rule integrates
    exactly) each unit's IG score equals a naive 200-step midpoint rule of grad * pixel summed over its box,
    within 1e-3 relative."""
    model = image_model("vit").double()
    x = pixels(1, seed=2, dtype=torch.float64)
    target = 1
    scores = ig_scores(model, x, model.unit_mask_of(x), torch.tensor([target]), steps=64)
    assert isinstance(scores, Tensor)
    steps = 200
    total = torch.zeros_like(x)
    for k in range(steps):
        point = ((k + 0.5) / steps * x).requires_grad_(True)
        (grad,) = torch.autograd.grad(centered_target(model, point, target)[0], point)
        total += grad
    attributions = total / steps * x  # (1, 1, 28, 28)
    naive = torch.stack(
        [attributions[0, :, y0:y1, x0:x1].sum() for x0, y0, x1, y1 in unit_boxes(model.config).tolist()]
    )  # (U,)
    torch.testing.assert_close(scores[0], naive, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["cnn-attn", "vit"])
def test_occlusion_equals_removing_one_box_by_hand(
    name: str, image_model: ImageModels, pixels: Pixels
) -> None:
    """loo of unit u = p(target | x) - p(target | x with u's box set to 0, the training mean)."""
    model = image_model(name)
    x = pixels(2, seed=3)
    targets = torch.tensor([0, 2])
    scores = scores_of("loo", model, x, targets)
    boxes = unit_boxes(model.config).tolist()
    with torch.no_grad():
        full = torch.softmax(model(x).logits.double(), dim=-1)
        for u in (0, 17, 24, 48):
            x0, y0, x1, y1 = boxes[u]
            occluded = x.clone()
            occluded[:, :, y0:y1, x0:x1] = 0.0
            without = torch.softmax(model(occluded).logits.double(), dim=-1)
            for b in range(2):
                expected = full[b, targets[b]] - without[b, targets[b]]
                assert float(scores[b, u]) == pytest.approx(float(expected), abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", [*METHODS, "rollout", "random"])
def test_batch_equals_one_image_at_a_time(
    name: str, method: str, image_model: ImageModels, pixels: Pixels
) -> None:
    model = image_model(name)
    if not supports(method, model):
        with pytest.raises(ValueError, match="self-attention"):
            scores_of(method, model, pixels(1), torch.zeros(1, dtype=torch.long))
        return
    x = pixels(3, seed=4)
    targets = torch.tensor([0, 1, 2])
    batched = scores_of(method, model, x, targets)
    assert batched.shape == (3, 49) and torch.isfinite(batched).all()
    if method == "random":
        return
    for b in range(3):
        alone = scores_of(method, model, x[b : b + 1], targets[b : b + 1])
        torch.testing.assert_close(batched[b], alone[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_attention_is_the_unit_attention_and_rollout_sums_to_one(
    name: str, image_model: ImageModels, pixels: Pixels
) -> None:
    model = image_model(name)
    x = pixels(2, seed=5)
    attention = scores_of("attention", model, x, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(attention, model(x).unit_attention)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(2))
    assert ("rollout" in check_methods(["attention"], model)) == model.has_layer_attentions()
    if model.has_layer_attentions():
        rollout = scores_of("rollout", model, x, torch.zeros(2, dtype=torch.long))
        out = model(x, need_layer_attentions=True)
        assert out.layer_attentions is not None
        for b in range(2):
            naive = torch.eye(49, dtype=torch.float64)
            for weights in out.layer_attentions:
                naive = (
                    0.5 * weights[b].double().mean(dim=0) + 0.5 * torch.eye(49, dtype=torch.float64)
                ) @ naive
            torch.testing.assert_close(
                rollout[b].double(), out.unit_attention[b].double() @ naive, rtol=1e-5, atol=1e-7
            )
        torch.testing.assert_close(rollout.sum(dim=1), torch.ones(2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_attention_value_is_an_exact_decomposition(
    name: str, image_model: ImageModels, pixels: Pixels
) -> None:
    """logits - sum_u contribution_u depends only on biases: the same for every image."""
    model = image_model(name).double()
    x = pixels(3, seed=6, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x).logits
        contributions = unit_contributions(model, x, model.unit_mask_of(x))  # (B, U, K)
    rest = logits - contributions.sum(dim=1)
    torch.testing.assert_close(rest, rest[:1].expand_as(rest))
    scores = scores_of("attention-value", model, x, torch.tensor([0, 1, 2]))
    centered = contributions - contributions.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(scores, centered[torch.arange(3), :, torch.tensor([0, 1, 2])])


@pytest.mark.parametrize("name", NAMES)
def test_uniform_pooling_on_image_models(name: str, image_model: ImageModels, pixels: Pixels) -> None:
    model = image_model(name)
    x = pixels(2, seed=7)
    before = model(x)
    with uniform_pooling(model) as patched, torch.no_grad():
        assert patched == 1
        uniform = model(x)
    torch.testing.assert_close(uniform.unit_attention, torch.full((2, 49), 1 / 49))
    assert not torch.allclose(uniform.logits, before.logits)
    torch.testing.assert_close(model(x).logits, before.logits)  # restored


def test_explaining_changes_nothing_in_the_model(image_model: ImageModels, pixels: Pixels) -> None:
    model = image_model("vit")
    before = copy.deepcopy(model.state_dict())
    x = pixels(2)
    for method in [*METHODS, "rollout"]:
        scores_of(method, model, x, torch.zeros(2, dtype=torch.long))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(p.grad is None for p in model.parameters())
