"""The README's Python examples run as written (in a scratch directory, one torch thread)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    assert any("attnkit.fit(" in block for block in blocks)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(
            compile(python_blocks()[index], f"README.md python block {index}", "exec"), {"__name__": "readme"}
        )
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    block = python_blocks()[index]
    if "attnkit.fit(" in block:  # the API example trained, saved and reported a run that predicts its labels
        import attnkit

        clf = attnkit.load(tmp_path / "runs" / "quickstart", device="cpu")
        assert (clf.run_dir / "model.safetensors").is_file()
        assert set(clf.predict(["这本书写得很不错", "质量太差了"])) <= set(clf.labels)
        assert str(clf.predict(["这本书写得很不错", "质量太差了"])) in printed
