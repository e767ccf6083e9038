"""An image run end to end through the public surfaces: fit, the run directory, predict (CLI and Python API),
evaluate, calibrate, resume, ensembles and refit, all through the same task-driven loop as text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import attnkit
from attnkit.cli import main
from attnkit.predictor import Predictor, evaluate_run
from attnkit.runs import load_run
from attnkit.tasks.image import PREPARATION_FILE
from attnkit.train.config import RunConfig
from attnkit.train.loop import fit

SMALL_CNN = {"widths": [8, 16], "strides": [2, 2], "dropout": 0.0}


def _write_folder(root: Path, n: int = 24, seed: int = 0) -> Path:
    """Three classes told apart by where a bright square is (top-left, centre, bottom-right) on noise."""
    rng = np.random.default_rng(seed)
    corners = {"top": (2, 2), "middle": (11, 11), "bottom": (20, 20)}
    for label, (y, x) in corners.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            image[y : y + 6, x : x + 6] = 230
            Image.fromarray(image, "L").save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("images") / "train")


def _config(folder: Path, **train: object) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {"train": str(folder), "val_fraction": 0.25},
            "image": {"mode": "L"},
            "model": {"name": "cnn-attn", "options": SMALL_CNN},
            "optim": {"lr": 0.01, "batch_size": 16},
            "train": {"epochs": 8, "threads": 1, "progress": False, "seed": 1, **train},
        }
    )


@pytest.fixture(scope="module")
def image_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "cnn"
    fit(_config(image_folder), run_dir)
    return run_dir


def normalized(run_dir: Path, files: list[Path]) -> torch.Tensor:
    """The reference input: grayscale ``files`` as ``(B, 1, H, W)`` normalized with the run's own statistics."""
    prep = json.loads((run_dir / PREPARATION_FILE).read_text())
    pixels = torch.stack(
        [torch.as_tensor(np.array(Image.open(f)), dtype=torch.float32)[None] / 255 for f in files]
    )
    return (pixels - prep["mean"][0]) / prep["std"][0]


def test_the_run_directory_holds_an_image_run(image_run: Path) -> None:
    saved = RunConfig.from_yaml(image_run / "config.yaml")
    assert saved.data.modality == "image"  # decided at training, so the run loads without its data
    preparation = json.loads((image_run / PREPARATION_FILE).read_text())
    assert preparation["size"] == [28, 28] and preparation["mode"] == "L"
    assert json.loads((image_run / "labels.json").read_text()) == ["bottom", "middle", "top"]
    metrics = json.loads((image_run / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] >= 0.9, metrics["val"]
    assert metrics["data_sizes"] == {"train": 54, "val": 18, "test": 0}
    assert not (image_run / "tokenizer").exists()


def test_predictions_agree_across_the_cli_the_api_and_the_model(
    image_run: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [image_folder / "top" / "0.png", image_folder / "bottom" / "3.png"]
    run = load_run(image_run)
    with torch.no_grad():
        expected = torch.softmax(run.model(normalized(image_run, files)).logits / run.temperature, dim=-1)
    clf = attnkit.load(image_run, device="cpu")
    np.testing.assert_allclose(clf.predict_proba([str(f) for f in files]), expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(Image.open(files[0]))[0], expected[0].numpy(), atol=1e-6)
    assert clf.predict([str(f) for f in files]) == ["top", "bottom"]
    capsys.readouterr()
    assert main(["predict", str(image_run), *map(str, files)]) == 0  # the command, in this process
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["file"] for row in rows] == [str(f) for f in files]
    assert [row["label"] for row in rows] == ["top", "bottom"]
    for row, probabilities in zip(rows, expected, strict=True):
        assert row["probabilities"]["top"] == pytest.approx(float(probabilities[2]), abs=1e-5)


def test_the_api_gives_the_attention_over_regions(image_run: Path, image_folder: Path) -> None:
    """``Classifier.attention`` on an image run: the model's own pooling weights over its 7x7 cells, with each
    cell's pixel box (a documented call that used to raise AttributeError on image runs)."""
    files = [image_folder / "top" / "0.png", image_folder / "bottom" / "3.png"]
    run = load_run(image_run)
    with torch.no_grad():
        expected = run.model(normalized(image_run, files)).unit_attention  # (B, U)
    clf = attnkit.load(image_run, device="cpu")
    found = clf.attention([str(f) for f in files])
    assert [type(item) for item in found] == [attnkit.RegionAttention] * 2
    for item, weights, path in zip(found, expected, files, strict=True):
        np.testing.assert_allclose(item.weights, weights.numpy(), atol=1e-5)  # rounded to 5 decimals
        assert item.source == str(path) and item.grid == (7, 7)
        assert item.boxes[0] == (0, 0, 4, 4) and item.boxes[8] == (4, 4, 8, 8)  # row-major 4x4 boxes
        assert item.weight_grid()[1, 1] == item.weights[8]
        (box, weight), *_ = item.top(1)
        assert box == item.boxes[int(weights.argmax())]
        assert weight == pytest.approx(float(weights.max()), abs=1e-5)
    (one,) = clf.attention(Image.open(files[0]))  # one image: still a list
    np.testing.assert_allclose(one.weights, expected[0].numpy(), atol=1e-5)


def test_a_pil_image_is_read_as_its_file_is(image_run: Path, tmp_path: Path) -> None:
    """A PIL image goes through the file decoder: its EXIF orientation is applied (it used to be ignored) and
    its transparency lies on white, exactly as for the same image given as a path or bytes."""
    from PIL import ImageOps

    clf = attnkit.load(image_run, device="cpu")
    rng = np.random.default_rng(3)
    scene = rng.integers(0, 60, (28, 40), dtype=np.uint8)
    scene[2:10, 30:38] = 230  # bright square top-right; rotated by the EXIF tag it lands elsewhere
    stored = Image.fromarray(scene, "L")
    exif = stored.getexif()
    exif[0x0112] = 6  # Orientation: the stored pixels are to be rotated 90 degrees clockwise
    jpeg = tmp_path / "tagged.jpg"
    stored.save(jpeg, exif=exif, quality=95)
    by_path, by_bytes, by_pil = clf.predict_proba([str(jpeg), jpeg.read_bytes(), Image.open(jpeg)])
    np.testing.assert_allclose(by_pil, by_path, atol=1e-6)
    np.testing.assert_allclose(by_bytes, by_path, atol=1e-6)
    upright = ImageOps.exif_transpose(Image.open(jpeg))
    assert upright.size == (28, 40)  # the tag is real: upright, the image is 28 wide and 40 high
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[11:17, 11:17] = [0, 0, 0, 255]  # an opaque black square on a transparent (black) background
    png = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(png)
    np.testing.assert_allclose(clf.predict_proba(Image.open(png)), clf.predict_proba([str(png)]), atol=1e-6)
    # 32-bit grayscale (mode I, e.g. from a TIFF) reads as the same values in a 16-bit PNG file do.
    values = rng.integers(0, 65536, (28, 28)).astype(np.int32)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(values.astype(np.uint16)).save(sixteen)  # mode I;16
    as_int32 = Image.fromarray(values)
    assert as_int32.mode == "I"
    np.testing.assert_allclose(clf.predict_proba(as_int32), clf.predict_proba([str(sixteen)]), atol=1e-6)
    with pytest.raises(ValueError, match=r"^image 0: a PIL image in mode 'La' cannot be read"):
        clf.predict(Image.new("LA", (4, 4)).convert("La"))


def test_an_unreadable_image_is_named_by_its_place_and_path(
    image_run: Path, image_folder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    clf = attnkit.load(image_run, device="cpu")
    good = str(image_folder / "top" / "0.png")
    with pytest.raises(
        ValueError, match=rf"^image 1 \({re.escape(str(broken))}\): not an image \(expected PNG"
    ):
        clf.predict([good, str(broken)])  # it said "image: not an image", naming neither
    with pytest.raises(ValueError, match=r"^image 0: not an image"):
        clf.predict_proba([b"not an image either"])
    assert clf.predict_proba([]).shape == (0, 3)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (np.zeros((3, 20, 30), np.uint8), r"channels last; got shape \(3, 20, 30\) \(channels first\?"),
        (np.zeros((20, 30, 5), np.uint8), r"C = 1 \(grayscale\), 3 \(RGB\) or 4 \(RGBA\)"),
        (np.zeros((0, 30, 3), np.uint8), r"H, W >= 1"),
        (Image.new("RGB", (0, 0)), r"image 0: an empty image \(0x0 pixels\)"),
    ],
)
def test_an_image_the_model_cannot_read_gets_a_clear_error(
    image_run: Path, item: object, message: str
) -> None:
    """Arrays in another layout and empty images: a one-line ValueError, not Pillow's internal TypeError."""
    clf = attnkit.load(image_run, device="cpu")
    with pytest.raises(ValueError, match=message):
        clf.predict([item])


def test_the_pixel_cap_is_the_runs_and_predict_can_raise_it(
    image_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``image.max_pixels`` (saved with the run) refuses an image from its header; ``--max-image-pixels``
    raises it for one command (the message said to "raise max_pixels", which nothing outside serve took)."""
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400), np.uint8), "L").save(big)  # 120,000 pixels
    run = tmp_path / "capped"
    import shutil

    shutil.copytree(image_run, run)
    config = (run / "config.yaml").read_text()
    assert "max_pixels: 64000000" in config
    (run / "config.yaml").write_text(config.replace("max_pixels: 64000000", "max_pixels: 100000"))
    assert main(["predict", str(run), str(big)]) == 2
    err = capsys.readouterr().err
    assert "too many pixels (400x300 = 120,000 > the cap of 100,000)" in err
    assert "--max-image-pixels for predict, explain and serve" in err
    assert main(["predict", str(run), str(big), "--max-image-pixels", "200000"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["file"] == str(big)
    with pytest.raises(ValueError, match="too many pixels"):
        attnkit.load(run, device="cpu").predict([str(big)])
    relaxed = attnkit.load(run, device="cpu", max_image_pixels=200_000)
    assert relaxed.predict([str(big)])[0] in ("top", "middle", "bottom")
    with pytest.raises(Exception, match=r"image\.max_pixels must be"):
        RunConfig.from_dict({"image": {"max_pixels": 0}})


def test_a_folder_is_predicted_and_a_broken_image_is_skipped(
    image_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 30), dtype=np.uint8), "L").save(folder / "b.png")  # resized like training
    (folder / "a.png").write_bytes(b"not a png")
    out_csv = tmp_path / "out.csv"
    capsys.readouterr()
    code = main(["predict", str(image_run), "--file", str(folder), "--out", str(out_csv)])  # in this process
    err = capsys.readouterr().err
    assert code == 0, err
    assert "skipped 1 of 2" in err and "a.png" in err and "Traceback" not in err
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "file,predicted_label,prob_bottom,prob_middle,prob_top"
    assert len(lines) == 2 and lines[1].startswith(str(folder / "b.png"))
    # Hidden entries are skipped as training skips them (they were predicted, or listed as "not an image").
    (folder / "._b.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".cache").mkdir()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8), "L").save(folder / ".cache" / "c.png")
    (folder / "nested").mkdir()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8), "L").save(folder / "nested" / "d.png")
    assert main(["predict", str(image_run), str(folder)]) == 0
    captured = capsys.readouterr()
    files = [json.loads(line)["file"] for line in captured.out.splitlines()]
    assert files == [str(folder / "b.png"), str(folder / "nested" / "d.png")]  # sub-folders: searched
    assert "._b.png" not in captured.err and "skipped 1 of 3" in captured.err


def test_evaluate_and_a_label_the_run_does_not_know(
    image_run: Path, image_folder: Path, tmp_path: Path
) -> None:
    report = evaluate_run(image_run, str(image_folder))
    assert report["n"] == 72 and report["accuracy"] >= 0.9
    other = _write_folder(tmp_path / "other", n=3)
    (other / "top").rename(other / "left")
    with pytest.raises(ValueError, match="'left' are not among the run's labels"):
        evaluate_run(image_run, str(other))


def test_a_run_whose_classes_are_numbers_in_folder_spelling_still_evaluates(
    image_run: Path, image_folder: Path, tmp_path: Path
) -> None:
    """A run trained before class folders were read as labels has the class "1.0" for a folder 1.0/; its own
    folders, now read as the class "1", still evaluate and calibrate in the run's spelling."""
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(image_run, old)
    spelled = {"bottom": "1.0", "middle": "2.0", "top": "3.0"}  # labels.json order: bottom, middle, top
    (old / "labels.json").write_text(json.dumps(list(spelled.values())))
    folder = tmp_path / "numbered"
    for name, number in spelled.items():
        shutil.copytree(image_folder / name, folder / number)
    report, reference = evaluate_run(old, str(folder)), evaluate_run(image_run, str(image_folder))
    assert report["labels"] == ["1.0", "2.0", "3.0"] and report["n"] == reference["n"] == 72
    assert report["accuracy"] == reference["accuracy"]
    assert report["confusion_matrix"] == reference["confusion_matrix"]
    assert main(["calibrate", str(old), "--data", str(folder)]) == 0


def test_resume_after_a_kill_gives_the_same_weights(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Augmentation included: its random stream is a function of (seed, epoch), so a resume replays it."""
    from attnkit.train import run as run_module

    config = _config(image_folder, epochs=3).with_overrides(
        ["image.random_crop_padding=2", "image.horizontal_flip=true"]
    )
    whole = fit(config, tmp_path / "whole")
    train_epoch = run_module._Trainer.train_epoch

    def killed_in_epoch_two(self: run_module._Trainer, epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt  # after epoch 1's checkpoint, before epoch 2's
        train_epoch(self, epoch)

    monkeypatch.setattr(run_module._Trainer, "train_epoch", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "part")
    monkeypatch.setattr(run_module._Trainer, "train_epoch", train_epoch)
    resumed = fit(config, tmp_path / "part", resume=True)
    for name, tensor in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, atol=0, rtol=0, msg=name)
    assert resumed.metrics["val"]["accuracy"] == whole.metrics["val"]["accuracy"]
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2, 3]


def test_an_ensemble_of_image_models_averages_its_members(image_folder: Path, tmp_path: Path) -> None:
    config = _config(image_folder, epochs=1).with_overrides(["model.ensemble=2"])
    result = fit(config, tmp_path / "ens")
    members = [Predictor(tmp_path / "ens" / "members" / str(m)) for m in range(2)]
    ensemble = Predictor(tmp_path / "ens")
    files = [str(image_folder / "middle" / "1.png")]
    pixels, _ = ensemble.encode_inputs(list(attnkit.load(tmp_path / "ens")._inputs(files)))
    with torch.no_grad():
        mean = torch.stack([m.model(pixels).logits for m in members]).mean(dim=0)
        torch.testing.assert_close(ensemble.model(pixels).logits, mean)
    assert "members" in result.metrics and len(result.metrics["members"]) == 2


def test_explain_writes_into_a_folder_it_creates(image_run: Path, image_folder: Path, tmp_path: Path) -> None:
    """``--out new/x.png``: the folder is created, as ``predict --out`` does (it raised "[Errno 2] No such file")."""
    out = tmp_path / "new" / "deeper" / "x.png"
    assert main(["explain", str(image_run), str(image_folder / "top" / "0.png"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]  # no temporary file left beside it
