"""Fixtures for the data-layer tests: an isolated cache, no network, and the shared real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attnkit.data.text import builtin

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty download cache, no ``$ATTNKIT_DATA``, and a fetch that refuses the network.

    Tests that exercise downloads monkeypatch ``builtin.fetch_url`` themselves.
    """
    cache = tmp_path / "attnkit-cache"
    monkeypatch.setenv(builtin.CACHE_ENV, str(cache))
    monkeypatch.delenv(builtin.DATA_ENV, raising=False)

    def no_network(url: str, dest: Path, **kwargs: object) -> None:
        raise OSError(f"network disabled in tests (tried {url})")

    monkeypatch.setattr(builtin, "fetch_url", no_network)
    return cache


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real datasets: ``$ATTNKIT_DATA`` as set when the session started, else
    ``../shared/datasets`` next to the repository (what ``dev.sh test`` sets). Skips when it is missing."""
    value = os.environ.get(builtin.DATA_ENV, "").strip()
    root = Path(value) if value else REPO.parent / "shared" / "datasets"
    if not (root / "MANIFEST.md").is_file():
        pytest.skip(
            f"shared datasets not found at {root} (set {builtin.DATA_ENV} to run the real-data tests)"
        )
    return root
