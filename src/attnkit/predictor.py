"""Load a trained run directory and predict: the one entry point shared by the CLI, explanations and serving.

Loading goes through :func:`attnkit.runs.load_run`, which checks every file of the run: a damaged or mismatched
run directory is a one-line :class:`attnkit.runs.RunError` naming the file, never a traceback.

Dimension legend: ``B`` batch, ``T`` tokens, ``U`` units (tokens, image boxes, frames), ``C`` classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from attnkit.data import Encoding, TextTokenizer, collate
from attnkit.devices import resolve_device
from attnkit.inference.evaluation import evaluate_dataset, predict_logits
from attnkit.runs import LABELS_FILE, load_run, read_metrics
from attnkit.tasks.base import Task
from attnkit.train.calibration import Calibration, scaled_probabilities
from attnkit.train.config import RunConfig


@dataclass
class Prediction:
    """One input's prediction: ``text`` is the text, or the file name of an image or recording."""

    text: str
    label: str
    probabilities: dict[str, float]

    def to_json_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": self.probabilities}


class Predictor:
    """A trained classifier with its task (tokenizer, image or audio preparation) and labels, in eval mode.

    Args:
        run_dir: a directory written by ``attnkit train``.
        device: where to run the model.

    Raises:
        attnkit.runs.RunError: a file of the run is missing, damaged or does not match the others (a
            ``ValueError``; :class:`attnkit.runs.RunNotFoundError`, also a ``FileNotFoundError``, when missing).
    """

    def __init__(
        self, run_dir: str | Path, device: str | torch.device = "cpu", *, max_image_pixels: int | None = None
    ) -> None:
        """Load ``run_dir`` on ``device``; ``max_image_pixels`` (image runs) raises or lowers the run's
        ``image.max_pixels`` cap for this predictor."""
        if max_image_pixels is not None and max_image_pixels < 1:
            raise ValueError(f"the image pixel cap must be >= 1, got {max_image_pixels}")
        where = device if isinstance(device, torch.device) else resolve_device(device)
        run = load_run(run_dir, device=where)
        if max_image_pixels is not None and run.task.modality == "image":
            run.task.max_pixels = max_image_pixels  # type: ignore[attr-defined]
        self.run_dir: Path = run.run_dir
        self.config: RunConfig = run.config
        self.task: Task = run.task
        self.labels: list[str] = run.labels
        self.device = where
        self.model: Any = run.model
        #: Probabilities are ``softmax(logits / temperature)``; 1.0 for a run trained without calibration.
        self.temperature: float = run.temperature

    @property
    def modality(self) -> str:
        """``text``, ``image`` or ``audio``: what the run classifies."""
        return self.task.modality

    @property
    def tokenizer(self) -> TextTokenizer:
        """The tokenizer of a text run (a ``ValueError`` for other modalities)."""
        tokenizer = getattr(self.task, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(f"{self.run_dir} is a {self.modality} run: it has no tokenizer")
        return tokenizer

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's ``metrics.json`` (``{}`` if it has none)."""
        return read_metrics(self.run_dir)

    def encode(self, texts: list[str]) -> tuple[list[Encoding], torch.Tensor, torch.Tensor]:
        """Tokenize ``texts``; returns encodings, ``input_ids (B, T)`` and ``attention_mask (B, T)``.

        An empty text still gets one ``[UNK]`` position so every row has a kept token.
        """
        encodings = self.tokenizer.encode_batch(texts)
        ids = [enc.ids if enc.ids else [self.tokenizer.unk_id] for enc in encodings]
        batch = collate(ids, [0] * len(ids))
        return encodings, batch.input_ids.to(self.device), batch.attention_mask.to(self.device)

    def encode_inputs(self, items: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw inputs (texts; images as bytes or ``(H, W, C)`` uint8 arrays; recordings as file bytes or 1-D float
        arrays at the run's sample rate) -> ``(inputs, unit_mask (B, U))`` on the device."""
        inputs, mask = self.task.encode_inputs(items)
        inputs = inputs.to(self.device)
        return inputs, (self.model.unit_mask_of(inputs) if mask is None else mask.to(self.device))

    @torch.no_grad()
    def predict_proba(self, texts: list[Any], batch_size: int = 64) -> torch.Tensor:
        """``(N, C)`` class probabilities of texts (or images, recordings: the run's raw inputs)."""
        out = []
        for start in range(0, len(texts), batch_size):
            inputs, mask = self.encode_inputs(texts[start : start + batch_size])
            logits = self.model(inputs, mask).logits  # (B, C)
            out.append(self.probabilities(logits).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits (B, C)`` -> the run's (temperature-scaled) class probabilities ``(B, C)``."""
        return scaled_probabilities(logits, self.temperature)

    def prediction(self, text: str, probabilities: torch.Tensor) -> Prediction:
        """A :class:`Prediction` from one row of ``(C,)`` class probabilities."""
        scores = {label: round(float(p), 6) for label, p in zip(self.labels, probabilities, strict=True)}
        return Prediction(text=text, label=self.labels[int(probabilities.argmax())], probabilities=scores)

    def predict(self, texts: list[str], batch_size: int = 64) -> list[Prediction]:
        probabilities = self.predict_proba(texts, batch_size)
        return [self.prediction(text, probs) for text, probs in zip(texts, probabilities, strict=True)]


def in_run_spelling(examples: Any, labels: list[str]) -> Any:
    """``examples`` (an image or audio set) with each class spelled as the run spells it.

    Class folders are read as labels (``1.0/`` is the class ``"1"``, as in a CSV column); a run trained before
    that has the class ``"1.0"`` in its ``labels.json``. Its own folders then still evaluate and calibrate. Other
    examples (texts, whose labels were always read this way) are returned as they are.
    """
    from dataclasses import is_dataclass

    from attnkit.data.labels import label_name

    aliases: dict[str, str] = {}
    for label in labels:
        name = label_name(label) or label
        if name != label and name not in labels:
            aliases[name] = label
    if (
        not aliases
        or isinstance(examples, type)
        or not is_dataclass(examples)
        or not hasattr(examples, "classes")
    ):
        return examples
    found: Any = examples
    return replace(
        found,
        labels=[aliases.get(label, label) for label in found.labels],
        classes=tuple(aliases.get(name, name) for name in found.classes),
    )


def _check_labelled(
    found_labels: list[str], source: str, labels: list[str], run_dir: Path, *, min_classes: int = 1
) -> None:
    """Check that examples with ``found_labels`` read from ``source`` can be scored by the run with ``labels``.

    Raises:
        ValueError: there are no examples, a label is not one of the run's (the message names ``source`` and the
            run's ``labels.json``), or fewer than ``min_classes`` distinct labels occur.
    """
    if not found_labels:
        raise ValueError(f"{source}: no labelled examples")
    found = set(found_labels)
    unseen = sorted(found - set(labels))
    if unseen:
        shown = ", ".join(map(repr, unseen[:5])) + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
        raise ValueError(
            f"{source}: the label(s) {shown} are not among the run's labels ({run_dir / LABELS_FILE}: "
            f"{', '.join(labels)}); the data is from another task, or its labels are spelled differently"
        )
    if len(found) < min_classes:
        raise ValueError(
            f"{source}: all {len(found_labels)} examples have the label {next(iter(found))!r}; fitting a temperature "
            f"needs examples of at least {min_classes} classes"
        )


def evaluate_run(
    run_dir: str | Path, source: str, *, batch_size: int = 256, device: str = "cpu"
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall, confusion matrix and ECE of a run on ``source``.

    Raises:
        ValueError: the run cannot be loaded, or ``source`` has no examples or labels the run does not know.
    """
    predictor = Predictor(run_dir, device=device)
    task = predictor.task
    examples = in_run_spelling(task.read_source(source), predictor.labels)
    _check_labelled(task.labels_in(examples), source, predictor.labels, predictor.run_dir)
    dataset = task.encode(examples, predictor.labels)
    report = evaluate_dataset(
        predictor.model,
        task,
        dataset,
        predictor.labels,
        batch_size,
        predictor.device,
        temperature=predictor.temperature,
    )
    report["source"] = source
    return report


def calibrate_run(
    run_dir: str | Path, source: str | None = None, *, batch_size: int = 256, device: str = "cpu"
) -> Calibration:
    """Fit the run's temperature and write ``calibration.json``; later predictions use it.

    A fit that ends at ``T = 1`` without fitting (``skipped-too-few``: too few examples; ``kept-1-worse``)
    never replaces a temperature fitted earlier: ``calibration.json`` is then kept as it was, and the returned
    record's ``reason`` says so. It is written when the fit is ``fitted`` or ``clipped``, and when the file is
    missing, damaged or holds ``T = 1`` (nothing to lose).

    Args:
        run_dir: a directory written by ``attnkit train``.
        source: labelled data to fit on; by default the run's own validation split, rebuilt from its config
            (same sources, fraction and split seed). Never fit on the test data you will report.

    Returns:
        This fit's decision and numbers on ``source`` (its ``temperature`` is the one in use only when written).

    Raises:
        ValueError: the run cannot be loaded; it has no validation split and no ``source`` is given; the data
            has no examples, labels the run does not know, or a single class. A damaged ``calibration.json`` is
            not an error here: it is what this replaces.
    """
    run = load_run(run_dir, device=device, read_calibration=False)
    if source is None and (run.config.train.refit or not run.config.data.has_validation):
        raise ValueError(
            f"{run.run_dir} was trained on all of its training data (train.refit or data.val_fraction=0), "
            "so it has no held-out validation split to calibrate on: pass held-out labelled data (--data)"
        )
    task = run.task
    if source is None:
        _, examples, _ = task.read_splits()
        fitted_on = "validation split"
    else:
        examples = task.read_source(source)
        fitted_on = source
    examples = in_run_spelling(examples, run.labels)
    where = source or f"{run.run_dir}: its validation split"
    _check_labelled(task.labels_in(examples), where, run.labels, run.run_dir, min_classes=2)
    dataset = task.encode(examples, run.labels)
    logits = predict_logits(
        run.model, task, dataset, batch_size, next(run.model.parameters()).device
    )  # (N, C)
    assert dataset.labels is not None
    calibration = Calibration.fit(logits, dataset.labels, fitted_on=fitted_on)
    kept = _kept_calibration(run.run_dir, calibration)
    if kept is None:
        calibration.save(run.run_dir)
        return calibration
    return replace(calibration, reason=f"{calibration.reason}; {kept}")


def _kept_calibration(run_dir: Path, new: Calibration) -> str | None:
    """Why the run's ``calibration.json`` stays instead of ``new`` (for the record), or None to write ``new``."""
    from attnkit.runs import RunError, read_temperature
    from attnkit.train.calibration import CALIBRATION_FILE

    path = run_dir / CALIBRATION_FILE
    if new.status in ("fitted", "clipped") or not path.is_file():
        return None
    try:
        temperature = read_temperature(run_dir)  # checked: a positive finite temperature
    except RunError:
        return None  # damaged: this replaces it (the error a damaged file gives says to run calibrate)
    if temperature == 1.0:
        return None
    record = json.loads(path.read_text(encoding="utf-8"))  # a JSON object: read_temperature checked it
    origin = ", ".join(
        f"{label}{record[key]}"
        for key, label in (("status", ""), ("fitted_on", "on "), ("n", "n="))
        if key in record
    )
    return (
        f"{CALIBRATION_FILE} kept as it was: the run still uses T = {temperature:.4g}"
        + (f" ({origin})" if origin else "")
        + f", since a {new.status} fit never replaces a fitted temperature"
    )
