"""carve_audio_validation: stratified by (speaker, label) or by label, exact totals, deterministic per seed."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from attnkit.data.audio import AudioSet, carve_audio_validation

SPEAKERS = ("ann", "bob", "cyd")


def recordings(per_pair: dict[tuple[str, str], int], *, with_speakers: bool = True) -> AudioSet:
    """``n`` one-sample recordings per (speaker, label), sources ``speaker/label/i``, in a shuffled order."""
    rows = [(s, label, i) for (s, label), n in per_pair.items() for i in range(n)]
    order = np.random.default_rng(9).permutation(len(rows))
    rows = [rows[k] for k in order]
    return AudioSet(
        [np.zeros(1, np.float32) for _ in rows],
        [label for _, label, _ in rows],
        [f"{s}/{label}/{i}" for s, label, i in rows],
        8000,
        [s for s, _, _ in rows] if with_speakers else None,
    )


def strata(audio: AudioSet) -> Counter[tuple[str, str]]:
    assert audio.speakers is not None
    return Counter(zip(audio.speakers, audio.labels, strict=True))


def test_stratified_by_speaker_and_label_with_an_exact_total() -> None:
    # FSDD's official train split in small: every (speaker, digit) has 45 takes; 10 % is 4.5 each.
    audio = recordings({(s, str(d)): 45 for s in SPEAKERS for d in range(10)})
    train, val = carve_audio_validation(audio, 0.1, seed=0)
    assert len(val) == 135 and len(train) == 1215  # round(0.1 * 1350), not 30 x round(4.5) = 120
    counts = strata(val)
    assert set(counts) == {(s, str(d)) for s in SPEAKERS for d in range(10)}
    assert sorted(Counter(counts.values()).items()) == [(4, 15), (5, 15)]  # floor or ceil of 4.5, 135 in all
    assert set(train.sources).isdisjoint(val.sources)
    assert sorted(train.sources + val.sources) == sorted(audio.sources)
    positions = {source: i for i, source in enumerate(audio.sources)}
    for part in (train, val):  # each part keeps the input order
        assert [positions[s] for s in part.sources] == sorted(positions[s] for s in part.sources)


def test_uneven_strata_follow_the_largest_remainders() -> None:
    audio = recordings({("ann", "x"): 10, ("ann", "y"): 7, ("bob", "x"): 3, ("bob", "y"): 1})
    _, val = carve_audio_validation(audio, 0.25, seed=3)
    # shares 2.5, 1.75, 0.75, 0.25 -> floors 2, 1, 0, 0 and round(0.25 * 21) = 5: the two extra go to the
    # remainders 0.75 and 0.75 (ann/y and bob/x) before 0.5 (ann/x); bob/y keeps its only recording.
    assert strata(val) == Counter({("ann", "x"): 2, ("ann", "y"): 2, ("bob", "x"): 1})


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    audio = recordings({(s, str(d)): 20 for s in SPEAKERS for d in range(4)})
    first = carve_audio_validation(audio, 0.2, seed=7)
    again = carve_audio_validation(audio, 0.2, seed=7)
    other = carve_audio_validation(audio, 0.2, seed=8)
    assert first[1].sources == again[1].sources and first[0].sources == again[0].sources
    assert first[1].sources != other[1].sources
    assert (
        strata(first[1]) == strata(other[1]) == Counter({(s, str(d)): 4 for s in SPEAKERS for d in range(4)})
    )


def test_by_label_when_speakers_are_unknown() -> None:
    audio = recordings({("ann", "cat"): 30, ("bob", "cat"): 10, ("ann", "dog"): 20}, with_speakers=False)
    train, val = carve_audio_validation(audio, 0.1, seed=0)
    assert Counter(val.labels) == Counter({"cat": 4, "dog": 2})
    assert train.speakers is None and val.speakers is None
    assert len(train) + len(val) == 60


def test_zero_fraction_and_invalid_fractions() -> None:
    audio = recordings({("ann", "a"): 5, ("bob", "b"): 5})
    train, val = carve_audio_validation(audio, 0.0, seed=0)
    assert len(val) == 0 and train.sources == audio.sources
    for fraction in (-0.1, 1.0, math.nan):
        with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
            carve_audio_validation(audio, fraction, seed=0)
