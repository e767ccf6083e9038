"""The accelerator path on every device this machine has (CUDA when present): train, predict, explain and
serve a run there; bf16 autocast and ``torch.compile`` as options; batches reach a GPU through pinned memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from attnkit.explain import explain
from attnkit.predictor import Predictor
from attnkit.serve import TorchBackend, create_app
from attnkit.tasks.base import Batch
from attnkit.train.config import RunConfig
from attnkit.train.loop import fit

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _config(
    train: Path, test: Path, device: str, model: str = "bag-attn", **train_options: object
) -> RunConfig:
    options = (
        {"embed_dim": 16, "hidden_size": 8, "dropout": 0.0}
        if model == "bilstm-attn"
        else {"embed_dim": 16, "dropout": 0.0}
    )
    return RunConfig.from_dict(
        {
            "data": {"train": str(train), "test": str(test)},
            "model": {"name": model, "options": options},
            "tokenizer": {"level": "word", "vocab_size": 200, "max_length": 64},
            "optim": {"lr": 0.01, "batch_size": 16},
            "train": {"epochs": 3, "progress": False, "calibrate": False, "device": device, **train_options},
        }
    )


@pytest.mark.parametrize("device", DEVICES)
def test_train_predict_explain_and_serve_on_the_device(
    device: str, tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None
) -> None:
    train, test = tiny_data
    result = fit(_config(train, test, device), tmp_path / "run")
    assert next(result.model.parameters()).device.type == device
    assert result.metrics["test"]["accuracy"] >= 0.8  # the planted cue is easy
    predictor = Predictor(result.run_dir, device=device)
    texts = ["a great film", "a dull and awful film"]
    probabilities = predictor.predict_proba(texts)  # (2, C)
    on_cpu = Predictor(result.run_dir, device="cpu").predict_proba(texts)
    torch.testing.assert_close(torch.as_tensor(probabilities), torch.as_tensor(on_cpu), atol=1e-4, rtol=0)
    (explanation,) = explain(predictor, texts[:1], ["attention", "ig"])
    assert sum(explanation.scores("attention")) == pytest.approx(1.0, abs=1e-4)
    with TestClient(create_app(TorchBackend(predictor))) as client:
        answer = client.post("/predict", json={"texts": texts})
    assert answer.status_code == 200
    served = [row["probabilities"] for row in answer.json()["predictions"]]
    for row, expected in zip(served, probabilities, strict=True):
        assert list(row.values()) == pytest.approx([float(p) for p in expected], abs=1e-4)


def test_bf16_autocast_trains_in_bfloat16_and_keeps_float32_weights(
    tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None
) -> None:
    train, test = tiny_data
    full = fit(_config(train, test, "cpu", "bilstm-attn"), tmp_path / "fp32").metrics
    seen: list[torch.dtype] = []
    import attnkit.models.bilstm as bilstm

    real = bilstm.BiLSTMAttnClassifier.forward_head

    def spy(self: object, pooled: torch.Tensor) -> torch.Tensor:
        out = real(self, pooled)  # type: ignore[arg-type]
        seen.append(out.dtype)
        return out

    bilstm.BiLSTMAttnClassifier.forward_head = spy  # type: ignore[method-assign]
    try:
        result = fit(_config(train, test, "cpu", "bilstm-attn", precision="bf16"), tmp_path / "bf16")
    finally:
        bilstm.BiLSTMAttnClassifier.forward_head = real  # type: ignore[method-assign]
    assert torch.bfloat16 in seen  # the training forward ran under autocast ...
    assert all(
        p.dtype == torch.float32 for p in result.model.parameters()
    )  # ... the weights did not change type
    assert result.metrics["test"]["accuracy"] >= full["test"]["accuracy"] - 0.05
    assert result.metrics["history"][-1]["train_loss"] != full["history"][-1]["train_loss"]


@pytest.mark.slow
def test_compiled_training_learns_like_eager(
    tiny_data: tuple[Path, Path], tmp_path: Path, quick_writes: None
) -> None:
    train, test = tiny_data
    eager = fit(_config(train, test, "cpu"), tmp_path / "eager").metrics
    compiled = fit(_config(train, test, "cpu", compile=True), tmp_path / "compiled").metrics
    assert compiled["test"]["accuracy"] >= eager["test"]["accuracy"] - 0.02
    assert compiled["history"][-1]["train_loss"] == pytest.approx(
        eager["history"][-1]["train_loss"], rel=1e-3
    )


@pytest.mark.parametrize("device", DEVICES)
def test_batches_move_to_the_device(device: str) -> None:
    batch = Batch(
        torch.ones(2, 3, dtype=torch.long),
        torch.ones(2, 3, dtype=torch.bool),
        torch.zeros(2, dtype=torch.long),
    )
    moved = batch.to(device)
    assert (
        moved.inputs.device.type == device
        and moved.targets is not None
        and moved.targets.device.type == device
    )
    assert torch.equal(moved.inputs.cpu(), batch.inputs)
    if device == "cpu":
        assert moved.inputs is batch.inputs  # no copy, no pinning
