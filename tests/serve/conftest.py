"""Run directories trained once per session on a planted-cue sentiment task, and a server on a free port."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

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
