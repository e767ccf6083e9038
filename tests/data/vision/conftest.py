"""Fixtures for the vision data tests: no network for Fashion-MNIST, and its shared real files.

``tests/data/conftest.py`` already gives every test an empty cache and no ``$ATTNKIT_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attnkit.data.text import builtin
from attnkit.data.vision import fashion_mnist

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def no_fashion_mnist_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fashion-MNIST downloads refuse the network; tests that exercise them patch ``fetch_url`` again."""

    def no_network(url: str, dest: Path, **kwargs: object) -> None:
        raise OSError(f"network disabled in tests (tried {url})")

    monkeypatch.setattr(fashion_mnist, "fetch_url", no_network)


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    """The data root holding the four official ``fashion-mnist/*.gz`` files (``$ATTNKIT_DATA`` as set when the
    session started, else ``../shared/datasets``); skips, saying why, when they are not there."""
    value = os.environ.get(builtin.DATA_ENV, "").strip()
    root = Path(value) if value else REPO.parent / "shared" / "datasets"
    names = [f.remote.filename for pair in fashion_mnist.FILES.values() for f in pair]
    missing = [n for n in names if not (root / "fashion-mnist" / n).is_file()]
    if missing:
        pytest.skip(
            f"Fashion-MNIST files not found in {root}/fashion-mnist ({', '.join(missing)}); set "
            f"{builtin.DATA_ENV} to a root holding them to run the real-data tests"
        )
    return root
