"""The run directory: where each file of a trained run lives, and loading a run with every file checked.

A run directory (written by :func:`attnkit.train.loop.fit`) holds::

    config.yaml          the run's RunConfig
    tokenizer/           tokenizer.json + tokenizer_config.json
    labels.json          the label names, in class-id order
    model.safetensors    the selected weights
    metrics.json         validation and test scores, the training history
    calibration.json     the fitted temperature (absent: no scaling)
    state/               the resumable training state (attnkit.train.checkpoint)
    members/<m>/         an ensemble's member runs
    validated/           a train.refit run's validated run

:func:`load_run` builds the model of a run for inference. Every file is checked before it is used, and every
failure is a :class:`RunError` (a ``ValueError``) whose message is one line naming the file and what is wrong:
an empty or damaged ``config.yaml``, missing tokenizer files, a ``labels.json`` that is not a list of unique
strings, weights that are missing, empty, truncated, not safetensors, or whose tensors do not match the model
that ``config.yaml``, ``labels.json`` and ``tokenizer/`` describe (weights from another run, or edited files),
and a ``calibration.json`` without a positive finite temperature. Training imports this module, never the
other way round: inference does not load the training loop.

Dimension legend: ``V`` vocabulary size, ``E`` embedding size.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from attnkit.data import DataError, TextTokenizer
from attnkit.data.text import tokenizer as tokenizer_files
from attnkit.models import build_model
from attnkit.models.base import AttentionModel
from attnkit.models.ensemble import EnsembleClassifier
from attnkit.tasks import task_for
from attnkit.tasks.text import SENTENCE_END_TOKENS as SENTENCE_END_TOKENS
from attnkit.tasks.text import vocabulary_strings as vocabulary_strings
from attnkit.threads import max_threads

# The layout's names that the checkpoint and calibration modules own, re-exported: one definition each.
from attnkit.train.calibration import CALIBRATION_FILE as CALIBRATION_FILE
from attnkit.train.checkpoint import STATE_DIR as STATE_DIR
from attnkit.train.checkpoint import WEIGHTS_FILE as WEIGHTS_FILE
from attnkit.train.config import ConfigError, RunConfig, check_model_memory, read_yaml_mapping

if TYPE_CHECKING:
    from attnkit.tasks.base import Task

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
#: Where an ensemble run keeps its members' runs (``RUN_DIR/members/<m>``).
MEMBERS_DIR = "members"
#: Where a ``train.refit`` run keeps its validated run (``RUN_DIR/validated``).
VALIDATED_DIR = "validated"

_EDITED = (
    "the weights are from another run, or config.yaml, labels.json or tokenizer/ were edited after training"
)


class RunError(ValueError):
    """A file of a run directory that is missing, damaged or does not match the others (one line, names it)."""


class RunNotFoundError(RunError, FileNotFoundError):
    """The run directory, or a file every run has, does not exist."""


@dataclass
class LoadedRun:
    """A trained run ready for inference.

    Attributes:
        run_dir: the run directory.
        config: its validated config.
        task: its task, with the preparation the run saved (a text run's tokenizer, an image run's statistics).
        labels: label names in class-id order (``labels[c]`` is class ``c``).
        model: the classifier with the run's weights, in eval mode, on the requested device.
        temperature: probabilities are ``softmax(logits / temperature)``; 1.0 without ``calibration.json``.
    """

    run_dir: Path
    config: RunConfig
    task: Task
    labels: list[str]
    model: AttentionModel
    temperature: float

    @property
    def tokenizer(self) -> TextTokenizer:
        """The tokenizer of a text run."""
        tokenizer = getattr(self.task, "tokenizer", None)
        if tokenizer is None:
            raise RunError(f"{self.run_dir}: a {self.config.modality} run has no tokenizer")
        return tokenizer


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu", *, read_calibration: bool = True
) -> LoadedRun:
    """Load and check every file a run needs for inference, then build its model with its weights.

    Args:
        run_dir: a directory written by ``attnkit train``.
        device: where to put the model.
        read_calibration: read ``calibration.json``; False gives temperature 1.0 without reading it (for
            refitting it, when the old one may be damaged).

    Raises:
        RunNotFoundError: no such run directory, or a required file is missing.
        RunError: a file is empty, damaged, or does not match the others (see the module docstring).
        ValueError: ``device`` is not a device name, or not available here.
    """
    run_dir = Path(run_dir)
    target = _device(device)
    config = read_config(run_dir)
    task = task_for(config)
    task.load_preparation(run_dir)  # checked: a one-line RunError naming the file
    labels = read_labels(run_dir)
    temperature = read_temperature(run_dir) if read_calibration else 1.0
    try:
        model = build_run_model(config, task, len(labels), where=run_dir / CONFIG_FILE)
    except ConfigError as err:  # too large for this machine with the run's real vocabulary and labels
        raise RunError(str(err)) from None
    load_weights(model, run_dir / WEIGHTS_FILE)
    try:
        model = model.to(target)
    except (RuntimeError, AssertionError) as err:  # e.g. "Torch not compiled with CUDA enabled"
        raise ValueError(f"device {str(target)!r} is not available here ({_first_line(err)})") from None
    return LoadedRun(run_dir, config, task, labels, model.eval(), temperature)


# -- one reader per file ----------------------------------------------------------------------------------


def check_new_run_dir(run_dir: str | Path, *, overwrite: bool = False, keep: tuple[str, ...] = ()) -> Path:
    """``run_dir`` as a path, if a new run may be trained there: it is missing, empty, or (with ``overwrite``) a
    folder; ``keep`` names entries that do not count (``data``: the snapshot :func:`attnkit.fit` writes first).

    Raises:
        RunError: it is a file; it holds a run (``config.yaml``) and ``overwrite`` is false; it holds other files
            and ``overwrite`` is false (a fresh run removes files with run names, so a folder of the user's own is
            never trained into by mistake).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} is a file, not a directory: choose a new folder for the run")
    if overwrite or not run_dir.exists():
        return run_dir
    if (run_dir / CONFIG_FILE).exists():
        raise RunError(
            f"{run_dir} already holds a run; resume it (--resume {run_dir}; attnkit.resume in Python) or replace it "
            "(--overwrite; overwrite=True in Python)"
        )
    others = sorted(entry.name for entry in run_dir.iterdir() if entry.name not in keep)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise RunError(
            f"{run_dir} is not empty ({shown}) and holds no attnkit run: choose a new or empty folder, or pass "
            "--overwrite to train there anyway (files with run names would be replaced)"
        )
    return run_dir


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a path, if it is a directory holding a ``config.yaml``.

    Raises:
        RunNotFoundError: it does not exist, or holds no ``config.yaml``.
        RunError: it is a file.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunNotFoundError(f"{run_dir} is not an attnkit run directory (no such directory)")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not an attnkit run directory (it is a file)")
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunNotFoundError(f"{run_dir} is not an attnkit run directory (no {CONFIG_FILE})")
    return run_dir


def read_config(run_dir: str | Path) -> RunConfig:
    """The run's ``config.yaml``, validated (an empty file is an error, not the default config).

    ``train.threads`` is a training-time setting: a value above what this machine allows (the run was trained
    on a larger one) is dropped rather than refused, so the run still loads here.

    Raises:
        RunNotFoundError, RunError: see :func:`check_run_dir`; the file is empty, not YAML, not a mapping, or
            holds unknown keys or invalid values.
    """
    path = check_run_dir(run_dir) / CONFIG_FILE
    try:
        raw = read_yaml_mapping(path)
        train = raw.get("train")
        if isinstance(train, dict):
            threads = train.get("threads")
            if isinstance(threads, int) and not isinstance(threads, bool) and threads > max_threads():
                log.info("%s: train.threads=%d is more than this machine allows; ignored", path, threads)
                raw = {**raw, "train": {**train, "threads": None}}
        return RunConfig.from_dict(raw)
    except ConfigError as err:
        message = str(err)
        raise RunError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def read_tokenizer(run_dir: str | Path) -> TextTokenizer:
    """The run's tokenizer from ``tokenizer/``.

    Raises:
        RunNotFoundError: the folder or one of its files is missing.
        RunError: a file is damaged.
    """
    folder = Path(run_dir) / TOKENIZER_DIR
    if not folder.is_dir():
        raise RunNotFoundError(f"{folder}: not found; the run directory has no tokenizer")
    for name in (tokenizer_files.TOKENIZER_FILE, tokenizer_files.CONFIG_FILE):
        if not (folder / name).is_file():
            raise RunNotFoundError(f"{folder / name}: not found; the run's tokenizer is incomplete")
    try:
        return TextTokenizer.load(folder)
    except (DataError, ValueError, OSError) as err:
        raise RunError(_first_line(err)) from None
    except BaseException as err:  # tokenizers' Rust panics are BaseException, not Exception
        if isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise RunError(f"{folder}: cannot load the tokenizer ({_first_line(err)})") from None


def read_labels(run_dir: str | Path) -> list[str]:
    """The run's label names from ``labels.json``: a JSON list of at least 2 unique, non-empty strings.

    Raises:
        RunNotFoundError: the file is missing.
        RunError: it is not such a list.
    """
    path = Path(run_dir) / LABELS_FILE
    labels = _read_json(path, required=True)
    if not isinstance(labels, list) or not all(isinstance(label, str) and label for label in labels):
        raise RunError(
            f"{path}: must be a JSON list of label names (non-empty strings), got {_preview(labels)}"
        )
    if len(labels) < 2:
        raise RunError(f"{path}: lists {len(labels)} label(s); a classifier has at least 2")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise RunError(f"{path}: the label(s) {', '.join(map(repr, duplicates))} appear more than once")
    return labels


def read_temperature(run_dir: str | Path) -> float:
    """The temperature in ``calibration.json``, or 1.0 (no scaling) for a run without one.

    Raises:
        RunError: the file is not JSON, or holds no positive finite ``temperature``.
    """
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.exists():
        return 1.0
    record = _read_json(path, required=False)
    fix = f"run attnkit calibrate {Path(run_dir)} to fit it again, or delete the file to use uncalibrated probabilities"
    if not isinstance(record, dict) or "temperature" not in record:
        raise RunError(f'{path}: holds no temperature (expected {{"temperature": T, ...}}); {fix}')
    temperature = record["temperature"]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise RunError(f"{path}: temperature must be a number, got {_preview(temperature)}; {fix}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise RunError(f"{path}: temperature must be a finite number > 0, got {temperature}; {fix}")
    return float(temperature)


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``metrics.json``, or ``{}`` for a run without one (training did not finish).

    Raises:
        RunError: the file is not a JSON object.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return {}
    metrics = _read_json(path, required=False)
    if not isinstance(metrics, dict):
        raise RunError(f"{path}: must be a JSON object of metrics, got {_preview(metrics)}")
    return metrics


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model`` after checking they are the model's: same names and shapes.

    Raises:
        RunNotFoundError: no file at ``path``.
        RunError: the file is empty, truncated or not safetensors; a tensor is missing, extra, of another shape
            (the message names it with both shapes) or holds NaN/infinite values.
    """
    if not path.is_file():
        raise RunNotFoundError(
            f"{path}: not found; the run has no weights (training stopped before its first epoch ended, or "
            "the file was removed)"
        )
    if path.stat().st_size == 0:
        raise RunError(f"{path}: is empty (0 bytes); the weights were lost: train the run again")
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as handle:  # reads the header only
            found = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise RunError(
            f"{path}: not a readable safetensors file ({_first_line(err)}); it is truncated or damaged: "
            "train the run again or restore the file"
        ) from None
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        parts = [
            f"missing {_names(missing)}" if missing else "",
            f"unexpected {_names(extra)}" if extra else "",
        ]
        raise RunError(
            f"{path}: its tensors are not those of the model built from config.yaml ({'; '.join(p for p in parts if p)}); "
            f"{_EDITED}"
        )
    for name, shape in expected.items():
        if found[name] != shape:
            raise RunError(
                f"{path}: tensor {name!r} has shape {list(found[name])} but the model built from config.yaml, "
                f"labels.json and tokenizer/ needs {list(shape)}; {_EDITED}"
            )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise RunError(f"{path}: cannot read the tensors ({_first_line(err)}); the file is damaged") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RunError(f"{path}: tensor {name!r} holds NaN or infinite values; the weights are damaged")
    model.load_state_dict(tensors)


# -- building the run's model (training and inference alike) ---------------------------------------------


def model_options(config: RunConfig, tokenizer: TextTokenizer, num_classes: int) -> dict[str, Any]:
    """The model config fields of a text run: vocabulary and classes from the data, the rest from ``model.options``."""
    from attnkit.tasks.text import TextClassificationTask

    return {**TextClassificationTask(config, tokenizer).model_fields(num_classes), **config.model.options}


def build_run_model(
    config: RunConfig, task: Task, num_classes: int, *, where: Path | None = None
) -> AttentionModel:
    """The run's model for its task (fields from the data, the rest from ``model.options``), unfitted.

    With ``model.ensemble = M > 1``, an :class:`EnsembleClassifier` of ``M`` such models. The size is checked
    against this machine's memory first, with the data's real fields (vocabulary, image size) and classes
    (:func:`attnkit.train.config.check_model_memory`). The task then gives the model what it derives from the
    preparation (a text model's vocabulary strings).

    Args:
        where: the file the config came from, named in errors.

    Raises:
        ConfigError: the model would not fit in memory, or an option is invalid.
    """
    fields = task.model_fields(num_classes)
    try:
        check_model_memory(config, fields=fields)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}" if where is not None else str(err)) from None
    options = {**fields, **config.model.options}
    members = [
        build_model(config.model_name, modality=config.modality, **options)
        for _ in range(config.model.ensemble)
    ]
    model = members[0] if len(members) == 1 else EnsembleClassifier(members)
    task.attach(model)
    return model


def build_classifier(
    config: RunConfig, tokenizer: TextTokenizer, num_classes: int, *, where: Path | None = None
) -> AttentionModel:
    """:func:`build_run_model` of a text run with this tokenizer."""
    from attnkit.tasks.text import TextClassificationTask

    return build_run_model(config, TextClassificationTask(config, tokenizer), num_classes, where=where)


# -- helpers ----------------------------------------------------------------------------------------------


def _read_json(path: Path, *, required: bool) -> Any:
    if not path.is_file():
        if required:
            raise RunNotFoundError(f"{path}: not found; the run directory is incomplete")
        raise RunError(f"{path}: is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RunError(f"{path}: not UTF-8 text (byte {err.start}); the file is damaged") from None
    except OSError as err:
        raise RunError(f"{path}: cannot be read ({err.strerror})") from None
    if not text.strip():
        raise RunError(f"{path}: is empty; the file is damaged")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None


def _device(device: str | torch.device) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda[:N]`` / ``mps`` (see :func:`attnkit.devices.resolve_device`) or a torch device."""
    from attnkit.devices import resolve_device

    return device if isinstance(device, torch.device) else resolve_device(str(device))


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if _jsonable(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _names(names: list[str]) -> str:
    shown = ", ".join(map(repr, names[:3]))
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
