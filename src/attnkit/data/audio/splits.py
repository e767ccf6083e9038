"""Carving a validation set from audio training data, stratified by speaker and label.

Dimensions: ``N`` recordings; a stratum is one (speaker, label) pair when speakers are known, else one label.
"""

from __future__ import annotations

import numpy as np

from attnkit.data.audio.audioset import AudioSet


def carve_audio_validation(train: AudioSet, fraction: float, seed: int) -> tuple[AudioSet, AudioSet]:
    """``(train, val)``: about ``fraction`` of every stratum moved to validation, drawn with ``seed``.

    Strata are (speaker, label) pairs when ``train.speakers`` is known, else labels, so validation holds every
    speaker saying every word in the proportions of training. ``round(fraction * N)`` recordings go to
    validation in all: each stratum of ``n`` gives ``floor(fraction * n)`` or one more (the strata with the
    largest remainders get the extra ones, ties broken by ``seed``), and never its last recording, so no
    stratum leaves training. Each part keeps the input order; the same seed and input always give the same
    parts.

    Args:
        train: the recordings to split.
        fraction: the share for validation, in ``[0, 1)``; 0 gives an empty validation set.
        seed: seed of the draw.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    keys: list[tuple[str, ...]] = (
        [(speaker, label) for speaker, label in zip(train.speakers, train.labels, strict=True)]
        if train.speakers is not None
        else [(label,) for label in train.labels]
    )
    strata: dict[tuple[str, ...], list[int]] = {}
    for i, key in enumerate(keys):
        strata.setdefault(key, []).append(i)
    order = sorted(strata)
    sizes = np.array([len(strata[key]) for key in order], dtype=np.int64)  # (K,)
    capacity = np.maximum(sizes - 1, 0)  # (K,): a stratum keeps at least one recording
    shares = fraction * sizes  # (K,)
    quotas = np.minimum(np.floor(shares).astype(np.int64), capacity)  # (K,)
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(len(order))  # (K,)
    extra = round(fraction * len(train)) - int(quotas.sum())
    if extra > 0:
        # Largest remainder first; remainders are rounded so that 0.1 * 45 and 0.1 * 55 tie as they should.
        remainders = np.round(shares - quotas, 9)
        eligible = [k for k in range(len(order)) if quotas[k] < capacity[k]]
        eligible.sort(key=lambda k: (-remainders[k], tiebreak[k]))
        for k in eligible[:extra]:
            quotas[k] += 1
    is_val = np.zeros(len(train), dtype=bool)  # (N,)
    for k, key in enumerate(order):
        members = np.asarray(strata[key], dtype=np.int64)
        is_val[rng.permutation(members)[: int(quotas[k])]] = True
    return train.subset(~is_val), train.subset(is_val)
