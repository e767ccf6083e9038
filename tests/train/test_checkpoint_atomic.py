"""Atomic writes keep normal permissions; a checkpoint is one unit (committed by its manifest, switched by renames)
whatever a kill left; recovery removes leftovers and republishes the best weights."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from attnkit import atomic
from attnkit.train import checkpoint as ckpt
from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.loop import fit
from attnkit.train.plots import plot_confusion, plot_curves


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077], ids=["022", "002", "077"])
def test_every_file_of_a_run_has_the_mode_a_plain_write_gives(
    tiny_data: tuple[Path, Path], tmp_path: Path, mask: int
) -> None:
    train, test = tiny_data
    config = RunConfig.from_dict(
        {
            "data": {"train": str(train), "test": str(test)},
            "tokenizer": {"level": "word", "vocab_size": 100, "max_length": 32},
            "model": {"name": "bag-attn", "options": {"embed_dim": 8}},
            "train": {"epochs": 1, "progress": False, "threads": 1},
        }
    )
    run = tmp_path / "run"
    with umask(mask):
        fit(config, run)
        (tmp_path / "plain.txt").write_text("reference")  # what a plain write gives here
        from attnkit.report import write_report

        write_report(run, {}, [], "report")
    expected = mode(tmp_path / "plain.txt")
    assert expected == 0o666 & ~mask
    files = [p for p in run.rglob("*") if p.is_file()]
    names = {str(p.relative_to(run)) for p in files}
    for name in ("model.safetensors", "labels.json", "metrics.json", "calibration.json", "config.yaml"):
        assert name in names
    for name in (
        "curves.png",
        "confusion.png",
        "report.html",
        "tokenizer/tokenizer.json",
        "state/best.safetensors",
    ):
        assert name in names
    assert {str(p.relative_to(run)): oct(mode(p)) for p in files} == {n: oct(expected) for n in names}
    for folder in [run, *(p for p in run.rglob("*") if p.is_dir())]:
        assert mode(folder) == 0o777 & ~mask, folder


def test_atomic_write_keeps_the_mode_when_the_writer_replaces_the_file(tmp_path: Path) -> None:
    def private_writer(tmp: Path) -> None:  # a library that writes its own 0o600 file and renames it over
        other = tmp.with_name("other")
        other.write_text("x")
        os.chmod(other, 0o600)
        os.replace(other, tmp)

    with umask(0o022):
        atomic.atomic_write(tmp_path / "f", private_writer)
    assert mode(tmp_path / "f") == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_plots_are_written_with_normal_permissions(tmp_path: Path) -> None:
    with umask(0o002):
        plot_curves([{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.5}], tmp_path / "curves.png")
        plot_confusion(torch.eye(2).numpy(), ["a", "b"], tmp_path / "confusion.png")
    assert mode(tmp_path / "curves.png") == mode(tmp_path / "confusion.png") == 0o664


def _training_objects(
    seed: int,
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _commit(run: Path, epoch: int, seed: int, *, best: bool) -> nn.Module:
    model, optimizer, scheduler = _training_objects(seed)
    if best:
        ckpt.stage_best_weights(run, model)
    ckpt.save_training_state(run, model, optimizer, scheduler, {"epoch": epoch})
    return model


def _same_tensors(path: Path, model: nn.Module) -> bool:
    saved = load_file(str(path))
    return all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_a_checkpoint_commits_its_best_weights_with_it(tmp_path: Path) -> None:
    first = _commit(tmp_path, 0, seed=1, best=True)
    assert _same_tensors(tmp_path / ckpt.WEIGHTS_FILE, first)
    second = _commit(tmp_path, 1, seed=2, best=False)  # not improved: the best stays the first epoch's
    assert _same_tensors(tmp_path / ckpt.WEIGHTS_FILE, first)
    assert _same_tensors(tmp_path / "state" / ckpt.BEST_FILE, first)
    assert _same_tensors(tmp_path / "state" / "model.safetensors", second)
    # Improved best weights staged, then a kill before the checkpoint: the published weights stay the committed
    # checkpoint's, and recovery drops the staged ones.
    third, _, _ = _training_objects(3)
    ckpt.stage_best_weights(tmp_path, third)
    assert _same_tensors(tmp_path / ckpt.WEIGHTS_FILE, first)
    ckpt.recover(tmp_path)
    assert not (tmp_path / ckpt.STAGING_DIR).exists()
    assert ckpt.training_progress(tmp_path) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.WEIGHTS_FILE, "state"]


def test_the_newest_complete_checkpoint_wins_whatever_step_of_the_switch_a_kill_interrupted(
    tmp_path: Path,
) -> None:
    _commit(tmp_path, 0, seed=1, best=True)
    newer = _commit(tmp_path / "newer", 1, seed=2, best=True)
    committed_staging = tmp_path / "newer" / "state"
    # Killed after the manifest, before state/ was renamed aside: state.new/ is complete and newest.
    os.rename(committed_staging, tmp_path / ckpt.STAGING_DIR)
    assert ckpt.training_progress(tmp_path) == {"epoch": 1}
    # ... or after state/ was renamed to state.old/: the same.
    os.rename(tmp_path / "state", tmp_path / "state.old")
    assert ckpt.training_progress(tmp_path) == {"epoch": 1}
    ckpt.recover(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.WEIGHTS_FILE, "newer", "state"]
    assert ckpt.training_progress(tmp_path) == {"epoch": 1}
    assert _same_tensors(tmp_path / ckpt.WEIGHTS_FILE, newer)  # republished by the recovery


def test_an_incomplete_or_damaged_checkpoint_is_never_loaded(tmp_path: Path) -> None:
    first = _commit(tmp_path, 0, seed=1, best=True)
    # A state.new/ without a manifest (killed while it was written), with a file of the next epoch in it.
    staging = tmp_path / ckpt.STAGING_DIR
    staging.mkdir()
    (staging / "progress.json").write_text(json.dumps({"epoch": 1}))
    # A manifest whose file sizes do not match (a torn file) makes it incomplete too.
    (staging / ckpt.MANIFEST_FILE).write_text(
        json.dumps({"format": "attnkit-checkpoint", "version": 1, "files": {"progress.json": 1}})
    )
    model, optimizer, scheduler = _training_objects(9)
    assert ckpt.load_training_state(tmp_path, model, optimizer, scheduler) == {"epoch": 0}
    assert _same_tensors(tmp_path / "state" / "model.safetensors", first)
    (tmp_path / ".metrics.json.0123abcd.tmp").write_text("{")
    (tmp_path / "state" / ".progress.json.0123abcd.tmp").write_text("{")
    (tmp_path / ".members.removing").mkdir()
    ckpt.recover(tmp_path)
    leftovers = [p for p in tmp_path.rglob("*") if atomic.is_leftover(p) or p.name == ckpt.STAGING_DIR]
    assert leftovers == []
    # No committed checkpoint at all: nothing to resume.
    ckpt.remove_training_state(tmp_path)
    assert not ckpt.has_training_state(tmp_path)
    with pytest.raises(FileNotFoundError, match="no resumable state"):
        ckpt.load_training_state(tmp_path, model, optimizer, scheduler)


def test_a_state_written_before_manifests_still_resumes(tmp_path: Path) -> None:
    _commit(tmp_path, 0, seed=1, best=True)
    for name in (ckpt.MANIFEST_FILE, ckpt.BEST_FILE):  # what an earlier attnkit wrote
        (tmp_path / "state" / name).unlink()
    assert ckpt.training_progress(tmp_path) == {"epoch": 0}
    published = load_file(str(tmp_path / ckpt.WEIGHTS_FILE))
    second = _commit(tmp_path, 1, seed=2, best=False)  # its best weights: RUN_DIR/model.safetensors
    assert ckpt.training_progress(tmp_path) == {"epoch": 1}
    best = load_file(str(tmp_path / "state" / ckpt.BEST_FILE))
    assert all(torch.equal(best[k], published[k]) for k in published)
    assert _same_tensors(tmp_path / "state" / "model.safetensors", second)


def test_best_weights_are_copied_where_hard_links_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise PermissionError("no hard links on this file system")

    monkeypatch.setattr(os, "link", no_links)
    first = _commit(tmp_path, 0, seed=1, best=True)
    _commit(tmp_path, 1, seed=2, best=False)
    for path in (tmp_path / ckpt.WEIGHTS_FILE, tmp_path / "state" / ckpt.BEST_FILE):
        assert _same_tensors(path, first) and path.stat().st_nlink == 1
    assert not [p for p in tmp_path.rglob("*") if atomic.is_leftover(p)]


def test_resuming_a_directory_without_a_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no run to resume .*without --resume"):
        fit(RunConfig(), tmp_path / "nothing", resume=True)


def test_remove_tree_never_leaves_a_half_deleted_folder_under_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "members"
    (folder / "0").mkdir(parents=True)
    (folder / "0" / "metrics.json").write_text("{}")
    (folder / "0" / "model.safetensors").write_text("x")

    def killed_rmtree(path: object, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.shutil, "rmtree", killed_rmtree)
    with pytest.raises(KeyboardInterrupt):
        atomic.remove_tree(folder)
    monkeypatch.undo()
    assert not folder.exists()  # renamed aside in one step before any file went
    assert atomic.clean_leftovers(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_checkpoint_is_not_resumed_but_the_run_starts_over(
    tiny_data: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, quick_writes: None
) -> None:
    train, test = tiny_data
    config = RunConfig.from_dict(
        {
            "data": {"train": str(train), "test": str(test)},
            "tokenizer": {"level": "word", "vocab_size": 100, "max_length": 32},
            "model": {"name": "bag-attn", "options": {"embed_dim": 8}},
            "train": {"epochs": 2, "progress": False, "threads": 1, "calibrate": False},
        }
    )
    fit(config, tmp_path / "reference")
    fit(config, tmp_path / "run")
    optimizer_file = tmp_path / "run" / "state" / "optimizer.safetensors"
    optimizer_file.write_bytes(optimizer_file.read_bytes()[:-8])  # torn by something other than attnkit
    assert not ckpt.has_training_state(tmp_path / "run")
    with caplog.at_level("WARNING", logger="attnkit.train.loop"):
        fit(RunConfig(), tmp_path / "run", resume=True)
    assert "incomplete or damaged: starting the run over" in caplog.text
    reference = load_file(str(tmp_path / "reference" / ckpt.WEIGHTS_FILE))
    resumed = load_file(str(tmp_path / "run" / ckpt.WEIGHTS_FILE))
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert ckpt.has_training_state(tmp_path / "run")
