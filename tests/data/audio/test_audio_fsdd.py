"""FSDD: the name parser, both splits, the lookup / verification / download paths on a small stand-in pinned in
place of the real manifest, crafted unsafe archives, and the real shared archive when it is present. No test
uses the network."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from attnkit.data.audio import AudioSet, FsddName, fsdd, fsdd_split, load_fsdd, parse_fsdd_name
from attnkit.data.download import ChecksumError, UnsafeArchiveError, iter_tar
from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.text import builtin

MakeTar = Callable[..., bytes]
StandIn = Any  # conftest.StandIn


def stand_in_values(name: str, samples: Callable[[str], np.ndarray]) -> np.ndarray:
    return (samples(name) / 32768).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Names and splits.


def test_parse_fsdd_name() -> None:
    assert parse_fsdd_name("recordings/7_theo_3.wav") == FsddName("7", "theo", 3)
    assert parse_fsdd_name("0_yweweler_49.wav") == FsddName("0", "yweweler", 49)
    assert parse_fsdd_name("top/recordings/9_george_10.wav").index == 10
    for bad in ("7_theo.wav", "10_theo_3.wav", "7_Theo_3.wav", "7_theo_03.wav", "7_theo_3.flac", "x"):
        with pytest.raises(
            DataError, match=r"not an FSDD recording name; expected \{digit\}_\{speaker\}_\{index\}"
        ):
            parse_fsdd_name(bad)


def names_set(per_digit_takes: int = 50) -> AudioSet:
    """Every official name (takes 0..per_digit_takes-1) as a one-sample AudioSet, in reverse order."""
    names = sorted(
        (
            f"recordings/{d}_{s}_{i}.wav"
            for d in fsdd.CLASSES
            for s in fsdd.SPEAKERS
            for i in range(per_digit_takes)
        ),
        reverse=True,
    )
    parsed = [parse_fsdd_name(n) for n in names]
    return AudioSet(
        [np.zeros(1, np.float32) for _ in names],
        [p.digit for p in parsed],
        names,
        8000,
        [p.speaker for p in parsed],
        classes=fsdd.CLASSES,
    )


def test_official_split() -> None:
    audio = names_set()
    train, test = fsdd_split(audio, "official")
    assert len(train) == 2700 and len(test) == 300
    assert set(train.sources).isdisjoint(test.sources) and len(set(train.sources) | set(test.sources)) == 3000
    assert {parse_fsdd_name(s).index for s in test.sources} == set(range(5))
    assert {parse_fsdd_name(s).index for s in train.sources} == set(range(5, 50))
    assert Counter(zip(test.speakers or [], test.labels, strict=True)) == Counter(
        {(s, d): 5 for s in fsdd.SPEAKERS for d in fsdd.CLASSES}
    )
    assert train.classes == test.classes == fsdd.CLASSES


@pytest.mark.parametrize("speaker", fsdd.SPEAKERS)
def test_speaker_split(speaker: str) -> None:
    train, test = fsdd_split(names_set(), f"speaker:{speaker}")
    assert len(train) == 2500 and len(test) == 500
    assert set(test.speakers or []) == {speaker}
    assert speaker not in set(train.speakers or []) and len(set(train.speakers or [])) == 5
    assert Counter(test.labels) == Counter(dict.fromkeys(fsdd.CLASSES, 50))
    assert set(train.sources).isdisjoint(test.sources)


def test_split_errors() -> None:
    audio = names_set(2)
    with pytest.raises(
        DataError,
        match=r"^fsdd: unknown speaker 'zoe' in split 'speaker:zoe'; choose from george, jackson, lucas, "
        r"nicolas, theo, yweweler$",
    ):
        fsdd_split(audio, "speaker:zoe")
    with pytest.raises(
        DataError, match=r"^fsdd: unknown split 'random'; use 'official' .* or 'speaker:NAME'"
    ):
        fsdd_split(audio, "random")
    assert len(fsdd_split(audio, " speaker: Theo ")[1]) == 20  # case and spaces forgiven
    other = AudioSet([np.zeros(1, np.float32)], ["a"], ["clip.wav"], 8000)
    with pytest.raises(DataError, match=r"clip\.wav: not an FSDD recording name"):
        fsdd_split(other, "official")


# ----------------------------------------------------------------------------------------------------
# Verified loading, on the stand-in.


def check_stand_in(audio: AudioSet, samples: Callable[[str], np.ndarray], n: int = 420) -> None:
    assert len(audio) == n and audio.sample_rate == 8000 and audio.classes == fsdd.CLASSES
    keys = [
        (parse_fsdd_name(s).digit, parse_fsdd_name(s).speaker, parse_fsdd_name(s).index)
        for s in audio.sources
    ]
    assert keys == sorted(keys)  # by (digit, speaker, take), numerically
    assert audio.labels == [k[0] for k in keys] and audio.speakers == [k[1] for k in keys]
    for source, wave in zip(audio.sources, audio.waveforms, strict=True):
        np.testing.assert_array_equal(wave, stand_in_values(source, samples))


def test_load_from_a_data_dir(
    stand_in: StandIn, tmp_path: Path, stand_in_samples_of: Callable[[str], np.ndarray]
) -> None:
    stand_in.place(tmp_path / "data")
    audio = load_fsdd("all", data_dir=tmp_path / "data", allow_download=False)
    check_stand_in(audio, stand_in_samples_of)
    assert audio.sources[:3] == [
        "recordings/0_george_0.wav",
        "recordings/0_george_1.wav",
        "recordings/0_george_2.wav",
    ]
    test = load_fsdd("test", data_dir=tmp_path / "data", allow_download=False)
    train = load_fsdd("train", data_dir=tmp_path / "data", allow_download=False)
    assert len(test) == 300 and len(train) == 120  # takes 0-4 and 5-6 of the stand-in
    assert test.sources == fsdd_split(audio, "official")[1].sources
    assert train.sources == fsdd_split(audio, "official")[0].sources
    assert stand_in.calls == []


def test_load_through_the_environment_and_resampled(
    stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in.place(tmp_path / "env")
    monkeypatch.setenv(builtin.DATA_ENV, str(tmp_path / "env"))
    native = load_fsdd("test", allow_download=False)
    doubled = load_fsdd("test", sample_rate=16000, allow_download=False)
    assert doubled.sample_rate == 16000 and doubled.sources == native.sources
    assert [w.shape[0] for w in doubled.waveforms] == [2 * w.shape[0] for w in native.waveforms]
    with pytest.raises(DataError, match=r"^fsdd: unknown split 'dev'; valid splits: train, test, all$"):
        load_fsdd("dev")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "compression"), [("", "bz2"), ("free-spoken-digit-dataset-1.0.10/", "plain")]
)
def test_an_archive_from_elsewhere_is_verified_by_its_members(
    stand_in: StandIn,
    tmp_path: Path,
    prefix: str,
    compression: str,
    stand_in_samples_of: Callable[[str], np.ndarray],
) -> None:
    archive = stand_in.place(tmp_path, prefix=prefix, compression=compression, listing=False)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() != fsdd.ARCHIVE_SHA256
    check_stand_in(load_fsdd(data_dir=tmp_path, allow_download=False), stand_in_samples_of)


def test_a_changed_byte_names_its_member(stand_in: StandIn, tmp_path: Path) -> None:
    archive = stand_in.place(tmp_path, stand_in.changed("recordings/3_theo_4.wav"))
    with pytest.raises(ChecksumError) as e:
        load_fsdd(data_dir=tmp_path, allow_download=False)
    message = str(e.value)
    expected = hashlib.sha256(stand_in.members["recordings/3_theo_4.wav"]).hexdigest()
    assert re.fullmatch(
        rf"fsdd: {re.escape(str(archive))}: the recordings are not FSDD v1\.0\.10: 1 differ: "
        rf"recordings/3_theo_4\.wav \(sha256 expected {expected}, got [0-9a-f]{{64}}\); replace it with the "
        r"official archive or remove it",
        message,
    ), message
    assert archive.exists()  # not ours: left alone


def test_without_the_list_a_change_is_still_refused(stand_in: StandIn, tmp_path: Path) -> None:
    stand_in.place(tmp_path, stand_in.changed("recordings/3_theo_4.wav"), listing=False)
    with pytest.raises(ChecksumError, match=r"the bytes of some of its 420 files differ \(manifest sha256 expected "
                       r"[0-9a-f]{64}, got [0-9a-f]{64}\); put the upstream list recordings\.sha256 beside it"):  # fmt: skip
        load_fsdd(data_dir=tmp_path, allow_download=False)
    fewer = dict(stand_in.members)
    del fewer["recordings/9_lucas_6.wav"]
    fewer["recordings/9_lucas_7.wav"] = stand_in.members["recordings/9_lucas_6.wav"]
    stand_in.place(tmp_path, fewer, listing=False)
    with pytest.raises(
        ChecksumError, match=r"1 missing: recordings/9_lucas_6\.wav; 1 unexpected: recordings/9_lucas_7\.wav;"
    ):
        load_fsdd(data_dir=tmp_path, allow_download=False)


def test_a_list_that_is_not_the_pinned_one_is_ignored(
    stand_in: StandIn,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    stand_in_samples_of: Callable[[str], np.ndarray],
) -> None:
    stand_in.place(tmp_path)
    (tmp_path / "fsdd" / fsdd.LIST_NAME).write_bytes(
        stand_in.listing.replace(b"  recordings/0_", b"  recordings/1_")
    )
    check_stand_in(load_fsdd(data_dir=tmp_path, allow_download=False), stand_in_samples_of)
    assert "not the FSDD v1.0.10 list (its sha256 is not the pinned one); ignoring it" in caplog.text


@pytest.mark.parametrize(
    ("bad_name", "why"),
    [
        ("recordings/../0_george_0.wav", "a '..' component"),
        ("../recordings/0_george_0.wav", "a '..' component"),
        ("/recordings/0_george_0.wav", "an absolute path"),
        ("/etc/passwd", "an absolute path"),
    ],
)
def test_unsafe_members_refuse_the_archive(
    stand_in: StandIn, tmp_path: Path, bad_name: str, why: str
) -> None:
    def evil(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(bad_name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"RIFF"))

    archive = stand_in.place(tmp_path, extra=evil)
    with pytest.raises(
        UnsafeArchiveError, match=rf"member '{re.escape(bad_name)}': {why}; refusing the archive"
    ):
        load_fsdd(data_dir=tmp_path, allow_download=False)
    assert archive.exists()


def test_links_and_duplicates_refuse_the_archive(
    stand_in: StandIn, tmp_path: Path, make_tar: MakeTar
) -> None:
    def link(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("recordings/0_george_0.wav")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)

    stand_in.place(
        tmp_path, {k: v for k, v in stand_in.members.items() if k != "recordings/0_george_0.wav"}, extra=link
    )
    with pytest.raises(UnsafeArchiveError, match=r"a symbolic link \(to '/etc/passwd'\)"):
        load_fsdd(data_dir=tmp_path, allow_download=False)

    def twice(tar: tarfile.TarFile) -> None:  # the same recording at the top and under a folder
        info = tarfile.TarInfo("copy/recordings/0_george_0.wav")
        data = stand_in.members["recordings/0_george_0.wav"]
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    stand_in.place(tmp_path, extra=twice)
    with pytest.raises(DataError, match=r"recordings/0_george_0\.wav appears twice \(as "):
        load_fsdd(data_dir=tmp_path, allow_download=False)


def test_the_reader_is_iter_tar_under_its_caps(tmp_path: Path, make_tar: MakeTar) -> None:
    archive = tmp_path / "big.tar"
    archive.write_bytes(make_tar({"recordings/0_george_0.wav": b"\0" * (fsdd.ARCHIVE_LIMITS.max_member_bytes + 1)},
                                 compression="plain"))  # fmt: skip
    with pytest.raises(UnsafeArchiveError, match=r"over the cap of 1,048,576"):
        fsdd.read_verified_archive(archive, advice="")
    assert (
        list(iter_tar(archive, fsdd.ARCHIVE_LIMITS, lambda name: False)) == []
    )  # a member skipped is not read


# ----------------------------------------------------------------------------------------------------
# The cache and the download.


def test_download_keeps_only_the_recordings_and_caches_them(
    stand_in: StandIn, isolated_data_env: Path, stand_in_samples_of: Callable[[str], np.ndarray]
) -> None:
    stand_in.github_body = stand_in.github_tarball()
    check_stand_in(load_fsdd(), stand_in_samples_of)
    assert stand_in.calls == [
        "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
    ]
    folder = isolated_data_env / "fsdd"
    assert sorted(p.name for p in folder.iterdir()) == [
        "recordings.sha256",
        "recordings.tar.gz",
    ]  # no leftovers
    assert (folder / fsdd.LIST_NAME).read_bytes() == stand_in.listing
    names = [n for n, _ in iter_tar(folder / fsdd.ARCHIVE_NAME, fsdd.ARCHIVE_LIMITS, lambda n: True)]
    assert names == sorted(stand_in.members)  # acquire_data/example.wav, README.md, metadata.py left out
    check_stand_in(load_fsdd("all", allow_download=False), stand_in_samples_of)  # from the cache
    assert len(stand_in.calls) == 1


def test_a_bad_download_is_refused_and_nothing_is_cached(stand_in: StandIn, isolated_data_env: Path) -> None:
    stand_in.github_body = stand_in.github_tarball(stand_in.changed("recordings/5_nicolas_2.wav"))
    with pytest.raises(ChecksumError, match=r"^fsdd: https://github\.com/.*: the recordings are not FSDD v1\.0\.10: "
                       r"the bytes of some of its 420 files differ .*; nothing was cached; retry"):  # fmt: skip
        load_fsdd()
    assert list((isolated_data_env / "fsdd").iterdir()) == []


def test_a_damaged_cache_copy_is_replaced(
    stand_in: StandIn, isolated_data_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.place(isolated_data_env, stand_in.changed("recordings/0_theo_0.wav"))
    stand_in.github_body = stand_in.github_tarball()
    assert len(load_fsdd("test")) == 300
    assert "1 differ: recordings/0_theo_0.wav" in caplog.text and "; deleting it" in caplog.text
    assert len(stand_in.calls) == 1
    assert (isolated_data_env / "fsdd" / fsdd.LIST_NAME).read_bytes() == stand_in.listing


def test_not_available(stand_in: StandIn, tmp_path: Path, isolated_data_env: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        load_fsdd(allow_download=False)
    message = str(e.value)
    assert message.startswith("fsdd is not available: downloads are disabled. Put recordings.tar.gz")
    assert f"$ATTNKIT_DATA/fsdd/ (ATTNKIT_DATA is unset) or {isolated_data_env / 'fsdd'}/" in message
    assert message.endswith("or allow downloads from https://github.com/Jakobovski/free-spoken-digit-dataset"
                            "/archive/refs/tags/v1.0.10.tar.gz")  # fmt: skip
    with pytest.raises(
        DatasetNotFoundError, match=r"downloading https://github\.com/.* failed \(network disabled"
    ):
        load_fsdd(data_dir=tmp_path)
    stand_in.github_body = b"\0" * (fsdd.TARBALL_MAX_BYTES + 1)
    with pytest.raises(DataError, match=r"more than the cap of 67,108,864 bytes"):
        load_fsdd()


# ----------------------------------------------------------------------------------------------------
# The real archive.


def test_pins_are_the_manifests(fsdd_root: Path) -> None:
    manifest = (fsdd_root / "MANIFEST-media.md").read_text(encoding="utf-8")
    archive_row = re.search(r"`fsdd/recordings\.tar\.gz` \| ([\d,]+) \| `(\w+)`", manifest)
    list_row = re.search(r"`fsdd/recordings\.sha256` \| ([\d,]+) \| `(\w+)`", manifest)
    assert archive_row is not None and list_row is not None
    assert int(archive_row.group(1).replace(",", "")) == fsdd.ARCHIVE_BYTES
    assert archive_row.group(2) == fsdd.ARCHIVE_SHA256
    assert list_row.group(2) == fsdd.MANIFEST_SHA256  # the per-file list is the canonical manifest
    listing = (fsdd_root / "fsdd" / fsdd.LIST_NAME).read_bytes()
    assert hashlib.sha256(listing).hexdigest() == fsdd.MANIFEST_SHA256
    assert [line.split("  ")[1] for line in listing.decode().splitlines()] == fsdd.official_names()


@pytest.fixture(scope="module")
def real_fsdd(fsdd_root: Path) -> AudioSet:
    return load_fsdd("all", data_dir=fsdd_root, allow_download=False)


def test_real_archive_counts(real_fsdd: AudioSet, fsdd_root: Path) -> None:
    audio = real_fsdd
    assert len(audio) == 3000 and audio.sample_rate == 8000 and audio.classes == fsdd.CLASSES
    assert Counter(audio.labels) == Counter(dict.fromkeys(fsdd.CLASSES, 300))
    assert Counter(audio.speakers or []) == Counter(dict.fromkeys(fsdd.SPEAKERS, 500))
    pairs = Counter(zip(audio.labels, audio.speakers or [], strict=True))
    rows = [line.split("\t") for line in (fsdd_root / "fsdd" / "counts.tsv").read_text().splitlines()]
    header = rows[0][1:-1]
    for row in rows[1:-1]:  # counts.tsv: digit x speaker, 50 each
        for speaker, count in zip(header, row[1:-1], strict=True):
            assert pairs[(row[0], speaker)] == int(count) == 50
    assert abs(float(audio.durations.sum()) - 1312.303) < 1e-6  # "about 1,312 s" (1,312.303 s exactly)
    assert audio.durations.min() > 0.14 and audio.durations.max() < 2.3
    assert all(w.dtype == np.float32 and np.abs(w).max() <= 1.0 for w in audio.waveforms)
    train, test = fsdd_split(audio, "official")
    assert (len(train), len(test)) == (2700, 300)
    train, test = fsdd_split(audio, "speaker:jackson")
    assert (len(train), len(test)) == (2500, 500) and set(test.speakers or []) == {"jackson"}


def test_real_recordings_are_8_khz_mono_16_bit_and_decode_exactly(
    real_fsdd: AudioSet, fsdd_root: Path
) -> None:
    archive = fsdd_root / "fsdd" / fsdd.ARCHIVE_NAME
    by_source = dict(zip(real_fsdd.sources, real_fsdd.waveforms, strict=True))
    seen = 0
    for name, data in iter_tar(archive, fsdd.ARCHIVE_LIMITS, lambda n: n.endswith(".wav")):
        info = soundfile.info(io.BytesIO(data))
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16"), name
        if seen % 100 == 0:  # every 100th: the samples are the file's int16 values / 32768
            ints, _ = soundfile.read(io.BytesIO(data), dtype="int16")
            np.testing.assert_array_equal(by_source[name], (ints / 32768).astype(np.float32))
        seen += 1
    assert seen == 3000
