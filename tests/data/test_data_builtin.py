"""Built-in datasets: archive parsers on small archives in the official layouts, downloads, offline errors."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from attnkit.data import (
    DataError,
    DatasetNotFoundError,
    TextExample,
    load_builtin,
    load_source,
    parse_20newsgroups_archive,
    parse_ag_news_csv,
    parse_imdb_archive,
    parse_mr_archive,
    parse_sst2_archive,
)
from attnkit.data.download import ChecksumError
from attnkit.data.text import builtin


def make_tar(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


IMDB_FILES = {
    "aclImdb/README": b"readme",
    "aclImdb/imdb.vocab": b"the\nand\n",
    "aclImdb/train/urls_pos.txt": b"http://www.imdb.com/title/tt0453418/usercomments\n",
    "aclImdb/train/labeledBow.feat": b"9 0:9 1:1\n",
    "aclImdb/train/pos/10_7.txt": b"Ten.",
    "aclImdb/train/pos/2_8.txt": "Fine <br /><br />caf\u00e9".encode(),
    "aclImdb/train/pos/0_9.txt": b"Zero pos.",
    "aclImdb/train/neg/1_1.txt": b"One neg.",
    "aclImdb/train/neg/0_3.txt": b"Zero neg.",
    "aclImdb/train/unsup/1_0.txt": b"unsup one",
    "aclImdb/train/unsup/0_0.txt": b"unsup zero",
    "aclImdb/test/pos/0_10.txt": b"Test pos.",
    "aclImdb/test/neg/0_2.txt": b"Test neg.",
}
IMDB_TRAIN = [
    TextExample("Zero neg.", "neg", 3),
    TextExample("One neg.", "neg", 1),
    TextExample("Zero pos.", "pos", 9),
    TextExample("Fine <br /><br />caf\u00e9", "pos", 8),
    TextExample("Ten.", "pos", 7),
]


@pytest.fixture
def imdb_archive(tmp_path: Path) -> Path:
    return make_tar(tmp_path / "src" / "aclImdb_v1.tar.gz", IMDB_FILES)


def pin_sha256(monkeypatch: pytest.MonkeyPatch, name: str, digest: str) -> None:
    """Pin the registry entry of ``name`` to ``digest`` (a test archive's sha256)."""
    spec = builtin.DATASETS[name]
    remote = {s: dataclasses.replace(r, sha256=digest) for s, r in spec.remote.items()}
    monkeypatch.setitem(builtin.DATASETS, name, dataclasses.replace(spec, remote=remote))


def serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> list[str]:
    """Make ``fetch_url`` copy local files for the given URLs; returns the list of fetched URLs."""
    fetched: list[str] = []

    def fake_fetch(url: str, dest: Path, **kwargs: object) -> None:
        fetched.append(url)
        shutil.copyfile(files[url], dest)

    monkeypatch.setattr(builtin, "fetch_url", fake_fetch)
    return fetched


# ----------------------------------------------------------------------------------------------------
# Parsers.


def test_parse_imdb_archive(imdb_archive: Path) -> None:
    rows = parse_imdb_archive(imdb_archive)
    assert rows["train"] == [{"text": e.text, "label": e.label, "rating": e.rating} for e in IMDB_TRAIN]
    assert rows["test"] == [
        {"text": "Test neg.", "label": "neg", "rating": 2},
        {"text": "Test pos.", "label": "pos", "rating": 10},
    ]
    assert rows["unsup"] == [{"text": "unsup zero"}, {"text": "unsup one"}]


def test_parse_imdb_rejects_wrong_layout_and_bad_bytes(tmp_path: Path) -> None:
    wrong = make_tar(tmp_path / "w.tar.gz", {"reviews/pos/0_9.txt": b"x"})
    with pytest.raises(
        DataError, match=r"w\.tar\.gz: no files for split\(s\) train, test; expected the official"
    ):
        parse_imdb_archive(wrong)
    files = dict(IMDB_FILES)
    files["aclImdb/test/neg/0_2.txt"] = b"ok\n\xff"
    bad = make_tar(tmp_path / "b.tar.gz", files)
    with pytest.raises(
        DataError, match=r"aclImdb/test/neg/0_2\.txt: line 2: bytes are not valid utf-8 \(0xff\)"
    ):
        parse_imdb_archive(bad)
    notar = tmp_path / "n.tar.gz"
    notar.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable tar archive"):
        parse_imdb_archive(notar)


def test_parse_20newsgroups_archive(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "20news-bydate.tar.gz",
        {
            "20news-bydate-train/sci.space/9": b"From: a\r\n\r\nCaf\xe9",
            "20news-bydate-train/alt.atheism/51060": b"second",
            "20news-bydate-train/alt.atheism/49960": b"first",
            "20news-bydate-test/sci.space/61000": b"test space",
            "20news-bydate-test/alt.atheism/53068": b"test atheism",
        },
    )
    rows = parse_20newsgroups_archive(archive)
    assert rows["train"] == [
        {"text": "first", "label": "alt.atheism"},
        {"text": "second", "label": "alt.atheism"},
        {"text": "From: a\r\n\r\nCaf\u00e9", "label": "sci.space"},  # latin-1, CRLF kept
    ]
    assert [r["label"] for r in rows["test"]] == ["alt.atheism", "sci.space"]


def test_parse_sst2_archive(tmp_path: Path) -> None:
    path = tmp_path / "SST-2.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("SST-2/train.tsv", 'sentence\tlabel\nhide new secretions \t0\nit \'s "great" \t1\n')
        z.writestr("SST-2/dev.tsv", "sentence\tlabel\nit 's a charming journey . \t1\n")
        z.writestr("SST-2/test.tsv", "index\tsentence\n0\tunlabelled\n")
    rows = parse_sst2_archive(path)
    assert rows == {
        "train": [
            {"text": "hide new secretions ", "label": "negative"},
            {"text": 'it \'s "great" ', "label": "positive"},
        ],
        "dev": [{"text": "it 's a charming journey . ", "label": "positive"}],
    }


def test_parse_sst2_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("SST-2/train.tsv", "sentence\tlabel\nfine\t0\nbroken\t7\n")
        z.writestr("SST-2/dev.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match=r"SST-2/train\.tsv: line 3: expected '<sentence><TAB>0\|1'"):
        parse_sst2_archive(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("SST-2/train.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match=r"no SST-2/dev\.tsv"):
        parse_sst2_archive(path)


AG_CSV = (
    '"3","Wall St. Bears Claw Back Into the Black (Reuters)","Reuters - Short-sellers, Wall Street\'s '
    'dwindling\\band of ultra-cynics, are seeing green again."\n'
    '"2","Title, with comma","Desc with ""quotes"" #39;s"\n'
)


def test_parse_ag_news_csv(tmp_path: Path) -> None:
    path = tmp_path / "test.csv"
    path.write_text(AG_CSV, encoding="utf-8")
    rows = parse_ag_news_csv(path, "test")["test"]
    title = "Wall St. Bears Claw Back Into the Black (Reuters)"
    description = (
        "Reuters - Short-sellers, Wall Street's dwindling\\band of ultra-cynics, are seeing green again."
    )
    assert rows[0] == {
        "text": f"{title} {description}",
        "label": "Business",
        "title": title,
        "description": description,
    }
    assert rows[1]["text"] == 'Title, with comma Desc with "quotes" #39;s'
    assert rows[1]["label"] == "Sports"
    path.write_text('"5","t","d"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.csv: line 1: expected 3 columns class\(1-4\)"):
        parse_ag_news_csv(path, "test")


def test_parse_mr_archive(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "rt-polaritydata.tar.gz",
        {
            "rt-polaritydata.README.1.0.txt": b"readme",
            "rt-polaritydata/rt-polarity.pos": b"simply brilliant . \nit\x92s caf\xe9 . \n",
            "rt-polaritydata/rt-polarity.neg": b"dull . \n",
        },
    )
    rows = parse_mr_archive(archive)
    assert rows == {
        "all": [
            {"text": "simply brilliant . ", "label": "pos"},
            {"text": "it\u2019s caf\u00e9 . ", "label": "pos"},  # cp1252: 0x92 is a right quote
            {"text": "dull . ", "label": "neg"},
        ]
    }


# ----------------------------------------------------------------------------------------------------
# Downloads.


def test_registry_has_the_official_sources() -> None:
    imdb = builtin.DATASETS["imdb"].remote["test"]
    assert imdb.url == "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
    assert imdb.sha256 == "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
    ag = builtin.DATASETS["ag_news"].remote
    # The sha256 of the shared copy of test.csv (MANIFEST.md), whose md5 is torchtext's.
    assert ag["test"].sha256 == "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699"
    news = builtin.DATASETS["20newsgroups"].remote["train"]
    assert news.url == "https://ndownloader.figshare.com/files/5975967"  # scikit-learn's https mirror
    assert news.sha256 == "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610"
    # Every file of every built-in: https, a pinned sha256, a byte cap.
    for dataset in builtin.DATASETS.values():
        for remote in dataset.remote.values():
            assert remote.url.startswith("https://"), remote.url
            assert len(remote.sha256) == 64 and remote.max_bytes > 0
    assert {n: d.splits for n, d in builtin.DATASETS.items()} == {
        "imdb": ("train", "test", "unsup"),
        "20newsgroups": ("train", "test"),
        "sst2": ("train", "dev"),
        "ag_news": ("train", "test"),
        "mr": ("all",),
    }


def test_download_parse_cache_then_local(
    imdb_archive: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_sha256(monkeypatch, "imdb", sha256(imdb_archive))
    url = builtin.DATASETS["imdb"].remote["train"].url
    fetched = serve(monkeypatch, {url: imdb_archive})
    assert load_builtin("imdb", "train") == IMDB_TRAIN
    assert fetched == [url]
    cache = isolated_data_env
    assert sorted(p.name for p in (cache / "imdb").iterdir()) == [
        "test.jsonl.gz",
        "train.jsonl.gz",
        "unsup.jsonl.gz",
    ]
    assert list((cache / "downloads").iterdir()) == []  # archive removed after conversion, no partial files
    # The cache file has the shared layout: ASCII JSON lines, gzip mtime 0.
    raw = (cache / "imdb" / "train.jsonl.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"
    lines = gzip.decompress(raw).decode("ascii").splitlines()
    assert json.loads(lines[3]) == {"text": "Fine <br /><br />caf\u00e9", "label": "pos", "rating": 8}
    assert "\\u00e9" in lines[3]
    # Every split of the archive is now local: no second download.
    assert load_builtin("imdb", "test") == [
        TextExample("Test neg.", "neg", 2),
        TextExample("Test pos.", "pos", 10),
    ]
    assert [e.label for e in load_source("imdb:unsup")] == ["", ""]
    assert fetched == [url]


def test_checksum_mismatch_is_an_error_and_leaves_nothing(
    imdb_archive: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = builtin.DATASETS["imdb"].remote["train"].url
    serve(monkeypatch, {url: imdb_archive})  # the registry keeps the real archive's sha256
    with pytest.raises(
        ChecksumError,
        match=rf"^imdb: aclImdb_v1\.tar\.gz is not the known-good file \(sha256 expected c40f74a1\w+, "
        rf"got {sha256(imdb_archive)}\); deleted ",
    ):
        load_builtin("imdb", "train")
    assert list((isolated_data_env / "downloads").iterdir()) == []
    assert not (isolated_data_env / "imdb").exists()


def test_mr_download_is_verified(
    tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MR used to be accepted unverified (with a warning); an archive that is not the pinned one is refused."""
    archive = make_tar(
        tmp_path / "mr.tar.gz",
        {"rt-polaritydata/rt-polarity.pos": b"a\n", "rt-polaritydata/rt-polarity.neg": b"b\n"},
    )
    serve(monkeypatch, {builtin.DATASETS["mr"].remote["all"].url: archive})
    with pytest.raises(ChecksumError, match=r"^mr: rt-polaritydata\.tar\.gz is not the known-good file"):
        load_builtin("mr")
    assert list((isolated_data_env / "downloads").iterdir()) == []
    assert not (isolated_data_env / "mr").exists()
    pin_sha256(monkeypatch, "mr", sha256(archive))  # the same archive, pinned: accepted
    assert load_builtin("mr") == [TextExample("a", "pos"), TextExample("b", "neg")]


def test_ag_news_downloads_only_the_requested_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv_path = tmp_path / "test.csv"
    csv_path.write_text(AG_CSV, encoding="utf-8")
    pin_sha256(monkeypatch, "ag_news", sha256(csv_path))
    fetched = serve(monkeypatch, {builtin.DATASETS["ag_news"].remote["test"].url: csv_path})
    examples = load_builtin("ag_news", "test")
    assert [e.label for e in examples] == ["Business", "Sports"]
    assert fetched == [f"{builtin._AG_NEWS_BASE}/test.csv"]
    # Builtins accept field names: the cached rows keep title and description.
    assert load_source("ag_news:test", text_field="title")[1].text == "Title, with comma"


def test_offline_error_says_where_to_put_files(isolated_data_env: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_builtin("sst2", "dev", allow_download=False)
    message = str(info.value)
    assert message.startswith("sst2:dev is not available: downloads are disabled. Put the file at ")
    assert "$ATTNKIT_DATA/sst2/dev.jsonl.gz (ATTNKIT_DATA is unset)" in message
    assert str(isolated_data_env / "sst2" / "dev.jsonl.gz") in message
    assert "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip" in message
    assert str(isolated_data_env / "downloads" / "SST-2.zip") in message


def test_failed_download_is_a_not_found_error(isolated_data_env: Path) -> None:
    # The autouse fixture's fetch refuses the network.
    with pytest.raises(
        DatasetNotFoundError, match=r"imdb:test is not available: downloading https://ai\.stanford"
    ):
        load_builtin("imdb", "test")
    assert list((isolated_data_env / "downloads").iterdir()) == []


def test_archive_placed_by_hand_is_converted_offline(
    imdb_archive: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_sha256(monkeypatch, "imdb", sha256(imdb_archive))
    (isolated_data_env / "downloads").mkdir(parents=True)
    shutil.copy(imdb_archive, isolated_data_env / "downloads" / "aclImdb_v1.tar.gz")
    assert load_builtin("imdb", "train", allow_download=False) == IMDB_TRAIN
    assert not (isolated_data_env / "downloads" / "aclImdb_v1.tar.gz").exists()  # converted, then removed


def test_corrupt_archive_placed_by_hand(imdb_archive: Path, isolated_data_env: Path) -> None:
    placed = isolated_data_env / "downloads" / "aclImdb_v1.tar.gz"
    placed.parent.mkdir(parents=True)
    shutil.copy(imdb_archive, placed)
    with pytest.raises(ChecksumError, match=rf"^imdb: .*\(sha256 expected c40f74a1.*; deleted {placed}"):
        load_builtin("imdb", "train", allow_download=False)
    assert not placed.exists()  # a wrong file is not kept to fail again
    assert not (isolated_data_env / "imdb").exists()


def write_split(root: Path, name: str, split: str, rows: list[dict[str, object]]) -> Path:
    path = root / name / f"{split}.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    return path


def test_local_copies_data_dir_then_env_then_cache(
    tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_split(isolated_data_env, "sst2", "dev", [{"text": "from cache", "label": "positive"}])
    assert load_builtin("sst2", "dev", allow_download=False) == [TextExample("from cache", "positive")]
    write_split(tmp_path / "env", "sst2", "dev", [{"text": "from env", "label": "positive"}])
    monkeypatch.setenv("ATTNKIT_DATA", str(tmp_path / "env"))
    assert builtin.data_root() == tmp_path / "env"
    assert load_builtin("sst2", "dev", allow_download=False)[0].text == "from env"
    write_split(tmp_path / "arg", "sst2", "dev", [{"text": "from data_dir", "label": "negative"}])
    assert load_source("sst2:dev", data_dir=str(tmp_path / "arg"))[0].text == "from data_dir"


def test_splits_and_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"mr: unknown split 'train'; valid splits: all"):
        load_source("mr:train")
    with pytest.raises(DataError, match=r"imdb: unknown split 'dev'; valid splits: train, test, unsup"):
        load_source("imdb", split="dev")
    with pytest.raises(DataError, match=r"conflicting splits 'test' \(in the name\) and split='train'"):
        load_source("imdb:test", split="train")
    with pytest.raises(DataError, match=r"unknown built-in dataset 'yelp'"):
        load_builtin("yelp")
    write_split(tmp_path, "mr", "all", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}])
    assert len(load_source("MR", data_dir=str(tmp_path))) == 2  # default split "all", case-insensitive


def test_cache_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert builtin.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("ATTNKIT_CACHE", str(tmp_path / "env"))
    assert builtin.cache_root() == tmp_path / "env"
    monkeypatch.delenv("ATTNKIT_CACHE")
    assert builtin.cache_root() == Path("~/.cache/attnkit").expanduser()
