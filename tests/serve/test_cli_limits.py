"""``attnkit serve``'s limit flags reach the server's :class:`Limits`, for every modality's inputs."""

from __future__ import annotations

from typing import Any

import pytest

import attnkit.serve
from attnkit.cli import main


def test_serve_flags_set_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(attnkit.serve, "load_backend", lambda *args, **kwargs: "backend")
    monkeypatch.setattr(attnkit.serve, "run_server", lambda backend, config, **kw: seen.update(config=config))
    code = main(
        [
            "serve", "runs/any", "--max-texts", "5", "--max-images", "4", "--max-audios", "3",
            "--max-explain-audios", "1", "--max-audio-body-bytes", "12345", "--max-audio-channels", "2",
        ]
    )  # fmt: skip
    assert code == 0
    limits = seen["config"].limits
    assert (limits.max_texts, limits.max_images) == (5, 4)
    assert (limits.max_audios, limits.max_explain_audios) == (3, 1)
    assert (limits.max_audio_body_bytes, limits.max_audio_channels) == (12345, 2)
