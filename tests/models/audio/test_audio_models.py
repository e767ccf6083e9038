"""The audio models: frame deletion by hand, padding invariance, the SDPA path, config errors."""

from __future__ import annotations

import pytest
import torch

from attnkit.models.audio import (
    AudioTransformerClassifier,
    AudioTransformerConfig,
    CRNNClassifier,
    CRNNConfig,
    delete_frames,
)


def _naive_delete(features: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> list[torch.Tensor]:
    rows = []
    for b in range(features.shape[0]):
        kept = [features[b, u] for u in range(features.shape[1]) if bool(mask[b, u]) and bool(keep[b, u])]
        rows.append(torch.stack(kept) if kept else torch.zeros(1, features.shape[2]))
    return rows


def test_delete_frames_matches_a_loop_by_hand() -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(4, 7, 3, generator=gen)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 4, 1, 3])[:, None]  # (4, 7)
    keep = torch.rand(4, 7, generator=gen) < 0.5
    keep[2] = False  # a row left with nothing
    out, out_mask = delete_frames(features, mask, keep)
    expected = _naive_delete(features, mask, keep)
    assert out.shape == (4, max(len(row) for row in expected), 3)
    for b, row in enumerate(expected):
        assert int(out_mask[b].sum()) == len(row)
        torch.testing.assert_close(out[b, : len(row)], row)
        assert torch.all(out[b, len(row) :] == 0)
        assert bool(out_mask[b, : len(row)].all()) and not bool(out_mask[b, len(row) :].any())


def _tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "crnn":
        return CRNNClassifier(
            CRNNConfig(num_classes=3, feature_dim=8, conv_channels=(4, 6), hidden_dim=5)
        ).eval()
    config = AudioTransformerConfig(
        num_classes=3, feature_dim=8, max_units=20, embed_dim=16, num_heads=2, ff_dim=24, num_layers=2,
        pooling_heads=2,
    )  # fmt: skip
    return AudioTransformerClassifier(config).eval()


@pytest.mark.parametrize("name", ["crnn", "transformer"])
def test_a_clip_does_not_depend_on_the_padding_after_it(name: str) -> None:
    model = _tiny(name)
    gen = torch.Generator().manual_seed(1)
    clip = torch.randn(1, 6, 8, generator=gen)
    batch = torch.zeros(2, 11, 8)
    batch[0, :6] = clip[0]
    batch[0, 6:] = torch.randn(5, 8, generator=gen)  # garbage in the padding: it must not leak
    batch[1] = torch.randn(11, 8, generator=gen)
    mask = torch.arange(11)[None, :] < torch.tensor([6, 11])[:, None]
    with torch.no_grad():
        alone = model(clip)
        padded = model(batch, mask)
    torch.testing.assert_close(padded.logits[0], alone.logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.unit_attention[0, :6], alone.unit_attention[0], atol=1e-6, rtol=1e-5)
    assert torch.all(padded.unit_attention[0, 6:] == 0)


def test_transformer_weights_path_equals_the_fused_path() -> None:
    model = _tiny("transformer")
    features = torch.randn(3, 9, 8, generator=torch.Generator().manual_seed(2))
    mask = torch.arange(9)[None, :] < torch.tensor([9, 4, 1])[:, None]
    with torch.no_grad():
        fused = model(features, mask)
        weighted = model(features, mask, need_layer_attentions=True)
    torch.testing.assert_close(fused.logits, weighted.logits, atol=1e-5, rtol=1e-5)
    assert weighted.layer_attentions is not None and len(weighted.layer_attentions) == 2


def test_crnn_states_are_one_per_frame() -> None:
    model = _tiny("crnn")
    features = torch.randn(2, 5, 8)
    states, _ = model.forward_features(features, torch.ones(2, 5, dtype=torch.bool))
    assert states.shape == (2, 5, 10)  # 2 x hidden_dim per frame


def test_config_mistakes_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="halve feature_dim=8 to 0"):
        CRNNConfig(feature_dim=8, conv_channels=(4, 4, 4, 4))
    with pytest.raises(ValueError, match="kernel_size must be an odd number"):
        CRNNConfig(kernel_size=2)
    with pytest.raises(ValueError, match="num_heads=5 must divide embed_dim=96"):
        AudioTransformerConfig(num_heads=5)
    model = _tiny("transformer")
    with pytest.raises(ValueError, match="at most max_units=20"):
        model(torch.zeros(1, 21, 8))
    with pytest.raises(ValueError, match=r"shape \(batch, units, 8\)"):
        model(torch.zeros(1, 5, 7))
