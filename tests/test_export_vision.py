"""ONNX export of image runs: every image model's graph (``pixels`` -> ``logits``, ``unit_attention``, dynamic
batch, fixed channels and size) equals PyTorch within 1e-4; a trained run exports from the CLI with its check
and int8; the ONNX backend serves it with PyTorch's numbers."""

from __future__ import annotations

import base64
import json
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from attnkit.cli import main
from attnkit.data.vision import normalize
from attnkit.export import (
    NOT_EXPORTABLE,
    SIGNATURES,
    check_onnx,
    export_classifier,
    onnx_session,
    random_images,
    run_onnx,
)
from attnkit.models.base import AttentionModel
from attnkit.models.ensemble import EnsembleClassifier
from attnkit.models.registry import REGISTRY, build_model
from attnkit.predictor import Predictor
from attnkit.runs import RunError
from attnkit.serve import OnnxBackend, TorchBackend, create_app, load_backend

TOLERANCE = 1e-4
#: Tiny configs (3 classes, 28x28 RGB, 4-pixel units: a 7x7 grid).
TINY: dict[str, dict[str, Any]] = {
    "vit": {"embed_dim": 16, "num_heads": 2, "ff_dim": 32, "num_layers": 2},
    "cnn-attn": {"widths": (4, 8), "strides": (2, 2)},
    "cbam-attn": {"widths": (4, 8), "strides": (2, 2), "reduction": 2, "spatial_kernel": 3},
    "hybrid-vit": {
        "stem_widths": (4, 8),
        "stem_strides": (2, 2),
        "embed_dim": 16,
        "num_heads": 2,
        "ff_dim": 32,
        "num_layers": 2,
    },
}
#: Exporting takes 5-15 s per model here, so every image model runs with -m slow; by default the trained run
#: below exports cnn-attn (and checks it at three batch shapes).
MODELS = [
    pytest.param("cnn-attn", marks=pytest.mark.slow),
    pytest.param("vit", marks=pytest.mark.slow),
    pytest.param("cbam-attn", marks=pytest.mark.slow),
    pytest.param("hybrid-vit", marks=pytest.mark.slow),
]
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def tiny(name: str, seed: int = 0) -> AttentionModel:
    torch.manual_seed(seed)
    return build_model(name, modality="image", num_classes=3, channels=3, **TINY[name]).eval()


def pixels(count: int, seed: int) -> torch.Tensor:
    """``(count, 3, 28, 28)``: random uint8 images normalized with MEAN and STD."""
    return normalize(np.stack(random_images(count, 28, 28, 3, seed=seed)), MEAN, STD)


def assert_same_outputs(model: AttentionModel, session: Any, inputs: torch.Tensor) -> None:
    with torch.no_grad():
        ref = model(inputs)
    logits, attention = run_onnx(session, inputs)
    assert logits.shape == tuple(ref.logits.shape) and attention.shape == tuple(ref.unit_attention.shape)
    np.testing.assert_allclose(logits, ref.logits.numpy(), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(attention, ref.unit_attention.numpy(), atol=TOLERANCE, rtol=0)


def test_every_image_model_is_covered() -> None:
    covered = {p.values[0] for p in MODELS}
    assert covered == set(REGISTRY["image"]) == set(TINY)
    assert not set(REGISTRY["image"]) & set(NOT_EXPORTABLE)  # every image model exports


@pytest.mark.parametrize("name", MODELS)
def test_image_graph_equals_pytorch_at_other_batch_sizes(name: str, tmp_path: Path) -> None:
    model = tiny(name)
    path = export_classifier(model, tmp_path / f"{name}.onnx", pixels(2, seed=0))
    graph = onnx.load(str(path)).graph
    assert [value.name for value in graph.input] == ["pixels"]
    assert [value.name for value in graph.output] == list(SIGNATURES["image"].outputs)
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 28, 28], dims  # dynamic batch; fixed channels and size
    session = onnx_session(path, threads=1)
    assert_same_outputs(model, session, pixels(5, seed=1))
    assert_same_outputs(model, session, pixels(1, seed=2))
    with torch.no_grad():  # the attention is a distribution over the 49 units
        _, attention = run_onnx(session, pixels(3, seed=3))
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-5)
    assert attention.shape == (3, 49)


def test_a_test_time_flip_model_exports_both_passes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(
        "cnn-attn", modality="image", num_classes=3, channels=3, test_time_flip=True, **TINY["cnn-attn"]
    )
    model.eval()
    session = onnx_session(export_classifier(model, tmp_path / "flip.onnx", pixels(2, seed=0)), threads=1)
    assert_same_outputs(model, session, pixels(4, seed=5))
    plain = build_model("cnn-attn", modality="image", num_classes=3, channels=3, **TINY["cnn-attn"]).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        one_pass = plain(pixels(4, seed=5)).logits.numpy()
    assert np.abs(run_onnx(session, pixels(4, seed=5))[0] - one_pass).max() > 1e-3  # the mirror pass is in it


@pytest.mark.slow
def test_image_ensemble_graph_equals_pytorch(tmp_path: Path) -> None:
    model = EnsembleClassifier([tiny("cnn-attn", seed=1), tiny("vit", seed=2)]).eval()
    path = export_classifier(model, tmp_path / "ensemble.onnx", pixels(2, seed=0))
    session = onnx_session(path, threads=1)
    assert_same_outputs(model, session, pixels(4, seed=5))  # type: ignore[arg-type]


# -- a trained run, end to end ----------------------------------------------------------------------------------


def png(array: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def class_image(kind: int, rng: np.random.Generator, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Class 0 dark, 1 light, 2 vertical stripes, on noise."""
    noise = rng.integers(0, 50, size=(*size, 3))
    base: Any = (
        [20, 190][kind] if kind < 2 else np.where((np.arange(size[1]) // 4) % 2 == 0, 200, 10)[None, :, None]
    )
    return np.clip(noise + base, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cnn-attn run trained one epoch on 60 tiny PNGs of 3 classes."""
    from attnkit.train.config import RunConfig
    from attnkit.train.loop import fit

    root = tmp_path_factory.mktemp("image-export")
    rng = np.random.default_rng(0)
    for kind, name in enumerate(["dark", "light", "stripes"]):
        folder = root / "images" / name
        folder.mkdir(parents=True)
        for i in range(20):
            (folder / f"{i}.png").write_bytes(png(class_image(kind, rng)))
    config = RunConfig.from_dict(
        {
            "data": {"train": str(root / "images")},
            "model": {"name": "cnn-attn", "options": {"widths": [4, 8], "strides": [2, 2]}},
            "train": {"epochs": 1, "progress": False, "threads": 1},
        }
    )
    fit(config, root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def exported(image_run: Path) -> dict[str, Any]:
    """``attnkit export RUN --int8`` on the image run: its JSON report."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["export", str(image_run), "--format", "onnx", "--int8"]) == 0
    report: dict[str, Any] = json.loads(out.getvalue().strip().splitlines()[-1])
    return report


def test_cli_exports_an_image_run_with_its_check_and_metadata(
    image_run: Path, exported: dict[str, Any]
) -> None:
    assert exported["path"] == str(image_run / "model.onnx") and exported["model"] == "cnn-attn"
    assert exported["modality"] == "image" and exported["inputs"] == ["pixels"]
    assert set(exported["max_abs_diff"]) == {"logits", "unit_attention"}
    assert max(exported["max_abs_diff"].values()) < TOLERANCE
    predictor = Predictor(image_run)
    prep = predictor.task.preparation  # type: ignore[attr-defined]
    meta = {p.key: p.value for p in onnx.load(exported["path"]).metadata_props}
    assert meta["attnkit_modality"] == "image" and json.loads(meta["attnkit_labels"]) == predictor.labels
    image = json.loads(meta["attnkit_image"])
    assert image["size"] == [28, 28] and image["mode"] == prep.mode and image["grid"] == [7, 7]
    assert image["mean"] == pytest.approx(list(prep.mean)) and image["std"] == pytest.approx(list(prep.std))

    # What the metadata says is enough to use the graph without attnkit: normalize, run, read the grid.
    raw = np.stack(random_images(4, 28, 28, 3, seed=11))  # (N, H, W, C) uint8
    by_hand = ((raw / 255.0 - np.array(image["mean"])) / np.array(image["std"])).transpose(0, 3, 1, 2)
    session = onnx_session(exported["path"])
    logits, attention = session.run(None, {"pixels": by_hand.astype(np.float32)})
    want = predictor.predict_proba(list(raw)).numpy()
    np.testing.assert_allclose(predictor.probabilities(torch.from_numpy(logits)).numpy(), want, atol=1e-5)
    assert attention.shape == (4, 7 * 7)


def test_int8_image_model_is_close_and_a_check_catches_it(image_run: Path, exported: dict[str, Any]) -> None:
    predictor = Predictor(image_run)
    int8 = onnx.load(exported["int8_path"])
    assert any(init.data_type == onnx.TensorProto.INT8 for init in int8.graph.initializer)
    rng = np.random.default_rng(3)
    images = [class_image(i % 3, rng) for i in range(9)]
    fp32 = OnnxBackend(predictor, exported["path"]).predict_proba(images)
    quantized = OnnxBackend(predictor, exported["int8_path"]).predict_proba(images)
    np.testing.assert_allclose(fp32, predictor.predict_proba(images).numpy(), atol=TOLERANCE)
    assert np.abs(fp32 - quantized).max() < 0.1
    assert (fp32.argmax(1) == quantized.argmax(1)).mean() >= 0.75
    with pytest.raises(ValueError, match="differ from PyTorch"):  # int8 is not within 1e-4 of fp32
        check_onnx(predictor, exported["int8_path"], tolerance=1e-7)


def test_serve_an_image_run_with_the_onnx_backend(image_run: Path, exported: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    uploads = [png(class_image(i % 3, rng)) for i in range(3)] + [png(class_image(2, rng, (50, 40)))]
    torch_app = create_app(TorchBackend(Predictor(image_run)))
    onnx_app = create_app(load_backend(image_run, "onnx", threads=1))
    files = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(uploads)]
    with TestClient(torch_app) as torch_client, TestClient(onnx_app) as onnx_client:
        assert onnx_client.get("/model").json()["backend"] == "onnx"
        want = torch_client.post("/predict", files=files).json()["predictions"]
        got = onnx_client.post("/predict", files=files).json()["predictions"]
        by_json = onnx_client.post(
            "/predict", json={"images": [base64.b64encode(data).decode() for data in uploads]}
        ).json()["predictions"]
        for a, b, c in zip(got, want, by_json, strict=True):
            assert a["label"] == b["label"] == c["label"]
            for label in a["probabilities"]:
                assert a["probabilities"][label] == pytest.approx(b["probabilities"][label], abs=TOLERANCE)
                assert c["probabilities"][label] == a["probabilities"][label]
        explained = onnx_client.post(
            "/explain", files=files[:1], data={"method": "ig"}
        )  # PyTorch, as for text
        assert explained.status_code == 200 and explained.json()["explanations"][0]["methods"] == ["ig"]


def test_a_graph_of_the_other_modality_is_refused(image_run: Path, tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.BOOL, ["batch", "tokens"])
    logits = helper.make_tensor_value_info("logits", TensorProto.INT64, ["batch", "tokens"])
    attention = helper.make_tensor_value_info("token_attention", TensorProto.BOOL, ["batch", "tokens"])
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["input_ids"], ["logits"]),
            helper.make_node("Identity", ["attention_mask"], ["token_attention"]),
        ],
        "text",
        [ids, mask],
        [logits, attention],
    )
    path = tmp_path / "text.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(RunError, match="graph of a text model") as err:
        OnnxBackend(Predictor(image_run), path)
    assert "attnkit export" in str(err.value) and len(str(err.value).splitlines()) == 1
