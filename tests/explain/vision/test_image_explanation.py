"""`explain_images` and `attnkit explain` / `attnkit faithfulness` on a trained image run: the JSON format, the box
geometry, the CLI outputs, and faithfulness on a task where one box carries the label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnkit.cli import main
from attnkit.explain import METHODS, ImageExplanation, explain, explain_images
from attnkit.explain.faithfulness import faithfulness_report, read_inputs
from attnkit.explain.images import grid_boxes, upsample_scores
from attnkit.models.vision import ImageModelConfig, unit_boxes
from attnkit.predictor import Predictor

CUE_BOX = (12, 8, 16, 12)  # conftest.CUE_BOX: unit (2, 3), index 17
CUE_UNIT = 17


def cue_files(cue_data: dict[str, Path]) -> list[Path]:
    return [cue_data["test"] / "bright" / "0.png", cue_data["test"] / "striped" / "0.png"]


@pytest.mark.parametrize(("size", "unit"), [((28, 28), 4), ((24, 32), 8), ((30, 18), 6)])
def test_unit_boxes_tile_the_image_and_the_heatmap_is_constant_on_each_box(
    size: tuple[int, int], unit: int
) -> None:
    config = ImageModelConfig(image_size=size, unit_size=unit)
    boxes = grid_boxes(config.grid, unit)
    assert boxes == [tuple(b) for b in unit_boxes(config).tolist()]  # the model's own boxes, row-major
    cover = np.zeros(size, dtype=int)
    for x0, y0, x1, y1 in boxes:
        assert (x1 - x0, y1 - y0) == (unit, unit)
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()  # every pixel in exactly one box
    scores = np.random.default_rng(0).normal(size=len(boxes))
    heat = upsample_scores(scores.tolist(), boxes, size)
    assert heat.shape == size
    for score, (x0, y0, x1, y1) in zip(scores, boxes, strict=True):
        assert (heat[y0:y1, x0:x1] == score).all()
    # row-major: unit index = row * cols + col, and the box of (row, col) starts at (col * S, row * S)
    rows, cols = config.grid
    assert boxes[cols + 1][:2] == (unit, unit) and boxes[-1][2:] == (size[1], size[0])
    assert len(boxes) == rows * cols


def test_explain_images_format_and_json_round_trip(cue_run: Path, cue_data: dict[str, Path]) -> None:
    predictor = Predictor(cue_run)
    files = cue_files(cue_data)
    explanations = explain_images(
        predictor, [p.read_bytes() for p in files], ["all"], sources=[str(p) for p in files]
    )
    assert [e.label for e in explanations] == ["bright", "striped"]
    for exp, path in zip(explanations, files, strict=True):
        item = exp.to_json_dict()
        assert set(item) == {
            "modality", "source", "label", "target", "probabilities", "methods", "signed", "image", "grid",
            "units", "scale",
        }  # fmt: skip
        assert item["methods"] == list(METHODS) and list(item["scale"]) == item["methods"]
        assert item["grid"] == {"rows": 7, "cols": 7, "unit_size": 4, "unit_name": "cell"}
        assert item["image"]["width"] == 28 and item["image"]["mode"] == "L"
        assert [u["box"] for u in item["units"]] == [list(b) for b in grid_boxes((7, 7), 4)]
        assert sum(u["scores"]["attention"] for u in item["units"]) == pytest.approx(1.0, abs=1e-4)
        assert sum(item["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        # the image is the one the model saw: the file's pixels (already 28x28 L)
        assert (exp.image[..., 0] == np.asarray(Image.open(path))).all()
        # JSON round trip: text -> dict -> ImageExplanation -> the same dict
        again = ImageExplanation.from_json_dict(json.loads(json.dumps(item)))
        assert again.to_json_dict() == item
        assert (again.image == exp.image).all()
        # the cue box decides: leave-one-out (occlusion) and IG put it first
        assert exp.top_units("loo", 1)[0][0].index == CUE_UNIT
        assert exp.top_units("ig", 1)[0][0].index == CUE_UNIT
        assert tuple(exp.units[CUE_UNIT].box) == CUE_BOX
        heat = exp.heatmap("ig")
        x0, y0, x1, y1 = CUE_BOX
        assert (heat[y0:y1, x0:x1] == exp.scores("ig")[CUE_UNIT]).all()


def test_explain_images_targets_arrays_and_errors(cue_run: Path, cue_data: dict[str, Path]) -> None:
    predictor = Predictor(cue_run)
    array = np.asarray(Image.open(cue_files(cue_data)[0]))  # (28, 28) uint8
    (as_array,) = explain_images(predictor, [array], ["loo"], target="striped")
    (as_bytes,) = explain_images(predictor, [cue_files(cue_data)[0].read_bytes()], ["loo"], target="striped")
    assert as_array.target == "striped" and as_array.label == "bright"
    assert as_array.scores("loo") == as_bytes.scores("loo")
    (other,) = explain_images(predictor, [array], ["loo"])
    # two classes: p(striped) = 1 - p(bright), so explaining the other class negates leave-one-out
    assert as_array.scores("loo") == pytest.approx([-v for v in other.scores("loo")], abs=2e-6)
    with pytest.raises(ValueError, match="unknown target label 'cat'"):
        explain_images(predictor, [array], ["loo"], target="cat")
    with pytest.raises(ValueError, match="unknown explanation method 'shap'"):
        explain_images(predictor, [array], ["shap"])
    with pytest.raises(ValueError, match=r"^image 0: not an image"):
        explain_images(predictor, [b"not an image"], ["attention"])
    with pytest.raises(ValueError, match="explain_images"):
        explain(predictor, ["a text"], ["attention"])
    assert explain_images(predictor, [], ["attention"]) == []


def test_cli_explain_writes_png_html_and_json(
    cue_run: Path, cue_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(p) for p in cue_files(cue_data)]
    html_out, json_out, png_out = tmp_path / "report.html", tmp_path / "report.json", tmp_path / "report.png"
    for out in (html_out, json_out):  # the format comes from the suffix
        assert main(["explain", str(cue_run), *files, "--method", "all", "--out", str(out)]) == 0
    assert main(["explain", str(cue_run), *files, "--method", "attention,ig", "--out", str(png_out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report-0.png",
        "report-1.png",
        "report.html",
        "report.json",
    ]
    payload = json.loads(json_out.read_text(encoding="utf-8"))
    assert [item["source"] for item in payload] == files
    assert [item["label"] for item in payload] == ["bright", "striped"]
    assert [item["methods"] for item in payload] == [list(METHODS)] * 2
    page = html_out.read_text(encoding="utf-8")
    assert page.count('class="ak-explanation ak-image-explanation"') == 2
    assert page.count('class="ak-img-view ') == 2 * len(METHODS)
    assert "http://" not in page and "https://" not in page
    for png in ("report-0.png", "report-1.png"):
        with Image.open(tmp_path / png) as image:  # 2 method rows of image | heatmap | bar | overlay
            assert image.format == "PNG" and 500 < image.height < 0.75 * image.width
    capsys.readouterr()
    # terminal by default; a folder is expanded to its images; stdout JSON with --format json
    assert main(["explain", str(cue_run), files[0], "--method", "attention,loo"]) == 0
    out = capsys.readouterr().out
    assert "predicted" in out and "loo signed" in out
    assert "(2, 3) +" in out  # the cue unit leads leave-one-out
    assert main(["explain", str(cue_run), str(cue_data["test"] / "striped"), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 12
    # mistakes: one line, exit 2; an unreadable image is skipped and named
    (tmp_path / "broken.png").write_bytes(b"nope")
    assert main(["explain", str(cue_run), str(tmp_path / "broken.png"), files[0], "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.png" in captured.err and len(json.loads(captured.out)) == 1
    assert main(["explain", str(cue_run), files[0], "--layers"]) == 2
    assert main(["explain", str(cue_run), files[0], "--format", "head-view"]) == 2
    assert main(["explain", str(cue_run), files[0], "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["explain", str(cue_run), str(tmp_path / "missing.png")]) == 2
    assert "error" in capsys.readouterr().err


def test_faithfulness_on_a_task_where_one_box_carries_the_label(
    cue_run: Path, cue_data: dict[str, Path]
) -> None:
    """Deletion AOPC of attention and IG above random, with paired bootstrap intervals that exclude 0; insertion
    AOPC likewise. Measured on the 24 test images (sample seed 0, IG with 16 steps): deletion attention 0.375,
    ig 0.500, random 0.084; insertion attention 0.881, ig 0.996, random 0.586 (see ``cue_run`` for how attention
    depends on the training seed)."""
    predictor = Predictor(cue_run)
    images, labels = read_inputs(predictor, str(cue_data["test"]))
    assert len(images) == 24 and images[0].shape == (28, 28, 1) and set(labels) == {"bright", "striped"}
    report = faithfulness_report(
        predictor, images, labels=labels, methods=["attention", "ig"], n=24, ig_steps=16
    )
    assert report.modality == "image" and report.unit == "cell"
    assert [m.method for m in report.methods] == ["attention", "ig", "random"]
    random = report.method("random")
    for name in ("attention", "ig"):
        method = report.method(name)
        assert method.comprehensiveness_aopc > random.comprehensiveness_aopc + 0.2, (name, method, random)
        assert method.insertion_aopc > random.insertion_aopc + 0.2
        assert method.deletion_aopc == method.comprehensiveness_aopc
        # insertion = p(y | only the top units); sufficiency = p(y | x) minus that: their sum is the mean p(y | x)
        full = [method.insertion[key] + method.sufficiency[key] for key in method.insertion]
        assert full == pytest.approx([random.insertion["0.01"] + random.sufficiency["0.01"]] * 5, abs=1e-9)
    verdicts = {(c.method, c.other): c for c in report.comparisons}
    assert set(verdicts) == {("attention", "random"), ("attention", "ig"), ("ig", "random")}
    assert verdicts[("attention", "random")].low > 0 and verdicts[("ig", "random")].low > 0
    assert report.uniform_attention is not None and report.uniform_attention.pooling_layers == 1
    assert report.uniform_attention.accuracy == 1.0
    assert any("images" in note for note in report.findings)


def test_cli_faithfulness_on_an_image_run(
    cue_run: Path, cue_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["faithfulness", str(cue_run), "--data", str(cue_data["test"]), "--n", "8", "--method", "attention",
            "--ig-steps", "4", "--json", "--no-progress", "--plot", str(tmp_path / "curves.png")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 8 and report["modality"] == "image" and report["unit"] == "cell"
    by_method = {m["method"]: m for m in report["methods"]}
    assert set(by_method) == {"attention", "random"}
    assert set(by_method["attention"]["insertion"]) == {"0.01", "0.05", "0.1", "0.2", "0.5"}
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    argv = ["faithfulness", str(cue_run), "--data", str(cue_data["test"]), "--n", "4", "--method", "attention",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "ins AOPC" in table and "units: cells" in table
    assert main(["faithfulness", str(cue_run), "--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
