"""An audio run through the public surfaces: predict (CLI and Python API) equal to the model on features computed
and normalized by hand, folders with a corrupt and an empty recording (skipped and listed, no traceback), explain
in every format, attention, evaluate on in-memory recordings."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import attnkit
from attnkit.cli import main
from attnkit.explain import AudioExplanation
from attnkit.models.audio.features import FeatureConfig, SpectralFrontend
from attnkit.runs import load_run
from attnkit.tasks.audio import PREPARATION_FILE
from attnkit.train.config import RunConfig
from attnkit.train.loop import fit

RATE = 8000
TONES = {"hi": 1600.0, "lo": 300.0}


def tone(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * TONES[label] * t) + 0.02 * rng.standard_normal(t.shape)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/<label>/<i>.wav``: 10 tones of 0.2-0.4 s per label, 16-bit PCM at 8 kHz."""
    root = tmp_path_factory.mktemp("tones") / "train"
    rng = np.random.default_rng(0)
    for label in TONES:
        (root / label).mkdir(parents=True)
        for i in range(10):
            soundfile.write(
                root / label / f"{i}.wav", tone(label, 0.2 + 0.02 * i, rng), RATE, subtype="PCM_16"
            )
    return root


@pytest.fixture(scope="module")
def audio_run(
    audio_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
    quick_writes_patch: Callable[[], contextlib.AbstractContextManager[None]],
) -> Path:
    """A tiny crnn-attn trained for one epoch (about 2 s on one thread, placeholder plots): enough to compare
    surfaces, which need the same numbers, not good ones."""
    run_dir = tmp_path_factory.mktemp("runs") / "crnn"
    config = RunConfig.from_dict(
        {
            "data": {"train": str(audio_folder), "val_fraction": 0.2},
            "audio": {"n_mels": 16, "max_seconds": 2.0},
            "model": {"name": "crnn-attn", "options": {"conv_channels": [4], "hidden_dim": 8}},
            "optim": {"lr": 0.01, "batch_size": 8},
            "train": {"epochs": 1, "threads": 1, "progress": False, "seed": 0},
        }
    )
    with quick_writes_patch():
        fit(config, run_dir)
    return run_dir


def by_hand(run_dir: Path, waves: list[np.ndarray]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each recording's ``(T, 16)`` features computed alone and normalized with the run's own statistics, and
    the run's probabilities ``(N, C)`` of the model on them, one recording at a time."""
    prep = json.loads((run_dir / PREPARATION_FILE).read_text())
    frontend = SpectralFrontend(FeatureConfig(**prep["features"]))
    mean, std = torch.tensor(prep["mean"]), torch.tensor(prep["std"])
    run = load_run(run_dir)
    features, probabilities = [], []
    with torch.no_grad():
        for wave in waves:
            frames = (frontend(torch.from_numpy(wave)[None])[0] - mean) / std  # (T, F)
            features.append(frames)
            logits = run.model(frames[None]).logits  # (1, C)
            probabilities.append(torch.softmax(logits / run.temperature, dim=-1)[0])
    return features, torch.stack(probabilities)


def wav(wave: np.ndarray, rate: int = RATE, subtype: str = "PCM_16", channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    data = np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave
    soundfile.write(buffer, data, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_the_run_directory_holds_an_audio_run(audio_run: Path) -> None:
    saved = RunConfig.from_yaml(audio_run / "config.yaml")
    assert saved.data.modality == "audio"  # decided at training from the folder of audio folders
    assert json.loads((audio_run / "labels.json").read_text()) == ["hi", "lo"]
    assert json.loads((audio_run / PREPARATION_FILE).read_text())["features"]["sample_rate"] == RATE


def test_predictions_agree_across_the_cli_the_api_and_the_model(
    audio_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    waves = [tone("hi", 0.3, rng), tone("lo", 0.25, rng), tone("hi", 0.25, rng)]
    _, expected = by_hand(audio_run, waves)  # (3, C)
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for path, wave in zip(paths, waves[:2], strict=True):
        path.write_bytes(wav(wave, subtype="FLOAT"))
    clf = attnkit.load(audio_run, device="cpu")
    # paths, bytes and float arrays at the run's rate: one of them is one recording, a list is several
    np.testing.assert_allclose(clf.predict_proba([str(p) for p in paths]), expected[:2].numpy(), atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(paths[1])[0], expected[1].numpy(), atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(waves[0]), expected[:1].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        clf.predict_proba([paths[0].read_bytes(), waves[1], waves[2]]), expected.numpy(), atol=1e-5
    )
    np.testing.assert_allclose(clf.predict_proba(np.stack(waves[1:])), expected[1:].numpy(), atol=1e-5)
    labels = [clf.labels[int(i)] for i in expected.argmax(dim=1)]
    assert clf.predict([*map(str, paths), waves[2]]) == labels
    # 16 kHz stereo 24-bit bytes are resampled and mixed down like the training recordings
    stereo = np.interp(np.arange(2 * len(waves[0])) / 2, np.arange(len(waves[0])), waves[0]).astype(
        np.float32
    )
    assert clf.predict([wav(stereo, 2 * RATE, "PCM_24", channels=2)]) == labels[:1]
    with pytest.raises(ValueError, match=r"recording 0: .* is not a file"):
        clf.predict([str(tmp_path / "missing.wav")])
    with pytest.raises(TypeError, match="recording 1 is list"):
        clf.predict([waves[0], [0.1, 0.2]])
    # the command line: files and folders, JSON lines with the file name
    assert main(["predict", str(audio_run), str(paths[0]), str(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["file"] for row in rows] == [str(paths[0]), str(paths[0]), str(paths[1])]
    assert [row["label"] for row in rows] == [labels[0], labels[0], labels[1]]
    for row, probabilities in zip(rows, expected[[0, 0, 1]], strict=True):
        assert row["probabilities"]["hi"] == pytest.approx(float(probabilities[0]), abs=1e-5)


def test_a_folder_with_bad_recordings_is_predicted_and_they_are_listed(
    audio_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "inbox"
    (folder / "more").mkdir(parents=True)
    rng = np.random.default_rng(2)
    (folder / "b.wav").write_bytes(wav(tone("lo", 0.3, rng)))
    soundfile.write(folder / "more" / "c.flac", tone("hi", 0.3, rng), RATE)
    (folder / "a.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt junk")  # corrupt
    (folder / "empty.ogg").write_bytes(b"")
    (folder / "notes.txt").write_text("not a recording, not read")
    out_csv = tmp_path / "out.csv"
    assert main(["predict", str(audio_run), str(folder), "--out", str(out_csv)]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 of 4" in err and "a.wav" in err and "empty.ogg" in err and "Traceback" not in err
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "file,predicted_label,prob_hi,prob_lo"
    assert [line.split(",")[0] for line in lines[1:]] == [
        str(folder / "b.wav"),
        str(folder / "more" / "c.flac"),
    ]
    # nothing readable, nothing to read, nothing given: one line each, exit 2
    assert main(["predict", str(audio_run), str(folder / "a.wav")]) == 2
    assert "no readable recording to predict" in capsys.readouterr().err
    (tmp_path / "quiet").mkdir()
    assert main(["predict", str(audio_run), str(tmp_path / "quiet")]) == 2
    assert "no audio files (.flac, .ogg, .wav) in this folder" in capsys.readouterr().err
    assert main(["predict", str(audio_run)]) == 2
    assert "give the recordings to predict" in capsys.readouterr().err


def test_cli_explain_writes_png_html_json_and_the_terminal(
    audio_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    files = [tmp_path / "in" / "x.wav", tmp_path / "in" / "y.wav"]
    files[0].parent.mkdir()
    for path, label in zip(files, TONES, strict=True):
        path.write_bytes(wav(tone(label, 0.3, rng)))
    (tmp_path / "in" / "broken.wav").write_bytes(b"nope")
    names = [str(p) for p in files]
    out = tmp_path / "out"
    out.mkdir()
    assert main(["explain", str(audio_run), *names, "--method", "all", "--out", str(out / "r.html")]) == 0
    assert main(["explain", str(audio_run), *names, "--method", "all", "--out", str(out / "r.json")]) == 0
    assert (
        main(["explain", str(audio_run), *names, "--method", "attention,ig", "--out", str(out / "r.png")])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["r-0.png", "r-1.png", "r.html", "r.json"]
    payload = json.loads((out / "r.json").read_text(encoding="utf-8"))
    assert [item["source"] for item in payload] == names
    assert all(item["modality"] == "audio" and item["audio"]["wav"] for item in payload)
    units = payload[0]["units"]
    assert len(units) == 1 + 2400 // 80 and units[3]["start"] == 0.03 and units[3]["end"] == 0.04
    page = (out / "r.html").read_text(encoding="utf-8")
    assert page.count('class="ak-explanation ak-audio-explanation"') == 2
    assert page.count('<audio class="ak-audio-player"') == 2
    assert "http://" not in page and "https://" not in page
    from attnkit.explain.render_audio import audio_png_size

    for png in ("r-0.png", "r-1.png"):
        with Image.open(out / png) as image:
            assert image.size == audio_png_size(2)
    capsys.readouterr()
    # terminal by default; a folder expands to its recordings, the broken one skipped and named
    assert main(["explain", str(audio_run), names[0], "--method", "attention,loo"]) == 0
    text = capsys.readouterr().out
    assert "x.wav:" in text and "predicted" in text and "loo signed" in text
    assert "0.300 s at 8000 Hz, 31 frames of 10 ms" in text
    assert main(["explain", str(audio_run), str(tmp_path / "in"), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 2
    assert "skipped" in captured.err and "broken.wav" in captured.err and "Traceback" not in captured.err
    # mistakes: one line, exit 2
    assert main(["explain", str(audio_run), names[0], "--layers"]) == 2
    assert main(["explain", str(audio_run), names[0], "--format", "head-view"]) == 2
    assert main(["explain", str(audio_run), "--file", names[0]]) == 2
    assert main(["explain", str(audio_run), names[0], "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["explain", str(audio_run), str(tmp_path / "in" / "broken.wav")]) == 2
    assert "no readable recording to explain" in capsys.readouterr().err


def test_api_explain_attention_and_evaluate(audio_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    waves = [tone("lo", 0.2, rng), tone("hi", 0.33, rng)]
    path = tmp_path / "lo.wav"
    path.write_bytes(wav(waves[0], subtype="FLOAT"))
    clf = attnkit.load(audio_run, device="cpu")
    single = clf.explain(str(path), methods=["attention", "ig"], ig_steps=8)
    assert isinstance(single, AudioExplanation) and single.source == str(path)
    several = clf.explain([str(path), waves[1]], methods="attention")
    assert isinstance(several, list) and [e.source for e in several] == [str(path), None]
    assert several[0].scores("attention") == pytest.approx(single.scores("attention"), abs=1e-6)
    # attention: the model's own pooling weights over the frames, with each frame's time span
    features, _ = by_hand(audio_run, waves)
    run = load_run(audio_run)
    attentions = clf.attention(waves)
    assert len(attentions) == 2
    for item, frames in zip(attentions, features, strict=True):
        with torch.no_grad():
            expected = run.model(frames[None]).unit_attention[0]  # (U,)
        np.testing.assert_allclose(item.weights, expected.numpy(), atol=1e-5)
        assert item.spans == [pytest.approx((0.01 * i, 0.01 * (i + 1))) for i in range(len(frames))]
        (span, weight), *_ = item.top(1)
        assert weight == pytest.approx(float(expected.max()), abs=1e-5)
        assert span == item.spans[int(expected.argmax())]
    # evaluate on in-memory recordings: accuracy as predicted here
    truth = ["lo", "hi"]
    report = clf.evaluate(waves, truth)
    predicted = clf.predict(waves)
    assert report["n"] == 2
    assert report["accuracy"] == pytest.approx(
        np.mean([p == t for p, t in zip(predicted, truth, strict=True)])
    )


@pytest.mark.slow  # real data: reads FSDD and trains one epoch on its 2,430 training recordings (about 30 s)
def test_faithfulness_on_fsdd_test(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    quick_writes_patch: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    import os

    root = Path(
        os.environ.get("ATTNKIT_DATA", "") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
    if not (root / "fsdd" / "recordings.tar.gz").is_file():
        pytest.skip("needs $ATTNKIT_DATA/fsdd/recordings.tar.gz (../shared/datasets)")
    monkeypatch.setenv("ATTNKIT_DATA", str(root))
    config = RunConfig.from_dict(
        {
            "data": {"train": "fsdd"},
            "model": {"name": "crnn-attn", "options": {"conv_channels": [8], "hidden_dim": 16}},
            "train": {"epochs": 1, "threads": 1, "progress": False, "seed": 0},
        }
    )
    with quick_writes_patch():
        fit(config, tmp_path / "fsdd")
    argv = ["faithfulness", str(tmp_path / "fsdd"), "--data", "fsdd:test", "--n", "20", "--method",
            "attention,ig", "--ig-steps", "8", "--json", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 20 and report["source"] == "fsdd:test" and report["unit"] == "frame"
    assert {m["method"] for m in report["methods"]} == {"attention", "ig", "random"}
    assert report["uniform_attention"]["accuracy"] is not None  # the digits are the run's labels
    assert any("over recordings" in note for note in report["findings"])
