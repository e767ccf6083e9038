"""``explain`` (texts) on a run of another modality names that modality's explainer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from attnkit.explain import explain


@pytest.mark.parametrize(
    ("modality", "named"),
    [("image", "explain_images"), ("audio", "explain_recordings")],
)
def test_explain_on_a_non_text_run_names_the_right_function(modality: str, named: str) -> None:
    predictor: Any = SimpleNamespace(modality=modality, run_dir=Path("runs/x"))
    with pytest.raises(ValueError, match=rf"is an {modality} run: explain its inputs with .*{named}"):
        explain(predictor, ["a text"])
