"""ONNX export of audio runs with the features inside the graph: ``(waveform, lengths)`` -> the front end, the
run's statistics, frame stacking, the unit mask from the lengths, the model -> ``logits``, ``unit_attention``,
equal to PyTorch within 1e-4 for crnn-attn (MFCC) and transformer (log-mel, stacked frames) on clips of different
lengths in one batch; int8 keeps the front end in float32; the ONNX backend serves an audio run."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import soundfile
import torch
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from torch import Tensor, nn

from attnkit.cli import main
from attnkit.export import (
    FRONTEND_SCOPE,
    SIGNATURES,
    WaveformGraph,
    audio_description,
    export_onnx,
    frontend_nodes,
    graph_inputs,
    onnx_session,
    padded_waveforms,
    quantize_int8,
    random_waveforms,
    run_onnx,
)
from attnkit.predictor import Predictor
from attnkit.runs import RunError
from attnkit.serve import OnnxBackend, TorchBackend, create_app, load_backend

TOLERANCE = 1e-4
RATE = 8000
MAX_SECONDS = 1.5
TONES = {"low": 300.0, "mid": 900.0, "high": 2000.0}
#: crnn-attn on MFCCs (the DCT inside the graph) with each recording's own mean subtracted, one frame per unit;
#: transformer on log-mel, 3 frames a unit.
RUNS: dict[str, dict[str, Any]] = {
    "crnn-attn": {
        "model": {"name": "crnn-attn", "options": {"conv_channels": [4], "hidden_dim": 8}},
        "audio": {
            "features": "mfcc",
            "n_mels": 16,
            "n_mfcc": 12,
            "max_seconds": MAX_SECONDS,
            "recording_mean": True,
        },
    },
    "transformer": {
        "model": {
            "name": "transformer",
            "options": {"embed_dim": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 16, "pooling_heads": 2},
        },
        "audio": {"n_mels": 16, "max_seconds": MAX_SECONDS, "stack_frames": 3},
    },
}


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _write_clips(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label, freq in TONES.items():
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(8):
            t = np.arange(int(rng.integers(1600, 4000))) / RATE
            clip = 0.4 * np.sin(2 * np.pi * freq * t) + 0.03 * rng.standard_normal(t.shape)
            soundfile.write(folder / f"{i}.wav", clip.astype(np.float32), RATE, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module", params=list(RUNS))
def run_dir(
    request: pytest.FixtureRequest, clip_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An audio run of each model, trained for one epoch on 24 WAVs of three tones."""
    from attnkit.train.config import RunConfig
    from attnkit.train.loop import fit

    spec = RUNS[request.param]
    config = RunConfig.from_dict(
        {
            "data": {"train": str(clip_folder)},
            **spec,
            "train": {"epochs": 1, "progress": False, "threads": 1},
        }
    )
    out = tmp_path_factory.mktemp(request.param) / "run"
    fit(config, out)
    return out


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> dict[str, Any]:
    """The run exported with its check and int8 (``export_onnx``'s report as JSON)."""
    return export_onnx(run_dir, run_dir / "model.onnx", quantize=True).to_json_dict()


def _clips(predictor: Predictor) -> list[Any]:
    """Clips of many lengths in one batch: 1 sample, under one hop, a hop exactly, lengths that leave partial
    frame stacks, the longest the run takes, and a 44.1 kHz WAV file (decoded and resampled as the task does)."""
    longest = int(MAX_SECONDS * RATE)
    waves: list[Any] = random_waveforms([1, 57, 80, 243, 1234, 3001, longest], RATE, seed=11)
    t = np.arange(int(0.3 * 44100)) / 44100
    waves.append(wav_bytes((0.3 * np.sin(2 * np.pi * 900 * t)).astype(np.float32), 44100))
    return waves


def test_export_equals_pytorch_on_clips_of_different_lengths(run_dir: Path, exported: dict[str, Any]) -> None:
    assert exported["modality"] == "audio" and exported["inputs"] == ["waveform", "lengths"]
    assert max(exported["max_abs_diff"].values()) <= TOLERANCE  # export_onnx's own check passed
    predictor = Predictor(run_dir)
    session = onnx_session(exported["path"])
    prep = predictor.task.preparation  # type: ignore[attr-defined]
    hop, stack = int(prep.features["hop_length"]), prep.stack_frames
    items = _clips(predictor)
    for batch in (items, items[2:5], items[-1:]):
        waveform, lengths = graph_inputs(predictor, batch)
        logits, attention = run_onnx(session, waveform, lengths)
        inputs, mask = predictor.encode_inputs(batch)
        with torch.no_grad():
            ref = predictor.model(inputs, mask)
        assert logits.shape == tuple(ref.logits.shape) and attention.shape == tuple(ref.unit_attention.shape)
        np.testing.assert_allclose(logits, ref.logits.numpy(), atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(attention, ref.unit_attention.numpy(), atol=TOLERANCE, rtol=0)
        # The unit mask from the lengths, by hand: units = ceil((1 + length // hop) / stack).
        units = [math.ceil((1 + int(n) // hop) / stack) for n in lengths]
        assert attention.shape[1] == math.ceil((1 + waveform.shape[1] // hop) / stack)
        for row, count in enumerate(units):
            assert np.all(attention[row, count:] == 0) and attention[row, :count].sum() == pytest.approx(
                1, abs=1e-5
            )


class _Features(nn.Module):
    """Stands in for a model: returns the features and the mask it is given."""

    def forward(self, features: Tensor, unit_mask: Tensor) -> tuple[Tensor, Tensor]:
        return features, unit_mask


def test_the_graphs_features_are_the_tasks(run_dir: Path) -> None:
    predictor = Predictor(run_dir)
    graph = WaveformGraph(_Features(), predictor.task.preparation).eval()  # type: ignore[attr-defined]
    waves = random_waveforms([5, 800, 1999, 4321], RATE, seed=3)
    with torch.no_grad():
        features, mask = graph(*padded_waveforms(waves))
    want, want_mask = predictor.encode_inputs(waves)
    assert torch.equal(mask, want_mask)
    torch.testing.assert_close(features, want, atol=2e-4, rtol=1e-5)
    assert torch.all(features[~mask] == 0)


def test_the_graph_says_what_it_takes(run_dir: Path, exported: dict[str, Any]) -> None:
    predictor = Predictor(run_dir)
    model = onnx.load(exported["path"])
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["attnkit_modality"] == "audio" and json.loads(meta["attnkit_labels"]) == predictor.labels
    assert json.loads(meta["attnkit_audio"]) == audio_description(predictor)
    assert meta["attnkit_inputs"] == SIGNATURES["audio"].inputs_doc
    shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*model.graph.input, *model.graph.output]
    }
    assert shapes == {
        "waveform": ["batch", "samples"],
        "lengths": ["batch"],
        "logits": ["batch", len(predictor.labels)],
        "unit_attention": ["batch", "units"],
    }
    types = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
    assert types == {"waveform": TensorProto.FLOAT, "lengths": TensorProto.INT64}


def _with_frontend_outputs(path: str | Path, out: Path) -> tuple[Path, list[str]]:
    """A copy of the graph that also returns the front end's outputs (what leaves ``/frontend/`` nodes)."""
    model = onnx.load(str(path))
    prefix = f"/{FRONTEND_SCOPE}/"
    inside = {o for n in model.graph.node if n.name.startswith(prefix) for o in n.output}
    leaving = sorted(
        {i for n in model.graph.node if not n.name.startswith(prefix) for i in n.input if i in inside}
    )
    for name in leaving:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    onnx.save(model, str(out))
    return out, leaving


def test_int8_leaves_the_front_end_in_float32(
    run_dir: Path, exported: dict[str, Any], tmp_path: Path
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, int8 = Path(exported["path"]), Path(exported["int8_path"])
    ops = {n.name: n.op_type for n in onnx.load(str(fp32)).graph.node}
    ops8 = {n.name: n.op_type for n in onnx.load(str(int8)).graph.node}
    front = frontend_nodes(fp32)
    assert {ops[name] for name in front} >= {"Conv", "MatMul", "Log"}  # the STFT, the mel product, the dB
    assert all(ops8.get(name) == ops[name] for name in front)  # every front-end node unchanged
    assert "MatMulInteger" in ops8.values()  # the model after it is quantized
    # The front end's output is bit-identical; quantizing it too (no exclusion) costs decibels.
    everything = tmp_path / "all.int8.onnx"
    quantize_dynamic(str(fp32), str(everything), weight_type=QuantType.QInt8)
    predictor = Predictor(run_dir)
    waveform, lengths = graph_inputs(predictor, random_waveforms([4000, 2500, 7000], RATE, seed=5))
    feeds = {"waveform": waveform.numpy(), "lengths": lengths.numpy()}
    outputs = {}
    for key, source in (("fp32", fp32), ("int8", int8), ("all", everything)):
        probe, names = _with_frontend_outputs(source, tmp_path / f"{key}.probe.onnx")
        outputs[key] = onnx_session(probe).run(["logits", *names], feeds)
    assert len(outputs["fp32"]) >= 2
    for ours, theirs in zip(outputs["fp32"][1:], outputs["int8"][1:], strict=True):
        assert np.array_equal(ours, theirs)
    errors = np.concatenate(
        [np.abs(a - b).ravel() for a, b in zip(outputs["fp32"][1:], outputs["all"][1:], strict=True)]
    )
    assert errors.max() > 1.0  # dB (or MFCC units): measured 2.5-5 dB on these clips; ours are exact
    # int8 after the front end: probabilities near fp32's (measured up to 0.11 on these tiny one-epoch models;
    # on FSDD's 300 test clips a 2-epoch crnn-attn moved by at most 0.18 and kept 99.7% of its labels).
    p32 = predictor.probabilities(torch.from_numpy(outputs["fp32"][0]))
    p8 = predictor.probabilities(torch.from_numpy(outputs["int8"][0]))
    assert float((p32 - p8).abs().max()) < 0.2


def test_quantize_int8_excludes_nothing_from_other_graphs(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="/frontend/Relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert frontend_nodes(path) == ["/frontend/Relu"]
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), str(plain))
    assert frontend_nodes(plain) == []
    assert quantize_int8(plain).name == "plain.int8.onnx"


def test_the_onnx_backend_serves_the_audio_run(run_dir: Path, exported: dict[str, Any]) -> None:
    torch_predictor = Predictor(run_dir)
    clips = [item for item in _clips(torch_predictor)[3:] if not isinstance(item, bytes)]
    files = [("file", (f"c{i}.wav", wav_bytes(wave), "audio/wav")) for i, wave in enumerate(clips)]
    answers = {}
    for name in ("torch", "onnx"):
        backend = load_backend(run_dir, name, onnx_path=exported["path"])
        assert isinstance(backend, OnnxBackend if name == "onnx" else TorchBackend)
        with TestClient(create_app(backend)) as client:
            assert client.get("/model").json()["backend"] == name
            response = client.post("/predict", files=files)
            assert response.status_code == 200, response.text
            answers[name] = response.json()["predictions"]
    for ours, theirs in zip(answers["onnx"], answers["torch"], strict=True):
        assert ours["label"] == theirs["label"]
        for label, p in theirs["probabilities"].items():
            assert ours["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_the_onnx_backend_refuses_a_graph_of_another_modality(run_dir: Path, tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["logits"])],
        "image-like",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    path = tmp_path / "image.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(RunError, match=r"graph of an image model but .* is an audio run"):
        OnnxBackend(Predictor(run_dir), path)


def test_the_cli_exports_an_audio_run(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.onnx"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["modality"] == "audio" and report["outputs"] == ["logits", "unit_attention"]
    assert report["path"] == str(out) and max(report["max_abs_diff"].values()) <= TOLERANCE
