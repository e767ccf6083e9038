"""AudioSet: validation of its fields, durations, label ids and subsets (positions, masks, shared arrays)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attnkit.data.audio import AudioSet


def clips(*lengths: int) -> list[np.ndarray]:
    return [np.full(n, i / 10, dtype=np.float32) for i, n in enumerate(lengths)]


def test_fields_durations_and_classes() -> None:
    audio = AudioSet(
        clips(8000, 4000, 12), ["b", "a", "b"], ["x.wav", "y.wav", "z.wav"], 8000, ["s1", "s2", "s1"]
    )
    assert len(audio) == 3
    np.testing.assert_array_equal(audio.durations, [1.0, 0.5, 0.0015])
    assert audio.durations.dtype == np.float64
    assert audio.classes == ("a", "b")  # sorted distinct labels by default
    np.testing.assert_array_equal(audio.label_ids(), [1, 0, 1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        audio.sample_rate = 16000  # type: ignore[misc]
    ordered = AudioSet(clips(5, 5), ["10", "2"], ["p", "q"], 16000, classes=("2", "10", "3"))
    assert ordered.classes == ("2", "10", "3") and ordered.label_ids().tolist() == [1, 0]
    assert ordered.speakers is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 0}, "AudioSet.sample_rate must be a positive integer (Hz), got 0"),
        ({"sample_rate": 8000.0}, "AudioSet.sample_rate must be a positive integer (Hz), got 8000.0"),
        ({"labels": ["a"]}, "AudioSet: 2 waveforms but 1 labels and 2 sources"),
        ({"speakers": ["s"]}, "AudioSet: 2 waveforms but 1 speakers"),
        ({"classes": ("a", "a")}, "AudioSet.classes has duplicates"),
        ({"classes": ("a",)}, "AudioSet: labels ['b'] are not in classes ('a',)"),
        (
            {"waveforms": [np.zeros(3, np.float64), np.zeros(3, np.float32)]},
            "AudioSet.waveforms[0] must be a non-empty float32 array (S,), got float64 of shape (3,)",
        ),
        ({"waveforms": [np.zeros((3, 2), np.float32)] * 2}, "got float32 of shape (3, 2)"),
        ({"waveforms": [np.zeros(0, np.float32)] * 2}, "AudioSet.waveforms[0] must be a non-empty"),
    ],
)
def test_invalid_fields(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "waveforms": clips(3, 3),
        "labels": ["a", "b"],
        "sources": ["1", "2"],
        "sample_rate": 8000,
        **kwargs,
    }
    with pytest.raises(ValueError) as e:
        AudioSet(**fields)  # type: ignore[arg-type]
    assert message in str(e.value), str(e.value)


def test_subset() -> None:
    waves = clips(10, 20, 30, 40)
    audio = AudioSet(waves, ["a", "b", "a", "c"], ["w", "x", "y", "z"], 8000, ["p", "q", "r", "s"])
    picked = audio.subset([3, 0, 0])
    assert picked.sources == ["z", "w", "w"] and picked.labels == ["c", "a", "a"]
    assert picked.speakers == ["s", "p", "p"] and picked.sample_rate == 8000
    assert picked.classes == ("a", "b", "c")
    assert picked.waveforms[0] is waves[3]  # shared, not copied
    masked = audio.subset(np.array([False, True, True, False]))
    assert masked.sources == ["x", "y"] and masked.durations.tolist() == [20 / 8000, 30 / 8000]
    empty = audio.subset([])
    assert len(empty) == 0 and empty.classes == audio.classes and empty.durations.shape == (0,)
    assert audio.subset(np.array([-1])).sources == ["z"]
    with pytest.raises(IndexError, match=r"position 4 is out of range for 4 recordings"):
        audio.subset([1, 4])
    with pytest.raises(IndexError, match=r"must have shape \(4,\)"):
        audio.subset(np.array([True, False]))
    with pytest.raises(IndexError, match=r"integer positions or a boolean mask, got float64"):
        audio.subset(np.array([0.5]))
    no_speakers = AudioSet(clips(1, 1), ["a", "b"], ["1", "2"], 8000)
    assert no_speakers.subset([1]).speakers is None
