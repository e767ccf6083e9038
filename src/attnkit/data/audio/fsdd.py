"""The Free Spoken Digit Dataset (FSDD) v1.0.10: 3,000 recordings of the digits 0-9 by six English speakers.

Dimensions: ``N`` recordings, ``S_i`` samples of recording ``i`` (8 kHz mono 16-bit PCM files, 0.14-2.28 s).

Files are named ``{digit}_{speaker}_{index}.wav``: ten digits x six speakers (george, jackson, lucas, nicolas,
theo, yweweler) x fifty takes (index 0-49). Labels are the digit strings ``"0"``..``"9"``.

Where the recordings come from, in order:

1. ``data_dir`` (default ``$ATTNKIT_DATA``) ``/fsdd/recordings.tar.gz``, e.g. the shared copy;
2. the download cache (``$ATTNKIT_CACHE`` or ``~/.cache/attnkit``) ``/fsdd/recordings.tar.gz``;
3. otherwise, if downloads are allowed, the upstream repository's ``v1.0.10`` tag tarball from GitHub
   (Jakobovski/free-spoken-digit-dataset), fetched over HTTPS under a byte cap; only its
   ``recordings/*.wav`` members are kept, written to the cache as ``fsdd/recordings.tar.gz`` beside their list
   ``fsdd/recordings.sha256``.

Every archive is read from memory through :func:`attnkit.data.download.iter_tar` (bounded, and refusing links,
absolute paths and ``..``), and **every recording is verified**: the sha256 of each member goes into a
canonical manifest (one ``<sha256>  recordings/<name>`` line per file, sorted by name, as ``sha256sum``
writes it), whose own sha256 is pinned here (:data:`MANIFEST_SHA256`). An archive from anywhere (repacked,
recompressed, GitHub's tarball) is accepted exactly when its recordings are the official bytes. The per-file
list ``recordings.sha256`` is that manifest itself (its sha256 is the pin), so when it sits beside the archive
a mismatch is reported naming each file that differs; without it, names missing or unexpected are still
named. A copy in ``data_dir`` that fails is refused (not deleted: it is not ours); one in the cache is deleted
and downloaded again. Decoding is :func:`attnkit.data.audio.decode.decode_audio`, with no extraction to disk.

The official split (:func:`fsdd_split`, ``"official"``) puts takes 0-4 of every digit and speaker in test
(300) and 5-49 in train (2,700); ``"speaker:NAME"`` leaves one speaker out (2,500 / 500).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from attnkit.atomic import atomic_write
from attnkit.data.audio.audioset import AudioSet
from attnkit.data.audio.decode import AudioDecodeOptions, decode_audio_with
from attnkit.data.download import ArchiveLimits, ChecksumError, MiB, fetch_url, iter_tar
from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.text.builtin import DATA_ENV, cache_root, data_root

logger = logging.getLogger(__name__)

NAME = "fsdd"
VERSION = "v1.0.10"
#: Label names, in label-id order.
CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
SPEAKERS: tuple[str, ...] = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TAKES_PER_SPEAKER = 50
#: Takes below this index are the official test split.
TEST_TAKES = 5
SPLITS: tuple[str, ...] = ("train", "test", "all")
COUNTS = {"train": 2_700, "test": 300, "all": 3_000}
#: The files' own rate, in Hz.
SAMPLE_RATE = 8_000
#: The longest recording is 2.28 s; anything far longer is not an FSDD file.
MAX_SECONDS = 10.0
Split = Literal["train", "test", "all"]

ARCHIVE_NAME = "recordings.tar.gz"
LIST_NAME = "recordings.sha256"
#: The shared copy's archive (MANIFEST-media.md, section 1): ``recordings/*.wav`` sorted by name, uid/gid 0,
#: ``gzip -n``. Recognised and logged; an archive with another digest is still accepted when its recordings
#: pass :data:`MANIFEST_SHA256`.
ARCHIVE_SHA256 = "97ec4c634e948a37e87ea7d1bc5df4a5a1143932babe62ec6111a1a8bd28e59c"
ARCHIVE_BYTES = 15_557_737
#: sha256 of the canonical manifest of the 3,000 official recordings (see the module docstring): the same
#: bytes as the upstream per-file list ``recordings.sha256``, so also that file's sha256.
MANIFEST_SHA256 = "04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b"

# GitHub generates tag tarballs on request (git archive); their gzip and tar bytes have changed when GitHub
# upgraded git, so no digest of the tarball itself can be pinned. Its recordings are verified by
# MANIFEST_SHA256 instead, before anything is written to the cache.
TARBALL_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/{VERSION}.tar.gz"
TARBALL_MAX_BYTES = 64 * MiB
#: Caps on reading any FSDD archive: the recordings are at most 37 KB each, 21 MB in all.
ARCHIVE_LIMITS = ArchiveLimits(max_members=10_000, max_member_bytes=1 * MiB, max_total_bytes=256 * MiB)

# A recording member: recordings/<file>.wav, or <top folder>/recordings/<file>.wav as in GitHub's tarball.
_MEMBER = re.compile(r"(?:[^/]+/)?recordings/([^/]+\.[wW][aA][vV])")
_FILE_NAME = re.compile(r"(\d)_([a-z]+)_(0|[1-9]\d*)\.wav")
_LIST_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")
# How many names a verification error lists per kind.
_NAMED = 3


@dataclass(frozen=True)
class FsddName:
    """What an FSDD file name says.

    Attributes:
        digit: the spoken digit, ``"0"``..``"9"`` (the label).
        speaker: the speaker's name, lowercase.
        index: the take, 0-49.
    """

    digit: str
    speaker: str
    index: int


def parse_fsdd_name(name: str) -> FsddName:
    """``"recordings/7_theo_3.wav"`` (or just the file name) -> ``FsddName("7", "theo", 3)``.

    Raises:
        DataError: the name is not ``{digit}_{speaker}_{index}.wav``.
    """
    base = name.rsplit("/", 1)[-1]
    match = _FILE_NAME.fullmatch(base)
    if match is None:
        raise DataError(f"{name}: not an FSDD recording name; expected {{digit}}_{{speaker}}_{{index}}.wav")
    digit, speaker, index = match.groups()
    return FsddName(digit, speaker, int(index))


def official_names() -> list[str]:
    """The 3,000 member names of v1.0.10, ``recordings/{digit}_{speaker}_{index}.wav``, sorted."""
    return sorted(
        f"recordings/{digit}_{speaker}_{index}.wav"
        for digit in CLASSES
        for speaker in SPEAKERS
        for index in range(TAKES_PER_SPEAKER)
    )


def canonical_manifest(digests: Iterable[tuple[str, str]]) -> bytes:
    """``(member name, sha256)`` pairs -> ``<sha256>  <name>\\n`` lines sorted by name (``sha256sum``'s format)."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(digests)).encode("utf-8")


def fsdd_split(audio: AudioSet, split: str) -> tuple[AudioSet, AudioSet]:
    """``(train, test)`` of FSDD recordings, by their file names (``audio.sources``).

    Args:
        audio: FSDD recordings (any subset; sources are member or file names ``{digit}_{speaker}_{index}.wav``).
        split: ``"official"``: takes 0-4 of every digit and speaker are test (300 of 3,000), 5-49 train
            (2,700); ``"speaker:NAME"``: every recording of speaker ``NAME`` is test (500), the other five
            speakers train (2,500).

    Raises:
        DataError: an unknown split or speaker (listing the valid ones), or a source that is not an FSDD name.
    """
    names = [parse_fsdd_name(source) for source in audio.sources]
    kind, sep, value = split.strip().partition(":")
    if split.strip() == "official":
        is_test = [n.index < TEST_TAKES for n in names]
    elif kind == "speaker" and sep:
        speaker = value.strip().lower()
        if speaker not in SPEAKERS:
            raise DataError(
                f"{NAME}: unknown speaker {value.strip()!r} in split {split!r}; choose from {', '.join(SPEAKERS)}"
            )
        is_test = [n.speaker == speaker for n in names]
    else:
        raise DataError(
            f"{NAME}: unknown split {split!r}; use 'official' (takes 0-{TEST_TAKES - 1} are test) or "
            f"'speaker:NAME' with NAME one of {', '.join(SPEAKERS)}"
        )
    test = [i for i, t in enumerate(is_test) if t]
    train = [i for i, t in enumerate(is_test) if not t]
    return audio.subset(train), audio.subset(test)


def load_fsdd(
    split: Split = "all",
    *,
    sample_rate: int = SAMPLE_RATE,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> AudioSet:
    """Load FSDD v1.0.10, verified recording by recording (see the module docstring).

    Args:
        split: ``"all"`` (3,000), or the official ``"train"`` (takes 5-49, 2,700) or ``"test"`` (takes 0-4, 300).
        sample_rate: the rate in Hz to resample to (the files' own is 8,000: no resampling).
        data_dir: root of local copies (holding ``fsdd/``); default ``$ATTNKIT_DATA``.
        allow_download: fetch the recordings from GitHub when no local copy exists.
        cache_dir: download cache; default ``$ATTNKIT_CACHE`` or ``~/.cache/attnkit``.

    Returns:
        An :class:`AudioSet` ordered by (digit, speaker, take): labels ``"0"``..``"9"`` (classes
        :data:`CLASSES`), ``speakers`` the speaker names, ``sources`` the member names
        (``recordings/0_george_0.wav``).

    Raises:
        DataError: an unknown split, or an invalid sample rate.
        ChecksumError: a local copy whose recordings are not the official ones, or a bad download (the message
            names the files that differ where it can).
        UnsafeArchiveError: an archive with a link, an absolute or ``..`` member, or over the caps.
        DatasetNotFoundError: no local copy, and downloads are disabled or failed; the message says where to
            put the files.
    """
    if split not in SPLITS:
        raise DataError(f"{NAME}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    options = AudioDecodeOptions(sample_rate, MAX_SECONDS)
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    env_root = data_root()
    if env_root is not None and env_root not in roots:
        roots.append(env_root)
    start = time.perf_counter()
    members, origin = _verified_members(roots, cache_root(cache_dir), allow_download)
    if split != "all":  # decode only the split asked for; the rule is fsdd_split's "official"
        in_test = split == "test"
        members = {
            n: data for n, data in members.items() if (parse_fsdd_name(n).index < TEST_TAKES) == in_test
        }
    audio = _decode(members, options)
    logger.info(
        "%s:%s: %d recordings from %s in %.2f s", NAME, split, len(audio), origin, time.perf_counter() - start
    )
    return audio


# ----------------------------------------------------------------------------------------------------
# Finding, reading and verifying the recordings.


def _verified_members(roots: list[Path], cache: Path, allow_download: bool) -> tuple[dict[str, bytes], str]:
    """The verified recordings (member name -> bytes) and where they came from."""
    for root in roots:
        archive = root / NAME / ARCHIVE_NAME
        if archive.is_file():
            return read_verified_archive(
                archive, advice="replace it with the official archive or remove it"
            ), str(archive)
    folder = cache / NAME
    archive = folder / ARCHIVE_NAME
    if archive.is_file():
        try:
            return read_verified_archive(archive, advice="deleting it"), str(archive)
        except DataError as e:
            logger.warning("%s", e)
            archive.unlink(missing_ok=True)
            (folder / LIST_NAME).unlink(missing_ok=True)
    if not allow_download:
        raise _not_found(roots, cache, "downloads are disabled")
    return _download(folder, roots, cache), TARBALL_URL


def read_verified_archive(archive: Path, *, advice: str) -> dict[str, bytes]:
    """The recordings of one archive (member name -> bytes), every one verified against :data:`MANIFEST_SHA256`.

    ``recordings.sha256`` beside the archive, when its own sha256 is the pin, names the files that differ.

    Args:
        archive: a tar archive (plain, gzip, bzip2 or xz) holding ``recordings/*.wav`` (optionally under one
            top folder).
        advice: what the error message tells the user to do.

    Raises:
        ChecksumError: the recordings are not the official ones.
        UnsafeArchiveError, DataError: the archive is unsafe, unreadable or corrupt.
    """
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest == ARCHIVE_SHA256:
        logger.debug("%s: the pinned archive", archive)
    else:
        logger.info(
            "%s: not the pinned archive (sha256 %s); verifying its recordings one by one", archive, digest
        )
    members = _read_members(archive)
    _verify(members, where=str(archive), expected=_trusted_list(archive.parent / LIST_NAME), advice=advice)
    return members


def _read_members(archive: Path) -> dict[str, bytes]:
    """``recordings/<file>.wav`` -> bytes for every recording member (other members are skipped unread)."""
    members: dict[str, bytes] = {}
    for member, data in iter_tar(archive, ARCHIVE_LIMITS, lambda name: _MEMBER.fullmatch(name) is not None):
        match = _MEMBER.fullmatch(member)
        assert match is not None  # the select above kept only matching names
        name = f"recordings/{match.group(1)}"
        if name in members:
            raise DataError(
                f"{archive}: {name} appears twice (as {member}); an FSDD archive holds each file once"
            )
        members[name] = data
    return members


def _trusted_list(path: Path) -> dict[str, str] | None:
    """The per-file digests of ``recordings.sha256`` when that file is the pinned manifest, else ``None``."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != MANIFEST_SHA256:
        logger.warning(
            "%s: not the FSDD %s list (its sha256 is not the pinned one); ignoring it", path, VERSION
        )
        return None
    digests: dict[str, str] = {}
    for line in data.decode("utf-8").splitlines():
        match = _LIST_LINE.fullmatch(line)
        if match is not None:
            digests[match.group(2)] = match.group(1)
    return digests


def _verify(members: dict[str, bytes], *, where: str, expected: dict[str, str] | None, advice: str) -> None:
    """Raise :class:`ChecksumError` unless the manifest of ``members`` has the pinned sha256 (module docstring)."""
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    actual = hashlib.sha256(canonical_manifest(digests.items())).hexdigest()
    if actual == MANIFEST_SHA256:
        return
    names = set(expected) if expected is not None else set(official_names())
    missing = sorted(names - set(digests))
    unexpected = sorted(set(digests) - names)
    problems = []
    if expected is not None:
        differ = sorted(n for n in digests.keys() & names if digests[n] != expected[n])
        if differ:
            shown = "; ".join(
                f"{n} (sha256 expected {expected[n]}, got {digests[n]})" for n in differ[:_NAMED]
            )
            problems.append(f"{len(differ)} differ: {shown}{_more(differ)}")
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:_NAMED])}{_more(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {', '.join(unexpected[:_NAMED])}{_more(unexpected)}")
    if not problems:  # no list to compare with, and the names are right: some file's bytes differ
        problems.append(
            f"the bytes of some of its {len(digests):,} files differ (manifest sha256 expected {MANIFEST_SHA256}, "
            f"got {actual}); put the upstream list {LIST_NAME} beside it to name them"
        )
    raise ChecksumError(
        f"{NAME}: {where}: the recordings are not FSDD {VERSION}: {'; '.join(problems)}; {advice}"
    )


def _more(names: list[str]) -> str:
    return f" and {len(names) - _NAMED} more" if len(names) > _NAMED else ""


def _decode(members: dict[str, bytes], options: AudioDecodeOptions) -> AudioSet:
    """Decode every recording, ordered by (digit, speaker, take)."""
    parsed = {name: parse_fsdd_name(name) for name in members}
    order = sorted(members, key=lambda name: (parsed[name].digit, parsed[name].speaker, parsed[name].index))
    waveforms = [decode_audio_with(members[name], options, name=name) for name in order]  # each (S_i,)
    return AudioSet(
        waveforms=waveforms,
        labels=[parsed[name].digit for name in order],
        sources=order,
        sample_rate=options.sample_rate,
        speakers=[parsed[name].speaker for name in order],
        classes=CLASSES,
    )


# ----------------------------------------------------------------------------------------------------
# Downloading.


def _download(folder: Path, roots: list[Path], cache: Path) -> dict[str, bytes]:
    """Fetch GitHub's tag tarball, keep and verify its recordings, write them to the cache; return them."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        tarball = Path(tmp) / f"free-spoken-digit-dataset-{VERSION}.tar.gz"
        logger.info("downloading %s", TARBALL_URL)
        try:
            # fetch_url is looked up here, at call time, so tests can replace it on this module.
            fetch_url(TARBALL_URL, tarball, max_bytes=TARBALL_MAX_BYTES, desc=f"{NAME} {VERSION}")
        except OSError as e:
            reason = getattr(e, "reason", None) or e.strerror or e
            raise _not_found(roots, cache, f"downloading {TARBALL_URL} failed ({reason})") from None
        members = _read_members(tarball)
    _verify(
        members,
        where=TARBALL_URL,
        expected=None,
        advice="nothing was cached; retry, or place the files by hand",
    )
    atomic_write(folder / ARCHIVE_NAME, lambda tmp: tmp.write_bytes(_tar_gz(members)))
    manifest = canonical_manifest((name, hashlib.sha256(data).hexdigest()) for name, data in members.items())
    atomic_write(folder / LIST_NAME, lambda tmp: tmp.write_bytes(manifest))
    logger.info("%s: cached %d verified recordings in %s", NAME, len(members), folder / ARCHIVE_NAME)
    return members


def _tar_gz(members: dict[str, bytes]) -> bytes:
    """A reproducible ``.tar.gz`` of ``members``: sorted names, mtime 0, uid/gid 0, mode 0644, gzip mtime 0."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(members[name]))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def _not_found(roots: list[Path], cache: Path, why: str) -> DatasetNotFoundError:
    data = data_root()
    places = [f"${DATA_ENV}/{NAME}/ ({DATA_ENV} is {'unset' if data is None else data})"]
    places += [f"{root / NAME}/" for root in roots if root != data]
    places.append(f"{cache / NAME}/")
    return DatasetNotFoundError(
        f"{NAME} is not available: {why}. Put {ARCHIVE_NAME} (recordings/*.wav of FSDD {VERSION}, optionally with "
        f"{LIST_NAME}) in {' or '.join(places)}, or allow downloads from {TARBALL_URL}"
    )
