"""One training run in one directory, on any task: set up (fresh or resumed), epochs, evaluation, finish.

:func:`train_run` is what every stage (a plain run, an ensemble member, a refit's two runs) calls. It knows the
run directory's files through :mod:`attnkit.runs` and :mod:`attnkit.train.checkpoint`, the problem only through
its :class:`~attnkit.tasks.base.Task` (data, batches, loss, metrics) and the model only through the model
contract.

Dimension legend: ``B`` batch, ``C`` classes.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from attnkit.inference.evaluation import evaluate_dataset, labels_of
from attnkit.runs import CONFIG_FILE, LABELS_FILE, METRICS_FILE, build_run_model, read_labels
from attnkit.tasks import task_for
from attnkit.tasks.base import BatchSampler, PreparedData, Task
from attnkit.threads import ThreadGovernor
from attnkit.train import checkpoint as ckpt
from attnkit.train.averaging import WeightAverage
from attnkit.train.calibration import CALIBRATION_FILE
from attnkit.train.config import RunConfig
from attnkit.train.distributed import DistContext, barrier, broadcast_flag, broadcast_int, init_distributed
from attnkit.train.optim import LearningRateSchedule, make_optimizer, replan_epochs
from attnkit.train.selection import final_metrics

log = logging.getLogger("attnkit.train.loop")


@dataclass
class FitResult:
    """What a finished run returns: its directory, ``metrics.json``'s content, the selected model, its data."""

    run_dir: Path
    metrics: dict[str, Any]
    model: nn.Module
    data: PreparedData
    task: Task | None = None


@dataclass
class Progress:
    """What a checkpoint restores besides the weights: selection so far, patience, time, history."""

    next_epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = -1
    stale: int = 0
    train_seconds: float = 0.0
    #: CPU seconds of this process (all its threads) spent training: on a shared machine it says what the run
    #: cost where wall-clock time also counts other users' jobs.
    train_cpu_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    improved_this_epoch: bool = False

    def to_checkpoint(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "best_val_accuracy": self.best_score,
            "best_epoch": self.best_epoch,
            "stale": self.stale,
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
            "history": self.history,
        }

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> Progress:
        return cls(
            next_epoch=saved["epoch"] + 1,
            best_score=saved["best_val_accuracy"],
            best_epoch=saved["best_epoch"],
            stale=saved["stale"],
            train_seconds=saved["train_seconds"],
            train_cpu_seconds=float(saved.get("train_cpu_seconds", 0.0)),  # absent before it was recorded
            history=saved["history"],
        )


def _local_slice(indices: list[int], ctx: DistContext) -> list[int]:
    return indices[ctx.rank :: ctx.world_size]


def _resume_state(config: RunConfig, run_dir: Path, ctx: DistContext) -> tuple[RunConfig, bool]:
    """The run's own config, and whether a committed checkpoint is there to continue from."""
    config = RunConfig.from_yaml(run_dir / CONFIG_FILE)
    if ctx.is_main:
        ckpt.recover(run_dir)
    barrier(ctx)
    resumable = ckpt.has_training_state(run_dir)
    if not resumable and (run_dir / ckpt.STATE_DIR).exists():
        log.warning("%s is incomplete or damaged: starting the run over", run_dir / ckpt.STATE_DIR)
    elif not resumable:
        log.info("%s stopped before its first checkpoint: starting it over", run_dir)
    return config, resumable


#: A budgeted run extends its plan only by epochs that fit with this share of the budget to spare.
BUDGET_MARGIN = 0.02
#: The epochs whose mean time predicts the next ones' in a budgeted run.
RECENT_EPOCHS = 3


class _Trainer:
    """The state of one run between its set-up and its end: model, optimizer, schedule, data, progress."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        task: Task,
        data: PreparedData,
        ctx: DistContext,
        *,
        resume: bool,
        threads: ThreadGovernor | None = None,
    ) -> None:
        self.config, self.run_dir, self.task, self.data, self.ctx = config, run_dir, task, data, ctx
        self.threads = threads or ThreadGovernor(None)
        torch.manual_seed(config.train.seed)
        model = build_run_model(config, task, len(data.labels))
        self.init_seconds = 0.0
        if not resume:  # a resumed run restores data-dependent parameters from its state
            start = time.perf_counter()
            task.init_model(model, data.train)
            self.init_seconds = time.perf_counter() - start
        self.model = model.to(ctx.device)
        optim = config.optim
        self.sampler: BatchSampler = task.train_sampler(data.train, optim.batch_size, config.train.seed)
        self.steps_per_epoch = len(self.sampler)
        total_steps = self.steps_per_epoch * config.train.epochs
        self.optimizer = make_optimizer(self.model, config)
        # With train.fit_schedule_to_budget the schedule's length is re-planned during the run (plan_epochs).
        self.schedule = LearningRateSchedule(total_steps, optim.warmup_fraction, optim.schedule)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        # With optim.ema_decay the moving average of the weights is what is validated and kept.
        self.average = WeightAverage(self.model, optim.ema_decay) if optim.ema_decay > 0 else None
        self.eval_model: nn.Module = self.average.model if self.average else self.model
        self.progress = Progress()
        if resume:
            saved = ckpt.load_training_state(
                run_dir,
                self.model,
                self.optimizer,
                self.scheduler,
                self.average.model if self.average else None,
            )
            self.progress = Progress.from_checkpoint(saved)
            log.info("resuming %s after epoch %d", run_dir, saved["epoch"] + 1)
        self.train_model: nn.Module = self.model
        if ctx.distributed:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None
            )
        if config.train.compile:
            self.train_model = torch.compile(self.train_model, dynamic=True)  # type: ignore[assignment]
        self.autocast_dtype = torch.bfloat16 if config.train.precision == "bf16" else None
        self.train_targets = labels_of(data.train)
        self.step = self.steps_per_epoch * self.progress.next_epoch

    # -- the budget ------------------------------------------------------------------------------------

    def recent_epoch_seconds(self) -> float:
        """The mean training time of the last (up to) three epochs: follows a change in the machine's load
        within a few epochs, with less noise than one epoch's time."""
        ends = [0.0] + [
            float(h["train_seconds"])
            for h in self.progress.history
            if float(h["epoch_progress"]).is_integer()
        ]
        recent = ends[-RECENT_EPOCHS - 1 :]
        return (recent[-1] - recent[0]) / (len(recent) - 1)

    @property
    def planned_epochs(self) -> int:
        """The epochs this run will train: ``train.epochs``, or as many as fit the budget (see plan_epochs)."""
        return -(-self.schedule.total_steps // self.steps_per_epoch)

    def plan_epochs(self, epoch_seconds: float, done: int) -> None:
        """Fit the epochs (and the schedule) to what is left of ``train.max_train_seconds`` after ``done`` epochs,
        at ``epoch_seconds`` an epoch (:func:`replan_epochs`, with 2% of the budget as its margin); rank 0
        decides."""
        train = self.config.train
        assert train.max_train_seconds is not None  # the config requires it with fit_schedule_to_budget
        remaining = train.max_train_seconds - self.progress.train_seconds
        planned = replan_epochs(
            self.planned_epochs,
            remaining,
            epoch_seconds,
            done=done,
            cap=train.epochs,
            margin_seconds=BUDGET_MARGIN * train.max_train_seconds,
        )
        planned = broadcast_int(self.ctx, planned)
        if planned != self.planned_epochs:
            log.info(
                "planned %d epoch(s) for the %.0f s budget (%.1f s an epoch)",
                planned,
                train.max_train_seconds,
                epoch_seconds,
            )
        self.schedule.stretch(planned * self.steps_per_epoch)

    # -- one evaluation point ---------------------------------------------------------------------------

    def evaluate_point(
        self, epoch: int, train_loss: float, examples_per_second: float, elapsed: float, cpu_elapsed: float
    ) -> None:
        """Validate (and optionally track test), record, keep the best weights (the latest without validation)."""
        config, data, task, progress = self.config, self.data, self.task, self.progress
        batch_size, device = config.optim.eval_batch_size, self.ctx.device
        metric = task.objective.selection_metric
        val = (
            evaluate_dataset(self.eval_model, task, data.val, data.labels, batch_size, device)
            if len(data.val) > 0
            else None
        )
        per_epoch = self.steps_per_epoch
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.step,
            "epoch_progress": round(epoch + (self.step % per_epoch or per_epoch) / per_epoch, 4),
            "train_loss": train_loss,
            "val_accuracy": val["accuracy"] if val else None,
            "val_macro_f1": val["macro_f1"] if val else None,
            "train_seconds": elapsed,
            "train_cpu_seconds": cpu_elapsed,
            "train_examples_per_second": examples_per_second,
            "lr": self.scheduler.get_last_lr()[0],
        }
        if config.train.fit_schedule_to_budget:
            record["planned_epochs"] = self.planned_epochs
        if config.train.track_test and data.test is not None:  # reported only, never used for selection
            record["test_accuracy"] = evaluate_dataset(
                self.eval_model, task, data.test, data.labels, batch_size, device
            )["accuracy"]
        improved = val is None or val[metric] > progress.best_score
        if improved:
            progress.best_score = val[metric] if val else progress.best_score
            progress.best_epoch = epoch + 1
            progress.improved_this_epoch = True
            if self.ctx.is_main:  # published as RUN_DIR/model.safetensors with the epoch's checkpoint
                ckpt.stage_best_weights(self.run_dir, self.eval_model)
        progress.history.append(record)
        log.info(
            "epoch %.2f: loss %.4f, %s (%.0f ex/s)",
            record["epoch_progress"],
            train_loss,
            f"val {metric} {val[metric]:.4f}{' (best)' if improved else ''}" if val else "no validation",
            examples_per_second,
        )
        self.model.train()

    # -- one epoch --------------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> None:
        """One pass over the training batches (evaluating every ``train.eval_every_steps``), then its checkpoint."""
        config, ctx, task = self.config, self.ctx, self.task
        optim = config.optim
        torch.manual_seed(config.train.seed * 1_000_003 + epoch)  # dropout stream, the same after a resume
        # Augmentation draws from its own stream, also a function of (seed, epoch) only.
        augment = torch.Generator().manual_seed(config.train.seed * 7_919 + epoch)
        self.sampler.set_epoch(epoch)
        epoch_loss, seen, epoch_start, epoch_cpu = 0.0, 0, time.perf_counter(), time.process_time()
        eval_seconds = eval_cpu = 0.0  # time spent validating inside the epoch: not training time
        self.model.train()
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{self.planned_epochs}",
            disable=not (ctx.is_main and config.train.progress and sys.stderr.isatty()),
            unit="batch",
            dynamic_ncols=True,
            leave=False,
        )
        # A fresh budgeted run first plans its epochs from the speed of steps 1 .. probe_step - 1 (step 0 also
        # pays for warm-up: allocations, thread pools).
        probe_step = max(2, self.steps_per_epoch // 20)
        probe_start = 0.0
        budgeted = config.train.fit_schedule_to_budget and epoch == 0
        for batch_index, global_batch in enumerate(self.sampler):
            if budgeted and batch_index in (1, probe_step):
                now = time.perf_counter() - eval_seconds
                if batch_index == 1:
                    probe_start = now
                else:
                    seconds_per_step = (now - probe_start) / (probe_step - 1)
                    self.plan_epochs(seconds_per_step * self.steps_per_epoch, done=0)
            local = _local_slice(list(global_batch), ctx)
            weight = 1.0
            if not local:  # fewer examples than ranks in the last batch: join the all-reduce with zero loss
                local, weight = [global_batch[0]], 0.0
            batch = task.collate(self.data.train, local, train=True, generator=augment).to(ctx.device)
            assert batch.targets is not None
            with torch.autocast(
                ctx.device.type,
                dtype=self.autocast_dtype or torch.float32,
                enabled=self.autocast_dtype is not None,
            ):
                logits = self.train_model(batch.inputs, batch.unit_mask).logits  # (B, C)
                # Sum over this rank's slice / global batch size * world size: DDP's gradient mean then equals
                # the gradient of the mean loss over the global batch, so N ranks train exactly like one process.
                loss_sum = task.objective.loss_sum(logits.float(), batch.targets)
            loss = loss_sum * weight * ctx.world_size / len(global_batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            if self.average is not None:
                self.average.update(self.step)
            self.threads.maybe_update()  # "auto": follow the machine's load (a clock read between re-checks)
            self.step += 1
            epoch_loss += float(loss_sum.detach()) * weight
            seen += len(local) if weight else 0
            speed = seen * ctx.world_size / max(time.perf_counter() - epoch_start - eval_seconds, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{epoch_loss / max(seen, 1):.4f}", ex_s=f"{speed:.0f}")
            every = config.train.eval_every_steps
            if every and self.step % every == 0 and self.step % self.steps_per_epoch != 0:
                eval_start, eval_cpu_start = time.perf_counter(), time.process_time()
                elapsed = self.progress.train_seconds + (eval_start - epoch_start - eval_seconds)
                cpu_elapsed = self.progress.train_cpu_seconds + (eval_cpu_start - epoch_cpu - eval_cpu)
                self.evaluate_point(epoch, epoch_loss / max(seen, 1), speed, elapsed, cpu_elapsed)
                eval_seconds += time.perf_counter() - eval_start
                eval_cpu += time.process_time() - eval_cpu_start
        bar.close()
        epoch_time = time.perf_counter() - epoch_start - eval_seconds
        progress = self.progress
        progress.train_seconds += epoch_time
        progress.train_cpu_seconds += time.process_time() - epoch_cpu - eval_cpu
        self.evaluate_point(
            epoch,
            epoch_loss / max(seen, 1),
            len(self.data.train) / epoch_time,
            progress.train_seconds,
            progress.train_cpu_seconds,
        )
        if config.train.fit_schedule_to_budget:  # re-planned before the checkpoint saves the schedule
            self.plan_epochs(self.recent_epoch_seconds(), done=epoch + 1)
        # Patience counts epochs: an epoch with any improving evaluation resets it.
        progress.stale = 0 if progress.improved_this_epoch else progress.stale + 1
        progress.improved_this_epoch = False
        if ctx.is_main:
            ckpt.save_training_state(
                self.run_dir,
                self.model,
                self.optimizer,
                self.scheduler,
                progress.to_checkpoint(epoch),
                self.average.model if self.average else None,
            )
        barrier(ctx)

    # -- all epochs, then the report --------------------------------------------------------------------

    def train(self) -> bool:
        """Every remaining epoch, within patience and the time budget; returns whether it stopped early."""
        config, progress = self.config, self.progress
        for epoch in range(progress.next_epoch, config.train.epochs):
            if progress.stale >= config.train.patience:
                return True
            if epoch >= self.planned_epochs:
                log.info("the %d epoch(s) planned for the time budget are done", self.planned_epochs)
                return False
            budget = config.train.max_train_seconds
            if budget is not None and progress.train_seconds >= budget:
                log.info("training time budget of %.0f s reached", budget)
                return False
            self.train_epoch(epoch)
            if (
                broadcast_flag(self.ctx, progress.stale >= config.train.patience)
                and epoch + 1 < config.train.epochs
            ):
                log.info(
                    "early stop: validation %s has not improved for %d epochs",
                    self.task.objective.selection_metric,
                    progress.stale,
                )
                return True
        return False

    def finish(self, stopped_early: bool) -> dict[str, Any]:
        """Load the selected weights, score them, write calibration, plots and ``metrics.json`` (last)."""
        barrier(self.ctx)
        ckpt.load_weights(self.model, self.run_dir / ckpt.WEIGHTS_FILE)
        progress, data = self.progress, self.data
        metrics = final_metrics(self.model, self.task, data, self.config, self.ctx.device)
        metrics.update(
            {
                "best_epoch": progress.best_epoch,
                "best_val_accuracy": progress.best_score,
                "epochs_run": len({h["epoch"] for h in progress.history}),
                "stopped_early": stopped_early,
                "train_seconds": progress.train_seconds,
                "train_cpu_seconds": progress.train_cpu_seconds,
                "init_seconds": self.init_seconds,
                "world_size": self.ctx.world_size,
                # (seconds into the run, torch threads) at the start and at each change ("auto" follows the load)
                "threads": {"setting": self.config.train.threads, "changes": self.threads.changes},
                "history": progress.history,
                "data_sizes": data.sizes,
            }
        )
        if self.ctx.is_main:
            from attnkit.train.plots import plot_confusion, plot_curves

            if "calibration" in metrics:
                ckpt.write_json(self.run_dir / CALIBRATION_FILE, metrics["calibration"])
            plot_curves(progress.history, self.run_dir / "curves.png")
            held_out = metrics.get("test") or metrics.get("val")
            if held_out is not None:
                plot_confusion(
                    np.asarray(held_out["confusion_matrix"]), data.labels, self.run_dir / "confusion.png"
                )
            ckpt.write_json(self.run_dir / METRICS_FILE, metrics)  # last: a run with metrics.json is complete
        return metrics


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    clear_earlier: Any = None,
) -> FitResult:
    """One training run in ``run_dir`` on the config's task.

    Resuming continues from the last committed checkpoint (:mod:`attnkit.train.checkpoint`), with the run's own
    config; a run stopped before its first checkpoint starts over (the same weights, as training is
    deterministic). The data is read (and checked) before anything is cleared or written: a data mistake leaves
    no half-made run behind that would block the corrected retry, and never removes an earlier run's files.

    Args:
        clear_earlier: called with ``run_dir`` on rank 0 before a fresh run writes anything (removes an earlier
            run's files; see :mod:`attnkit.train.stages`).
    """
    run_dir = Path(run_dir)
    ctx = init_distributed(config.train.device)
    threads = ThreadGovernor(config.train.threads)
    threads.start()
    if resume:
        config, resume = _resume_state(config, run_dir, ctx)
    task = task_for(config)
    if resume:
        task.load_preparation(run_dir)  # checked (attnkit.runs)
    data = task.prepare(fitted=resume)
    if not resume and ctx.is_main:  # written first, so that --resume finds the run whenever it is stopped
        if clear_earlier is not None:
            clear_earlier(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save_yaml(run_dir / CONFIG_FILE)
    if resume:
        saved_labels = read_labels(run_dir)  # checked: a JSON list of unique names (attnkit.runs)
        if saved_labels != data.labels:
            raise ValueError(
                f"{run_dir / LABELS_FILE}: the run's labels {saved_labels} differ from the data's {data.labels}"
            )
    trainer = _Trainer(config, run_dir, task, data, ctx, resume=resume, threads=threads)
    if not resume and ctx.is_main:
        task.save_preparation(run_dir)
        ckpt.write_json(run_dir / LABELS_FILE, data.labels)
    stopped_early = trainer.train()
    metrics = trainer.finish(stopped_early)
    return FitResult(run_dir=run_dir, metrics=metrics, model=trainer.model, data=data, task=task)
