"""Built-in datasets: local copies, downloads from the official sources, and the archive parsers.

Every split is stored as ``<root>/<name>/<split>.jsonl.gz``: gzip'd JSON Lines with ``text``, ``label`` and,
where the source has one, ``rating`` (AG News also keeps ``title`` and ``description``). A split is looked up:

1. in ``data_dir`` (default ``$ATTNKIT_DATA``), e.g. a shared copy of the datasets;
2. in the download cache (``cache_dir``, default ``$ATTNKIT_CACHE`` or ``~/.cache/attnkit``);
3. otherwise, if downloads are allowed, the official archive is fetched over HTTPS (tqdm progress bar,
   byte cap), its pinned sha256 enforced (a mismatch deletes it and fails), parsed from its official layout
   under archive limits (no links, devices, ``..`` or absolute names, bounded member sizes and counts), and
   every split it holds is written to the cache in the same layout, so the next load is local.

The generic parts (fetching, checksums, safe archive reading) live in :mod:`attnkit.data.download`.

Offline with no local copy, :class:`DatasetNotFoundError` says where to put the file and where to get it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnkit.atomic import atomic_write
from attnkit.data.download import (
    ArchiveLimits,
    GiB,
    MiB,
    RemoteFile,
    download,
    fetch_url,
    iter_archive,
    verify_sha256,
)
from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.text.files import LoadReport, TextExample, load_jsonl

logger = logging.getLogger(__name__)

DATA_ENV = "ATTNKIT_DATA"
CACHE_ENV = "ATTNKIT_CACHE"
DEFAULT_CACHE = Path("~/.cache/attnkit")

Row = dict[str, Any]
"""One output row: ``text``, ``label`` and optional ``rating`` / ``title`` / ``description``."""


# Parsers take the downloaded file and the requested split and return rows for every split the file holds.
Parser = Callable[[Path, str], dict[str, list[Row]]]


@dataclass(frozen=True)
class BuiltinDataset:
    """One built-in dataset.

    Attributes:
        name: registry name (``imdb``).
        splits: valid split names; the first is the default.
        labelled: splits whose rows carry labels (``imdb:unsup`` does not).
        remote: per split, the file to download (splits from one archive share it).
        parser: turns the downloaded file into rows per split.
        description: one line for listings and errors.
    """

    name: str
    splits: tuple[str, ...]
    labelled: tuple[str, ...]
    remote: Mapping[str, RemoteFile]
    parser: Parser
    description: str

    @property
    def default_split(self) -> str:
        return self.splits[0]


# ----------------------------------------------------------------------------------------------------
# Archive parsers (official layouts). Each is a pure function of a local file.


def _member_text(data: bytes, where: str, encoding: str = "utf-8") -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{where}: line {line}: bytes are not valid {encoding} (0x{data[e.start]:02x})"
        ) from None


def _iter_files(
    path: Path, pattern: re.Pattern[str], limits: ArchiveLimits
) -> Iterable[tuple[re.Match[str], bytes]]:
    """(match, bytes) for the regular files of the archive whose name matches ``pattern``, read safely."""
    for name, data in iter_archive(path, limits, lambda n: pattern.search(n) is not None):
        match = pattern.search(name)
        assert match is not None  # selected above
        yield match, data


def _require_splits(found: dict[str, list[Row]], wanted: Iterable[str], path: Path, layout: str) -> None:
    missing = [s for s in wanted if not found.get(s)]
    if missing:
        raise DataError(
            f"{path}: no files for split(s) {', '.join(missing)}; expected the official layout {layout}"
        )


_IMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")


# 100,000 reviews (the largest about 14 KB) and a dozen other files (bag-of-words .feat files of tens of MB,
# read past but never returned); about 0.3 GB uncompressed.
IMDB_LIMITS = ArchiveLimits(max_members=110_000, max_member_bytes=1 * MiB, max_total_bytes=1 * GiB)


def parse_imdb_archive(
    path: Path, split: str = "train", *, limits: ArchiveLimits = IMDB_LIMITS
) -> dict[str, list[Row]]:
    """Parse ``aclImdb_v1.tar.gz``: ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` and ``train/unsup``.

    The archive is read under ``limits`` (see :mod:`attnkit.data.download`): links, devices, absolute or
    ``..`` names and oversized members are refused.

    Returns:
        ``{"train": rows, "test": rows, "unsup": rows}``. Labelled rows have ``text`` (UTF-8, unchanged,
        ``<br />`` kept), ``label`` (``neg``/``pos``) and ``rating``, sorted by (label, numeric id);
        ``unsup`` rows have ``text`` only, sorted by id. ``split`` is unused (the archive holds all three).
    """
    keyed: dict[str, list[tuple[tuple[str, int], Row]]] = {"train": [], "test": [], "unsup": []}
    for match, data in _iter_files(path, _IMDB_MEMBER, limits):
        part, label, ident, rating = match.groups()
        text = _member_text(data, f"{path}: {match.group(0).lstrip('/')}")
        if label == "unsup":
            if part == "train":
                keyed["unsup"].append((("", int(ident)), {"text": text}))
            continue
        keyed[part].append(((label, int(ident)), {"text": text, "label": label, "rating": int(rating)}))
    rows = {s: [row for _, row in sorted(items, key=lambda kv: kv[0])] for s, items in keyed.items()}
    _require_splits(rows, ("train", "test"), path, "aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt")
    return rows


_NEWS_MEMBER = re.compile(r"(?:^|/)20news-bydate-(train|test)/([^/]+)/(\d+)$")


# 18,846 messages in 40 folders; the longest messages (with uuencoded attachments) are well under 1 MB.
NEWS_LIMITS = ArchiveLimits(max_members=25_000, max_member_bytes=4 * MiB, max_total_bytes=256 * MiB)


def parse_20newsgroups_archive(
    path: Path, split: str = "train", *, limits: ArchiveLimits = NEWS_LIMITS
) -> dict[str, list[Row]]:
    """Parse ``20news-bydate.tar.gz``: ``20news-bydate-{train,test}/<newsgroup>/<message id>``.

    Read safely under ``limits`` like :func:`parse_imdb_archive`.

    Returns:
        ``{"train": rows, "test": rows}``; ``text`` is the raw message (headers included) decoded as latin-1,
        ``label`` the newsgroup; sorted by (newsgroup, numeric id).
    """
    keyed: dict[str, list[tuple[tuple[str, int], Row]]] = {"train": [], "test": []}
    for match, data in _iter_files(path, _NEWS_MEMBER, limits):
        part, group, ident = match.groups()
        keyed[part].append(((group, int(ident)), {"text": data.decode("latin-1"), "label": group}))
    rows = {s: [row for _, row in sorted(items, key=lambda kv: kv[0])] for s, items in keyed.items()}
    _require_splits(rows, ("train", "test"), path, "20news-bydate-{train,test}/<newsgroup>/<id>")
    return rows


SST2_LABELS = {"0": "negative", "1": "positive"}


# SST-2.zip holds train/dev/test.tsv (train 3.8 MB) and the original treebank files (never decompressed).
SST2_LIMITS = ArchiveLimits(max_members=1_000, max_member_bytes=32 * MiB, max_total_bytes=64 * MiB)


def parse_sst2_archive(
    path: Path, split: str = "train", *, limits: ArchiveLimits = SST2_LIMITS
) -> dict[str, list[Row]]:
    """Parse GLUE's ``SST-2.zip``: ``SST-2/{train,dev}.tsv`` with a ``sentence\\tlabel`` header.

    Read safely under ``limits`` like :func:`parse_imdb_archive`.

    Returns:
        ``{"train": rows, "dev": rows}`` in file order; ``text`` keeps its trailing space, ``label`` is
        ``negative`` (0) or ``positive`` (1). The unlabelled ``test.tsv`` is not read.
    """
    wanted = {f"SST-2/{part}.tsv": part for part in ("train", "dev")}

    def part_of(name: str) -> str | None:
        return next((part for w, part in wanted.items() if name == w or name.endswith(f"/{w}")), None)

    members = {
        part_of(name): (name, data)
        for name, data in iter_archive(path, limits, lambda n: part_of(n) is not None)
    }
    rows: dict[str, list[Row]] = {}
    for part in ("train", "dev"):
        if part not in members:
            raise DataError(f"{path}: no SST-2/{part}.tsv; expected GLUE's layout SST-2/{{train,dev}}.tsv")
        member, data = members[part]
        where = f"{path}: {member}"
        text = _member_text(data, where)
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines or lines[0].rstrip("\r") != "sentence\tlabel":
            raise DataError(f"{where}: line 1: expected the header 'sentence<TAB>label'")
        out: list[Row] = []
        for number, line in enumerate(lines[1:], start=2):
            sentence, tab, label = line.removesuffix("\r").rpartition("\t")
            if not tab or label not in SST2_LABELS:
                raise DataError(f"{where}: line {number}: expected '<sentence><TAB>0|1', got {line[:60]!r}")
            out.append({"text": sentence, "label": SST2_LABELS[label]})
        rows[part] = out
    return rows


AG_NEWS_LABELS = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}


def parse_ag_news_csv(path: Path, split: str = "train") -> dict[str, list[Row]]:
    """Parse an AG News ``{train,test}.csv``: no header, columns ``class,title,description``.

    Returns:
        ``{split: rows}`` in file order with ``label`` from classes.txt (1 World, 2 Sports, 3 Business,
        4 Sci/Tech), ``title``, ``description`` (unchanged, escapes kept) and ``text = title + " " +
        description``.
    """
    where = str(path)
    text = _member_text(path.read_bytes(), where)
    out: list[Row] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != 3 or row[0] not in AG_NEWS_LABELS:
                raise DataError(
                    f"{where}: line {reader.line_num}: expected 3 columns class(1-4),title,description, "
                    f"got {row[:3]!r:.80}"
                )
            label, title, description = row
            out.append(
                {
                    "text": f"{title} {description}",
                    "label": AG_NEWS_LABELS[label],
                    "title": title,
                    "description": description,
                }
            )
    except csv.Error as e:
        raise DataError(f"{where}: line {reader.line_num}: malformed CSV ({e})") from None
    if not out:
        raise DataError(f"{where}: no rows")
    return {split: out}


_MR_MEMBER = re.compile(r"(?:^|/)rt-polarity\.(pos|neg)$")
# A README and two files of 5,331 lines (about 0.6 MB each).
MR_LIMITS = ArchiveLimits(max_members=100, max_member_bytes=8 * MiB, max_total_bytes=16 * MiB)


def parse_mr_archive(
    path: Path, split: str = "all", *, limits: ArchiveLimits = MR_LIMITS
) -> dict[str, list[Row]]:
    """Parse ``rt-polaritydata.tar.gz``: ``rt-polaritydata/rt-polarity.{pos,neg}``, one sentence per line.

    Read safely under ``limits`` like :func:`parse_imdb_archive`. (The archive itself is verified by its
    pinned sha256 before it is parsed.)

    Returns:
        ``{"all": rows}``: every pos line in file order, then every neg line; ``text`` is the line decoded as
        cp1252 with its trailing space kept, ``label`` ``pos`` or ``neg``.
    """
    found: dict[str, list[Row]] = {}
    for match, data in _iter_files(path, _MR_MEMBER, limits):
        label = match.group(1)
        lines = _member_text(data, f"{path}: {match.group(0)}", encoding="cp1252").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        found[label] = [{"text": line, "label": label} for line in lines]
    _require_splits(found, ("pos", "neg"), path, "rt-polaritydata/rt-polarity.{pos,neg}")
    return {"all": found["pos"] + found["neg"]}


# ----------------------------------------------------------------------------------------------------
# Registry.

# Every file has a pinned sha256 that is enforced. Where a size is published with the digest, ``max_bytes`` is
# that size: a longer download cannot have the digest, so it stops there.

_IMDB_ARCHIVE = RemoteFile(
    url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    filename="aclImdb_v1.tar.gz",
    # Upstream publishes no digest. This is the sha256 (and size) TensorFlow Datasets and Hugging Face
    # `datasets` record for this file (the same path over http); torchtext checks its md5 7c2ac02c....
    sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
    max_bytes=84_125_825,
)
_NEWS_ARCHIVE = RemoteFile(
    # qwone.com (the dataset's home page) is served over plain http only as far as we know, so this is the
    # https mirror scikit-learn's fetch_20newsgroups downloads from (figshare, the same 20news-bydate.tar.gz).
    # No digest is published with the data; this sha256 is the one scikit-learn pins for the file.
    url="https://ndownloader.figshare.com/files/5975967",
    filename="20news-bydate.tar.gz",
    sha256="8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610",
    max_bytes=32 * MiB,  # no size published with the digest; the archive is about 14 MB
)
_SST2_ARCHIVE = RemoteFile(
    url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    filename="SST-2.zip",
    # GLUE publishes no digest: the sha256 and size Hugging Face `datasets` record for this URL (TensorFlow
    # Datasets records the same for GLUE's original firebase link); torchtext checks its md5 9f81648d....
    sha256="d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
    max_bytes=7_439_277,
)
_AG_NEWS_BASE = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"
_MR_ARCHIVE = RemoteFile(
    # The official page (www.cs.cornell.edu/people/pabo/movie-review-data/) publishes no digest. This is the
    # https copy of rt-polaritydata.tar.gz (v1.0) that Hugging Face's rotten_tomatoes loader downloads, with
    # the sha256 and size it records: the only pinned digest of this archive we know of.
    url="https://storage.googleapis.com/seldon-datasets/sentence_polarity_v1/rt-polaritydata.tar.gz",
    filename="rt-polaritydata.tar.gz",
    sha256="a05befe52aafda71d458d188a1c54506a998b1308613ba76bbda2e5029409ce9",
    max_bytes=487_770,
)

DATASETS: dict[str, BuiltinDataset] = {
    "imdb": BuiltinDataset(
        name="imdb",
        splits=("train", "test", "unsup"),
        labelled=("train", "test"),
        remote=dict.fromkeys(("train", "test", "unsup"), _IMDB_ARCHIVE),
        parser=parse_imdb_archive,
        description="IMDb movie reviews (Maas et al. 2011): pos/neg, 25k train, 25k test, 50k unlabelled",
    ),
    "20newsgroups": BuiltinDataset(
        name="20newsgroups",
        splits=("train", "test"),
        labelled=("train", "test"),
        remote=dict.fromkeys(("train", "test"), _NEWS_ARCHIVE),
        parser=parse_20newsgroups_archive,
        description="20 Newsgroups, bydate split: 20 classes, 11,314 train, 7,532 test",
    ),
    "sst2": BuiltinDataset(
        name="sst2",
        splits=("train", "dev"),
        labelled=("train", "dev"),
        remote=dict.fromkeys(("train", "dev"), _SST2_ARCHIVE),
        parser=parse_sst2_archive,
        description="SST-2 (GLUE): negative/positive sentences, 67,349 train, 872 dev",
    ),
    "ag_news": BuiltinDataset(
        name="ag_news",
        splits=("train", "test"),
        labelled=("train", "test"),
        remote={
            # The files torchtext and Hugging Face download. The sha256s and sizes are those Hugging Face
            # records (torchtext's md5s agree: b1a00f82..., d52ea96a...); the test file's sha256 is also
            # that of the shared copy (MANIFEST.md).
            "train": RemoteFile(
                f"{_AG_NEWS_BASE}/train.csv",
                "ag_news_train.csv",
                sha256="76a0a2d2f92b286371fe4d4044640910a04a803fdd2538e0f3f29a5c6f6b672e",
                max_bytes=29_470_338,
            ),
            "test": RemoteFile(
                f"{_AG_NEWS_BASE}/test.csv",
                "ag_news_test.csv",
                sha256="521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699",
                max_bytes=1_857_427,
            ),
        },
        parser=parse_ag_news_csv,
        description="AG News: World/Sports/Business/Sci/Tech, 120,000 train, 7,600 test",
    ),
    "mr": BuiltinDataset(
        name="mr",
        splits=("all",),
        labelled=("all",),
        remote={"all": _MR_ARCHIVE},
        parser=parse_mr_archive,
        description="MR rt-polarity sentences (Pang & Lee 2005): pos/neg, 10,662, no official split",
    ),
}


def get_dataset(name: str) -> BuiltinDataset:
    """The registry entry for ``name`` (case-insensitive).

    Raises:
        DataError: for an unknown name, listing the known ones.
    """
    key = name.strip().lower()
    if key not in DATASETS:
        raise DataError(f"unknown built-in dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[key]


def check_split(dataset: BuiltinDataset, split: str | None) -> str:
    """``split`` validated against the dataset (``None`` -> its default split)."""
    if split is None:
        return dataset.default_split
    if split not in dataset.splits:
        raise DataError(f"{dataset.name}: unknown split {split!r}; valid splits: {', '.join(dataset.splits)}")
    return split


# ----------------------------------------------------------------------------------------------------
# Locations.


def data_root() -> Path | None:
    """``$ATTNKIT_DATA`` as a path, or ``None`` when unset or empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The download cache: ``cache_dir``, else ``$ATTNKIT_CACHE``, else ``~/.cache/attnkit``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_CACHE.expanduser()


def split_filename(name: str, split: str) -> str:
    """``<name>/<split>.jsonl.gz``, the layout shared by data roots and the cache."""
    return f"{name}/{split}.jsonl.gz"


# ----------------------------------------------------------------------------------------------------
# Conversion to the shared layout (downloading itself: attnkit.data.download).


def write_jsonl_gz(path: Path, rows: Iterable[Row]) -> None:
    """Write rows as gzip'd JSON Lines (ASCII-escaped, gzip mtime 0), atomically, with a plain write's mode."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for row in rows:
                gz.write(json.dumps(row, ensure_ascii=True).encode("ascii") + b"\n")

    atomic_write(path, write)


def _not_found_message(dataset: BuiltinDataset, split: str, roots: list[Path], cache: Path, why: str) -> str:
    layout = split_filename(dataset.name, split)
    data = data_root()
    places = [f"${DATA_ENV}/{layout} ({DATA_ENV} is {'unset' if data is None else f'{data}'})"]
    places += [str(root / layout) for root in roots if root != data]
    places.append(str(cache / layout))
    remote = dataset.remote[split]
    return (
        f"{dataset.name}:{split} is not available: {why}. Put the file at {' or '.join(places)}; or save "
        f"{remote.url} as {cache / 'downloads' / remote.filename} and load again to convert it"
    )


def builtin_path(
    name: str,
    split: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The local ``<name>/<split>.jsonl.gz`` of a built-in split, downloading and converting it if needed.

    Raises:
        DataError: unknown name or split.
        DatasetNotFoundError: no local copy and downloads disabled or failed; the message says where to put
            the file and the official URL.
    """
    dataset = get_dataset(name)
    split = check_split(dataset, split)
    layout = split_filename(dataset.name, split)
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []
    env_root = data_root()
    if env_root is not None and env_root not in roots:
        roots.append(env_root)
    for root in roots:
        if (root / layout).is_file():
            return root / layout
    cache = cache_root(cache_dir)
    if (cache / layout).is_file():
        return cache / layout
    remote = dataset.remote[split]
    archive = cache / "downloads" / remote.filename
    if archive.is_file():
        # An official file already there (an interrupted conversion, or placed by hand for offline use).
        logger.info("using %s", archive)
        verify_sha256(archive, remote, what=dataset.name)  # a wrong file is deleted, then refused
    elif not allow_download:
        raise DatasetNotFoundError(_not_found_message(dataset, split, roots, cache, "downloads are disabled"))
    else:
        try:
            # fetch_url is looked up here, at call time, so tests can replace it on this module.
            archive = download(remote, cache / "downloads", what=dataset.name, fetch=fetch_url)
        except OSError as e:
            reason = getattr(e, "reason", None) or e.strerror or e
            raise DatasetNotFoundError(
                _not_found_message(
                    dataset, split, roots, cache, f"downloading {remote.url} failed ({reason})"
                )
            ) from None
    rows = dataset.parser(archive, split)
    for part, part_rows in rows.items():
        write_jsonl_gz(cache / split_filename(dataset.name, part), part_rows)
        logger.info("wrote %d rows to %s", len(part_rows), cache / split_filename(dataset.name, part))
    archive.unlink(missing_ok=True)
    if not (cache / layout).is_file():  # pragma: no cover - parsers return every split of their file
        raise DataError(f"{remote.filename}: the archive held no {split} split")
    return cache / layout


def load_builtin_with_report(
    name: str,
    split: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
) -> tuple[list[TextExample], LoadReport]:
    """Like :func:`load_builtin`, also returning the :class:`LoadReport`."""
    dataset = get_dataset(name)
    split = check_split(dataset, split)
    path = builtin_path(
        dataset.name, split, data_dir=data_dir, allow_download=allow_download, cache_dir=cache_dir
    )
    examples, report = load_jsonl(
        path, text_field=text_field, label_field=label_field, require_label=split in dataset.labelled
    )
    report.source = f"{dataset.name}:{split}"
    return examples, report


def load_builtin(
    name: str,
    split: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[TextExample]:
    """Load a built-in dataset split (see the module docstring for where it is looked up).

    Args:
        name: ``imdb``, ``20newsgroups``, ``sst2``, ``ag_news`` or ``mr``.
        split: imdb ``train``/``test``/``unsup``; 20newsgroups ``train``/``test``; sst2 ``train``/``dev``;
            ag_news ``train``/``test``; mr ``all``. ``None`` is the first of these.
        data_dir: root of local copies; default ``$ATTNKIT_DATA``.
        allow_download: fetch from the official source when there is no local copy.
        cache_dir: download cache; default ``$ATTNKIT_CACHE`` or ``~/.cache/attnkit``.

    Returns:
        The examples in the dataset's documented order (``imdb:unsup`` examples have label ``""``).
    """
    examples, _ = load_builtin_with_report(
        name, split, data_dir=data_dir, allow_download=allow_download, cache_dir=cache_dir
    )
    return examples
