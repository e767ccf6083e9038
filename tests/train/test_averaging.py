"""The moving average of the weights (``optim.ema_decay``): the recurrence against a by-hand reference, the
run keeping and serving the average, and resuming to the uninterrupted run's average."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from attnkit.train import checkpoint as ckpt
from attnkit.train.averaging import WeightAverage, warmed_decay
from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.loop import fit

from .test_fit import WIDE_BATCHES, interrupt_after_saves, tiny_config


def test_warmed_decay_by_hand() -> None:
    assert warmed_decay(0.999, 0) == pytest.approx(1 / 10)
    assert warmed_decay(0.999, 10) == pytest.approx(11 / 20)
    assert warmed_decay(0.9, 1000) == 0.9  # capped by the decay once (1 + t) / (10 + t) passes it


def test_weight_average_follows_the_reference_recurrence() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    average = WeightAverage(model, decay=0.8)
    reference = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(30):
        model.train()
        loss = model(torch.randn(8, 3)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        average.update(step)
        d = min(0.8, (1 + step) / (10 + step))
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                reference[name] = d * reference[name] + (1 - d) * value.detach()
            else:
                reference[name] = value.clone()
    averaged = average.model.state_dict()
    assert averaged["1.num_batches_tracked"].item() == 30  # integer buffers are copied
    assert not torch.equal(averaged["0.weight"], model.state_dict()["0.weight"])
    for name, value in reference.items():
        torch.testing.assert_close(averaged[name], value, rtol=1e-6, atol=1e-6)
    assert not any(p.requires_grad for p in average.model.parameters())


class _WithConstants(nn.Module):
    """A Linear beside a non-persistent float buffer (built from the config, like an STFT kernel) and a persistent
    float buffer that training changes (like BatchNorm's running mean)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("kernel", torch.arange(6.0).view(2, 3), persistent=False)
        self.register_buffer("running", torch.zeros(2))


def test_non_persistent_buffers_are_not_averaged_and_persistent_ones_are() -> None:
    model = nn.Sequential(_WithConstants())
    average = WeightAverage(model, decay=0.5)
    assert (
        average._pairs[0] and len(average._pairs[0]) == 3
    )  # linear weight, linear bias, running: not kernel
    with torch.no_grad():
        model[0].kernel.add_(100.0)  # a change the average must not follow: the tensor is not trained state
        model[0].running.fill_(4.0)
    average.update(0)  # d = min(0.5, 1 / 10) = 0.1: the average moves 90% of the way
    torch.testing.assert_close(average.model[0].kernel, torch.arange(6.0).view(2, 3))
    torch.testing.assert_close(average.model[0].running, torch.full((2,), 3.6))


def test_a_run_with_ema_keeps_serves_and_checkpoints_the_average(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = tiny_data
    config = tiny_config(train, test, epochs=2).with_overrides(
        ["data.val_fraction=0", "optim.ema_decay=0.9", WIDE_BATCHES]
    )
    result = fit(config, tmp_path / "run")
    kept = load_file(str(tmp_path / "run" / "model.safetensors"))
    averaged = load_file(str(tmp_path / "run" / "state" / ckpt.AVERAGE_FILE))
    raw = load_file(str(tmp_path / "run" / "state" / "model.safetensors"))
    assert kept.keys() == averaged.keys() == raw.keys()
    for key in kept:  # without validation the last weights are kept: here, the last average
        torch.testing.assert_close(kept[key], averaged[key], rtol=0, atol=0)
    assert any(not torch.equal(kept[k], raw[k]) for k in kept if kept[k].is_floating_point())
    # The run without the average trains the same raw weights (the average never feeds back into training).
    plain = fit(config.with_overrides(["optim.ema_decay=0"]), tmp_path / "plain")
    plain_raw = load_file(str(tmp_path / "plain" / "state" / "model.safetensors"))
    for key in raw:
        torch.testing.assert_close(raw[key], plain_raw[key], rtol=0, atol=0)
    assert [h["train_loss"] for h in result.metrics["history"]] == [
        h["train_loss"] for h in plain.metrics["history"]
    ]


def test_an_interrupted_ema_run_resumes_to_the_uninterrupted_average(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_writes: None
) -> None:
    train, test = tiny_data
    config = tiny_config(train, test, epochs=3).with_overrides(["optim.ema_decay=0.95", WIDE_BATCHES])
    fit(config, tmp_path / "full")
    interrupt_after_saves(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "cut")
    monkeypatch.undo()
    fit(RunConfig(), tmp_path / "cut", resume=True)
    for name in ("model.safetensors", f"state/{ckpt.AVERAGE_FILE}"):
        a = load_file(str(tmp_path / "full" / name))
        b = load_file(str(tmp_path / "cut" / name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_ema_decay_outside_its_range_is_a_config_error(decay: float) -> None:
    with pytest.raises(ConfigError, match=r"optim\.ema_decay"):
        RunConfig.from_dict({"optim": {"ema_decay": decay}})
