"""The model contract (:class:`attnkit.models.base.AttentionModel`), checked on every registered model of every
modality: what the loop, explanations, faithfulness and export rely on without naming a model's class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attnkit.models.base import AttentionModel
from attnkit.models.registry import REGISTRY, build_model

# Tiny image configs (3 classes, 28x28 grayscale, 4-pixel units -> 49 units); text models use tests/conftest.py.
TINY_IMAGE: dict[str, dict[str, Any]] = {
    "vit": {"embed_dim": 16, "num_heads": 2, "ff_dim": 32, "num_layers": 2},
    "cnn-attn": {"widths": (4, 8), "strides": (2, 2)},
    "cbam-attn": {"widths": (4, 8), "strides": (2, 2), "reduction": 2, "spatial_kernel": 3},
    "hybrid-vit": {
        "stem_widths": (4, 8),
        "stem_strides": (2, 2),
        "embed_dim": 16,
        "num_heads": 2,
        "ff_dim": 32,
        "num_layers": 2,
    },
}
# Tiny audio configs (3 classes, 8 features per frame, at most 16 frames).
TINY_AUDIO: dict[str, dict[str, Any]] = {
    "crnn-attn": {"conv_channels": (4, 4), "hidden_dim": 6},
    "transformer": {"embed_dim": 16, "num_heads": 2, "ff_dim": 32, "num_layers": 2, "pooling_heads": 2},
}
CASES = [(modality, name) for modality, models in REGISTRY.items() for name in sorted(models)]
IDS = [f"{modality}:{name}" for modality, name in CASES]
LENGTHS = [12, 5, 1]  # text rows: full, padded, a single token
#: Every test runs on the CPU, and on CUDA too when a GPU is present.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

Batch = tuple[AttentionModel, Tensor, Tensor, Tensor]


@pytest.fixture
def build(tiny_model: Callable[..., AttentionModel], make_batch: Callable[..., tuple[Tensor, Tensor]]) -> Any:
    """``build(modality, name)`` -> (tiny model, inputs, unit mask with some units not real, labels)."""

    def make(modality: str, name: str) -> Batch:
        labels = torch.tensor([0, 2, 1])
        if modality == "text":
            ids, mask = make_batch(LENGTHS, 12)
            return tiny_model(name), ids, mask, labels
        if modality == "image":
            torch.manual_seed(0)
            model = build_model(name, modality="image", num_classes=3, **TINY_IMAGE[name])
            pixels = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
            mask = model.unit_mask_of(pixels)
            mask[1, 20:] = False
            mask[2, 1:] = False
            return model, pixels, mask, labels
        if modality == "audio":
            torch.manual_seed(0)
            model = build_model(
                name, modality="audio", num_classes=3, feature_dim=8, max_units=16, **TINY_AUDIO[name]
            )
            features = torch.randn(3, 12, 8, generator=torch.Generator().manual_seed(0))
            mask = torch.arange(12)[None, :] < torch.tensor(LENGTHS)[:, None]  # (3, 12) right-padded
            return model, features * mask.unsqueeze(-1), mask, labels
        raise AssertionError(f"no inputs for modality {modality!r}: teach this test to build them")

    return make


def assert_attention(attention: Tensor, mask: Tensor) -> None:
    """``(B, U)``, >= 0, 0 on units that are not real, summing to 1 over the real ones."""
    attention, mask = attention.cpu(), mask.cpu()
    assert attention.shape == mask.shape
    assert torch.all(attention >= 0)
    assert torch.all(attention[~mask] == 0)
    real = mask.any(1)
    torch.testing.assert_close(attention.sum(1)[real], torch.ones(int(real.sum())), atol=1e-5, rtol=0)


def test_every_registered_model_has_tiny_inputs(tiny_configs: dict[str, Any]) -> None:
    assert set(REGISTRY) == {"text", "image", "audio"}, "a new modality needs inputs in this test"
    assert set(REGISTRY["text"]) == set(tiny_configs)
    assert set(REGISTRY["image"]) == set(TINY_IMAGE)
    assert set(REGISTRY["audio"]) == set(TINY_AUDIO)
    for modality, models in REGISTRY.items():
        for name, (config_cls, model_cls) in models.items():
            assert model_cls.modality == modality, name
            assert issubclass(model_cls, AttentionModel), name
            assert config_cls().unit_input_dim() >= 1, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("modality", "name"), CASES, ids=IDS)
def test_forward_backward(modality: str, name: str, build: Any, device: str) -> None:
    model, inputs, mask, labels = build(modality, name)
    model, inputs, mask, labels = model.to(device), inputs.to(device), mask.to(device), labels.to(device)
    model.train()
    out = model(inputs, mask)
    assert out.logits.shape == (3, model.config.num_classes)
    assert torch.isfinite(out.logits).all()
    assert_attention(out.unit_attention, mask)
    F.cross_entropy(out.logits, labels).backward()
    for pname, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("modality", "name"), CASES, ids=IDS)
def test_units_embeddings_and_removal(modality: str, name: str, build: Any, device: str) -> None:
    model, inputs, mask, _ = build(modality, name)
    model, inputs, mask = model.to(device), inputs.to(device), mask.to(device)
    model.eval()
    with torch.no_grad():
        out = model(inputs, mask)
        assert_attention(out.unit_attention, mask)
        embeddings = model.embed(inputs)
        assert embeddings.shape == (*mask.shape, model.config.unit_input_dim())
        again = model.forward_from_embeddings(embeddings, mask, inputs)
        torch.testing.assert_close(again.logits, out.logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(again.unit_attention, out.unit_attention, atol=1e-6, rtol=0)
        # Take out about half of the units of every row; the result is valid input.
        keep = (torch.rand(mask.shape, generator=torch.Generator().manual_seed(1)) < 0.5).to(device)
        removed, removed_mask = model.remove_units(inputs, mask, keep)
        assert removed_mask.dtype == torch.bool and removed_mask.shape[0] == 3
        if modality in ("text", "audio"):  # tokens / frames are deleted; a row left empty keeps one position
            kept = torch.clamp((keep & mask).sum(1), min=1)
            assert torch.equal(removed_mask.sum(1), kept)
        else:  # image units are blanked in place
            assert torch.equal(removed_mask, mask) and removed.shape == inputs.shape
        after = model(removed, removed_mask)
        assert torch.isfinite(after.logits).all()
        assert_attention(after.unit_attention, removed_mask)


@pytest.mark.parametrize(("modality", "name"), CASES, ids=IDS)
def test_optional_parts_of_the_contract(modality: str, name: str, build: Any) -> None:
    model, inputs, mask, _ = build(modality, name)
    model.eval()
    with torch.no_grad():
        out = model(inputs, mask, need_layer_attentions=True)
        if model.has_layer_attentions():
            assert out.layer_attentions
            for weights in out.layer_attentions:  # (B, H, U, U)
                assert weights.shape[-2:] == (mask.shape[1], mask.shape[1])
                assert torch.all(weights.movedim(-1, 1)[~mask] == 0)
                rows = weights.sum(-1).movedim(-1, 1)[mask]  # rows of real queries
                torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-5, rtol=0)
        if model.has_unit_contributions():
            parts = model.unit_contributions(inputs, mask)  # (B, U, C)
            assert parts.shape == (*mask.shape, model.config.num_classes)
            assert torch.all(parts[~mask] == 0)
            constant = out.logits - parts.sum(1)  # (B, C): the same for every input, from biases only
            torch.testing.assert_close(constant, constant[:1].expand_as(constant), atol=1e-4, rtol=1e-4)
        try:
            module = model.export_module()
        except ValueError:
            return  # the model says why it cannot be exported
        logits, attention = module(inputs, mask)
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(attention, out.unit_attention, atol=1e-6, rtol=0)
