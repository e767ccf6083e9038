"""What differs between problems, behind one interface: the :class:`Task`.

The training loop, evaluation, calibration, ensembles, refit, prediction, explanations, faithfulness, serving and
export are written once, against a task and the model contract (:class:`attnkit.models.base.AttentionModel`). A
task supplies everything that depends on the problem:

- reading and splitting the data (:meth:`Task.read_splits`), and preparing on the training split only (the
  tokenizer of a text task, the normalization statistics of an image task, the label set);
- turning examples into a dataset and index lists into a :class:`Batch` (``inputs``, ``unit_mask``, ``targets``),
  with training-time augmentation where the modality has one;
- the model's data-derived options (vocabulary size, image size, number of classes) and its data-dependent
  initialisation;
- the loss, the metrics and the model-selection metric (:class:`ClassificationObjective` today; ranking and
  multi-task objectives plug in here);
- the files it keeps in a run directory, and how raw user inputs (texts, images) become model inputs.

Dimension legend: ``B`` batch, ``U`` units, ``C`` classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attnkit.train.metrics import classification_report, expected_calibration_error

if TYPE_CHECKING:
    from attnkit.models.base import AttentionModel
    from attnkit.train.config import RunConfig


@dataclass
class Batch:
    """One batch in the model contract's terms.

    Attributes:
        inputs: what the model's ``forward`` takes first (token ids ``(B, T)``, pixels ``(B, C, H, W)``...).
        unit_mask: ``(B, U)`` bool, True at real units; None where every unit is real (images): the model's
            ``unit_mask_of`` then gives it.
        targets: ``(B,)`` long class ids, or ``None`` for unlabelled batches.
    """

    inputs: Tensor
    unit_mask: Tensor | None
    targets: Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``; to a GPU through pinned memory, copied without blocking the host."""
        target = torch.device(device)
        if target.type != "cuda":
            return Batch(
                self.inputs.to(target),
                None if self.unit_mask is None else self.unit_mask.to(target),
                None if self.targets is None else self.targets.to(target),
            )

        def move(tensor: Tensor) -> Tensor:
            if tensor.device.type != "cpu":  # already on a device (the audio task computes features there)
                return tensor.to(target)
            return tensor.pin_memory().to(target, non_blocking=True)

        return Batch(
            move(self.inputs),
            None if self.unit_mask is None else move(self.unit_mask),
            None if self.targets is None else move(self.targets),
        )

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


class TaskDataset(Protocol):
    """What a task's encoded split offers the loop: a length and the class id of each example (or None)."""

    labels: list[int] | None

    def __len__(self) -> int: ...


class BatchSampler(Protocol):
    """Training batches of one epoch as index lists; the same order for the same seed and epoch."""

    def set_epoch(self, epoch: int) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[list[int]]: ...


@dataclass
class PreparedData:
    """The encoded splits of one run and its label names (``labels[c]`` is class ``c``)."""

    labels: list[str]
    train: Any
    val: Any
    test: Any | None
    sizes: dict[str, int] = field(default_factory=dict)


class ClassificationObjective:
    """Cross-entropy over ``C`` classes, selected on validation accuracy; reports with calibration error.

    Args:
        label_smoothing: the cross-entropy's label smoothing.
    """

    #: The validation metric the loop selects the epoch on (higher is better).
    selection_metric: ClassVar[str] = "accuracy"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def loss_sum(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The summed (not averaged) loss of ``logits (B, C)`` against ``targets (B,)``; the loop scales it."""
        return F.cross_entropy(logits.float(), targets, reduction="sum", label_smoothing=self.label_smoothing)

    def report(
        self, logits: Tensor, targets: Sequence[int], labels: list[str], *, temperature: float = 1.0
    ) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class scores, confusion, ECE of ``softmax(logits / temperature)``.

        With a temperature other than 1 the report also gives ``ece_uncalibrated`` (of the raw softmax).
        """
        from attnkit.train.calibration import scaled_probabilities

        target_array = np.asarray(targets)
        report = classification_report(
            scaled_probabilities(logits, temperature).numpy(), target_array, labels
        )
        if temperature != 1.0:
            report["ece_uncalibrated"] = expected_calibration_error(
                torch.softmax(logits, dim=-1).numpy(), target_array
            )
        return report


class Task(ABC):
    """A problem: its data pipeline for one modality and its objective.

    A task is built from a run config (:func:`attnkit.tasks.task_for`). Preparation state (a tokenizer, image
    statistics) is fitted on the training split by :meth:`fit_preparation` or read back from a run directory by
    :meth:`load_preparation`; everything else is a pure function of it and the config.
    """

    #: The modality of the inputs: ``"text"``, ``"image"``, ...
    modality: ClassVar[str]
    #: What the raw inputs of :meth:`encode_inputs` are called in messages (``"texts"``, ``"images"``).
    input_name: ClassVar[str]
    #: What the fitted preparation is called in messages (``"tokenizer"``, ``"image statistics"``).
    preparation_name: ClassVar[str]
    #: The file suffixes raw inputs are read from (``attnkit predict RUN FILE...``), or None: inputs are texts.
    input_suffixes: ClassVar[frozenset[str] | None] = None

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.objective = ClassificationObjective(config.optim.label_smoothing)

    # -- data -------------------------------------------------------------------------------------------

    @abstractmethod
    def read_splits(self) -> tuple[Any, Any, Any | None]:
        """``(train, val, test)`` examples as the config says (val carved from train when not given; test None
        when there is none). Raises a one-line ``ValueError`` for data the user can fix."""

    @abstractmethod
    def read_source(self, source: str) -> Any:
        """Labelled examples from one source (a file, a folder, a built-in name) other than the run's splits."""

    @abstractmethod
    def labels_in(self, examples: Any) -> list[str]:
        """The label of every example, in order."""

    @abstractmethod
    def label_names(self, train: Any) -> list[str]:
        """The label set of the training examples, in class-id order."""

    @abstractmethod
    def fit_preparation(self, train: Any) -> None:
        """Fit whatever is learned from data before training (tokenizer, statistics) on ``train`` only."""

    @abstractmethod
    def encode(self, examples: Any, labels: list[str]) -> TaskDataset:
        """The examples as a dataset the loop can batch; labels mapped to ids (unknown ones refused)."""

    @abstractmethod
    def train_sampler(self, dataset: Any, batch_size: int, seed: int) -> BatchSampler:
        """Shuffled training batches (global, before they are dealt to ranks)."""

    @abstractmethod
    def eval_batches(self, dataset: Any, batch_size: int) -> Iterable[list[int]]:
        """Index lists covering ``dataset`` once, in an order that is fast to run (e.g. by length)."""

    @abstractmethod
    def collate(
        self,
        dataset: Any,
        indices: Sequence[int],
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Batch:
        """The examples at ``indices`` as a :class:`Batch`; ``train`` applies training-time augmentation."""

    def prepare(self, *, fitted: bool = False) -> PreparedData:
        """Read the splits, fit the preparation on train (unless ``fitted``: read back from a run) and encode.

        Each phase is logged with its duration, so a long one is never silent.
        """
        import logging
        import time

        log = logging.getLogger("attnkit.tasks")
        start = time.perf_counter()
        log.info("reading data: %s", self.config.data.train)
        train, val, test = self.read_splits()
        labels = self.label_names(train)
        sizes = {"train": len(train), "val": len(val), "test": len(test) if test is not None else 0}
        log.info("read %s examples in %.1f s; %d classes", sizes, time.perf_counter() - start, len(labels))
        if not fitted:
            self.fit_preparation(train)
        phase = time.perf_counter()
        prepared = PreparedData(
            labels=labels,
            train=self.encode(train, labels),
            val=self.encode(val, labels),
            test=self.encode(test, labels) if test is not None else None,
            sizes=sizes,
        )
        log.info("encoded %d examples in %.1f s", sum(sizes.values()), time.perf_counter() - phase)
        return prepared

    # -- the run directory ------------------------------------------------------------------------------

    @abstractmethod
    def save_preparation(self, run_dir: Path) -> None:
        """Write the fitted preparation into ``run_dir`` (atomically)."""

    @abstractmethod
    def load_preparation(self, run_dir: Path) -> None:
        """Read the preparation a run saved; a missing or damaged file is a :class:`attnkit.runs.RunError`."""

    @abstractmethod
    def adopt_preparation(self, other: Task) -> None:
        """Prepare inputs exactly as ``other`` does (share its fitted tokenizer or statistics)."""

    @abstractmethod
    def same_preparation(self, other: Task) -> bool:
        """Whether ``other`` (another run's task) prepares inputs exactly like this one (ensemble members)."""

    # -- the model --------------------------------------------------------------------------------------

    @abstractmethod
    def model_fields(self, num_classes: int) -> dict[str, Any]:
        """The model config fields that come from the data (vocabulary, image size, number of classes)."""

    def init_model(self, model: AttentionModel, train: Any) -> None:
        """Data-dependent initialisation of a new run's model from the training split (default: none)."""
        return None

    def attach(self, model: AttentionModel) -> None:
        """Give a just-built model what it derives from the preparation (default: nothing)."""
        return None

    # -- raw inputs (prediction, explanation, serving) ---------------------------------------------------

    @abstractmethod
    def encode_inputs(self, items: Sequence[Any]) -> tuple[Tensor, Tensor | None]:
        """Raw inputs (texts, images) -> ``(inputs, unit_mask)`` for the model (mask None: every unit is real)."""
