"""Faithfulness metrics against naive recomputation, the uniform-attention check, and the planted-cue task."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from attnkit.cli import main
from attnkit.explain.faithfulness import FRACTIONS, faithfulness_report, top_k_mask, uniform_pooling
from attnkit.explain.methods import compute_scores
from attnkit.explain.synthetic import (
    auprc,
    make_cue_task,
    plausibility,
    read_cue_task,
    token_f1,
    token_rationale,
)
from attnkit.models import TextClassifier
from attnkit.predictor import Predictor

TrainedRuns = Callable[..., Path]
ModelFactory = Callable[..., TextClassifier]
BatchFactory = Callable[..., tuple[Tensor, Tensor]]


def test_top_k_mask_by_hand() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9, 0.0], [3.0, 1.0, 2.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    # 5 tokens: 20% -> 1 token; ties go to the earlier position. 3 tokens: 50% -> round(1.5) = 2 tokens.
    assert top_k_mask(scores, mask, 0.2).tolist() == [
        [False, True, False, False, False],
        [True, False, False, False, False],
    ]
    # 50%: 2.5 and 1.5 tokens round (half up) to 3 and 2; ties among the top go to the earlier position.
    assert top_k_mask(scores, mask, 0.5).tolist() == [
        [False, True, True, True, False],
        [True, False, True, False, False],
    ]
    # 1% of 50, 150 and 250 tokens: 0.5, 1.5, 2.5 -> 1, 2, 3 (no half-to-even surprises)
    long_mask = torch.arange(250)[None, :] < torch.tensor([[50], [150], [250]])
    assert top_k_mask(torch.rand(3, 250), long_mask, 0.01).sum(dim=1).tolist() == [1, 2, 3]
    assert top_k_mask(scores, mask, 0.0).sum(dim=1).tolist() == [1, 1]  # at least one token
    assert not top_k_mask(scores, mask, 1.0)[1, 3:].any()  # never padding


@pytest.mark.parametrize("name", ["bag-attn", "bilstm-attn", "transformer", "han"])
def test_uniform_pooling_gives_uniform_weights_and_restores(
    name: str, tiny_model: ModelFactory, make_batch: BatchFactory
) -> None:
    model = tiny_model(name).eval()
    ids, mask = make_batch([6, 3, 9], 9, seed=1)
    before = model(ids, mask)
    with uniform_pooling(model) as patched, torch.no_grad():
        assert patched == (2 if name == "han" else 1)
        uniform = model(ids, mask)
    if name != "han":  # HAN's token attention is word x sentence weights: uniform within each level only
        expected = mask.float() / mask.sum(dim=1, keepdim=True)
        torch.testing.assert_close(uniform.token_attention, expected)
    assert not torch.allclose(uniform.logits, before.logits)
    torch.testing.assert_close(model(ids, mask).logits, before.logits)  # restored


def naive_comprehensiveness(predictor: Predictor, text: str, scores: list[float], fraction: float) -> float:
    """Delete the top round(fraction * n) tokens (>= 1) from the id list by hand and re-run the model."""
    _, ids, mask = predictor.encode([text])
    tokens = ids[0].tolist()
    k = max(1, (len(tokens) * round(fraction * 10_000) + 5_000) // 10_000)
    top = sorted(range(len(tokens)), key=lambda i: (-scores[i], i))[:k]
    rest = [t for i, t in enumerate(tokens) if i not in top] or [predictor.tokenizer.unk_id]
    with torch.no_grad():
        p = torch.softmax(predictor.model(ids, mask).logits, -1)[0]
        label = int(p.argmax())
        q = torch.softmax(
            predictor.model(torch.tensor([rest]), torch.ones(1, len(rest), dtype=torch.bool)).logits, -1
        )
    return float(p[label] - q[0, label])


def test_report_matches_naive_recomputation_and_is_deterministic(trained_run: TrainedRuns) -> None:
    predictor = Predictor(trained_run("bag-attn"))
    texts = [
        "the film was great and the story was very good.",
        "awful plot, quite boring and the actor was bad.",
        "some scene, a movie, it was really superb.",
    ]
    report = faithfulness_report(
        predictor, texts, labels=["pos", "neg", "pos"], methods=["attention", "loo"], n=3, batch_size=2
    )
    assert [m.method for m in report.methods] == ["attention", "loo", "random"]
    assert report.n == 3
    for method in ("attention", "loo"):
        per_text = []
        for text in texts:
            _, ids, mask = predictor.encode([text])
            target = predictor.model(ids, mask).logits.argmax(dim=-1)
            scores = compute_scores(method, predictor.model, ids, mask, target, pad_id=0, unk_id=1)[
                0
            ].tolist()
            per_text.append([naive_comprehensiveness(predictor, text, scores, f) for f in FRACTIONS])
        expected = [sum(col) / len(col) for col in zip(*per_text, strict=True)]
        got = report.method(method).comprehensiveness
        assert list(got.values()) == pytest.approx(expected, abs=1e-5)
        assert report.method(method).comprehensiveness_aopc == pytest.approx(
            sum(expected) / len(expected), abs=1e-5
        )
    assert report.method("loo").kendall_tau_loo is None  # no self-comparison
    assert [(c.method, c.other) for c in report.comparisons] == [("attention", "random")]
    same = faithfulness_report(
        predictor, texts, labels=["pos", "neg", "pos"], methods=["attention", "loo"], n=3, batch_size=2
    )
    for a, b in zip(same.methods, report.methods, strict=True):
        assert (a.comprehensiveness, a.sufficiency, a.kendall_tau_loo) == (
            b.comprehensiveness,
            b.sufficiency,
            b.kendall_tau_loo,
        )
    rebatched = faithfulness_report(
        predictor, texts, labels=["pos", "neg", "pos"], methods=["attention", "loo"], n=3, batch_size=3
    )
    for a, b in zip(rebatched.methods, report.methods, strict=True):
        assert a.comprehensiveness_aopc == pytest.approx(b.comprehensiveness_aopc, abs=1e-5)
        assert a.sufficiency_aopc == pytest.approx(b.sufficiency_aopc, abs=1e-5)


def test_cue_task_generator() -> None:
    examples = make_cue_task(200, seed=3, num_classes=3)
    assert [e.label for e in examples[:6]] == ["class0", "class1", "class2"] * 2
    assert make_cue_task(200, seed=3, num_classes=3) == examples  # deterministic
    words_of: dict[str, set[str]] = {}
    for example in examples:
        assert 1 <= len(example.cues) <= 3
        planted = {example.text[s:e] for s, e in example.cues}
        words_of.setdefault(example.label, set()).update(planted)
        for s, e in example.cues:  # whole words
            assert (s == 0 or example.text[s - 1] == " ") and (
                e == len(example.text) or example.text[e] == " "
            )
    # each class has its own cue words
    labels = sorted(words_of)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not words_of[a] & words_of[b]


def test_token_f1_and_auprc_by_hand() -> None:
    gold = [False, True, False, True]
    assert token_f1([0.1, 0.9, 0.2, 0.8], gold) == 1.0
    assert token_f1([0.9, 0.8, 0.2, 0.1], gold) == 0.5
    assert auprc([0.1, 0.9, 0.2, 0.8], gold) == pytest.approx(1.0)
    # the gold tokens are ranked 2nd and 4th: precisions 1/2 and 2/4
    assert auprc([0.9, 0.8, 0.2, 0.1], gold) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert math.isnan(token_f1([0.1], [False]))
    assert token_rationale([(0, 3), (4, 9), (10, 12)], [(4, 9)]) == [False, True, False]


def test_plausibility_on_a_trained_cue_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["data", "synthetic", str(tmp_path / "cues"), "--train", "600", "--test", "60", "--seed", "1"])
        == 0
    )
    paths = json.loads(capsys.readouterr().out)
    run = tmp_path / "run"
    code = main(["train", "--data", paths["train"], "--model", "bag-attn", "--out", str(run), "--epochs", "4",
                 "--no-progress", "--set", "optim.lr=0.01", "--set", "train.threads=1"])  # fmt: skip
    assert code == 0
    predictor = Predictor(run)
    examples = read_cue_task(paths["test"])
    assert examples is not None and len(examples) == 60
    rows = {r["method"]: r for r in plausibility(predictor, examples, ["attention", "loo"], n=60)}
    assert set(rows) == {"attention", "loo", "random"}
    assert rows["attention"]["auprc"] > rows["random"]["auprc"] + 0.3
    assert rows["loo"]["token_f1"] > rows["random"]["token_f1"] + 0.3

    capsys.readouterr()
    argv = ["faithfulness", str(run), "--data", paths["test"], "--n", "20", "--method", "attention,loo", "--json",
            "--no-progress", "--plot", str(tmp_path / "aopc.png")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    by_method = {m["method"]: m for m in report["methods"]}
    assert by_method["attention"]["comprehensiveness_aopc"] > by_method["random"]["comprehensiveness_aopc"]
    assert by_method["loo"]["comprehensiveness_aopc"] > by_method["random"]["comprehensiveness_aopc"]
    assert {r["method"] for r in report["plausibility"]} == {"attention", "loo", "random"}
    assert report["uniform_attention"]["pooling_layers"] == 1
    assert report["findings"]
    assert (tmp_path / "aopc.png").stat().st_size > 10_000


def test_cue_task_rejects_impossible_vocabularies() -> None:
    with pytest.raises(ValueError, match="only 256 exist"):
        make_cue_task(10, distractors=300)


def test_han_all_methods_leave_out_what_it_does_not_support(trained_run: TrainedRuns) -> None:
    from attnkit.explain import explain

    predictor = Predictor(trained_run("han"))
    texts = ["the film was great. the story was very good.", "awful plot. quite boring!"]
    (explanation, _) = explain(predictor, texts, ["all"])
    assert explanation.methods == ["attention", "gradient", "grad-input", "ig", "loo"]
    with pytest.raises(ValueError, match="HAN pools sentence vectors"):
        explain(predictor, texts, ["attention-value"])
    report = faithfulness_report(predictor, texts, n=2, ig_steps=8)
    assert [m.method for m in report.methods] == [
        "attention",
        "gradient",
        "grad-input",
        "ig",
        "loo",
        "random",
    ]
    assert report.uniform_attention is not None and report.uniform_attention.pooling_layers == 2


def test_methods_refuse_a_model_in_training_mode(tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    ids, mask = make_batch([4], 4)
    with pytest.raises(ValueError, match="eval mode"):
        compute_scores(
            "attention",
            tiny_model("bag-attn").train(),
            ids,
            mask,
            torch.zeros(1, dtype=torch.long),
            pad_id=0,
            unk_id=1,
        )


def test_uniform_pooling_restores_after_an_error(tiny_model: ModelFactory, make_batch: BatchFactory) -> None:
    from attnkit.layers.attention import Attention

    model = tiny_model("bilstm-attn", pooling_scorer="multihead", pooling_heads=2).eval()
    ids, mask = make_batch([5, 2], 5)
    before = model(ids, mask).logits
    with pytest.raises(RuntimeError, match="boom"), uniform_pooling(model) as patched:
        assert patched == 1
        torch.testing.assert_close(model(ids, mask).token_attention, mask.float() / mask.sum(1, keepdim=True))
        raise RuntimeError("boom")
    assert all("forward" not in vars(m.scorer) for m in model.modules() if isinstance(m, Attention))
    torch.testing.assert_close(model(ids, mask).logits, before)


def test_paired_bootstrap_by_hand() -> None:
    from attnkit.explain.faithfulness import Comparison, paired_bootstrap

    assert paired_bootstrap([0.5, 0.2, 0.9], [0.5, 0.2, 0.9], seed=0) == (0.0, 0.0, 0.0)
    assert paired_bootstrap([1.5, 1.2, 1.9], [0.5, 0.2, 0.9], seed=0) == pytest.approx((1.0, 1.0, 1.0))
    mean, low, high = paired_bootstrap([1.0, -1.0] * 50, [0.0] * 100, seed=0)
    assert mean == 0.0 and low < 0 < high
    assert Comparison("attention", "ig", mean, low, high).verdict == "not distinguishable from"
    assert Comparison("attention", "random", 0.2, 0.1, 0.3).verdict == "more faithful than"
