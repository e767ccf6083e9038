"""The unit grid: patchify / unpatchify against a naive loop, unit boxes, and removing units."""

from __future__ import annotations

import pytest
import torch

from attnkit.models.vision import ImageModelConfig, patchify, unit_boxes, unpatchify

from .conftest import IMAGE_MODELS, ImageBatchFactory, ImageModelFactory


def naive_patchify(pixels: torch.Tensor, size: int) -> torch.Tensor:
    batch, _, height, width = pixels.shape
    out = []
    for b in range(batch):
        units = []
        for r in range(height // size):
            for c in range(width // size):
                units.append(pixels[b, :, r * size : (r + 1) * size, c * size : (c + 1) * size].reshape(-1))
        out.append(torch.stack(units))
    return torch.stack(out)  # (B, U, C*S*S)


@pytest.mark.parametrize(
    ("channels", "height", "width", "size"), [(1, 28, 28, 4), (3, 32, 32, 4), (2, 12, 18, 3)]
)
def test_patchify_matches_a_naive_loop_and_round_trips(
    channels: int, height: int, width: int, size: int
) -> None:
    pixels = torch.randn(2, channels, height, width, generator=torch.Generator().manual_seed(0))
    units = patchify(pixels, size)
    rows, cols = height // size, width // size
    assert units.shape == (2, rows * cols, channels * size * size)
    assert torch.equal(units, naive_patchify(pixels, size))
    assert torch.equal(unpatchify(units, size, channels, (rows, cols)), pixels)


def test_unit_boxes_are_the_patches_in_row_major_order() -> None:
    config = ImageModelConfig(image_size=(8, 12), channels=1, unit_size=4)
    boxes = unit_boxes(config)
    assert boxes.tolist() == [
        [0, 0, 4, 4], [4, 0, 8, 4], [8, 0, 12, 4],
        [0, 4, 4, 8], [4, 4, 8, 8], [8, 4, 12, 8],
    ]  # fmt: skip
    pixels = torch.arange(8 * 12, dtype=torch.float32).view(1, 1, 8, 12)
    units = patchify(pixels, 4)  # (1, 6, 16)
    for u, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        assert torch.equal(units[0, u], pixels[0, 0, y0:y1, x0:x1].reshape(-1))


def test_image_config_rejects_sizes_the_units_do_not_divide() -> None:
    with pytest.raises(ValueError, match="divisible by unit_size=5"):
        ImageModelConfig(image_size=(28, 28), unit_size=5)
    with pytest.raises(ValueError, match="image_size must be"):
        ImageModelConfig(image_size=(28,))


@pytest.mark.parametrize("name", sorted(IMAGE_MODELS))
def test_remove_units_zeroes_exactly_the_chosen_boxes(
    name: str, tiny_image_model: ImageModelFactory, image_batch: ImageBatchFactory
) -> None:
    model = tiny_image_model(name, "rgb32")
    pixels = image_batch(3, "rgb32") + 5.0  # no pixel is 0 before removal
    mask = model.unit_mask_of(pixels)
    keep = torch.rand(3, model.config.num_units, generator=torch.Generator().manual_seed(1)) < 0.6
    removed, new_mask = model.remove_units(pixels, mask, keep)
    assert removed.shape == pixels.shape and torch.equal(new_mask, mask)
    for b in range(3):
        for u, (x0, y0, x1, y1) in enumerate(unit_boxes(model.config).tolist()):
            box = removed[b, :, y0:y1, x0:x1]
            if keep[b, u]:
                assert torch.equal(box, pixels[b, :, y0:y1, x0:x1])
            else:
                assert torch.all(box == 0)
    model.eval()
    with torch.no_grad():
        assert model(removed, new_mask).logits.shape == (3, 3)
