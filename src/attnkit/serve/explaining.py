"""Explanations on their own bounded capacity, so that ``/predict`` keeps its throughput while they run.

An explanation costs up to ~100 forward and backward passes per text (Integrated Gradients, leave-one-out)
where a prediction costs a share of one batched forward pass. On one shared worker, a few clients asking for
``methods: ["all"]`` starved every prediction. So :class:`ExplainPool` runs them apart:

- at most ``max_pending`` requests running or waiting; one more is :class:`Overloaded` (503 at once);
- ``workers`` at a time, each with ``threads`` torch intra-op threads (the predict worker gets the cores they
  leave, see :func:`thread_budget`), so the two pools do not oversubscribe the cores;
- a time limit per request, counted from its arrival (queueing included). The work is split in units, one
  method on one input (a text, bounded by the tokenizer's ``max_length``; an image, at the run's fixed size; a
  recording, bounded by the run's ``max_seconds``), and the deadline is checked before each unit; the client gets :class:`ExplainTimeout` (504) as soon as the
  limit passes.

Two isolations:

- ``process`` (what ``attnkit serve`` uses): each worker is a separate process that loads the run itself. It
  has its own GIL, so its Python overhead never delays the event loop or the predict worker; it runs at a lower
  CPU priority (``nice``), so on busy cores the scheduler favours predictions; and a worker still busy
  ``KILL_GRACE_S`` after the limit is killed and replaced: a hard bound on the time an explanation can take.
  Its slot stays taken until it stops or is killed. A worker that cannot start (again) makes ``/explain`` 503
  while no other worker is left; a request ``RETRY_BOOT_S`` later tries another start, and a start that
  succeeds ends it.
- ``thread``: workers are threads of the server process (no start-up cost, the app's own predictor; the
  default of :func:`~attnkit.serve.app.create_app`). A thread cannot be stopped from outside: an explanation
  over its limit ends at its next unit, and its slot stays taken until then.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from attnkit.serve.batching import Overloaded

if TYPE_CHECKING:
    from attnkit.explain import Explanation
    from attnkit.predictor import Predictor

logger = logging.getLogger(__name__)

ISOLATIONS = ("process", "thread")
#: Seconds past its time limit after which a process worker still busy is killed (and replaced).
KILL_GRACE_S = 5.0
#: Seconds after a worker failed to start before a request may try to start one again.
RETRY_BOOT_S = 30.0


class ExplainTimeout(Exception):
    """An explanation went over its time limit (the server answers 504)."""


@dataclass(frozen=True)
class ExplainJob:
    """One ``/explain`` request: ``methods`` already expanded (``all`` resolved, ``rollout`` added).

    ``texts`` are the inputs: texts, for an image run decoded ``(H, W, C)`` uint8 images, for an audio run
    ``(S,)`` float32 waveforms at the run's sample rate (``modality``).
    """

    texts: list[Any]
    methods: list[str]
    target: str | None
    layers: bool
    deadline: float  # time.monotonic() by which it must be done (one clock for all processes of a machine)
    limit_s: float
    modality: str = "text"


def _timeout_message(limit_s: float, progress: str = "") -> str:
    return (
        f"the explanation went over its time limit of {limit_s:g} s{progress}; ask for fewer texts or "
        f"methods, or retry when the server is less busy"
    )


def _merge(into: Explanation, other: Explanation) -> None:
    """Add ``other``'s methods and token scores (same text, same tokens) to ``into``."""
    for token, more in zip(into.tokens, other.tokens, strict=True):
        token.scores.update(more.scores)
    into.methods.extend(m for m in other.methods if m not in into.methods)


class _ScoredUnit(Protocol):
    scores: dict[str, float]


class _UnitExplanation(Protocol):
    """What image and audio explanations share: scored units, the methods, and their JSON."""

    @property
    def units(self) -> Sequence[_ScoredUnit]: ...

    @property
    def methods(self) -> list[str]: ...

    def to_json_dict(self) -> dict[str, Any]: ...


def _merge_units(into: _UnitExplanation, other: _UnitExplanation) -> None:
    """Add ``other``'s methods and unit scores (same input, same units) to ``into``."""
    for unit, more in zip(into.units, other.units, strict=True):
        unit.scores.update(more.scores)
    into.methods.extend(m for m in other.methods if m not in into.methods)


def explain_within(
    predictor: Predictor, job: ExplainJob, *, clock: Callable[[], float] = time.monotonic
) -> list[dict[str, Any]]:
    """Explain ``job`` one (input, method) unit at a time, checking its deadline before each unit.

    Returns the same JSON dicts as :func:`attnkit.explain.explain` (texts),
    :func:`attnkit.explain.images.explain_images` (images) or :func:`attnkit.explain.audio.explain_recordings`
    (recordings, without the recording itself: the client has it) on the whole request.

    Raises:
        ExplainTimeout: the deadline passed before every unit was done.
    """
    if job.modality == "image":
        from attnkit.explain.images import explain_images

        def explain_image(image: Any, method: str) -> _UnitExplanation:
            return explain_images(predictor, [image], [method], target=job.target)[0]

        return _explain_units_within(job, clock, explain_image, "image")
    if job.modality == "audio":
        from attnkit.explain.audio import explain_recordings

        def explain_recording(waveform: Any, method: str) -> _UnitExplanation:
            return explain_recordings(
                predictor, [waveform], methods=[method], target=job.target, include_audio=False
            )[0]

        return _explain_units_within(job, clock, explain_recording, "recording")
    import attnkit.explain

    units = len(job.texts) * len(job.methods)
    done = 0
    results: list[dict[str, Any]] = []
    for text in job.texts:
        merged: Explanation | None = None
        for method in job.methods:
            if merged is not None and method in merged.methods:  # rollout comes with attention
                done += 1
                continue
            if clock() > job.deadline:
                raise ExplainTimeout(
                    _timeout_message(job.limit_s, f" ({done} of {units} text x method steps done)")
                )
            explanation = attnkit.explain.explain(
                predictor, [text], [method], target=job.target, layers=job.layers and merged is None
            )[0]
            if merged is None:
                merged = explanation
            else:
                _merge(merged, explanation)
            done += 1
        assert merged is not None
        results.append(merged.to_json_dict())
    return results


def _explain_units_within(
    job: ExplainJob,
    clock: Callable[[], float],
    explain_one: Callable[[Any, str], _UnitExplanation],
    noun: str,
) -> list[dict[str, Any]]:
    """:func:`explain_within` for inputs whose explanations score units (images, recordings): ``explain_one(input,
    method)`` per step, merged per input."""
    units = len(job.texts) * len(job.methods)
    done = 0
    results: list[dict[str, Any]] = []
    for item in job.texts:
        merged: _UnitExplanation | None = None
        for method in job.methods:
            if merged is not None and method in merged.methods:  # rollout comes with attention
                done += 1
                continue
            if clock() > job.deadline:
                raise ExplainTimeout(
                    _timeout_message(job.limit_s, f" ({done} of {units} {noun} x method steps done)")
                )
            explanation = explain_one(item, method)
            if merged is None:
                merged = explanation
            else:
                _merge_units(merged, explanation)
            done += 1
        assert merged is not None
        results.append(merged.to_json_dict())
    return results


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_budget(
    predict_threads: int | None, explain_workers: int, explain_threads: int, cores: int | None = None
) -> int:
    """Torch intra-op threads for the predict worker: ``predict_threads`` if given, else the cores left after
    the explanation workers (at least 1)."""
    if predict_threads is not None:
        return predict_threads
    total = cores if cores is not None else usable_cores()
    return max(1, total - explain_workers * explain_threads)


def torch_threads_pool(workers: int, threads: int, name: str) -> ThreadPoolExecutor:
    """A thread pool whose threads each run torch with ``threads`` intra-op threads."""
    return ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=name, initializer=torch.set_num_threads, initargs=(threads,)
    )


# -- process workers ----------------------------------------------------------------------------------------


def _worker_main(conn: Connection, run_dir: str, device: str, threads: int, nice: int) -> None:
    """A process worker: load the run, say ``ready``, then answer ``(status, payload)`` to each job."""
    torch.set_num_threads(threads)
    try:
        from attnkit.predictor import Predictor

        predictor = Predictor(run_dir, device=device)
    except Exception as err:
        conn.send(("failed", f"{type(err).__name__}: {err}"))
        return
    if nice and hasattr(os, "nice"):
        os.nice(nice)  # after loading: a worker (re)started on busy cores is ready as soon as it can be
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if job is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", explain_within(predictor, job))
        except ExplainTimeout as err:
            reply = ("timeout", str(err))
        except ValueError as err:
            reply = ("invalid", str(err))
        except Exception as err:
            reply = ("error", f"{type(err).__name__}: {err}")
        conn.send(reply)


class ProcessWorker:
    """One explanation process and the pipe to it (blocking calls: run them off the event loop)."""

    def __init__(self, run_dir: Path, device: str, threads: int, nice: int) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main,
            args=(child, str(run_dir), device, threads, nice),
            name="attnkit-explain",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.broken = False  # its pipe failed or it was killed: never hand it another job

    def wait_ready(self) -> None:
        """Block until the worker has loaded the run; raises ``RuntimeError`` if it could not."""
        try:
            status, message = self.conn.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"the explanation worker exited (code {self.process.exitcode})") from None
        if status != "ready":
            raise RuntimeError(f"the explanation worker could not load the run: {message}")

    def roundtrip(self, job: ExplainJob) -> tuple[str, Any]:
        """Send ``job``, wait for its reply; ``("killed", ...)`` if the worker died meanwhile."""
        try:
            self.conn.send(job)
            reply: tuple[str, Any] = self.conn.recv()
        except (EOFError, OSError):
            self.broken = True
            return ("killed", "the explanation worker stopped")
        return reply

    def alive(self) -> bool:
        return not self.broken and not self.conn.closed and self.process.is_alive()

    def kill(self) -> None:
        self.broken = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=2)
        self.conn.close()


class ExplainPool:
    """Bounded capacity for explanations (see the module docstring).

    Args:
        predictor: the run to explain (``process`` workers load ``predictor.run_dir`` on ``predictor.device``).
        workers: explanations computed at once.
        threads: torch intra-op threads per worker.
        max_pending: explanations running or waiting; more raise :class:`Overloaded`.
        timeout_s: time limit per request, from its arrival.
        isolation: ``process`` or ``thread``.
        nice: CPU priority offset of ``process`` workers (0-19; higher yields more to the predict path).
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        workers: int,
        threads: int,
        max_pending: int,
        timeout_s: float,
        isolation: str = "thread",
        nice: int = 5,
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(
                f"unknown explain isolation {isolation!r}; choose one of {', '.join(ISOLATIONS)}"
            )
        self.predictor = predictor
        self.workers = workers
        self.threads = threads
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.isolation = isolation
        self.nice = nice
        self.pending = 0
        self.timeouts = 0
        self.rejected = 0
        self.restarts = 0
        self._executor: ThreadPoolExecutor | None = None  # thread workers, or the pipe waiters of processes
        self._idle: asyncio.Queue[ProcessWorker] | None = None
        self._processes: set[ProcessWorker] = set()
        self._boots: set[asyncio.Task[None]] = set()
        self._failure: str | None = None
        self._failed_at = 0.0  # time.monotonic() of the last failed start
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers (process workers load the run in the background; requests wait for them)."""
        if self._executor is not None:
            return
        if self.isolation == "thread":
            self._executor = torch_threads_pool(self.workers, self.threads, "attnkit-explain")
            return
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="attnkit-explain-io")
        self._idle = asyncio.Queue()
        for _ in range(self.workers):
            self._boot()

    def stop(self) -> None:
        self._stopping = True
        for task in self._boots:
            task.cancel()
        for worker in list(self._processes):
            worker.kill()
        self._processes.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _boot(self) -> None:
        if self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self._start_process(), name="attnkit-explain-boot")
        self._boots.add(task)
        task.add_done_callback(self._boots.discard)

    async def _start_process(self) -> None:
        assert self._executor is not None and self._idle is not None
        device = str(self.predictor.device)
        worker = ProcessWorker(self.predictor.run_dir, device, self.threads, self.nice)
        self._processes.add(worker)
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, worker.wait_ready)
        except RuntimeError as err:
            logger.error("%s", err)
            self._failure = str(err)
            self._failed_at = time.monotonic()
            self._processes.discard(worker)
            worker.kill()
            return
        self._failure = None  # a worker that boots again ends an earlier failure (e.g. a transient one)
        self._idle.put_nowait(worker)

    def stats(self) -> dict[str, Any]:
        return {
            "isolation": self.isolation,
            "pending": self.pending,
            "max_pending": self.max_pending,
            "workers": self.workers,
            "timeout_s": self.timeout_s,
            "timeouts": self.timeouts,
            "rejected": self.rejected,
            "restarts": self.restarts,
        }

    # -- the public call ------------------------------------------------------------------------------------

    async def run(
        self, texts: Sequence[Any], methods: Sequence[str], *, target: str | None, layers: bool
    ) -> list[dict[str, Any]]:
        """Explain ``texts`` (or, for an image run, decoded uint8 images; for an audio run, waveforms) within the
        time limit; returns one JSON dict per input.

        Raises:
            Overloaded: ``max_pending`` explanations are already running or waiting, or the pool is stopped
                (or its workers could not start).
            ExplainTimeout: the time limit passed first.
            ValueError: a method this model cannot compute.
        """
        if self._executor is None:
            raise Overloaded("the explanation workers are not running")
        if self._failure is not None and not self._processes:
            # No worker left or starting: now and then try another start (a transient failure heals).
            if not self._boots and time.monotonic() - self._failed_at >= RETRY_BOOT_S:
                self._boot()
            raise Overloaded(f"explanations are unavailable: {self._failure}; retrying to start a worker")
        if self.pending >= self.max_pending:
            self.rejected += 1
            raise Overloaded(f"{self.pending} explanations are already running or waiting; retry shortly")
        job = ExplainJob(
            list(texts),
            list(methods),
            target,
            layers,
            time.monotonic() + self.timeout_s,
            self.timeout_s,
            self.predictor.modality,
        )
        if self.isolation == "thread":
            return await self._run_in_thread(job)
        # The slot is freed when the work really ends (a worker may go on up to KILL_GRACE_S past the 504):
        # by the worker's callback once it has the job, here if the job is dropped before any worker took it.
        self.pending += 1
        handed_over = asyncio.Event()
        try:
            return await asyncio.wait_for(self._run_in_process(job, handed_over), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            self.timeouts += 1
            raise ExplainTimeout(_timeout_message(self.timeout_s)) from None
        finally:
            if not handed_over.is_set():
                self._release()

    async def _run_in_thread(self, job: ExplainJob) -> list[dict[str, Any]]:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        self.pending += 1
        work: Future[list[dict[str, Any]]] = self._executor.submit(explain_within, self.predictor, job)
        # The slot is freed when the work really ends, not when the client is answered.
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(work), timeout=self.timeout_s)
        except ExplainTimeout:  # stopped by the worker at a unit boundary
            self.timeouts += 1
            raise
        except asyncio.TimeoutError:
            # A queued job is dropped (wait_for cancels it); a running one stops at its next unit.
            self.timeouts += 1
            raise ExplainTimeout(_timeout_message(self.timeout_s)) from None

    def _release(self) -> None:
        self.pending -= 1

    async def _run_in_process(self, job: ExplainJob, handed_over: asyncio.Event) -> list[dict[str, Any]]:
        """Run ``job`` on the next idle worker; sets ``handed_over`` once the worker's end frees the slot."""
        assert self._executor is not None and self._idle is not None
        worker = await self._idle.get()
        loop = asyncio.get_running_loop()
        try:
            work = loop.run_in_executor(self._executor, worker.roundtrip, job)
        except RuntimeError:  # the executor is shut down (the pool is stopping)
            self._idle.put_nowait(worker)
            raise
        handed_over.set()
        kill_at = loop.time() + max(0.0, job.deadline - time.monotonic()) + KILL_GRACE_S
        killer = loop.call_at(kill_at, self._kill, worker)

        def finished(_: object) -> None:
            killer.cancel()
            self._release()
            if worker.alive():
                self._idle.put_nowait(worker)  # type: ignore[union-attr]
            else:
                self._processes.discard(worker)
                worker.kill()  # already dead: reap it, close its pipe
                self.restarts += 1
                self._boot()

        work.add_done_callback(finished)
        # Cancelling this coroutine (the time limit) leaves the work to its callbacks: shield it.
        status, payload = await asyncio.shield(work)
        if status == "ok":
            return list(payload)
        if status == "timeout":
            self.timeouts += 1
            raise ExplainTimeout(payload)
        if status == "invalid":
            raise ValueError(payload)
        if status == "killed":
            raise Overloaded(f"{payload}; it is being restarted, retry shortly")
        raise RuntimeError(f"explanation failed: {payload}")

    def _kill(self, worker: ProcessWorker) -> None:
        logger.warning("an explanation ran %g s past its time limit: restarting its worker", KILL_GRACE_S)
        worker.broken = True
        if worker.process.is_alive():
            worker.process.kill()
