"""The README's Python examples run as written (in a scratch directory, one torch thread): by default on a
stride of the built-in data they load, with ``-m slow`` on all of it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import attnkit
import attnkit.data

README = Path(__file__).resolve().parents[1] / "README.md"
#: The default suite runs an example that loads the built-in embedded reviews on every STRIDE-th example of each
#: split (the same lines and checks, on 868 training texts instead of 13,891: a stride keeps both labels) in a
#: fraction of the time; the slow test runs it on all of the data, as a reader does.
STRIDE = 16
#: What a block calls that loads the data set STRIDE shrinks. A block that loads another large data set needs its
#: loader here and in _shrink_builtins to stay fast.
LOADERS = ("load_embedded(",)


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _cases() -> list[Any]:
    cases: list[Any] = []
    for index, block in enumerate(python_blocks()):
        cases.append(pytest.param(index, True, id=str(index)))
        if any(loader in block for loader in LOADERS):
            cases.append(pytest.param(index, False, id=f"{index}-all-data", marks=pytest.mark.slow))
    return cases


def _shrink_builtins(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the built-in loader the README calls return every STRIDE-th example; returns the names loaded."""
    loaded: list[str] = []
    load_embedded = attnkit.data.load_embedded

    def embedded(*args: Any, **kwargs: Any) -> attnkit.data.Splits:
        splits = load_embedded(*args, **kwargs)
        loaded.append("embedded")
        test = None if splits.test is None else splits.test[::STRIDE]
        return dataclasses.replace(splits, train=splits.train[::STRIDE], val=splits.val[::STRIDE], test=test)

    monkeypatch.setattr(attnkit.data, "load_embedded", embedded)
    return loaded


def test_the_readme_has_python_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    assert any("attnkit.fit(" in block for block in blocks)


@pytest.mark.parametrize(("index", "shrink"), _cases())
def test_readme_python_example_runs(
    index: int,
    shrink: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    block = python_blocks()[index]
    loaded = _shrink_builtins(monkeypatch) if shrink else []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(block, f"README.md python block {index}", "exec"), {"__name__": "readme"})
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    if shrink and any(loader in block for loader in LOADERS):
        assert loaded, "the example loaded its data some other way: add that loader to _shrink_builtins"
    if "attnkit.fit(" in block:  # the API example trained, saved and reported a run that predicts its labels
        clf = attnkit.load(tmp_path / "runs" / "quickstart", device="cpu")
        assert (clf.run_dir / "model.safetensors").is_file()
        assert set(clf.predict(["这本书写得很不错", "质量太差了"])) <= set(clf.labels)
        assert str(clf.predict(["这本书写得很不错", "质量太差了"])) in printed
