import os
from pathlib import Path

import pytest
import torch
from torch import nn

from attnkit.train import checkpoint as ckpt


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    ckpt.write_json(target, {"v": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text('{"v": 2, "trunc')
        raise KeyboardInterrupt  # interrupted halfway through writing

    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write(target, broken)
    assert ckpt.read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_weights_round_trip_safetensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    path = tmp_path / "model.safetensors"
    ckpt.save_weights(model, path)
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        assert handle.read(1) == b"{"  # a safetensors JSON header, not a pickle
    assert header_len > 0
    other = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    ckpt.load_weights(other, path)
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    for _ in range(3):
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    ckpt.save_training_state(tmp_path, model, optimizer, scheduler, {"epoch": 2})

    model2 = nn.Linear(4, 2)
    optimizer2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    scheduler2 = torch.optim.lr_scheduler.LambdaLR(optimizer2, lambda step: 1.0 / (step + 1))
    assert ckpt.load_training_state(tmp_path, model2, optimizer2, scheduler2) == {"epoch": 2}
    # One more identical step on both gives identical parameters.
    x = torch.randn(5, 4)
    for m, o, s in ((model, optimizer, scheduler), (model2, optimizer2, scheduler2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
        s.step()
    torch.testing.assert_close(model.weight, model2.weight, rtol=0, atol=0)
    assert scheduler2.get_last_lr() == scheduler.get_last_lr()
    assert not any(name.endswith((".pt", ".pth", ".pkl")) for name in os.listdir(tmp_path / "state"))
