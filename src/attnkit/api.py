"""The public Python API: train a classifier in a few lines, load a run, predict, explain, evaluate.

```python
import attnkit

clf = attnkit.fit(texts, labels, out="runs/reviews")          # lists, or fit(df, text="review", label="stars")
clf = attnkit.fit("reviews.csv", out="runs/reviews", model="nb-attn", epochs=3)   # or a file / built-in name
clf = attnkit.load("runs/reviews")
clf.predict(["a wonderful film"])             # ['positive']
clf.predict_proba(["a wonderful film"])       # (N, C) numpy array, columns in clf.labels order
clf.explain("a wonderful film", methods=["attention", "ig"]).top_tokens("ig")
clf.attention(["a wonderful film"])[0].weights   # the weights the model pooled its tokens with
clf.evaluate("test.csv")                      # accuracy, macro-F1, per-class P/R, confusion matrix, ECE
```

Image and audio runs take their own inputs in the same calls: ``clf.predict(["shirt.png", pixels])`` (paths,
bytes, PIL images, uint8 arrays) or ``clf.predict(["clip.wav", waveform])`` (paths, bytes, 1-D float arrays at the
run's sample rate); ``clf.explain`` then gives per-box or per-frame scores and ``clf.attention`` a recording's
weights over its frames with their times.

Every function here is what the ``attnkit`` command runs; the command is a thin adapter over it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    from attnkit.explain.audio import AudioExplanation
    from attnkit.explain.explanation import Explanation
    from attnkit.predictor import Predictor
    from attnkit.train.config import RunConfig

#: Where :func:`fit` keeps in-memory training data inside the run directory, so that the run can be resumed,
#: recalibrated and reproduced from its own files.
DATA_SNAPSHOT_DIR = "data"

#: What :func:`fit` accepts as data: texts (with ``labels``), a DataFrame-like table or a dict of columns, or a
#: source name/path.
Data = Any


@dataclass
class TokenAttention:
    """The attention a model paid to one text's tokens.

    Attributes:
        text: the text.
        tokens: each token's surface form ``text[start:end]``.
        spans: ``(start, end)`` character offsets of each token into ``text``.
        weights: ``(T,)`` pooling weights over the tokens, summing to 1 (the first ``max_length`` tokens).
    """

    text: str
    tokens: list[str]
    spans: list[tuple[int, int]]
    weights: np.ndarray

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most attended tokens with their weights."""
        order = np.argsort(-self.weights, kind="stable")[:k]
        return [(self.tokens[i], float(self.weights[i])) for i in order]


@dataclass
class FrameAttention:
    """The attention a model paid to one recording's units (frames, or stacks of frames).

    Attributes:
        source: where the recording came from (its path), if known.
        spans: ``(start, end)`` seconds of each unit.
        weights: ``(U,)`` pooling weights over the units, summing to 1.
    """

    source: str | None
    spans: list[tuple[float, float]]
    weights: np.ndarray

    def top(self, k: int = 5) -> list[tuple[tuple[float, float], float]]:
        """The ``k`` most attended units' ``(start, end)`` seconds with their weights."""
        order = np.argsort(-self.weights, kind="stable")[:k]
        return [(self.spans[i], float(self.weights[i])) for i in order]


@dataclass
class RegionAttention:
    """The attention a model paid to one image's regions (ViT patches or CNN feature-map cells).

    Attributes:
        source: where the image came from (its path), if known.
        boxes: each unit's pixel box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) in the image as the model saw it
            (resized to the run's size), row-major.
        grid: ``(rows, cols)`` of the units.
        weights: ``(U,)`` pooling weights over the units, summing to 1.
    """

    source: str | None
    boxes: list[tuple[int, int, int, int]]
    grid: tuple[int, int]
    weights: np.ndarray

    def top(self, k: int = 5) -> list[tuple[tuple[int, int, int, int], float]]:
        """The ``k`` most attended units' pixel boxes with their weights."""
        order = np.argsort(-self.weights, kind="stable")[:k]
        return [(self.boxes[i], float(self.weights[i])) for i in order]

    def weight_grid(self) -> np.ndarray:
        """``(rows, cols)``: the weights laid out on the unit grid."""
        return self.weights.reshape(self.grid)


# Pillow modes a PNG keeps as they are (and the decoder then reads as it reads such a file).
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})


def _pil_to_png(image: Any, index: int) -> bytes:
    """A PIL image as PNG bytes, upright (its EXIF orientation applied), so that it is decoded exactly as the
    same image read from a file is (transparency on white included). A mode PNG cannot hold (32-bit ``I``,
    ``F``, CMYK, ...) is first converted to RGB as the decoder converts such images."""
    from io import BytesIO

    from PIL import ImageOps

    from attnkit.data.vision.decode import convert_image

    if min(image.size) < 1:
        raise ValueError(f"image {index}: an empty image ({image.size[0]}x{image.size[1]} pixels)")
    try:
        upright = ImageOps.exif_transpose(image)
        if upright.mode not in _PNG_MODES:
            upright = convert_image(upright, "RGB")
        buffer = BytesIO()
        upright.save(buffer, format="PNG")
    except (OSError, ValueError) as e:  # a mode Pillow cannot convert or write
        raise ValueError(
            f"image {index}: a PIL image in mode {image.mode!r} cannot be read ({e}); convert it to RGB or L first"
        ) from None
    return buffer.getvalue()


def _column(table: Any, name: str) -> list[Any]:
    try:
        column = table[name]
    except (KeyError, IndexError, TypeError):
        columns = list(table) if isinstance(table, Mapping) else list(getattr(table, "columns", []))
        raise ValueError(f"no column {name!r} in the table; its columns are {columns}") from None
    return list(column.tolist() if hasattr(column, "tolist") else column)


def _texts_and_labels(data: Data, labels: Sequence[Any] | None, text: str, label: str) -> tuple[list, list]:
    """``(texts, labels)`` from lists, a dict of columns or a DataFrame-like table (anything with ``.columns``
    and ``[name]``)."""
    if hasattr(data, "columns") or isinstance(data, Mapping):  # a DataFrame, or a dict of columns
        if labels is not None:
            raise ValueError("give labels as a column of the table (label=NAME), not as a separate argument")
        return _column(data, text), _column(data, label)
    if isinstance(data, (str, bytes, Path)):
        raise TypeError("a source name or path is read by fit itself; it cannot be split into texts")
    texts = list(data)
    if labels is None:
        raise ValueError("give the labels: fit(texts, labels, ...), or a table with a label column")
    labels = list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
    return texts, labels


def _write_snapshot(path: Path, texts: list[Any], labels: list[Any]) -> None:
    """Write ``texts`` and ``labels`` as JSON Lines (``text``, ``label``): the file the run trains from."""
    for i, value in enumerate(texts):
        if not isinstance(value, str):
            raise ValueError(f"text {i} is {type(value).__name__} ({value!r:.40}), expected a string")
    rows = [
        json.dumps({"text": t, "label": lab.item() if hasattr(lab, "item") else lab}, ensure_ascii=False)
        for t, lab in zip(texts, labels, strict=True)
    ]
    from attnkit.atomic import write_text

    write_text(path, "\n".join(rows) + "\n")


def _source(
    data: Data, labels: Sequence[Any] | None, run_dir: Path, split: str, text: str, label: str
) -> str | None:
    """A source string the loop reads: ``data`` itself when it names one, else a snapshot in the run directory."""
    if data is None:
        return None
    if isinstance(data, (str, Path)):
        if labels is not None:
            raise ValueError("labels come from the source file itself; do not pass labels with a path")
        return str(data)
    texts, values = _texts_and_labels(data, labels, text, label)
    path = run_dir / DATA_SNAPSHOT_DIR / f"{split}.jsonl"
    _write_snapshot(path, texts, values)
    return str(path.resolve())


def build_config(
    *,
    config: RunConfig | str | Path | None = None,
    model: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> RunConfig:
    """A validated run config: ``config`` (an object, a YAML path or a shipped config's name) or the defaults,
    then the keyword arguments, then ``overrides`` (``["optim.lr=1e-3"]`` or ``{"optim.lr": 1e-3}``)."""
    from attnkit.configs import find_config
    from attnkit.train.config import RunConfig

    if config is None:
        base = RunConfig()
    elif isinstance(config, RunConfig):
        base = config
    else:
        base = RunConfig.from_yaml(find_config(config))
    if isinstance(overrides, str):
        raise TypeError("overrides must be a list of 'section.key=value' strings or a mapping")
    if isinstance(overrides, Mapping):
        items = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    else:
        items = list(overrides)
    flags = [("model.name", model), ("train.epochs", epochs), ("train.seed", seed), ("train.device", device)]
    items = [f"{key}={json.dumps(value)}" for key, value in flags if value is not None] + items
    return base.with_overrides(items)


def fit(
    data: Data = None,
    labels: Sequence[Any] | None = None,
    *,
    out: str | Path,
    validation: Data = None,
    validation_labels: Sequence[Any] | None = None,
    test: Data = None,
    test_labels: Sequence[Any] | None = None,
    text: str = "text",
    label: str = "label",
    config: RunConfig | str | Path | None = None,
    model: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    overwrite: bool = False,
) -> Classifier:
    """Train a text classifier and return it loaded, ready to predict and explain.

    Args:
        data: the training data: a list of texts (with ``labels``), a DataFrame-like table (columns ``text`` and
            ``label``), or a source: a file (CSV/TSV, JSONL, Parquet), a folder of per-label folders, or a
            built-in name (``imdb``, ``sst2``...). ``None`` keeps the config's ``data.train``.
        labels: one label per text when ``data`` is a list (strings or integers; predictions are strings).
        out: the run directory to create (``config.yaml``, weights, metrics...). In-memory data is written
            there as ``data/<split>.jsonl`` so the run can be resumed and recalibrated from its own files.
        validation, validation_labels: held-out data for early stopping and calibration; by default
            ``data.val_fraction`` of the training data is carved out with a fixed seed.
        test, test_labels: data only reported on (never used for selection).
        text, label: the column names when a table is given.
        config: a :class:`~attnkit.train.config.RunConfig`, a YAML file, or a shipped config's name
            (:func:`attnkit.configs.shipped_configs`); default: the default config.
        model, epochs, seed, device: shortcuts for ``model.name``, ``train.epochs``, ``train.seed``,
            ``train.device``.
        overrides: any other config keys, ``["optim.lr=1e-3"]`` or ``{"optim.lr": 1e-3}``.
        overwrite: train into ``out`` even if it already holds a run (which is then replaced).

    Returns:
        The trained :class:`Classifier` (``.metrics`` holds validation and test scores).

    Raises:
        ValueError: a config value, data or label problem, or ``out`` already holding a run.
    """
    from attnkit.runs import check_new_run_dir
    from attnkit.train.loop import fit as fit_run

    # A folder holding only the data snapshot of an earlier attempt that failed counts as empty.
    run_dir = check_new_run_dir(out, overwrite=overwrite, keep=(DATA_SNAPSHOT_DIR,))
    run_config = build_config(
        config=config, model=model, epochs=epochs, seed=seed, device=device, overrides=overrides
    )
    sources = {
        "train": _source(data, labels, run_dir, "train", text, label),
        "val": _source(validation, validation_labels, run_dir, "val", text, label),
        "test": _source(test, test_labels, run_dir, "test", text, label),
    }
    raw = run_config.to_dict()
    for key, source in sources.items():
        if source is not None:
            raw["data"][key] = source
    run_config = type(run_config).from_dict(raw)
    fit_run(run_config, run_dir)
    return load(run_dir, device=device or "auto")


def resume(run_dir: str | Path, *, device: str = "auto") -> Classifier:
    """Continue an interrupted run (Ctrl-C, a kill, a crash) where its last checkpoint left it, and load it."""
    from attnkit.train.config import RunConfig
    from attnkit.train.loop import fit as fit_run

    fit_run(RunConfig(), run_dir, resume=True)
    return load(run_dir, device=device)


def load(run_dir: str | Path, *, device: str = "auto", max_image_pixels: int | None = None) -> Classifier:
    """Load a trained run directory for inference (no training code is needed).

    Args:
        run_dir: a directory written by :func:`fit` or ``attnkit train``.
        device: ``auto`` (a GPU when there is one), ``cpu`` or ``cuda[:N]``.
        max_image_pixels: image runs: refuse images declaring more pixels than this (default: the run's
            ``image.max_pixels``).
    """
    from attnkit.devices import resolve_device
    from attnkit.predictor import Predictor

    return Classifier(Predictor(run_dir, device=resolve_device(device), max_image_pixels=max_image_pixels))


class Classifier:
    """A trained run: predict, explain, look at the attention, evaluate. Made by :func:`fit` or :func:`load`.

    Attributes:
        labels: the class names, in the column order of :meth:`predict_proba`.
        run_dir: the run directory.
        predictor: the underlying :class:`attnkit.predictor.Predictor` (tokenizer, model, temperature).
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.labels: list[str] = list(predictor.labels)
        self.run_dir = predictor.run_dir

    def __repr__(self) -> str:
        return f"Classifier({str(self.run_dir)!r}, model={self.predictor.config.model.label!r}, labels={self.labels})"

    @property
    def config(self) -> RunConfig:
        """The run's config (as saved in ``config.yaml``)."""
        return self.predictor.config

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's ``metrics.json``: validation and test reports, calibration, training history."""
        return self.predictor.metrics

    @staticmethod
    def _texts(texts: str | Sequence[str]) -> list[str]:
        items = [texts] if isinstance(texts, str) else list(texts)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise TypeError(f"text {i} is {type(item).__name__}, expected a string")
        return items

    def _single(self, items: Any) -> bool:
        """Whether ``items`` is one text (a str) or one recording (a path, bytes or a 1-D array), not several."""
        if self.predictor.modality == "text":
            return isinstance(items, str)
        if isinstance(items, np.ndarray):
            return items.ndim == 1
        return isinstance(items, (str, Path, bytes, bytearray))

    def _recordings(self, items: Any) -> tuple[list[Any], list[str | None]]:
        """Recordings of an audio run and their sources: paths (read here), encoded bytes (WAV, FLAC, OGG) or 1-D
        float arrays of samples at the run's sample rate (a ``(N, S)`` array is ``N`` recordings)."""
        if isinstance(items, np.ndarray) and items.ndim == 2:
            items = list(items)
        recordings: list[Any] = []
        sources: list[str | None] = []
        for i, item in enumerate([items] if self._single(items) else list(items)):
            if isinstance(item, (str, Path)):
                path = Path(item).expanduser()
                if not path.is_file():
                    raise ValueError(f"recording {i}: {path} is not a file")
                recordings.append(path.read_bytes())
                sources.append(str(item))
            elif isinstance(item, (bytes, bytearray, np.ndarray)):
                recordings.append(item)
                sources.append(None)
            else:
                raise TypeError(
                    f"recording {i} is {type(item).__name__}: give a path, encoded bytes or a 1-D float array of "
                    "samples"
                )
        return recordings, sources

    def _inputs(self, items: Any) -> list[Any]:
        """Texts for a text run; for an image run, images: file paths, encoded bytes, PIL images or uint8 arrays
        (one ``(H, W[, C])`` array is one image, an ``(N, H, W, C)`` array is ``N``); for an audio run, recordings
        (:meth:`_recordings`)."""
        if self.predictor.modality == "audio":
            return self._recordings(items)[0]
        if self.predictor.modality != "image":
            return self._texts(items)
        return self._images(items)[0]

    def _images(self, items: Any) -> tuple[list[Any], list[str | None]]:
        """An image run's inputs (see :meth:`_inputs`) and the path each came from (None for the others)."""
        if isinstance(items, np.ndarray):
            arrays = list(items) if items.ndim == 4 else [items]
            return arrays, [None] * len(arrays)
        single = isinstance(items, (str, Path, bytes, bytearray)) or hasattr(items, "getbands")
        given = [items] if single else list(items)
        sources = [str(item) if isinstance(item, (str, Path)) else None for item in given]
        images: list[Any] = []
        for i, item in enumerate(given):
            if isinstance(item, (str, Path)):
                path = Path(item).expanduser()
                if not path.is_file():
                    raise ValueError(f"image {i}: {path} is not a file")
                images.append(path.read_bytes())
            elif hasattr(item, "getbands"):  # a PIL image: decoded like an image file
                images.append(_pil_to_png(item, i))
            elif isinstance(item, (bytes, bytearray, np.ndarray)):
                images.append(item)
            else:
                raise TypeError(
                    f"image {i} is {type(item).__name__}: give a path, bytes, a PIL image or an array"
                )
        return images, sources

    def predict(self, texts: Any, *, batch_size: int = 64) -> list[str]:
        """The predicted label of each text (a single string counts as one text), of each image of an image run
        (paths, bytes, PIL images or uint8 arrays; one of them counts as one image), or of each recording of an
        audio run (paths, bytes or 1-D float arrays at the run's sample rate; one of them counts as one)."""
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        return [self.labels[i] for i in probabilities.argmax(axis=1)] if len(probabilities) else []

    def predict_proba(self, texts: Any, *, batch_size: int = 64) -> np.ndarray:
        """``(N, C)`` calibrated class probabilities (``softmax(logits / T)``), columns in :attr:`labels` order;
        texts, or images or recordings for an image or audio run (as :meth:`predict` takes them)."""
        if self.predictor.modality == "image":  # decoded here, batch by batch, so an error names the image
            images, sources = self._images(texts)
            task = self.predictor.task
            parts = []
            for start in range(0, len(images), batch_size):
                arrays = [
                    task.to_array(image, where=f"image {i}" + (f" ({sources[i]})" if sources[i] else ""))  # type: ignore[attr-defined]
                    for i, image in enumerate(images[start : start + batch_size], start=start)
                ]
                parts.append(self.predictor.predict_proba(arrays, batch_size=batch_size).numpy())
            return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.predictor.predict_proba(self._inputs(texts), batch_size=batch_size).numpy()

    @overload
    def explain(  # type: ignore[overload-overlap]  # a str is one text, any other sequence several
        self, texts: str, *, methods: Sequence[str] = ..., target: str | None = ..., ig_steps: int = ...
    ) -> Explanation: ...

    @overload
    def explain(
        self,
        texts: Sequence[str],
        *,
        methods: Sequence[str] = ...,
        target: str | None = ...,
        ig_steps: int = ...,
    ) -> list[Explanation]: ...

    @overload
    def explain(  # images, recordings: one or several, as predict takes them
        self,
        texts: Path | bytes | bytearray | np.ndarray | Sequence[Any],
        *,
        methods: Sequence[str] = ...,
        target: str | None = ...,
        ig_steps: int = ...,
    ) -> Any: ...

    def explain(
        self,
        texts: Any,
        *,
        methods: Sequence[str] = ("attention",),
        target: str | None = None,
        ig_steps: int = 50,
    ) -> Explanation | list[Explanation] | AudioExplanation | list[AudioExplanation]:
        """Per-token scores of each method (``attention``, ``attention-value``, ``gradient``, ``grad-input``,
        ``ig``, ``loo`` or ``all``) for one text (returns one :class:`~attnkit.explain.Explanation`) or several
        (a list). ``target`` explains that label instead of the predicted one. ``.to_json_dict()`` gives the
        format every renderer reads (``docs/explanation-format.md``). For an image run, per-unit scores of one
        image or several (as :meth:`predict` takes them): :class:`~attnkit.explain.images.ImageExplanation`; for an
        audio run, per-frame scores of one recording or several, each unit with its start and end in seconds:
        :class:`~attnkit.explain.audio.AudioExplanation`."""
        if isinstance(methods, str):
            methods = [methods]
        if self.predictor.modality == "audio":  # per-unit scores over the recording's frames
            from attnkit.explain.audio import explain_recordings

            recordings, sources = self._recordings(texts)
            found_audio = explain_recordings(
                self.predictor,
                recordings,
                methods=list(methods),
                target=target,
                ig_steps=ig_steps,
                sources=sources,
            )
            return found_audio[0] if self._single(texts) else found_audio
        if self.predictor.modality == "image":  # per-unit scores over the image's boxes
            from attnkit.explain.images import explain_images

            images, sources = self._images(texts)
            single = not isinstance(texts, (list, tuple)) and not (
                isinstance(texts, np.ndarray) and texts.ndim == 4
            )
            found = explain_images(
                self.predictor, images, list(methods), target=target, ig_steps=ig_steps, sources=sources
            )
            return found[0] if single else found  # type: ignore[return-value]
        from attnkit.explain import explain

        explanations = explain(
            self.predictor, self._texts(texts), list(methods), target=target, ig_steps=ig_steps
        )
        return explanations[0] if isinstance(texts, str) else explanations

    def attention(self, texts: Any) -> list[TokenAttention] | list[FrameAttention] | list[RegionAttention]:
        """The attention weights the model pooled each text's tokens with (one :class:`TokenAttention` per text);
        for an audio run, each recording's weights over its frames (one :class:`FrameAttention` per recording);
        for an image run, each image's weights over its regions (one :class:`RegionAttention` per image). Inputs
        are taken as :meth:`predict` takes them; the result is a list even for one input."""
        if self.predictor.modality == "audio":
            from attnkit.explain.audio import explain_recordings

            recordings, sources = self._recordings(texts)
            found = explain_recordings(
                self.predictor, recordings, methods=["attention"], sources=sources, include_audio=False
            )
            return [
                FrameAttention(
                    source=item.source,
                    spans=[(unit.start, unit.end) for unit in item.units],
                    weights=np.asarray(item.scores("attention"), dtype=np.float64),
                )
                for item in found
            ]
        if self.predictor.modality == "image":
            from attnkit.explain.images import explain_images

            images, sources = self._images(texts)
            return [
                RegionAttention(
                    source=item.source,
                    boxes=[unit.box for unit in item.units],
                    grid=item.grid,
                    weights=np.asarray(item.scores("attention"), dtype=np.float64),
                )
                for item in explain_images(self.predictor, images, ["attention"], sources=sources)
            ]
        out = []
        for item in self.explain(self._texts(texts), methods=["attention"]):
            out.append(
                TokenAttention(
                    text=item.text,
                    tokens=[t.text for t in item.tokens],
                    spans=[(t.start, t.end) for t in item.tokens],
                    weights=np.asarray(item.scores("attention"), dtype=np.float64),
                )
            )
        return out

    def evaluate(
        self, data: Data, labels: Sequence[Any] | None = None, *, text: str = "text", label: str = "label"
    ) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix and ECE on labelled data.

        Args:
            data: a source (file or built-in ``name:split``), texts with ``labels``, or a DataFrame-like table.
            labels: the true label of each text when ``data`` is a list.
            text, label: the column names when a table is given.
        """
        if isinstance(data, (str, Path)):
            from attnkit.predictor import evaluate_run

            return evaluate_run(self.run_dir, str(data), device=str(self.predictor.device))
        from attnkit.train.metrics import classification_report

        texts, values = _texts_and_labels(data, labels, text, label)
        from attnkit.data.labels import label_name

        truth = [label_name(v, f"label {i}") or "" for i, v in enumerate(values)]
        unknown = sorted(set(truth) - set(self.labels))
        if unknown:
            raise ValueError(
                f"labels {', '.join(unknown[:5])} are not among the model's labels ({', '.join(self.labels)})"
            )
        index = {name: i for i, name in enumerate(self.labels)}
        probabilities = self.predict_proba(texts)  # texts, or the run's own inputs (images, recordings)
        report = classification_report(probabilities, np.asarray([index[v] for v in truth]), self.labels)
        report["source"] = "in-memory data"
        return report
