"""Training as plain functions: ``prepare_data -> build_classifier -> fit`` (and ``evaluate_dataset``).

Dimension legend: ``B`` batch, ``T`` tokens, ``C`` classes.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from attnkit.data import (
    BucketBatchSampler,
    EncodedDataset,
    TextExample,
    TextTokenizer,
    TokenizerConfig,
    check_trainable,
    collate,
    label_vocab,
    load_source,
    make_splits,
)
from attnkit.models import TextClassifier
from attnkit.models.ensemble import EnsembleClassifier
from attnkit.runs import (  # the run-directory layout and building a run's model
    CONFIG_FILE,
    LABELS_FILE,
    MEMBERS_DIR,
    METRICS_FILE,
    TOKENIZER_DIR,
    VALIDATED_DIR,
    build_classifier,
    load_weights,
    read_labels,
    read_metrics,
    read_tokenizer,
    vocabulary_strings,
)
from attnkit.train import checkpoint as ckpt
from attnkit.train.calibration import CALIBRATION_FILE, Calibration, scaled_probabilities
from attnkit.train.config import ConfigError, RunConfig
from attnkit.train.distributed import DistContext, barrier, broadcast_flag, init_distributed
from attnkit.train.metrics import classification_report, expected_calibration_error

log = logging.getLogger(__name__)

# Built-in datasets whose official held-out split is used as the test set when none is given.
OFFICIAL_TEST_SPLITS = {"imdb": "test", "20newsgroups": "test", "sst2": "dev", "ag_news": "test"}
#: Texts tokenized per step of the progress bar (large enough that the batch encoder stays fast).
ENCODE_CHUNK = 4096


@dataclass
class PreparedData:
    """Tokenizer, label names and encoded splits of one run."""

    tokenizer: TextTokenizer
    labels: list[str]
    train: EncodedDataset
    val: EncodedDataset
    test: EncodedDataset | None
    sizes: dict[str, int] = field(default_factory=dict)


def _load(source: str, config: RunConfig) -> list[TextExample]:
    return load_source(source, text_field=config.data.text_field, label_field=config.data.label_field)


def load_splits(config: RunConfig) -> tuple[list[TextExample], list[TextExample], list[TextExample] | None]:
    """Read train/val/test examples as the config says; val is carved from train when not given."""
    data = config.data
    if data.train == "embedded" and data.test is None and data.val is None:
        from attnkit.data import load_embedded

        embedded = load_embedded(seed=data.split_seed, val_fraction=data.val_fraction)
        return embedded.train, embedded.val, embedded.test
    train = _load(data.train, config)
    check_trainable(train, data.train)
    test_source = data.test
    builtin_name = data.train.split(":")[0]
    if test_source is None and builtin_name in OFFICIAL_TEST_SPLITS and not Path(data.train).exists():
        test_source = f"{builtin_name}:{OFFICIAL_TEST_SPLITS[builtin_name]}"
    test = _load(test_source, config) if test_source else None
    if data.val:
        val = _load(data.val, config)
    else:
        splits = make_splits(train, None, val_fraction=data.val_fraction, seed=data.split_seed)
        train, val = splits.train, splits.val
    return train, val, test


def encode(tokenizer: TextTokenizer, examples: list[TextExample], labels: list[str]) -> EncodedDataset:
    label_ids = {label: i for i, label in enumerate(labels)}
    unknown = sorted({ex.label for ex in examples} - set(label_ids))
    if unknown:
        raise ValueError(
            f"labels {', '.join(unknown[:5])} do not occur in the training data (known: {', '.join(labels)})"
        )
    texts = [ex.text for ex in examples]
    ids: list[list[int]] = []
    chunk = ENCODE_CHUNK
    with tqdm(
        total=len(texts),
        desc="tokenizing",
        unit="text",
        disable=len(texts) <= chunk or not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(texts), chunk):  # chunked so that a large corpus shows its progress
            ids += tokenizer.encode_ids(texts[start : start + chunk])
            bar.update(min(chunk, len(texts) - start))
    # An empty encoding (text of only stripped markup) still needs one position to attend to.
    ids = [row if row else [tokenizer.unk_id] for row in ids]
    return EncodedDataset(ids, [label_ids[ex.label] for ex in examples])


def prepare_data(config: RunConfig, tokenizer: TextTokenizer | None = None) -> PreparedData:
    """Load, split, fit the tokenizer on train only (unless one is given) and encode every split.

    Each phase is logged with its duration, so a long one (reading or tokenizing a large corpus) is never silent.
    """
    start = time.perf_counter()
    log.info("reading data: %s", config.data.train)
    train, val, test = load_splits(config)
    labels = label_vocab(train)
    sizes = {"train": len(train), "val": len(val), "test": len(test) if test is not None else 0}
    log.info("read %s examples in %.1f s; %d classes", sizes, time.perf_counter() - start, len(labels))
    if tokenizer is None:
        t = config.tokenizer
        tok_config = TokenizerConfig(
            level=t.level,
            vocab_size=t.vocab_size,
            min_freq=t.min_freq,
            lowercase=t.lowercase,
            max_length=t.max_length,
        )
        phase = time.perf_counter()
        log.info("fitting the tokenizer on %d training texts", len(train))
        tokenizer = TextTokenizer.fit([ex.text for ex in train], tok_config)
        log.info("tokenizer: vocabulary %d (%.1f s)", tokenizer.vocab_size, time.perf_counter() - phase)
    phase = time.perf_counter()
    log.info("tokenizing %d texts", sum(sizes.values()))
    prepared = PreparedData(
        tokenizer=tokenizer,
        labels=labels,
        train=encode(tokenizer, train, labels),
        val=encode(tokenizer, val, labels),
        test=encode(tokenizer, test, labels) if test is not None else None,
        sizes=sizes,
    )
    log.info("tokenized in %.1f s", time.perf_counter() - phase)
    return prepared


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str) -> Any:
    """Multiplier on the base learning rate: linear warmup, then linear/cosine decay to 0 (or constant)."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


def make_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and embeddings' padding-free vectors (1-D parameters)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel (CPU and CUDA) is ~10x faster than the per-tensor loop on large embedding tables.
    try:
        return torch.optim.AdamW(groups, lr=config.optim.lr, fused=True)
    except (RuntimeError, TypeError):  # devices or torch versions without a fused AdamW
        return torch.optim.AdamW(groups, lr=config.optim.lr)


@torch.no_grad()
def predict_logits(
    model: nn.Module, dataset: EncodedDataset, batch_size: int, device: torch.device
) -> torch.Tensor:
    """``(N, C)`` float32 logits in dataset order (batched by length for speed)."""
    model.eval()
    lengths = [len(ids) for ids in dataset.ids]
    order = np.argsort(lengths, kind="stable")
    logits: torch.Tensor | None = None
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = collate([dataset.ids[i] for i in index])
        out = (
            model(batch.input_ids.to(device), batch.attention_mask.to(device)).logits.float().cpu()
        )  # (B, C)
        if logits is None:
            logits = torch.zeros(len(dataset), out.shape[1])
        logits[torch.as_tensor(index)] = out
    if logits is None:
        raise ValueError("empty dataset")
    return logits


def predict_dataset(
    model: nn.Module,
    dataset: EncodedDataset,
    batch_size: int,
    device: torch.device,
    *,
    temperature: float = 1.0,
) -> np.ndarray:
    """``(N, C)`` class probabilities ``softmax(logits / temperature)`` in dataset order."""
    return scaled_probabilities(predict_logits(model, dataset, batch_size, device), temperature).numpy()


def _labels_of(dataset: EncodedDataset) -> list[int]:
    if dataset.labels is None:
        raise ValueError("this dataset has no labels")
    return dataset.labels


def evaluate_dataset(
    model: nn.Module,
    dataset: EncodedDataset,
    labels: list[str],
    batch_size: int,
    device: torch.device,
    *,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """:func:`logits_report` of the model's logits on ``dataset``."""
    logits = predict_logits(model, dataset, batch_size, device)  # (N, C)
    return logits_report(logits, dataset, labels, temperature=temperature)


def logits_report(
    logits: torch.Tensor, dataset: EncodedDataset, labels: list[str], *, temperature: float = 1.0
) -> dict[str, Any]:
    """:func:`classification_report` of ``softmax(logits / temperature)`` for ``logits (N, C)``; with a
    temperature other than 1 the report also gives ``ece_uncalibrated`` (that of the raw ``softmax(logits)``)."""
    targets = np.asarray(_labels_of(dataset))
    report = classification_report(scaled_probabilities(logits, temperature).numpy(), targets, labels)
    if temperature != 1.0:
        report["ece_uncalibrated"] = expected_calibration_error(
            torch.softmax(logits, dim=-1).numpy(), targets
        )
    return report


@dataclass
class FitResult:
    run_dir: Path
    metrics: dict[str, Any]
    model: nn.Module
    data: PreparedData


@dataclass
class _LoopState:
    best_acc: float
    best_epoch: int
    stale: int
    history: list[dict[str, Any]]
    improved_this_epoch: bool = False


def _local_slice(indices: list[int], ctx: DistContext) -> list[int]:
    return indices[ctx.rank :: ctx.world_size]


def fit(config: RunConfig, run_dir: str | Path, *, resume: bool = False) -> FitResult:
    """Train a classifier and write the run directory; continue an interrupted run with ``resume=True``.

    The run directory receives ``config.yaml``, ``tokenizer/``, ``labels.json``, ``model.safetensors`` (best
    validation weights), ``metrics.json``, ``calibration.json`` (with ``train.calibrate``), ``curves.png``,
    ``confusion.png`` and ``state/`` (for resuming).

    With ``train.refit``, the validated run goes to ``RUN_DIR/validated`` and the run directory receives a model
    trained from scratch on train + validation for the ``best_epoch`` that run selected (its ``config.yaml`` is
    the refit's: ``data.val_fraction: 0``, ``train.epochs: best_epoch``). ``--resume`` continues whichever stage
    was interrupted. Its ``metrics.json`` adds ``validated`` (the validated run's selection and scores); it keeps
    the validated run's temperature, since nothing is left to fit one on.

    A fresh (not resumed) run first removes what an earlier run left in ``RUN_DIR`` that could be mistaken for
    its own: ``state/``, ``metrics.json``, ``calibration.json``, the weights, the plots, ``validated/`` and
    ``members/``.

    Killed at any point (Ctrl-C, ``kill -9``), a run resumes from its last committed checkpoint (one per epoch,
    with the best weights so far: :mod:`attnkit.train.checkpoint`) to the same final weights as an uninterrupted
    run; stopped before its first checkpoint, it starts over. Only a kill before ``config.yaml`` was written
    leaves nothing to resume (:class:`ConfigError`).

    With ``model.ensemble = M > 1``, ``M`` members are trained as above into ``RUN_DIR/members/<m>`` (seeds
    ``train.seed + m``) and the run directory receives their :class:`EnsembleClassifier` (no ``curves.png``: each
    member has its own); ``metrics.json`` adds ``members``, and ``train_seconds`` is the members' total.
    """
    run_dir = Path(run_dir)
    if resume:  # the run's own config decides (the one passed in is ignored)
        if not (run_dir / CONFIG_FILE).is_file():
            raise ConfigError(
                f"{run_dir} holds no run to resume (no {CONFIG_FILE}): train it again without --resume"
            )
        config = RunConfig.from_yaml(run_dir / CONFIG_FILE)
        # After the refit stage of a train.refit run wrote its own config, resume the whole run from the original.
        config = _refit_run_of(config, run_dir) or config
        if init_distributed(config.train.device).is_main:  # before anything is written again
            ckpt.clean_run_leftovers(run_dir)  # temporary files of writes that a kill interrupted
    if config.model.ensemble > 1:
        return _fit_ensemble(config, run_dir, resume=resume)
    if config.train.refit:
        return _fit_with_refit(config, run_dir, resume=resume)
    return _fit_once(config, run_dir, resume=resume)


def _refit_run_of(config: RunConfig, run_dir: Path) -> RunConfig | None:
    """The original ``train.refit`` config when ``config`` (read from ``run_dir``) is its refit stage's, else None.

    It is, when ``run_dir/validated`` holds the validated run and ``config`` is exactly that run's refit config.
    """
    validated_config = run_dir / VALIDATED_DIR / CONFIG_FILE
    if config.train.refit or config.model.ensemble != 1 or not validated_config.is_file():
        return None
    original = RunConfig.from_yaml(validated_config).with_overrides(["train.refit=true"])
    return original if refit_config(original, config.train.epochs).to_dict() == config.to_dict() else None


def _clear_earlier_run(run_dir: Path, *, keep_validated: bool = False) -> None:
    """Remove what an earlier run left in ``run_dir`` that a fresh run could mistake for its own (rank 0 only).

    Its checkpoints go first, so that a kill part-way leaves the earlier run resumable as it was or without a
    checkpoint to resume (it then starts over), never a new run on an old checkpoint. Folders are renamed aside
    before they are deleted (:func:`attnkit.atomic.remove_tree`): no half-deleted member or validated run.
    """
    ckpt.remove_training_state(run_dir)
    for folder in (MEMBERS_DIR, *(() if keep_validated else (VALIDATED_DIR,))):
        ckpt.remove_tree(run_dir / folder)
    for name in (METRICS_FILE, CALIBRATION_FILE, ckpt.WEIGHTS_FILE, *_EARLIER_RUN_FILES):
        (run_dir / name).unlink(missing_ok=True)


#: Files of an earlier run that no step of a new run may leave in place (the run's own are rewritten):
#: its plots (an ensemble writes no curves.png), the demo's report and exported ONNX models of other weights.
_EARLIER_RUN_FILES = ("curves.png", "confusion.png", "report.html", "model.onnx", "model.int8.onnx")


def member_config(config: RunConfig, member: int) -> RunConfig:
    """The config of ensemble member ``member``: the same run with one model and seed ``train.seed + member``."""
    return config.with_overrides(["model.ensemble=1", f"train.seed={config.train.seed + member}"])


def _fit_member(config: RunConfig, run_dir: Path, *, resume: bool) -> dict[str, Any]:
    """Train one member; resuming, skip it when finished or continue it where it stopped (either refit stage).

    Raises:
        ValueError: resuming, the member on disk was trained with another config (not this ensemble's member).
    """
    if resume and (run_dir / CONFIG_FILE).is_file():
        saved = RunConfig.from_yaml(run_dir / CONFIG_FILE)
        expected = [config] + ([refit_config(config, saved.train.epochs)] if config.train.refit else [])
        if all(saved.to_dict() != candidate.to_dict() for candidate in expected):
            raise ValueError(
                f"{run_dir} holds a run with another config than this ensemble's member; train again without "
                "--resume (or --overwrite) to start over"
            )
        if (run_dir / METRICS_FILE).is_file():
            metrics = read_metrics(run_dir)  # checked: a JSON object (attnkit.runs)
            if not config.train.refit or "validated" in metrics:  # else stopped before the refit's last write
                log.info("ensemble member %s is complete", run_dir)
                return metrics
        # Started over if it stopped before its first checkpoint.
        return fit(config, run_dir, resume=True).metrics
    return fit(config, run_dir).metrics


def load_ensemble(
    config: RunConfig, member_dirs: list[Path]
) -> tuple[EnsembleClassifier, TextTokenizer, list[str]]:
    """The ensemble of trained member runs, with their (shared) tokenizer and labels.

    Every member's files go through the checked readers of :mod:`attnkit.runs`, so that a damaged member
    (resuming an ensemble reads them all) is a one-line error naming the file, not a traceback.

    Raises:
        RunNotFoundError: a member's tokenizer, labels or weights are missing.
        RunError: one of them is damaged, or the weights do not fit the model (names and shapes are checked).
        ValueError: the members' tokenizers or labels differ (they were trained on different data).
    """
    tokenizer = read_tokenizer(member_dirs[0])
    labels = read_labels(member_dirs[0])
    vocabulary = vocabulary_strings(tokenizer)
    for member_dir in member_dirs[1:]:
        if read_labels(member_dir) != labels:
            raise ValueError(f"{member_dir / LABELS_FILE}: its labels differ from {member_dirs[0]}'s")
        if vocabulary_strings(read_tokenizer(member_dir)) != vocabulary:
            raise ValueError(f"{member_dir / TOKENIZER_DIR}: its tokenizer differs from {member_dirs[0]}'s")
    model = build_classifier(
        config.with_overrides([f"model.ensemble={len(member_dirs)}"]), tokenizer, len(labels)
    )
    assert isinstance(model, EnsembleClassifier)
    for member, member_dir in zip(model.classifiers, member_dirs, strict=True):
        load_weights(member, member_dir / ckpt.WEIGHTS_FILE)
    return model.eval(), tokenizer, labels


def _member_seconds(metrics: dict[str, Any], key: str) -> float:
    """A member's ``train_seconds`` or ``init_seconds``, its validated run's included (with ``train.refit``)."""
    return float(metrics.get(key, 0.0)) + float(metrics.get("validated", {}).get(key, 0.0))


def _member_summary(index: int, config: RunConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """One member's seed, selection, timings and scores (the validated run's selection with ``train.refit``)."""
    summary: dict[str, Any] = {"member": index, "seed": config.train.seed + index}
    selection = metrics.get("validated", metrics)  # a refitted member selected nothing itself
    for key in ("best_epoch", "best_val_accuracy"):
        summary[key] = selection.get(key)
    summary["epochs_run"] = metrics.get("epochs_run")
    for key in ("train_seconds", "init_seconds"):
        summary[key] = _member_seconds(metrics, key)
    for split in ("val", "test"):
        if split in metrics:
            summary[f"{split}_accuracy"] = metrics[split]["accuracy"]
    return summary


def _fit_ensemble(config: RunConfig, run_dir: Path, *, resume: bool) -> FitResult:
    """Train ``model.ensemble`` members one after the other, then assemble and evaluate the ensemble.

    Each member is a complete run in ``RUN_DIR/members/<m>`` (with ``train.refit``, refitted the same way); a
    resumed ensemble skips the finished members and resumes the interrupted one. The ensemble's temperature is
    fitted on its own validation logits (with ``train.refit``: those of the validated members' ensemble).
    """
    ctx = init_distributed(config.train.device)
    count = config.model.ensemble
    member_dirs = [run_dir / MEMBERS_DIR / str(m) for m in range(count)]
    if not resume:
        load_splits(config)  # a data mistake is reported before an earlier run is cleared or a config written
    if ctx.is_main and not resume:  # a fresh start: nothing of an earlier run in RUN_DIR may be reused
        _clear_earlier_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save_yaml(run_dir / CONFIG_FILE)  # written first, so that --resume RUN_DIR finds it
    barrier(ctx)
    member_metrics = []
    for index, member_dir in enumerate(member_dirs):
        log.info("ensemble member %d of %d (seed %d)", index + 1, count, config.train.seed + index)
        member_metrics.append(_fit_member(member_config(config, index), member_dir, resume=resume))
    barrier(ctx)

    temperature: float | None = None
    validated_report: dict[str, Any] = {}
    if config.train.refit:  # no validation split is left: calibrate on the validated members' ensemble
        validated, validated_tokenizer, _ = load_ensemble(config, [d / VALIDATED_DIR for d in member_dirs])
        validated_metrics = final_metrics(
            validated.to(ctx.device), prepare_data(config, validated_tokenizer), config, ctx.device
        )
        del validated  # before the refitted members are loaded: one ensemble in memory at a time
        validated_report = {"validated": {"val": validated_metrics["val"]}}
        if "calibration" in validated_metrics:
            validated_report["calibration"] = {
                **validated_metrics["calibration"],
                "fitted_on": f"{MEMBERS_DIR}/*/{VALIDATED_DIR}/: validation split, validated members' ensemble",
            }
            temperature = validated_report["calibration"]["temperature"]
    model, tokenizer, labels = load_ensemble(config, member_dirs)
    model = model.to(ctx.device)
    data = prepare_data(refit_config(config, 1) if config.train.refit else config, tokenizer)
    metrics = final_metrics(model, data, config, ctx.device, temperature=temperature)
    metrics.update(validated_report)
    metrics.update(
        {
            "members": [_member_summary(i, config, m) for i, m in enumerate(member_metrics)],
            # With refit, a member's training is its validated run plus its refit.
            "train_seconds": sum(_member_seconds(m, "train_seconds") for m in member_metrics),
            "init_seconds": sum(_member_seconds(m, "init_seconds") for m in member_metrics),
            "world_size": ctx.world_size,
            "data_sizes": data.sizes,
        }
    )
    if ctx.is_main:
        tokenizer.save(run_dir / TOKENIZER_DIR)
        ckpt.write_json(run_dir / LABELS_FILE, labels)
        ckpt.save_weights(model, run_dir / ckpt.WEIGHTS_FILE)
        if "calibration" in metrics:
            ckpt.write_json(run_dir / CALIBRATION_FILE, metrics["calibration"])
        ckpt.write_json(run_dir / METRICS_FILE, metrics)
        held_out = metrics.get("test") or metrics.get("val")
        if held_out is not None:
            from attnkit.train.plots import plot_confusion

            plot_confusion(np.asarray(held_out["confusion_matrix"]), labels, run_dir / "confusion.png")
    barrier(ctx)
    return FitResult(run_dir=run_dir, metrics=metrics, model=model, data=data)


def refit_config(config: RunConfig, epochs: int) -> RunConfig:
    """``config`` changed to train on all of train (no validation) for ``epochs`` epochs, without refitting again."""
    return config.with_overrides(
        ["train.refit=false", "data.val_fraction=0", "data.val=null", f"train.epochs={epochs}"]
    )


def _fit_with_refit(config: RunConfig, run_dir: Path, *, resume: bool = False) -> FitResult:
    """The validated run in ``RUN_DIR/validated``, then the refit in ``RUN_DIR``; ``resume`` continues either stage.

    ``RUN_DIR/config.yaml`` holds ``config`` (``train.refit: true``) until the refit stage starts and writes its own.
    """
    if not config.data.has_validation:
        raise ConfigError("train.refit needs a validation split to select the epochs (data.val_fraction > 0)")
    if config.data.val:
        raise ConfigError(
            f"train.refit retrains on the training data plus the validation split carved from it, but data.val "
            f"names a separate file ({config.data.val}) that the refit would not see: merge it into data.train, or "
            "drop train.refit"
        )
    validated_dir = run_dir / VALIDATED_DIR
    ctx = init_distributed(config.train.device)
    # Decided before either stage runs (the refit stage rewrites RUN_DIR/config.yaml): did the refit start? If it
    # stopped before its first checkpoint, resuming it starts it over.
    refit_stage_started = resume and not RunConfig.from_yaml(run_dir / CONFIG_FILE).train.refit
    if resume and (validated_dir / METRICS_FILE).is_file():
        validated_run = read_metrics(validated_dir)  # checked: a JSON object (attnkit.runs)
    elif resume and (validated_dir / CONFIG_FILE).is_file():  # continued (or started over: no checkpoint yet)
        validated_run = _fit_once(config, validated_dir, resume=True).metrics
    else:
        load_splits(config)  # a data mistake is reported before an earlier run is cleared or a config written
        if ctx.is_main:  # so that --resume RUN_DIR finds the run while it is in its validated stage
            _clear_earlier_run(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save_yaml(run_dir / CONFIG_FILE)
        barrier(ctx)
        validated_run = _fit_once(config.with_overrides(["train.refit=false"]), validated_dir).metrics
    epochs = int(validated_run["best_epoch"])
    log.info("refit on train + validation for %d epoch(s), the validated run's best", epochs)
    result = _fit_once(refit_config(config, epochs), run_dir, resume=refit_stage_started, refit_stage=True)
    validated_metrics = {k: v for k, v in validated_run.items() if k != "history"}
    result.metrics["validated"] = validated_metrics
    calibration = validated_metrics.get("calibration")
    if calibration is not None:
        calibration = {**calibration, "fitted_on": f"{VALIDATED_DIR}/: validation split, validated model"}
        result.metrics["calibration"] = calibration
    if ctx.is_main:
        if calibration is not None:
            ckpt.write_json(run_dir / CALIBRATION_FILE, calibration)
        ckpt.write_json(run_dir / METRICS_FILE, result.metrics)
    barrier(ctx)
    return result


def _fit_once(
    config: RunConfig, run_dir: str | Path, *, resume: bool = False, refit_stage: bool = False
) -> FitResult:
    """One training run in ``run_dir``; ``refit_stage``: the refit of a ``train.refit`` run (keeps ``validated/``).

    Resuming continues from the last committed checkpoint (:mod:`attnkit.train.checkpoint`), with the run's own
    config; a run stopped before its first checkpoint starts over (the same weights, as training is deterministic).
    """
    run_dir = Path(run_dir)
    ctx = init_distributed(config.train.device)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if resume:
        config = RunConfig.from_yaml(run_dir / CONFIG_FILE)
        if ctx.is_main:
            ckpt.recover(run_dir)
        barrier(ctx)
        resume = ckpt.has_training_state(run_dir)
        if not resume and (run_dir / ckpt.STATE_DIR).exists():
            log.warning("%s is incomplete or damaged: starting the run over", run_dir / ckpt.STATE_DIR)
        elif not resume:
            log.info("%s stopped before its first checkpoint: starting it over", run_dir)
    tokenizer = read_tokenizer(run_dir) if resume else None  # checked (attnkit.runs)
    # The data is read (and checked) before anything is cleared or written: a data mistake leaves no half-made
    # run behind that would block the corrected retry, and never removes an earlier run's files.
    data = prepare_data(config, tokenizer)
    if not resume and ctx.is_main:  # written first, so that --resume finds the run whenever it is stopped
        _clear_earlier_run(run_dir, keep_validated=refit_stage)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save_yaml(run_dir / CONFIG_FILE)
    labels = data.labels
    if resume:
        saved_labels = read_labels(run_dir)  # checked: a JSON list of unique names (attnkit.runs)
        if saved_labels != labels:
            raise ValueError(
                f"{run_dir / LABELS_FILE}: the run's labels {saved_labels} differ from the data's {labels}"
            )

    torch.manual_seed(config.train.seed)
    model = build_classifier(config, data.tokenizer, len(labels))
    init_seconds = 0.0
    if not resume and isinstance(model, TextClassifier):  # a resumed run restores these from its state
        init_start = time.perf_counter()
        model.init_from_data(data.train.ids, _labels_of(data.train))
        init_seconds = time.perf_counter() - init_start
    model = model.to(ctx.device)
    optim_cfg = config.optim
    sampler = BucketBatchSampler(
        [len(ids) for ids in data.train.ids], optim_cfg.batch_size, shuffle=True, seed=config.train.seed
    )
    steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * config.train.epochs
    optimizer = make_optimizer(model, config)
    warmup = int(optim_cfg.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, warmup, optim_cfg.schedule)
    )

    start_epoch, best_acc, best_epoch, stale, train_seconds = 0, -1.0, -1, 0, 0.0
    history: list[dict[str, Any]] = []
    if resume:
        progress = ckpt.load_training_state(run_dir, model, optimizer, scheduler)
        start_epoch = progress["epoch"] + 1
        best_acc, best_epoch, stale = progress["best_val_accuracy"], progress["best_epoch"], progress["stale"]
        train_seconds, history = progress["train_seconds"], progress["history"]
        log.info("resuming %s after epoch %d", run_dir, progress["epoch"] + 1)
    elif ctx.is_main:
        data.tokenizer.save(run_dir / TOKENIZER_DIR)
        ckpt.write_json(run_dir / LABELS_FILE, labels)

    train_model: nn.Module = model
    if ctx.distributed:
        train_model = DistributedDataParallel(
            model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None
        )

    state = _LoopState(best_acc=best_acc, best_epoch=best_epoch, stale=stale, history=history)

    def evaluate_point(
        epoch: int, step: int, train_loss: float, examples_per_second: float, elapsed_train: float
    ) -> None:
        """Validate (and optionally track test), record, keep the best weights (the latest without validation)."""
        validated = len(data.val) > 0
        val_metrics = (
            evaluate_dataset(model, data.val, labels, optim_cfg.eval_batch_size, ctx.device)
            if validated
            else None
        )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "epoch_progress": round(epoch + (step % steps_per_epoch or steps_per_epoch) / steps_per_epoch, 4),
            "train_loss": train_loss,
            "val_accuracy": val_metrics["accuracy"] if val_metrics else None,
            "val_macro_f1": val_metrics["macro_f1"] if val_metrics else None,
            "train_seconds": elapsed_train,
            "train_examples_per_second": examples_per_second,
            "lr": scheduler.get_last_lr()[0],
        }
        if config.train.track_test and data.test is not None:  # reported only, never used for selection
            record["test_accuracy"] = evaluate_dataset(
                model, data.test, labels, optim_cfg.eval_batch_size, ctx.device
            )["accuracy"]
        improved = val_metrics is None or val_metrics["accuracy"] > state.best_acc
        if improved:
            state.best_acc = val_metrics["accuracy"] if val_metrics else state.best_acc
            state.best_epoch = epoch + 1
            state.improved_this_epoch = True
            if ctx.is_main:  # published as RUN_DIR/model.safetensors with the epoch's checkpoint
                ckpt.stage_best_weights(run_dir, model)
        state.history.append(record)
        log.info(
            "epoch %.2f: loss %.4f, %s (%.0f ex/s)",
            record["epoch_progress"],
            train_loss,
            f"val accuracy {val_metrics['accuracy']:.4f}{' (best)' if improved else ''}"
            if val_metrics
            else "no validation",
            examples_per_second,
        )
        model.train()

    stopped_early = False
    train_labels = _labels_of(data.train)
    step = steps_per_epoch * start_epoch
    for epoch in range(start_epoch, config.train.epochs):
        if state.stale >= config.train.patience:
            stopped_early = True
            break
        if config.train.max_train_seconds is not None and train_seconds >= config.train.max_train_seconds:
            log.info("training time budget of %.0f s reached", config.train.max_train_seconds)
            break
        torch.manual_seed(config.train.seed * 1_000_003 + epoch)  # dropout stream, the same after a resume
        sampler.set_epoch(epoch)
        epoch_loss, seen, epoch_start = 0.0, 0, time.perf_counter()
        eval_seconds = 0.0  # time spent validating inside the epoch: not training time
        model.train()
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.train.epochs}",
            disable=not (ctx.is_main and config.train.progress and sys.stderr.isatty()),
            unit="batch",
            dynamic_ncols=True,
            leave=False,
        )
        for global_batch in sampler:
            local = _local_slice(list(global_batch), ctx)
            weight = 1.0
            if not local:  # fewer examples than ranks in the last batch: join the all-reduce with zero loss
                local, weight = [global_batch[0]], 0.0
            batch = collate([data.train.ids[i] for i in local], [train_labels[i] for i in local])
            assert batch.labels is not None
            logits = train_model(batch.input_ids.to(ctx.device), batch.attention_mask.to(ctx.device)).logits
            # Sum over this rank's slice / global batch size * world size: DDP's gradient mean then equals the
            # gradient of the mean loss over the global batch, so N ranks train exactly like one process.
            loss_sum = F.cross_entropy(
                logits.float(),
                batch.labels.to(ctx.device),
                reduction="sum",
                label_smoothing=optim_cfg.label_smoothing,
            )
            loss = loss_sum * weight * ctx.world_size / len(global_batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if optim_cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            epoch_loss += float(loss_sum.detach()) * weight
            seen += len(local) if weight else 0
            speed = seen * ctx.world_size / max(time.perf_counter() - epoch_start - eval_seconds, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{epoch_loss / max(seen, 1):.4f}", ex_s=f"{speed:.0f}")
            every = config.train.eval_every_steps
            if every and step % every == 0 and step % steps_per_epoch != 0:
                eval_start = time.perf_counter()
                elapsed = train_seconds + (eval_start - epoch_start - eval_seconds)
                evaluate_point(epoch, step, epoch_loss / max(seen, 1), speed, elapsed)
                eval_seconds += time.perf_counter() - eval_start
        bar.close()
        epoch_time = time.perf_counter() - epoch_start - eval_seconds
        train_seconds += epoch_time
        evaluate_point(epoch, step, epoch_loss / max(seen, 1), len(data.train) / epoch_time, train_seconds)
        # Patience counts epochs: an epoch with any improving evaluation resets it.
        state.stale = 0 if state.improved_this_epoch else state.stale + 1
        state.improved_this_epoch = False
        if ctx.is_main:
            progress = {
                "epoch": epoch,
                "best_val_accuracy": state.best_acc,
                "best_epoch": state.best_epoch,
                "stale": state.stale,
                "train_seconds": train_seconds,
                "history": state.history,
            }
            ckpt.save_training_state(run_dir, model, optimizer, scheduler, progress)
        barrier(ctx)
        if broadcast_flag(ctx, state.stale >= config.train.patience) and epoch + 1 < config.train.epochs:
            stopped_early = True
            log.info("early stop: validation accuracy has not improved for %d epochs", state.stale)
            break

    barrier(ctx)
    ckpt.load_weights(model, run_dir / ckpt.WEIGHTS_FILE)
    metrics = final_metrics(model, data, config, ctx.device)
    metrics.update(
        {
            "best_epoch": state.best_epoch,
            "best_val_accuracy": state.best_acc,
            "epochs_run": len({h["epoch"] for h in state.history}),
            "stopped_early": stopped_early,
            "train_seconds": train_seconds,
            "init_seconds": init_seconds,
            "world_size": ctx.world_size,
            "history": state.history,
            "data_sizes": data.sizes,
        }
    )
    if ctx.is_main:
        from attnkit.train.plots import plot_confusion, plot_curves

        if "calibration" in metrics:
            ckpt.write_json(run_dir / CALIBRATION_FILE, metrics["calibration"])
        plot_curves(state.history, run_dir / "curves.png")
        held_out = metrics.get("test") or metrics.get("val")
        if held_out is not None:
            plot_confusion(np.asarray(held_out["confusion_matrix"]), labels, run_dir / "confusion.png")
        ckpt.write_json(run_dir / METRICS_FILE, metrics)  # last: a run with metrics.json is complete
    return FitResult(run_dir=run_dir, metrics=metrics, model=model, data=data)


def final_metrics(
    model: nn.Module,
    data: PreparedData,
    config: RunConfig,
    device: torch.device,
    *,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Validation and (when present) test metrics of the selected weights.

    With ``train.calibrate`` and a validation split, the temperature is decided on the validation logits first
    (``metrics["calibration"]``: fitted, clipped to its bounds, or kept at 1 when the split is too small or the
    fit would not lower held-out NLL; see :meth:`Calibration.fit`) and every report uses it. The validation
    ECE is then measured on the data the temperature was fitted on (optimistic); the test ECE is the honest
    one. A given ``temperature`` (fitted elsewhere) is used as it is instead.
    """
    batch_size = config.optim.eval_batch_size
    metrics: dict[str, Any] = {}
    fit_temperature = temperature is None and config.train.calibrate
    temperature = 1.0 if temperature is None else temperature
    if len(data.val) > 0:
        val_logits = predict_logits(model, data.val, batch_size, device)  # (N, C)
        if fit_temperature:
            calibration = Calibration.fit(val_logits, _labels_of(data.val), fitted_on="validation split")
            # Worth a warning: no temperature (too few examples, or no held-out gain), a clipped one, or a rise in ECE.
            quiet = calibration.status == "fitted" and calibration.ece_after <= calibration.ece_before
            log.log(logging.INFO if quiet else logging.WARNING, "calibration: %s", calibration.describe())
            temperature = calibration.temperature
            metrics["calibration"] = calibration.to_dict()
        metrics["val"] = logits_report(val_logits, data.val, data.labels, temperature=temperature)
    if data.test is not None:
        metrics["test"] = evaluate_dataset(
            model, data.test, data.labels, batch_size, device, temperature=temperature
        )
    return metrics
