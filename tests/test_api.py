"""The public Python API: fit from lists, tables or files; load; predict, explain, attention, evaluate. Results are
checked against the lower-level pieces they wrap (Predictor, explain, evaluate_run) and against a hand count."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import attnkit
from attnkit.explain import explain
from attnkit.predictor import Predictor, evaluate_run

Rows = Callable[[int, int], list[dict[str, str]]]
QuickWrites = Callable[[], AbstractContextManager[None]]
FAST = {"tokenizer.vocab_size": 200, "optim.lr": 0.01, "train.threads": 1, "train.progress": False}


class Table:
    """A minimal DataFrame look-alike: ``.columns`` and ``[name]`` returning something with ``.tolist()``."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.columns = list(rows[0])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise KeyError(name)
        return np.asarray([row[name] for row in self.rows], dtype=object)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, make_rows: Rows, quick_writes_patch: QuickWrites
) -> tuple[attnkit.Classifier, list[dict[str, str]]]:
    rows = make_rows(400, 1)
    test = make_rows(100, 2)
    out = tmp_path_factory.mktemp("api") / "run"
    with quick_writes_patch():  # no test here reads the plots
        clf = attnkit.fit(
            [r["text"] for r in rows],
            [r["label"] for r in rows],
            out=out,
            test=[r["text"] for r in test],
            test_labels=[r["label"] for r in test],
            model="bag-attn",
            epochs=3,
            overrides=FAST,
        )
    return clf, test


def test_top_level_exports() -> None:
    for name in ("fit", "load", "resume", "Classifier", "TokenAttention", "RunConfig", "shipped_configs"):
        assert name in dir(attnkit)
        assert getattr(attnkit, name) is not None
    from attnkit import fit, load

    assert callable(fit) and callable(load)
    with pytest.raises(AttributeError):
        _ = attnkit.no_such_name  # type: ignore[attr-defined]


def test_fit_from_lists_writes_a_resumable_snapshot(
    trained: tuple[attnkit.Classifier, Any], make_rows: Rows
) -> None:
    clf, _ = trained
    snapshot = clf.run_dir / "data" / "train.jsonl"
    rows = [json.loads(line) for line in snapshot.read_text(encoding="utf-8").splitlines()]
    assert rows == make_rows(400, 1)
    assert clf.config.data.train == str(snapshot.resolve())
    assert clf.labels == ["neg", "pos"]
    assert clf.metrics["test"]["accuracy"] > 0.65  # above chance (0.5) after 3 short epochs


def test_predict_matches_the_predictor(trained: tuple[attnkit.Classifier, Any]) -> None:
    clf, test = trained
    texts = [r["text"] for r in test]
    reference = Predictor(clf.run_dir).predict_proba(texts).numpy()
    probabilities = clf.predict_proba(texts)
    np.testing.assert_allclose(probabilities, reference, rtol=0, atol=1e-6)
    assert clf.predict(texts) == [clf.labels[i] for i in reference.argmax(axis=1)]
    assert clf.predict("great wonderful film") == ["pos"]  # one string is one text
    assert clf.predict([]) == []


def test_explain_and_attention_match_the_explainer(trained: tuple[attnkit.Classifier, Any]) -> None:
    clf, _ = trained
    text = "the plot was wonderful and the actor superb"
    one = clf.explain(text, methods=["attention", "grad-input"])
    reference = explain(clf.predictor, [text], ["attention", "grad-input"])[0]
    assert one.to_json_dict() == reference.to_json_dict()
    (attention,) = clf.attention([text])
    assert attention.tokens == [t.text for t in reference.tokens]
    assert [text[s:e] for s, e in attention.spans] == attention.tokens
    np.testing.assert_allclose(attention.weights, reference.scores("attention"))
    assert attention.weights.sum() == pytest.approx(1.0, abs=1e-4)
    top_token, top_weight = attention.top(1)[0]
    assert (
        top_weight == attention.weights.max()
        and top_token == attention.tokens[int(attention.weights.argmax())]
    )
    assert len(clf.explain([text, text])) == 2


def test_evaluate_in_memory_equals_the_file_report(
    trained: tuple[attnkit.Classifier, Any], tmp_path: Path
) -> None:
    clf, test = trained
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in test), encoding="utf-8")
    from_file = evaluate_run(clf.run_dir, str(path))
    in_memory = clf.evaluate([r["text"] for r in test], [r["label"] for r in test])
    assert in_memory["accuracy"] == pytest.approx(from_file["accuracy"])
    assert in_memory["confusion_matrix"] == from_file["confusion_matrix"]
    assert clf.evaluate(str(path))["accuracy"] == pytest.approx(from_file["accuracy"])
    hand = np.mean(
        [p == r["label"] for p, r in zip(clf.predict([r["text"] for r in test]), test, strict=True)]
    )
    assert in_memory["accuracy"] == pytest.approx(hand)
    with pytest.raises(ValueError, match="not among the model's labels"):
        clf.evaluate(["a film"], ["maybe"])


def test_fit_from_a_table_and_integer_labels(tmp_path: Path, make_rows: Rows, quick_writes: None) -> None:
    rows = [{"review": r["text"], "stars": 1 if r["label"] == "pos" else 0} for r in make_rows(300, 3)]
    clf = attnkit.fit(Table(rows), text="review", label="stars", out=tmp_path / "run", model="bag-attn",
                      epochs=2, overrides=FAST)  # fmt: skip
    assert clf.labels == ["0", "1"]
    assert clf.predict(["great wonderful excellent film"]) == ["1"]
    # Integer labels evaluate against the run's string labels, as they would from a file.
    report = clf.evaluate(Table(rows[:50]), text="review", label="stars")
    assert report["n"] == 50
    # 1, 1.0 and "1.0" name the same class, as they do in files (a CSV written from a float column says "1.0").
    texts = [r["review"] for r in rows[:50]]
    for spelling in (float, lambda v: f"{v}.0", np.int64):
        again = clf.evaluate(texts, [spelling(r["stars"]) for r in rows[:50]])
        assert (
            again["accuracy"] == report["accuracy"]
            and again["confusion_matrix"] == report["confusion_matrix"]
        )


def test_fit_from_a_file_and_load(tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None) -> None:
    train, test = tiny_data
    clf = attnkit.fit(
        str(train), out=tmp_path / "run", test=str(test), model="bag-attn", epochs=2, overrides=FAST
    )
    assert not (clf.run_dir / "data").exists()  # a file is read where it is, not copied
    loaded = attnkit.load(clf.run_dir, device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(["a great film"]), clf.predict_proba(["a great film"]))
    assert "bag-attn" in repr(loaded)


def test_user_mistakes_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        attnkit.fit(["a", "b"], ["x"], out=tmp_path / "r")
    with pytest.raises(ValueError, match="give the labels"):
        attnkit.fit(["a", "b"], out=tmp_path / "r")
    with pytest.raises(ValueError, match="no column 'text'"):
        attnkit.fit(Table([{"review": "a", "label": "x"}]), out=tmp_path / "r")
    # A dict of columns is a table (it was read as the list of its two keys, "give the labels").
    with pytest.raises(
        ValueError, match=r"no column 'text' in the table; its columns are \['review', 'label'\]"
    ):
        attnkit.fit({"review": ["a"], "label": ["x"]}, out=tmp_path / "r")
    with pytest.raises(ValueError, match="text 1 is int"):
        attnkit.fit(["a", 3], ["x", "y"], out=tmp_path / "r")
    with pytest.raises(ValueError, match="neither a file nor a shipped config"):
        attnkit.fit(["a"], ["x"], out=tmp_path / "r", config="no-such-config")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        attnkit.fit(["a"], ["x"], out=tmp_path / "file")


def test_a_dict_of_columns_trains_like_a_table(tmp_path: Path, make_rows: Rows, quick_writes: None) -> None:
    rows = make_rows(200, 5)
    columns = {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
    clf = attnkit.fit(columns, out=tmp_path / "run", model="bag-attn", epochs=1, overrides=FAST)
    assert clf.labels == sorted(set(columns["label"]))
    with pytest.raises(Exception, match=r"overwrite=True in Python"):
        attnkit.fit(columns, out=tmp_path / "run", model="bag-attn", epochs=1, overrides=FAST)


def test_build_config_layers_in_order() -> None:
    config = attnkit.build_config(config="imdb-nb-attn", epochs=7, overrides={"optim.lr": 0.5})
    assert config.model.name == "nb-attn" and config.train.epochs == 7 and config.optim.lr == 0.5
    assert attnkit.build_config(overrides=["optim.lr=0.25"]).optim.lr == 0.25
    assert "imdb-nb-attn" in attnkit.shipped_configs()


def test_all_names_every_lazy_export() -> None:
    assert set(attnkit.__all__) - {"__version__"} == set(attnkit._EXPORTS)
