"""`explain` on trained runs: the JSON format, offsets into the original text, targets, truncation, layers."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.explain import METHODS, explain
from attnkit.predictor import Predictor

TrainedRuns = Callable[..., Path]


def check_format(item: dict, text: str) -> None:
    """Every field of docs/explanation-format.md, and each token's span maps back into the original text."""
    assert set(item) == {
        "text",
        "label",
        "target",
        "probabilities",
        "methods",
        "signed",
        "tokens",
        "truncated",
        "unread",
        "layers",
        "scale",
    }
    assert list(item["scale"]) == item["methods"]
    assert item["text"] == text
    assert item["label"] in item["probabilities"]
    assert sum(item["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert set(item["signed"]) == set(item["methods"])
    previous_end = 0
    for token in item["tokens"]:
        assert 0 <= previous_end <= token["start"] < token["end"] <= len(text)
        assert text[token["start"] : token["end"]] == token["text"]
        assert list(token["scores"]) == item["methods"]
        previous_end = token["end"]


def test_all_methods_json_and_attention_sums_to_one(trained_run: TrainedRuns) -> None:
    predictor = Predictor(trained_run("bag-attn"))
    texts = ["the film was great and the story was very good.", "awful plot, quite boring."]
    explanations = explain(predictor, texts, ["all"])
    for text, explanation in zip(texts, explanations, strict=True):
        item = json.loads(json.dumps(explanation.to_json_dict()))
        check_format(item, text)
        assert item["methods"] == list(METHODS)
        assert item["signed"] == {
            "attention": False, "attention-value": True, "gradient": False, "grad-input": True, "ig": True, "loo": True
        }  # fmt: skip
        assert sum(t["scores"]["attention"] for t in item["tokens"]) == pytest.approx(1.0, abs=1e-4)
        assert all(t["scores"]["gradient"] >= 0 for t in item["tokens"])
    # The trained model decides on the cue word, and its attention and leave-one-out both put it first.
    assert explanations[0].prediction.label == "pos"
    assert explanations[0].top_tokens("attention", 1)[0][0] == "great"
    assert explanations[0].top_tokens("loo", 1)[0][0] == "great"
    assert explanations[1].prediction.label == "neg"


def test_offsets_point_into_html_stripped_text(trained_run: TrainedRuns) -> None:
    predictor = Predictor(trained_run("bag-attn"))
    text = "A <br />GREAT film.<br /><br />Really   wonderful!"
    (explanation,) = explain(predictor, [text], ["attention", "loo"])
    item = explanation.to_json_dict()
    check_format(item, text)
    assert [t["text"] for t in item["tokens"]] == ["A", "GREAT", "film", ".", "Really", "wonderful", "!"]
    assert "<br" not in "".join(t["text"] for t in item["tokens"])


@pytest.fixture(scope="module")
def chinese_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A character-level run on a tiny Chinese review task (cue characters decide the label)."""
    root = tmp_path_factory.mktemp("zh")
    rng = random.Random(0)
    filler = list("这部电影的剧情演员音乐画面故事还有一点")
    rows = []
    for i in range(300):
        label = "pos" if i % 2 else "neg"
        chars = [rng.choice(filler) for _ in range(rng.randint(5, 15))]
        chars.insert(rng.randint(0, len(chars)), rng.choice("好棒赞" if label == "pos" else "差烂糟"))
        rows.append({"text": "".join(chars) + "。", "label": label})
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = root / "run"
    code = main(["train", "--data", str(path), "--model", "bag-attn", "--out", str(out), "--epochs", "4",
                 "--no-progress", "--set", "optim.lr=0.01", "--set", "train.threads=1",
                 "--set", "tokenizer.level=char"])  # fmt: skip
    assert code == 0
    return out


def test_offsets_of_cjk_characters(chinese_run: Path) -> None:
    predictor = Predictor(chinese_run)
    assert predictor.tokenizer.level == "char"
    text = "这部电影非常好,音乐也棒!"
    (explanation,) = explain(predictor, [text], ["attention", "gradient"])
    item = explanation.to_json_dict()
    check_format(item, text)
    assert [t["text"] for t in item["tokens"]] == list(text)
    assert explanation.prediction.label == "pos"


def test_explaining_the_other_label_negates_signed_scores(trained_run: TrainedRuns) -> None:
    predictor = Predictor(trained_run("bag-attn"))
    text = ["some film with a great actor."]
    (own,) = explain(predictor, text, ["grad-input", "loo"])
    (other,) = explain(predictor, text, ["grad-input", "loo"], target="neg")
    assert own.target == "pos" and other.target == "neg"
    for method in ("grad-input", "loo"):
        assert other.scores(method) == pytest.approx([-s for s in own.scores(method)], rel=1e-3, abs=1e-5)
    with pytest.raises(ValueError, match="unknown target label 'maybe'"):
        explain(predictor, text, ["loo"], target="maybe")


def test_truncated_texts_are_flagged(trained_run: TrainedRuns) -> None:
    predictor = Predictor(trained_run("bag-attn", "--set", "tokenizer.max_length=8"))
    short, long = "a great film.", "the film was great and the story was very good and the actor too."
    explanations = explain(predictor, [short, long, "one two three four five six seven eight"], ["attention"])
    assert [e.truncated for e in explanations] == [False, True, False]
    assert len(explanations[1].tokens) == 8
    # The unread tail, by hand: everything after the eighth word (the second "was"), in characters.
    tail_start = long.index(" very good")
    assert [e.unread for e in explanations] == [[], [(tail_start, len(long))], []]
    assert explanations[1].to_json_dict()["unread"] == [[tail_start, len(long)]]


def test_transformer_layers_and_rollout(trained_run: TrainedRuns) -> None:
    predictor = Predictor(trained_run("transformer"))
    text = "it was a wonderful movie."
    (explanation,) = explain(predictor, [text], ["attention"], layers=True)
    item = explanation.to_json_dict()
    check_format(item, text)
    assert item["methods"] == ["attention", "rollout"]
    assert sum(t["scores"]["rollout"] for t in item["tokens"]) == pytest.approx(1.0, abs=1e-4)
    maps = item["layers"]["attention"]
    config = predictor.model.config
    n = len(item["tokens"])
    assert len(maps) == config.num_layers and all(len(layer) == config.num_heads for layer in maps)
    for layer in maps:
        for head in layer:
            assert len(head) == n and all(
                len(row) == n and sum(row) == pytest.approx(1.0, abs=1e-3) for row in head
            )


def test_layers_need_self_attention(trained_run: TrainedRuns) -> None:
    with pytest.raises(ValueError, match="self-attention"):
        explain(Predictor(trained_run("bag-attn")), ["a film"], ["attention"], layers=True)


def test_cli_explain_json_and_errors(
    trained_run: TrainedRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained_run("bag-attn")
    capsys.readouterr()  # the training summary, when this test trained the run
    assert main(["explain", str(run), "a great film", "--method", "attention,loo", "--format", "json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    check_format(item, "a great film")
    assert item["methods"] == ["attention", "loo"]
    out = tmp_path / "e.json"
    assert main(["explain", str(run), "awful", "--method", "all", "--format", "json", "--out", str(out)]) == 0
    assert json.loads(out.read_text())[0]["methods"] == list(METHODS)
    assert main(["explain", str(run), "a film", "--method", "shap", "--format", "json"]) == 2
    assert "unknown explanation method 'shap'" in capsys.readouterr().err


def test_cli_explain_renders_terminal_html_and_png(
    trained_run: TrainedRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag, transformer = trained_run("bag-attn"), trained_run("transformer")
    capsys.readouterr()
    assert main(["explain", str(bag), "a really great film", "--method", "attention,ig"]) == 0
    out = capsys.readouterr().out
    assert "pos" in out and "attention" in out and "ig" in out and "great" in out

    page = tmp_path / "page.html"
    assert (
        main(
            [
                "explain",
                str(transformer),
                "a great film",
                "--method",
                "all",
                "--format",
                "html",
                "--out",
                str(page),
            ]
        )
        == 0
    )
    html = page.read_text(encoding="utf-8")
    embedded = html.split('<script type="application/json" id="attnkit-data">', 1)[1].split("</script>", 1)[0]
    (item,) = json.loads(embedded)
    assert item["methods"] == [
        "attention",
        "rollout",
        "attention-value",
        "gradient",
        "grad-input",
        "ig",
        "loo",
    ]
    assert len(item["layers"]["attention"]) == Predictor(transformer).model.config.num_layers
    assert "http://" not in html and "https://" not in html

    head = tmp_path / "head.html"
    assert (
        main(["explain", str(transformer), "a great film", "--format", "head-view", "--out", str(head)]) == 0
    )
    assert "renderHeadView" in head.read_text(encoding="utf-8")
    assert main(["explain", str(bag), "a great film", "--format", "model-view", "--out", str(head)]) == 2
    assert "needs a model with self-attention layers" in capsys.readouterr().err

    png = tmp_path / "e.png"
    assert main(["explain", str(bag), "great film", "awful film", "--format", "png", "--out", str(png)]) == 0
    assert (tmp_path / "e-0.png").stat().st_size > 5_000 and (tmp_path / "e-1.png").stat().st_size > 5_000
