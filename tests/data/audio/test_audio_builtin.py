"""The audio registry: names, splits and sample rates through load_audio_dataset, on the pinned stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from attnkit.data.audio import (
    AUDIO_DATASETS,
    fsdd,
    get_audio_dataset,
    load_audio_dataset,
    load_fsdd,
    parse_audio_name,
)
from attnkit.data.errors import DataError
from attnkit.data.text import builtin

StandIn = Any  # conftest.StandIn


def test_registry_names() -> None:
    entry = AUDIO_DATASETS["fsdd"]
    assert entry.splits == ("train", "test", "all") and entry.default_split == "train"
    assert entry.classes == tuple("0123456789") and entry.sample_rate == 8000
    assert entry.speakers == ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
    assert entry.loader is fsdd.load_fsdd
    assert parse_audio_name("fsdd") == ("fsdd", None)
    assert parse_audio_name("fsdd:test") == ("fsdd", "test")
    assert parse_audio_name(" FSDD : all") == ("fsdd", "all")
    assert parse_audio_name("fashion-mnist:test") is None and parse_audio_name("clips/") is None
    assert get_audio_dataset("FSDD") is entry
    with pytest.raises(
        DataError, match=r"^unknown built-in audio dataset 'speech-commands'; choose from fsdd$"
    ):
        load_audio_dataset("speech-commands:test")
    with pytest.raises(DataError, match=r"^fsdd: unknown split 'valid'; valid splits: train, test, all$"):
        load_audio_dataset("fsdd:valid")


def test_loading_by_name(stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in.place(tmp_path)
    monkeypatch.setenv(builtin.DATA_ENV, str(tmp_path))
    test = load_audio_dataset("fsdd:test", allow_download=False)
    assert test.sources == load_fsdd("test", allow_download=False).sources and len(test) == 300
    assert load_audio_dataset("fsdd", "test", allow_download=False).sources == test.sources
    assert len(load_audio_dataset("fsdd", allow_download=False)) == 120  # the default split: train
    assert len(load_audio_dataset("fsdd:all", allow_download=False)) == 420
    resampled = load_audio_dataset("fsdd", "test", sample_rate=16000, allow_download=False)
    assert resampled.sample_rate == 16000 and test.sample_rate == 8000
    assert [w.shape[0] for w in resampled.waveforms] == [2 * w.shape[0] for w in test.waveforms]
    with pytest.raises(
        DataError, match=r"^'fsdd:test' names split 'test' but split='train' was given; give one$"
    ):
        load_audio_dataset("fsdd:test", "train")
    assert len(load_audio_dataset("fsdd:test", "test", allow_download=False)) == 300
