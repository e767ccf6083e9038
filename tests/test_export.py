"""ONNX export: ONNX Runtime gives PyTorch's logits and token attention within 1e-4 at any batch and length;
int8 quantization; the CLI; serving with the ONNX backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from fastapi.testclient import TestClient
from torch import Tensor

from attnkit.cli import main
from attnkit.export import (
    NOT_EXPORTABLE,
    UnpackedBiLSTM,
    export_classifier,
    export_onnx,
    onnx_session,
    run_onnx,
)
from attnkit.models import TextClassifier
from attnkit.models.base import AttentionModel
from attnkit.models.ensemble import EnsembleClassifier
from attnkit.predictor import Predictor
from attnkit.serve import OnnxBackend, TorchBackend, create_app, load_backend

TOLERANCE = 1e-4
#: Exporting takes 5-40 s per graph (more for a larger one), so the default suite traces one graph for the text
#: models: an ensemble of them ("ensemble" below: each member's own export module inside one graph, their outputs
#: averaged), checked like a single model. Each of them alone, cnn-attn and transformer run with -m slow.
ENSEMBLE_MEMBERS = ("bag-attn", "nb-attn", "nb-attn+chars", "bilstm-attn")
#: A 2-layer BiLSTM, so that the trace covers UnpackedBiLSTM stacking its layers.
OPTIONS: dict[str, dict[str, int]] = {"bilstm-attn": {"num_layers": 2}}
EXPORTABLE = [
    # These four alone: slow, since the default "ensemble" case checks each of them (as a member) already.
    pytest.param("bag-attn", marks=pytest.mark.slow),
    pytest.param("bilstm-attn", marks=pytest.mark.slow),  # traced through UnpackedBiLSTM
    pytest.param("nb-attn", marks=pytest.mark.slow),
    pytest.param("nb-attn+chars", marks=pytest.mark.slow),
    pytest.param("cnn-attn", marks=pytest.mark.slow),
    pytest.param("transformer", marks=pytest.mark.slow),
    "ensemble",
]


def assert_same_outputs(
    model: AttentionModel, session: object, ids: Tensor, mask: Tensor, tolerance: float = TOLERANCE
) -> None:
    with torch.no_grad():
        ref = model(ids, mask)
    logits, attention = run_onnx(session, ids, mask)
    assert logits.shape == tuple(ref.logits.shape) and attention.shape == tuple(ref.token_attention.shape)
    np.testing.assert_allclose(logits, ref.logits.numpy(), atol=tolerance, rtol=0)
    np.testing.assert_allclose(attention, ref.token_attention.numpy(), atol=tolerance, rtol=0)


@pytest.mark.parametrize("name", EXPORTABLE)
def test_onnx_equals_pytorch_at_other_shapes(
    name: str,
    tmp_path: Path,
    tiny_model: Callable[..., TextClassifier],
    make_batch: Callable[..., tuple[Tensor, Tensor]],
) -> None:
    """``ensemble``: ENSEMBLE_MEMBERS in one graph, checked within TOLERANCE / M, so that one member's error of
    TOLERANCE, divided by M in the mean, still fails."""
    tolerance = TOLERANCE
    if name == "ensemble":
        members = [
            tiny_model(member, seed=i, **OPTIONS.get(member, {})).eval()
            for i, member in enumerate(ENSEMBLE_MEMBERS)
        ]
        model: AttentionModel = EnsembleClassifier(members).eval()
        tolerance = TOLERANCE / len(members)
    else:
        model = tiny_model(name, **OPTIONS.get(name, {})).eval()
    path = export_classifier(model, tmp_path / f"{name}.onnx", make_batch([5, 3], 6, seed=1))
    session = onnx_session(path, threads=1)
    graph = onnx.load(str(path)).graph
    for value in graph.input:
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", "tokens"], dims  # dynamic axes
    # Two shapes other than the traced one, with padding, and a single one-token text.
    assert_same_outputs(model, session, *make_batch([9, 2, 13, 1, 7], 13, seed=2), tolerance=tolerance)
    assert_same_outputs(model, session, *make_batch([40, 17, 33], 40, seed=3), tolerance=tolerance)
    assert_same_outputs(model, session, *make_batch([1], 1, seed=4), tolerance=tolerance)


def test_an_ensemble_with_han_is_refused(
    tmp_path: Path,
    tiny_model: Callable[..., TextClassifier],
    make_batch: Callable[..., tuple[Tensor, Tensor]],
) -> None:
    with pytest.raises(ValueError, match="cannot export han"):
        export_classifier(
            EnsembleClassifier([tiny_model("bag-attn"), tiny_model("han")]),
            tmp_path / "han.onnx",
            make_batch([3], 3),
        )


def test_han_is_refused_with_the_reason(tmp_path: Path, tiny_model: Callable[..., TextClassifier]) -> None:
    ids, mask = torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="cannot export han") as err:
        export_classifier(tiny_model("han"), tmp_path / "han.onnx", (ids, mask))
    assert "--backend torch" in str(err.value) and "han" in NOT_EXPORTABLE


def test_unpacked_bilstm_equals_the_packed_model(
    tiny_model: Callable[..., TextClassifier], make_batch: Callable[..., tuple[Tensor, Tensor]]
) -> None:
    model = tiny_model("bilstm-attn", num_layers=2).eval()
    ids, mask = make_batch([7, 1, 4, 7], 7)
    unpacked = UnpackedBiLSTM(model.lstm)  # type: ignore[arg-type]
    with torch.no_grad():
        emb = model.embed(ids)
        want, _ = model.forward_features(emb, mask)
        got = unpacked(emb, mask.sum(dim=1))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert bool((got[~mask] == 0).all())


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained bag-attn run exported by the CLI with --int8."""
    root = tmp_path_factory.mktemp("export")
    rows = [
        {
            "text": f"{'the film was' if i % 3 else 'a plot'} {cue} and {'very ' * (i % 4)}long .",
            "label": label,
        }
        for i in range(300)
        for cue, label in [
            (["great", "superb", "loved"][i % 3], "pos"),
            (["awful", "boring", "hated"][i % 3], "neg"),
        ]
    ]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = root / "run"
    code = main(
        [
            "train", "--data", str(root / "train.jsonl"), "--model", "bag-attn", "--out", str(run), "--epochs", "2",
            "--no-progress", "--set", "model.options={bigram_buckets: 97}", "--set", "train.threads=1",
        ]
    )  # fmt: skip
    assert code == 0
    return run


def test_cli_export_with_int8(exported_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = exported_run
    capsys.readouterr()
    assert main(["export", str(run), "--format", "onnx", "--int8"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["path"] == str(run / "model.onnx") and report["model"] == "bag-attn"
    assert max(report["max_abs_diff"].values()) < TOLERANCE
    assert Path(report["int8_path"]).is_file()
    meta = {p.key: p.value for p in onnx.load(str(run / "model.onnx")).metadata_props}
    predictor = Predictor(run)
    assert json.loads(meta["attnkit_labels"]) == predictor.labels and meta["attnkit_model"] == "bag-attn"

    # int8: weights stored as int8, predictions close to fp32 and mostly the same labels.
    int8 = onnx.load(report["int8_path"])
    assert any(init.data_type == onnx.TensorProto.INT8 for init in int8.graph.initializer)
    texts = ["a great film", "boring and awful", "the film was superb and very long .", "hated it"]
    fp32 = OnnxBackend(predictor, run / "model.onnx").predict_proba(texts)
    quantized = OnnxBackend(predictor, report["int8_path"]).predict_proba(texts)
    assert np.abs(fp32 - quantized).max() < 0.1
    assert (fp32.argmax(1) == quantized.argmax(1)).mean() >= 0.75


def test_serve_with_the_onnx_backend(exported_run: Path) -> None:
    run = exported_run
    if not (run / "model.onnx").is_file():
        export_onnx(run)
    torch_app = create_app(TorchBackend(Predictor(run)))
    onnx_app = create_app(load_backend(run, "onnx", threads=1))
    texts = ["a great film", "the film was boring and awful and very very long .", "loved"]
    with TestClient(torch_app) as torch_client, TestClient(onnx_app) as onnx_client:
        assert onnx_client.get("/model").json()["backend"] == "onnx"
        want = torch_client.post("/predict", json={"texts": texts}).json()["predictions"]
        got = onnx_client.post("/predict", json={"texts": texts}).json()["predictions"]
        for a, b in zip(got, want, strict=True):
            assert a["label"] == b["label"]
            for label in a["probabilities"]:
                assert a["probabilities"][label] == pytest.approx(b["probabilities"][label], abs=TOLERANCE)
        # Explanations come from the PyTorch model either way.
        explained = onnx_client.post("/explain", json={"text": "a great film", "method": "ig"})
        assert explained.status_code == 200 and explained.json()["methods"] == ["ig"]


def test_export_of_a_missing_run_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an attnkit run directory" in err
