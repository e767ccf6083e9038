"""Explanation methods against naive references: one text at a time, finite differences, hand-computed rollout."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from attnkit.explain.methods import (
    METHODS,
    centered_logits,
    check_methods,
    compute_scores,
    delete_tokens,
    ig_scores,
    rollout_from_layers,
)
from attnkit.models import TextClassifier, available_models

ModelFactory = Callable[..., TextClassifier]
BatchFactory = Callable[..., tuple[Tensor, Tensor]]
PAD, UNK = 0, 1
LENGTHS = [7, 3, 11, 1]
MODELS = available_models("text")


def scores_of(method: str, model: TextClassifier, ids: Tensor, mask: Tensor, targets: Tensor) -> Tensor:
    return compute_scores(
        method,
        model,
        ids,
        mask,
        targets,
        pad_id=PAD,
        unk_id=UNK,
        ig_steps=16,
        seed=0,
    )


NAME_METHOD = [
    (name, method)
    for name in [*MODELS, "nb-attn+chars"]  # and the variant with character n-grams (tests/conftest.py)
    for method in [*METHODS, "random"]
    if not (method == "attention-value" and name == "han")  # HAN does not decompose its logits over tokens
]


@pytest.mark.parametrize(("name", "method"), NAME_METHOD)
def test_padded_batch_equals_one_text_at_a_time(
    name: str, method: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    """Each row's scores do not depend on the other rows or on padding, and padding scores exactly 0."""
    model = tiny_model(name).eval()
    ids, mask = make_batch(LENGTHS, 14, seed=3)
    targets = torch.tensor([0, 1, 2, 1])
    batched = scores_of(method, model, ids, mask, targets)
    assert batched.shape == ids.shape
    assert torch.isfinite(batched).all()
    assert (batched[~mask] == 0).all()
    if method == "random":
        return
    for row, n in enumerate(LENGTHS):
        alone = scores_of(
            method, model, ids[row : row + 1, :n], mask[row : row + 1, :n], targets[row : row + 1]
        )
        torch.testing.assert_close(batched[row, :n], alone[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [*MODELS, "nb-attn+chars"])
def test_attention_is_the_models_token_attention(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model(name).eval()
    ids, mask = make_batch(LENGTHS, 12)
    scores = scores_of("attention", model, ids, mask, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(scores, model(ids, mask).token_attention)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(4))


def centered_target(
    model: TextClassifier, embeddings: Tensor, mask: Tensor, ids: Tensor, target: int
) -> Tensor:
    return centered_logits(model.forward_from_embeddings(embeddings, mask, input_ids=ids).logits)[0, target]


@pytest.mark.parametrize("name", ["bilstm-attn", "transformer", "bag-attn"])
def test_gradient_and_grad_input_match_finite_differences(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model(name).eval().double()
    ids, mask = make_batch([6], 6, seed=1)
    target = 2
    grad_norm = scores_of("gradient", model, ids, mask, torch.tensor([target]))[0]
    grad_input = scores_of("grad-input", model, ids, mask, torch.tensor([target]))[0]
    embeddings = model.embed(ids).detach()  # (1, T, E)
    eps = 1e-6
    numeric = torch.zeros_like(embeddings)
    for t in range(embeddings.shape[1]):
        for e in range(embeddings.shape[2]):
            bump = torch.zeros_like(embeddings)
            bump[0, t, e] = eps
            with torch.no_grad():
                up = centered_target(model, embeddings + bump, mask, ids, target)
                down = centered_target(model, embeddings - bump, mask, ids, target)
            numeric[0, t, e] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad_norm, numeric[0].norm(dim=-1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad_input, (numeric[0] * embeddings[0]).sum(dim=-1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["bilstm-attn", "cnn-attn", "han"])
def test_integrated_gradients_is_complete_and_matches_a_riemann_sum(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    """IG scores add up to f(x) - f(baseline) and equal a naive midpoint-rule integral."""
    model = tiny_model(name).eval().double()
    ids, mask = make_batch([9], 9, seed=2)
    target = 1
    scores, delta = ig_scores(model, ids, mask, torch.tensor([target]), steps=64, return_delta=True)
    embeddings = model.embed(ids).detach()
    with torch.no_grad():
        f_x = centered_target(model, embeddings, mask, ids, target)
        f_0 = centered_target(model, torch.zeros_like(embeddings), mask, ids, target)
    assert float(scores.sum()) == pytest.approx(float(f_x - f_0), rel=1e-3, abs=1e-6)
    assert abs(float(delta[0])) < 1e-3

    steps = 400
    total = torch.zeros_like(embeddings)
    for k in range(steps):
        point = ((k + 0.5) / steps * embeddings).requires_grad_(True)
        (grad,) = torch.autograd.grad(centered_target(model, point, mask, ids, target), point)
        total += grad
    naive = (total / steps * embeddings).sum(dim=-1)[0]  # (T,)
    torch.testing.assert_close(scores[0], naive, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", [*MODELS, "nb-attn+chars"])
def test_leave_one_out_matches_deleting_each_token_by_hand(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model(name).eval()
    ids, mask = make_batch([5, 8], 8, seed=4)
    targets = torch.tensor([0, 2])
    scores = scores_of("loo", model, ids, mask, targets)
    for row, n in enumerate([5, 8]):
        tokens = ids[row, :n].tolist()
        with torch.no_grad():
            full = torch.softmax(model(torch.tensor([tokens]), torch.ones(1, n, dtype=torch.bool)).logits, -1)
            for t in range(n):
                rest = tokens[:t] + tokens[t + 1 :]
                without = torch.softmax(
                    model(torch.tensor([rest]), torch.ones(1, n - 1, dtype=torch.bool)).logits, -1
                )
                expected = full[0, targets[row]] - without[0, targets[row]]
                assert float(scores[row, t]) == pytest.approx(float(expected), abs=1e-5)


def test_leave_one_out_of_a_single_token_compares_with_unk(tiny_model: ModelFactory) -> None:
    model = tiny_model("bag-attn").eval()
    ids, mask = torch.tensor([[7]]), torch.tensor([[True]])
    score = scores_of("loo", model, ids, mask, torch.tensor([0]))
    with torch.no_grad():
        p = torch.softmax(model(ids, mask).logits, -1)[0, 0]
        p_unk = torch.softmax(model(torch.tensor([[UNK]]), mask).logits, -1)[0, 0]
    assert float(score[0, 0]) == pytest.approx(float(p - p_unk), abs=1e-6)


@pytest.mark.parametrize(
    "name", ["bag-attn", "bilstm-attn", "cnn-attn", "transformer", "nb-attn", "nb-attn+chars"]
)
@pytest.mark.parametrize("scorer", ["additive", "multihead"])
def test_attention_value_is_an_exact_decomposition_of_the_logits(
    name: str, scorer: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    """logits - sum_t contribution_t is the same for every input (it depends only on biases); for a single-head
    scorer it is exactly the output layer's bias."""
    from attnkit.explain.methods import token_contributions

    options = {"pooling_scorer": scorer, "pooling_queries": 2}
    if scorer == "multihead":
        options["pooling_heads"] = 2
    model = tiny_model(name, **options)
    if name == "nb-attn":  # real n-gram evidence, so the evidence path is part of the check
        gen = torch.Generator().manual_seed(0)
        docs = [torch.randint(2, 50, (20,), generator=gen).tolist() for _ in range(30)]
        model.init_from_data(docs, [i % 3 for i in range(30)])
    model = model.eval().double()
    ids, mask = make_batch([9, 4, 12], 12, seed=7)
    with torch.no_grad():
        logits = model(ids, mask).logits  # (B, C)
        contributions = token_contributions(model, ids, mask)  # (B, T, C)
    assert (contributions[~mask] == 0).all()
    rest = logits - contributions.sum(dim=1)  # (B, C)
    torch.testing.assert_close(rest, rest[:1].expand_as(rest))
    if scorer == "additive":
        torch.testing.assert_close(rest[0], model.head.bias)
    scores = scores_of("attention-value", model, ids, mask, torch.tensor([0, 1, 2]))
    centered = contributions - contributions.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(scores, centered[torch.arange(3), :, torch.tensor([0, 1, 2])] * mask)


def test_attention_value_needs_token_level_pooling(
    tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    from attnkit.explain.methods import supports

    model = tiny_model("han").eval()
    ids, mask = make_batch([5], 5)
    assert not supports("attention-value", model, has_layers=False)
    assert supports("attention-value", tiny_model("nb-attn").eval(), has_layers=False)
    with pytest.raises(ValueError, match="HAN pools sentence vectors"):
        scores_of("attention-value", model, ids, mask, torch.zeros(1, dtype=torch.long))


def test_rollout_by_hand() -> None:
    """One layer, two tokens: A = [[1, 0], [0.5, 0.5]], pooling [0.5, 0.5].

    mixed = 0.5 A + 0.5 I = [[1, 0], [0.25, 0.75]]; pooling @ mixed = [0.625, 0.375].
    """
    weights = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).expand(1, 3, 2, 2)  # 3 identical heads
    scores = rollout_from_layers([weights], torch.tensor([[0.5, 0.5]]), torch.tensor([[True, True]]))
    torch.testing.assert_close(scores, torch.tensor([[0.625, 0.375]]))


def naive_rollout(layers: list[Tensor], pooling: Tensor, n: int) -> Tensor:
    rollout = torch.eye(n, dtype=torch.float64)
    for weights in layers:
        mean = weights[:, :n, :n].double().mean(dim=0)
        rollout = (0.5 * mean + 0.5 * torch.eye(n, dtype=torch.float64)) @ rollout
    return pooling[:n].double() @ rollout


def test_rollout_matches_naive_product_on_a_transformer(
    tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model("transformer").eval()
    ids, mask = make_batch([9, 4], 9, seed=5)
    scores = scores_of("rollout", model, ids, mask, torch.zeros(2, dtype=torch.long))
    out = model(ids, mask, need_layer_attentions=True)
    assert out.layer_attentions is not None
    for row, n in enumerate([9, 4]):
        layers = [a[row] for a in out.layer_attentions]
        expected = naive_rollout(layers, out.token_attention[row], n)
        torch.testing.assert_close(scores[row, :n].double(), expected, rtol=1e-5, atol=1e-6)
        assert float(scores[row].sum()) == pytest.approx(1.0, abs=1e-5)


def test_rollout_needs_self_attention(tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    ids, mask = make_batch([3], 3)
    with pytest.raises(ValueError, match="self-attention"):
        scores_of("rollout", tiny_model("bilstm-attn").eval(), ids, mask, torch.zeros(1, dtype=torch.long))


def test_binary_target_flips_the_sign_of_signed_methods(
    tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    """With two classes the centered logits are +-d/2 and p(neg) = 1 - p(pos): explaining the other class
    negates grad-input, IG and LOO exactly."""
    model = tiny_model("bilstm-attn", num_classes=2).eval()
    ids, mask = make_batch([6, 4], 6, seed=6)
    for method in ("attention-value", "grad-input", "ig", "loo"):
        pos = scores_of(method, model, ids, mask, torch.tensor([1, 1]))
        neg = scores_of(method, model, ids, mask, torch.tensor([0, 0]))
        torch.testing.assert_close(neg, -pos, rtol=1e-4, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.booleans(), min_size=1, max_size=9), min_size=1, max_size=5), st.integers(0, 2**16)
)
def test_delete_tokens_matches_list_filtering(keep_rows: list[list[bool]], seed: int) -> None:
    width = max(len(r) for r in keep_rows)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 50, (len(keep_rows), width), generator=gen)
    mask = torch.zeros(len(keep_rows), width, dtype=torch.bool)
    keep = torch.zeros_like(mask)
    for row, flags in enumerate(keep_rows):
        mask[row, : len(flags)] = True
        keep[row, : len(flags)] = torch.tensor(flags)
    ids = ids.masked_fill(~mask, PAD)
    new_ids, new_mask = delete_tokens(ids, mask, keep, pad_id=PAD, unk_id=UNK)
    for row, flags in enumerate(keep_rows):
        expected = [int(i) for i, k in zip(ids[row].tolist(), flags, strict=False) if k] or [UNK]
        assert new_ids[row][new_mask[row]].tolist() == expected
        assert (new_ids[row][~new_mask[row]] == PAD).all()
        assert new_mask[row].tolist() == sorted(new_mask[row].tolist(), reverse=True)  # right-padded


def test_check_methods() -> None:
    assert check_methods(["all"]) == list(METHODS)
    assert check_methods(["loo", "attention", "loo"]) == ["loo", "attention"]
    with pytest.raises(ValueError, match="unknown explanation method 'shap'"):
        check_methods(["shap"])


def test_models_are_not_changed_by_explaining(tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = tiny_model("transformer").eval()
    before = copy.deepcopy(model.state_dict())
    ids, mask = make_batch(LENGTHS, 12)
    for method in METHODS:
        scores_of(method, model, ids, mask, torch.zeros(4, dtype=torch.long))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(p.grad is None for p in model.parameters())


def test_unit_names_in_reports_are_plural() -> None:
    from attnkit.explain.methods import plural

    assert [plural(u) for u in ("token", "patch", "cell", "frame", "box")] == [
        "tokens",
        "patches",
        "cells",
        "frames",
        "boxes",
    ]
