"""attnkit.runs: the run-directory layout, and load_run checking every file before it is used.

A run directory is built here without training (config, a fitted tokenizer, labels, weights saved from a freshly
built model), so each reader is tested against known content: the loaded weights must equal the saved ones
exactly, and every damaged file must give a one-line RunError that names it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnkit import runs
from attnkit.data import TextTokenizer, TokenizerConfig
from attnkit.runs import RunError, RunNotFoundError, build_classifier, load_run
from attnkit.threads import max_threads
from attnkit.train import calibration, checkpoint
from attnkit.train.config import RunConfig

TEXTS = [
    "a wonderful film with a great cast",
    "the plot was dull and the acting awful",
    "great fun , wonderful music",
    "boring , awful and far too long",
]


def _config(embed_dim: int = 8) -> RunConfig:
    return RunConfig.from_dict(
        {
            "data": {"train": "reviews.jsonl"},
            "tokenizer": {"level": "word", "vocab_size": 50, "max_length": 32},
            "model": {"name": "bag-attn", "options": {"embed_dim": embed_dim, "bigram_buckets": 31}},
            "train": {"threads": 1, "progress": False},
        }
    )


def _weights(config: RunConfig, tokenizer: TextTokenizer, classes: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_classifier(config, tokenizer, classes)
    return {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete run directory: bag-attn, 2 labels, temperature 1.5."""
    root = tmp_path_factory.mktemp("runs") / "run"
    root.mkdir()
    config = _config()
    config.save_yaml(root / runs.CONFIG_FILE)
    tokenizer = TextTokenizer.fit(TEXTS, TokenizerConfig(level="word", vocab_size=50, max_length=32))
    tokenizer.save(root / runs.TOKENIZER_DIR)
    (root / runs.LABELS_FILE).write_text(json.dumps(["neg", "pos"]), encoding="utf-8")
    save_file(_weights(config, tokenizer, 2, seed=0), str(root / runs.WEIGHTS_FILE))
    (root / runs.CALIBRATION_FILE).write_text(json.dumps({"temperature": 1.5, "n": 4}), encoding="utf-8")
    (root / runs.METRICS_FILE).write_text(json.dumps({"val": {"accuracy": 0.5}}), encoding="utf-8")
    return root


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the run, to damage."""
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


def test_layout_names_match_the_writers() -> None:
    # The trainer and the checkpoint code write these files; runs.py is where everything else finds them.
    assert runs.WEIGHTS_FILE == checkpoint.WEIGHTS_FILE
    assert runs.STATE_DIR == checkpoint.STATE_DIR
    assert runs.CALIBRATION_FILE == calibration.CALIBRATION_FILE


def test_load_run_gives_back_exactly_what_was_saved(run: Path) -> None:
    loaded = load_run(run)
    saved = load_file(str(run / runs.WEIGHTS_FILE))
    state = loaded.model.state_dict()
    assert set(state) == set(saved)
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert loaded.labels == ["neg", "pos"]
    assert loaded.temperature == 1.5
    assert loaded.config == _config()
    assert not loaded.model.training
    assert loaded.tokenizer.vocab_size == TextTokenizer.load(run / runs.TOKENIZER_DIR).vocab_size
    assert runs.read_metrics(run) == {"val": {"accuracy": 0.5}}


def test_predictor_keeps_its_attributes(run: Path) -> None:
    from attnkit.predictor import Predictor

    predictor = Predictor(run)
    loaded = load_run(run)
    assert predictor.run_dir == run and predictor.labels == loaded.labels
    assert predictor.config == loaded.config and predictor.temperature == 1.5
    assert predictor.device == torch.device("cpu") and predictor.metrics == {"val": {"accuracy": 0.5}}
    _, ids, mask = predictor.encode(["a great film"])
    with torch.no_grad():
        expected = torch.softmax(loaded.model(ids, mask).logits / 1.5, dim=-1)
    torch.testing.assert_close(predictor.predict_proba(["a great film"]), expected)


def test_no_calibration_means_temperature_one(run: Path) -> None:
    (run / runs.CALIBRATION_FILE).unlink()
    assert runs.read_temperature(run) == 1.0


def test_saved_threads_above_this_machine_are_ignored(run: Path) -> None:
    raw = _config().to_dict()
    raw["train"]["threads"] = max_threads() + 1  # trained on a bigger machine
    (run / runs.CONFIG_FILE).write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML
    assert runs.read_config(run).train.threads is None


def _write(name: str, content: str | bytes) -> Callable[[Path], object]:
    def damage(run: Path) -> None:
        path = run / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return damage


def _remove(name: str) -> Callable[[Path], object]:
    def damage(run: Path) -> None:
        path = run / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return damage


def _edit_config(old: str, new: str) -> Callable[[Path], object]:
    def damage(run: Path) -> None:
        path = run / runs.CONFIG_FILE
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new), encoding="utf-8")

    return damage


def _truncate(fraction: float) -> Callable[[Path], object]:
    def damage(run: Path) -> None:
        path = run / runs.WEIGHTS_FILE
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return damage


def _edit_weights(edit: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], object]:
    def damage(run: Path) -> None:
        path = run / runs.WEIGHTS_FILE
        tensors = load_file(str(path))
        edit(tensors)
        save_file(tensors, str(path))

    return damage


def _rename(tensors: dict[str, torch.Tensor]) -> None:
    tensors["head.weights"] = tensors.pop("head.weight")


def _nan(tensors: dict[str, torch.Tensor]) -> None:
    tensors["head.bias"][0] = float("nan")


def _other_run_weights(run: Path) -> None:
    """Weights of a run with a larger embedding (another run, or config.yaml edited since)."""
    tokenizer = TextTokenizer.load(run / runs.TOKENIZER_DIR)
    save_file(_weights(_config(embed_dim=12), tokenizer, 2, seed=1), str(run / runs.WEIGHTS_FILE))


# (case, damage, the file the message must name, what it must say)
CASES: list[tuple[str, Callable[[Path], object], str, str]] = [
    ("config missing", _remove(runs.CONFIG_FILE), "", r"is not an attnkit run directory \(no config.yaml\)"),
    ("config empty", _write(runs.CONFIG_FILE, ""), runs.CONFIG_FILE, r"config.yaml: is empty"),
    ("config not YAML", _write(runs.CONFIG_FILE, "model: [bag\n  x: :\n"), runs.CONFIG_FILE, r"not valid YAML"),
    ("config binary", _write(runs.CONFIG_FILE, b"\x89PNG\xff\x00"), runs.CONFIG_FILE, r"not UTF-8 text"),
    ("config a list", _write(runs.CONFIG_FILE, "- a\n"), runs.CONFIG_FILE, r"must be a mapping of sections"),
    ("config unknown key", _edit_config("optim:", "colour: red\noptim:"), runs.CONFIG_FILE, r"unknown key\(s\) colour"),
    ("config bad value", _edit_config("label_smoothing: 0.0", "label_smoothing: 5"), runs.CONFIG_FILE, r"label_smoothing"),
    ("config huge", _edit_config("embed_dim: 8", "embed_dim: 1000000000"), runs.CONFIG_FILE, r"more than this machine's"),
    ("config edited", _edit_config("embed_dim: 8", "embed_dim: 16"), runs.WEIGHTS_FILE, r"'embedding.weight' has shape \[\d+, 8\] but .* needs \[\d+, 16\]; the weights are from another run, or config.yaml"),
    ("tokenizer missing", _remove(runs.TOKENIZER_DIR), runs.TOKENIZER_DIR, r"the run directory has no tokenizer"),
    ("tokenizer json missing", _remove(f"{runs.TOKENIZER_DIR}/tokenizer.json"), runs.TOKENIZER_DIR, r"not found"),
    ("tokenizer json damaged", _write(f"{runs.TOKENIZER_DIR}/tokenizer.json", "{oops"), runs.TOKENIZER_DIR, r"tokenizer"),
    ("tokenizer config damaged", _write(f"{runs.TOKENIZER_DIR}/tokenizer_config.json", "[]"), runs.TOKENIZER_DIR, r"tokenizer"),
    ("labels missing", _remove(runs.LABELS_FILE), runs.LABELS_FILE, r"not found"),
    ("labels empty", _write(runs.LABELS_FILE, ""), runs.LABELS_FILE, r"is empty"),
    ("labels not JSON", _write(runs.LABELS_FILE, '["neg", "pos"'), runs.LABELS_FILE, r"not valid JSON \(line 1, column \d+"),
    ("labels not a list", _write(runs.LABELS_FILE, '{"neg": 0}'), runs.LABELS_FILE, r"must be a JSON list of label names"),
    ("labels numbers", _write(runs.LABELS_FILE, "[0, 1]"), runs.LABELS_FILE, r"must be a JSON list of label names"),
    ("labels one", _write(runs.LABELS_FILE, '["neg"]'), runs.LABELS_FILE, r"lists 1 label\(s\); a classifier has at least 2"),
    ("labels twice", _write(runs.LABELS_FILE, '["neg", "neg"]'), runs.LABELS_FILE, r"'neg' appear more than once"),
    ("labels edited", _write(runs.LABELS_FILE, '["neg", "pos", "mixed"]'), runs.WEIGHTS_FILE, r"'head.weight' has shape \[2, 8\] but .* needs \[3, 8\]; .*labels.json"),
    ("weights missing", _remove(runs.WEIGHTS_FILE), runs.WEIGHTS_FILE, r"not found; the run has no weights"),
    ("weights empty", _write(runs.WEIGHTS_FILE, b""), runs.WEIGHTS_FILE, r"is empty \(0 bytes\)"),
    ("weights truncated", _truncate(0.5), runs.WEIGHTS_FILE, r"not a readable safetensors file .*truncated or damaged"),
    ("weights header cut", _truncate(0.001), runs.WEIGHTS_FILE, r"not a readable safetensors file"),
    ("weights garbage", _write(runs.WEIGHTS_FILE, bytes(range(256)) * 8), runs.WEIGHTS_FILE, r"not a readable safetensors file"),
    ("weights text", _write(runs.WEIGHTS_FILE, "these are not weights\n"), runs.WEIGHTS_FILE, r"not a readable safetensors file"),
    ("weights other run", _other_run_weights, runs.WEIGHTS_FILE, r"has shape \[\d+, 12\] but .* needs \[\d+, 8\]"),
    ("weights renamed tensor", _edit_weights(_rename), runs.WEIGHTS_FILE, r"missing 'head.weight'; unexpected 'head.weights'"),
    ("weights NaN", _edit_weights(_nan), runs.WEIGHTS_FILE, r"'head.bias' holds NaN or infinite values"),
    ("calibration {}", _write(runs.CALIBRATION_FILE, "{}"), runs.CALIBRATION_FILE, r"holds no temperature"),
    ("calibration list", _write(runs.CALIBRATION_FILE, "[1.5]"), runs.CALIBRATION_FILE, r"holds no temperature"),
    ("calibration not JSON", _write(runs.CALIBRATION_FILE, "{temperature"), runs.CALIBRATION_FILE, r"not valid JSON"),
    ("calibration zero", _write(runs.CALIBRATION_FILE, '{"temperature": 0}'), runs.CALIBRATION_FILE, r"finite number > 0, got 0"),
    ("calibration NaN", _write(runs.CALIBRATION_FILE, '{"temperature": NaN}'), runs.CALIBRATION_FILE, r"finite number > 0, got nan"),
    ("calibration string", _write(runs.CALIBRATION_FILE, '{"temperature": "1.5"}'), runs.CALIBRATION_FILE, r"must be a number"),
    ("calibration bool", _write(runs.CALIBRATION_FILE, '{"temperature": true}'), runs.CALIBRATION_FILE, r"must be a number"),
]  # fmt: skip


@pytest.mark.parametrize(("damage", "names", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_damage_is_a_one_line_error_naming_the_file(
    run: Path, damage: Callable[[Path], object], names: str, pattern: str
) -> None:
    damage(run)
    with pytest.raises(RunError, match=pattern) as info:
        load_run(run)
    message = str(info.value)
    assert "\n" not in message
    assert str(run / names) in message
    if "missing" in names or "not found" in pattern:
        assert isinstance(info.value, FileNotFoundError)


def test_metrics_damage_is_named(run: Path) -> None:
    (run / runs.METRICS_FILE).write_text("[]", encoding="utf-8")
    with pytest.raises(RunError, match=rf"{run / runs.METRICS_FILE}: must be a JSON object"):
        runs.read_metrics(run)
    load_run(run)  # the model itself does not need the metrics


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(
        RunNotFoundError, match=rf"{tmp_path / 'nope'} is not an attnkit run directory \(no such directory\)"
    ):
        load_run(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match=r"is not an attnkit run directory \(it is a file\)"):
        load_run(tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="run directory"):  # as it always was for an empty folder
        load_run(tmp_path)


def test_bad_device_is_a_value_error(run: Path) -> None:
    with pytest.raises(ValueError, match=r"device must be auto, cpu, cuda\[:N\] or mps, got 'toaster'"):
        load_run(run, device="toaster")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # ``pkg.module.Class``: its parent is a module, not a package
        return False


def _module_imports(module: str) -> set[str]:
    """The attnkit modules ``module`` imports at its top level (imports inside functions run only when called)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from attnkit.train import checkpoint`` imports the submodule attnkit.train.checkpoint.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("attnkit") and _is_module(name)}


def test_inference_does_not_import_the_training_loop() -> None:
    seen: set[str] = set()
    todo = ["attnkit.predictor", "attnkit.runs", "attnkit.export"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            parts = module.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # packages run their __init__
            todo += sorted(_module_imports(module))
    assert "attnkit.runs" in seen and "attnkit.train.config" in seen
    assert "attnkit.train.loop" not in seen


def test_a_run_written_before_modalities_loads_as_a_text_run(run: Path, pristine: Path) -> None:
    """Configs saved before ``data.modality`` and the ``image`` section existed still load, as text runs."""
    import yaml

    path = run / runs.CONFIG_FILE
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    del raw["image"]
    del raw["data"]["modality"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    loaded = load_run(run)
    assert loaded.config.modality == "text" and loaded.task.modality == "text"
    expected = load_run(pristine)  # the same run with today's config.yaml
    ids = torch.tensor([[2, 3, 4]])
    torch.testing.assert_close(loaded.model(ids).logits, expected.model(ids).logits)
    assert loaded.tokenizer.vocab_size == expected.tokenizer.vocab_size
