"""``attnkit demo --task vision``: Fashion-MNIST trained through the task loop, a report with heatmaps."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

from attnkit.demo import run_vision_demo, vision_demo_config


def test_the_vision_demo_config_is_an_image_run_with_the_official_split() -> None:
    config = vision_demo_config(epochs=2)
    assert config.modality == "image" and config.model_name == "cnn-attn"
    assert round(config.data.val_fraction * 60_000) == 5_000  # 5,000 validation images, as the benchmarks
    assert config.data.test is None  # the official 10k test set (the built-in's test split)


@pytest.mark.slow  # real-data training: one epoch of Fashion-MNIST
def test_the_vision_demo_trains_and_reports_one_heatmap_per_class(tmp_path: Path) -> None:
    if not (Path(os.environ.get("ATTNKIT_DATA", "")) / "fashion-mnist").is_dir():
        pytest.skip("needs $ATTNKIT_DATA/fashion-mnist (../shared/datasets)")
    result = run_vision_demo(tmp_path / "demo", epochs=1)
    assert result.metrics["test"]["n"] == 10_000
    assert result.metrics["test"]["accuracy"] >= 0.80  # one epoch of cnn-attn
    page = result.report_path.read_text(encoding="utf-8")
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 2 + 10  # curves, confusion, one explanation figure per class
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert page.count("true <b>") == 10 and "http" not in page.replace("http-equiv", "")
