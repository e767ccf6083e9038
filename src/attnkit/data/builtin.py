"""Built-in datasets: local copies, downloads from the official sources, and the archive parsers.

Every split is stored as ``<root>/<name>/<split>.jsonl.gz``: gzip'd JSON Lines with ``text``, ``label`` and,
where the source has one, ``rating`` (AG News also keeps ``title`` and ``description``). A split is looked up:

1. in ``data_dir`` (default ``$ATTNKIT_DATA``), e.g. a shared copy of the datasets;
2. in the download cache (``cache_dir``, default ``$ATTNKIT_CACHE`` or ``~/.cache/attnkit``);
3. otherwise, if downloads are allowed, the official archive is fetched (tqdm progress bar), its checksum
   checked, parsed from its official layout, and every split it holds is written to the cache in the same
   layout, so the next load is local.

Offline with no local copy, :class:`DatasetNotFoundError` says where to put the file and where to get it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import re
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.sources import LoadReport, TextExample, load_jsonl

logger = logging.getLogger(__name__)

DATA_ENV = "ATTNKIT_DATA"
CACHE_ENV = "ATTNKIT_CACHE"
DEFAULT_CACHE = Path("~/.cache/attnkit")

Row = dict[str, Any]
"""One output row: ``text``, ``label`` and optional ``rating`` / ``title`` / ``description``."""


@dataclass(frozen=True)
class Checksum:
    """Expected digest of a downloaded file.

    Attributes:
        algorithm: ``md5`` or ``sha256``.
        hexdigest: lowercase hex digest.
        trusted: True when published with the data (or by a widely used loader for the same URL); a mismatch
            is then an error. False for a digest recorded from a mirror of the file: a mismatch only logs a
            warning, and the archive layout checks still apply.
    """

    algorithm: Literal["md5", "sha256"]
    hexdigest: str
    trusted: bool = True


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: its URL, the name it is saved under and its checksum (``None``: none known)."""

    url: str
    filename: str
    checksum: Checksum | None


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


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{path}: not a readable tar archive ({e})") from None


def _iter_tar_files(path: Path, pattern: re.Pattern[str]) -> Iterable[tuple[re.Match[str], bytes]]:
    """(match, bytes) for the regular files of the archive whose name matches ``pattern``."""
    with _open_tar(path) as tar:
        try:
            for member in tar:
                if not member.isfile():
                    continue
                match = pattern.search(member.name)
                if match is None:
                    continue
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    continue
                yield match, handle.read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{path}: corrupt or truncated archive ({e})") from None


def _require_splits(found: dict[str, list[Row]], wanted: Iterable[str], path: Path, layout: str) -> None:
    missing = [s for s in wanted if not found.get(s)]
    if missing:
        raise DataError(
            f"{path}: no files for split(s) {', '.join(missing)}; expected the official layout {layout}"
        )


_IMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")


def parse_imdb_archive(path: Path, split: str = "train") -> dict[str, list[Row]]:
    """Parse ``aclImdb_v1.tar.gz``: ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` and ``train/unsup``.

    Returns:
        ``{"train": rows, "test": rows, "unsup": rows}``. Labelled rows have ``text`` (UTF-8, unchanged,
        ``<br />`` kept), ``label`` (``neg``/``pos``) and ``rating``, sorted by (label, numeric id);
        ``unsup`` rows have ``text`` only, sorted by id. ``split`` is unused (the archive holds all three).
    """
    keyed: dict[str, list[tuple[tuple[str, int], Row]]] = {"train": [], "test": [], "unsup": []}
    for match, data in _iter_tar_files(path, _IMDB_MEMBER):
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


def parse_20newsgroups_archive(path: Path, split: str = "train") -> dict[str, list[Row]]:
    """Parse ``20news-bydate.tar.gz``: ``20news-bydate-{train,test}/<newsgroup>/<message id>``.

    Returns:
        ``{"train": rows, "test": rows}``; ``text`` is the raw message (headers included) decoded as latin-1,
        ``label`` the newsgroup; sorted by (newsgroup, numeric id).
    """
    keyed: dict[str, list[tuple[tuple[str, int], Row]]] = {"train": [], "test": []}
    for match, data in _iter_tar_files(path, _NEWS_MEMBER):
        part, group, ident = match.groups()
        keyed[part].append(((group, int(ident)), {"text": data.decode("latin-1"), "label": group}))
    rows = {s: [row for _, row in sorted(items, key=lambda kv: kv[0])] for s, items in keyed.items()}
    _require_splits(rows, ("train", "test"), path, "20news-bydate-{train,test}/<newsgroup>/<id>")
    return rows


SST2_LABELS = {"0": "negative", "1": "positive"}


def parse_sst2_archive(path: Path, split: str = "train") -> dict[str, list[Row]]:
    """Parse GLUE's ``SST-2.zip``: ``SST-2/{train,dev}.tsv`` with a ``sentence\\tlabel`` header.

    Returns:
        ``{"train": rows, "dev": rows}`` in file order; ``text`` keeps its trailing space, ``label`` is
        ``negative`` (0) or ``positive`` (1). The unlabelled ``test.tsv`` is not read.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip archive ({e})") from None
    rows: dict[str, list[Row]] = {}
    with archive:
        names = archive.namelist()
        for part in ("train", "dev"):
            wanted = f"SST-2/{part}.tsv"
            member = next((n for n in names if n == wanted or n.endswith(f"/{wanted}")), None)
            if member is None:
                raise DataError(
                    f"{path}: no SST-2/{part}.tsv; expected GLUE's layout SST-2/{{train,dev}}.tsv"
                )
            where = f"{path}: {member}"
            text = _member_text(archive.read(member), where)
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            if not lines or lines[0].rstrip("\r") != "sentence\tlabel":
                raise DataError(f"{where}: line 1: expected the header 'sentence<TAB>label'")
            out: list[Row] = []
            for number, line in enumerate(lines[1:], start=2):
                sentence, tab, label = line.removesuffix("\r").rpartition("\t")
                if not tab or label not in SST2_LABELS:
                    raise DataError(
                        f"{where}: line {number}: expected '<sentence><TAB>0|1', got {line[:60]!r}"
                    )
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
# sha256 of the raw rt-polarity.{pos,neg} files, recorded from a copy of the data (see shared MANIFEST.md).
MR_FILE_SHA256 = {
    "pos": "d79ef14009bbf87cd6be21f91c3ea1a3cbcb73b34dfb4231aef7bbcd7677abc4",
    "neg": "4af43bf489620b498a0852c5a8c6a535155dec7985fdfea782b8f7756b957ccc",
}


def parse_mr_archive(path: Path, split: str = "all") -> dict[str, list[Row]]:
    """Parse ``rt-polaritydata.tar.gz``: ``rt-polaritydata/rt-polarity.{pos,neg}``, one sentence per line.

    Returns:
        ``{"all": rows}``: every pos line in file order, then every neg line; ``text`` is the line decoded as
        cp1252 with its trailing space kept, ``label`` ``pos`` or ``neg``.
    """
    found: dict[str, list[Row]] = {}
    for match, data in _iter_tar_files(path, _MR_MEMBER):
        label = match.group(1)
        digest = hashlib.sha256(data).hexdigest()
        if digest != MR_FILE_SHA256[label]:
            logger.warning(
                "%s: rt-polarity.%s has sha256 %s, not the recorded %s (not verified against an official "
                "checksum; continuing)",
                path,
                label,
                digest,
                MR_FILE_SHA256[label],
            )
        lines = _member_text(data, f"{path}: {match.group(0)}", encoding="cp1252").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        found[label] = [{"text": line, "label": label} for line in lines]
    _require_splits(found, ("pos", "neg"), path, "rt-polaritydata/rt-polarity.{pos,neg}")
    return {"all": found["pos"] + found["neg"]}


# ----------------------------------------------------------------------------------------------------
# Registry.

_IMDB_ARCHIVE = RemoteFile(
    url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    filename="aclImdb_v1.tar.gz",
    checksum=Checksum("md5", "7c2ac02c03563afcf9b574c7e56c153a"),
)
_NEWS_ARCHIVE = RemoteFile(
    url="http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",
    filename="20news-bydate.tar.gz",
    # No checksum is published with the data. This is the sha256 scikit-learn checks for its figshare mirror
    # of the same archive; it is not verified against this URL, so a mismatch only warns.
    checksum=Checksum(
        "sha256", "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610", trusted=False
    ),
)
_SST2_ARCHIVE = RemoteFile(
    url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    filename="SST-2.zip",
    # The MD5 torchtext checks for this URL (GLUE itself publishes none).
    checksum=Checksum("md5", "9f81648d4199384278b86e315dac217c"),
)
_AG_NEWS_BASE = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"
_MR_ARCHIVE = RemoteFile(
    url="https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz",
    filename="rt-polaritydata.tar.gz",
    checksum=None,  # none published; the two text files inside are checked against recorded sha256s
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
            "train": RemoteFile(
                f"{_AG_NEWS_BASE}/train.csv",
                "ag_news_train.csv",
                Checksum("md5", "b1a00f826fdfbd249f79597b59e1dc12"),
            ),
            "test": RemoteFile(
                f"{_AG_NEWS_BASE}/test.csv",
                "ag_news_test.csv",
                Checksum("md5", "d52ea96a97a2d943681189a97654912d"),
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
# Downloads.


def fetch_url(url: str, dest: Path, *, desc: str | None = None, timeout: float = 60.0) -> None:
    """Stream ``url`` into ``dest`` with a tqdm progress bar (shown on terminals only).

    Raises:
        OSError: (including ``urllib.error.URLError``) when the download fails.
    """
    from tqdm.auto import tqdm

    from attnkit import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"attnkit/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response, dest.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc or url, disable=None
        ) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(path: Path, remote: RemoteFile) -> None:
    """Check ``path`` against ``remote.checksum``.

    Raises:
        DataError: on a mismatch with a trusted checksum. An untrusted or missing checksum only logs a
            warning (with the digest, so it can be recorded).
    """
    checksum = remote.checksum
    if checksum is None:
        logger.warning(
            "%s: no published checksum; downloaded file not verified (sha256 %s)",
            remote.url,
            file_digest(path, "sha256"),
        )
        return
    actual = file_digest(path, checksum.algorithm)
    if actual == checksum.hexdigest:
        logger.info("%s: %s checksum ok", remote.filename, checksum.algorithm)
        return
    if not checksum.trusted:
        logger.warning(
            "%s: %s %s differs from the recorded (unverified) %s; continuing, the layout is still checked",
            remote.url,
            checksum.algorithm,
            actual,
            checksum.hexdigest,
        )
        return
    raise DataError(
        f"{remote.url}: checksum mismatch ({checksum.algorithm} expected {checksum.hexdigest}, "
        f"got {actual}); the download is corrupt or the file changed upstream; retry, or place the data "
        "files manually"
    )


def download(remote: RemoteFile, dest_dir: Path) -> Path:
    """Download ``remote`` into ``dest_dir``: stream to a temporary file, verify, then rename atomically.

    Returns:
        The final path ``dest_dir / remote.filename``.

    Raises:
        OSError: when fetching fails (callers turn it into guidance).
        DataError: on a checksum mismatch (the partial file is removed).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{remote.filename}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        logger.info("downloading %s", remote.url)
        fetch_url(remote.url, tmp, desc=remote.filename)
        verify_checksum(tmp, remote)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def write_jsonl_gz(path: Path, rows: Iterable[Row]) -> None:
    """Write rows as gzip'd JSON Lines (ASCII-escaped, gzip mtime 0), atomically via a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for row in rows:
                gz.write(json.dumps(row, ensure_ascii=True).encode("ascii") + b"\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        try:
            verify_checksum(archive, remote)
        except DataError as e:
            raise DataError(f"{archive}: {e}; delete this file and load again") from None
    elif not allow_download:
        raise DatasetNotFoundError(_not_found_message(dataset, split, roots, cache, "downloads are disabled"))
    else:
        try:
            archive = download(remote, cache / "downloads")
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
