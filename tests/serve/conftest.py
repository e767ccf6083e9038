"""Run directories trained once per session (a planted-cue sentiment task; a tiny image folder), and a server on a
free port."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image

from attnkit.cli import main
from attnkit.serve import ServeConfig, server_config

POSITIVE = ["great", "wonderful", "excellent", "superb", "loved"]
NEGATIVE = ["awful", "terrible", "boring", "worst", "hated"]
FILLER = ["the", "a", "film", "movie", "plot", "actor", "scene", "story", "it", "was", "and", "very", "quite"]


def cue_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 20))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words) + ".", "label": label})
    return rows


def train_run(root: Path, model: str, *options: str) -> Path:
    """Train ``model`` for a few epochs on 400 synthetic rows; returns the run directory."""
    for name, rows in (("train.jsonl", cue_rows(400, 1)), ("test.jsonl", cue_rows(100, 2))):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = root / "run"
    code = main(
        [
            "train", "--data", str(root / "train.jsonl"), "--test", str(root / "test.jsonl"), "--model", model,
            "--out", str(run), "--epochs", "4", "--no-progress", "--set", "tokenizer.vocab_size=200",
            "--set", "optim.lr=0.01", "--set", "train.threads=1", *options,
        ]
    )  # fmt: skip
    assert code == 0
    return run


@pytest.fixture(scope="session")
def bag_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(
        tmp_path_factory.mktemp("bag"), "bag-attn", "--set", "model.options={bigram_buckets: 97}"
    )


@pytest.fixture(scope="session")
def transformer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(
        tmp_path_factory.mktemp("transformer"),
        "transformer",
        "--set",
        "model.options={embed_dim: 16, num_heads: 2, ff_dim: 32, num_layers: 2}",
    )


#: The image run's classes: mostly dark, mostly light, or vertical stripes, on 28x28 RGB noise.
IMAGE_CLASSES = ("dark", "light", "stripes")


def image_array(kind: str, rng: np.random.Generator, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """One ``(H, W, 3)`` uint8 image of class ``kind``."""
    noise = rng.integers(0, 50, size=(*size, 3))
    if kind == "dark":
        pixels = noise + 20
    elif kind == "light":
        pixels = noise + 190
    else:
        pixels = noise + np.where((np.arange(size[1]) // 4) % 2 == 0, 200, 10)[None, :, None]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray, format: str = "PNG") -> bytes:
    buffer = BytesIO()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, format=format)
    return buffer.getvalue()


def train_image_run(root: Path, model: str = "cnn-attn", options: dict[str, object] | None = None) -> Path:
    """Train ``model`` for two epochs of batches of 8 on a folder of 60 tiny PNGs (3 classes); returns the run
    directory. (One step per epoch, at the default batch size, leaves cnn-attn's 8-head pooling predicting one
    class.)"""
    from attnkit.train.config import RunConfig
    from attnkit.train.loop import fit

    rng = np.random.default_rng(0)
    for kind in IMAGE_CLASSES:
        folder = root / "images" / kind
        folder.mkdir(parents=True)
        for i in range(20):
            (folder / f"{i}.png").write_bytes(png_bytes(image_array(kind, rng)))
    config = RunConfig.from_dict(
        {
            "data": {"train": str(root / "images")},
            "model": {"name": model, "options": options or {"widths": [4, 8], "strides": [2, 2]}},
            "optim": {"batch_size": 8},
            "train": {"epochs": 2, "progress": False, "threads": 1},
        }
    )
    run = root / "run"
    fit(config, run)
    return run


@pytest.fixture(scope="session")
def image_tools() -> SimpleNamespace:
    """The image helpers for test modules (conftest is not importable): ``array(kind, rng, size)``,
    ``png(array, format)``, ``classes``."""
    return SimpleNamespace(array=image_array, png=png_bytes, classes=IMAGE_CLASSES)


@pytest.fixture(scope="session")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cnn-attn image run (28x28 RGB, 4-pixel cells: a 7x7 grid, classes dark/light/stripes)."""
    return train_image_run(tmp_path_factory.mktemp("image"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port in a thread, as ``attnkit serve`` does (the
    connection limits of the app's :class:`ServeConfig`); yields the base URL."""
    port = free_port()
    config: ServeConfig = getattr(app.state, "config", None) or ServeConfig()
    server = uvicorn.Server(server_config(app, config, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(name="running_server")
def running_server_fixture() -> object:
    """``running_server(app)``: a context manager serving ``app`` on loopback, yielding its base URL."""
    return running_server
