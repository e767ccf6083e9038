"""Micro-batching: requests from concurrent clients run through the model as one batch, off the event loop.

A request is a list of items (texts). :meth:`MicroBatcher.submit` queues it and awaits its own results. One
collector task takes the oldest queued request, waits up to ``max_wait_ms`` for more until the batch holds
``max_batch_size`` items, and runs ``fn`` on all of them in a worker thread; while that runs, new requests
queue up and form the next batch. So under load batches fill without waiting, and a lone request waits at most
``max_wait_ms``. The queue is bounded: past ``max_queue`` waiting items, :class:`Overloaded` is raised at once
(the server answers 503) instead of letting latency grow without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class Overloaded(Exception):
    """The batcher's queue is full; retry later."""


@dataclass
class BatcherStats:
    """Counters since start: ``calls`` of ``fn``, ``requests`` and ``items`` served, the largest batch."""

    calls: int = 0
    requests: int = 0
    items: int = 0
    largest_batch: int = 0
    rejected: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        mean = self.items / self.calls if self.calls else 0.0
        return {**self.__dict__, "mean_batch": round(mean, 2)}


@dataclass
class _Request(Generic[In, Out]):
    items: list[In]
    future: asyncio.Future[list[Out]] = field(repr=False)


class MicroBatcher(Generic[In, Out]):
    """Gather concurrent requests into batches for ``fn``.

    Args:
        fn: maps a list of items to one result per item, in order; runs in ``executor``.
        executor: where ``fn`` runs (a single-thread pool keeps the model on one thread).
        max_batch_size: most items per call of ``fn`` (a single larger request still runs whole, alone).
        max_wait_ms: how long the first request of a batch waits for company.
        max_queue: most items waiting; beyond it :meth:`submit` raises :class:`Overloaded`.
    """

    def __init__(
        self,
        fn: Callable[[list[In]], Sequence[Out]],
        executor: Executor,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.fn = fn
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatcherStats()
        self._pending: deque[_Request[In, Out]] = deque()
        self._queued_items = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the collector task on the running event loop."""
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._collect(), name="attnkit-batcher")

    async def stop(self) -> None:
        """Stop collecting; requests still queued fail with :class:`Overloaded`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            request = self._pending.popleft()
            if not request.future.done():
                request.future.set_exception(Overloaded("the server is shutting down"))
        self._queued_items = 0

    # -- the public call ------------------------------------------------------------------------------------

    async def submit(self, items: list[In]) -> list[Out]:
        """Queue ``items`` and wait for their results (one per item, in order).

        Raises:
            Overloaded: the queue is full, or the batcher is not running.
        """
        if self._task is None or self._wakeup is None:
            raise Overloaded("the batcher is not running")
        if self._queued_items + len(items) > self.max_queue:
            self.stats.rejected += 1
            raise Overloaded(
                f"{self._queued_items} texts are already waiting (limit {self.max_queue}); retry shortly"
            )
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(list(items), future))
        self._queued_items += len(items)
        self._wakeup.set()
        return await future

    # -- the collector --------------------------------------------------------------------------------------

    async def _collect(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = loop.time() + self.max_wait
            while self._queued_items < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take_batch()
            if batch:
                await self._run(batch)

    def _take_batch(self) -> list[_Request[In, Out]]:
        """The oldest requests whose items fit in ``max_batch_size`` (at least one); cancelled ones dropped."""
        batch: list[_Request[In, Out]] = []
        size = 0
        while self._pending:
            request = self._pending[0]
            if request.future.done():  # the client went away
                self._pending.popleft()
                self._queued_items -= len(request.items)
                continue
            if batch and size + len(request.items) > self.max_batch_size:
                break
            self._pending.popleft()
            self._queued_items -= len(request.items)
            batch.append(request)
            size += len(request.items)
        return batch

    async def _run(self, batch: list[_Request[In, Out]]) -> None:
        loop = asyncio.get_running_loop()
        items = [item for request in batch for item in request.items]
        try:
            results = await loop.run_in_executor(self.executor, self._call, items)
        except Exception as err:
            if len(batch) > 1:
                # Run each request alone so one failing request does not fail its neighbours.
                for request in batch:
                    await self._run([request])
                return
            logger.exception("batch of %d items failed", len(items))
            _set_exception(batch[0].future, err)
            return
        self.stats.requests += len(batch)
        start = 0
        for request in batch:
            end = start + len(request.items)
            if not request.future.done():
                request.future.set_result(list(results[start:end]))
            start = end

    def _call(self, items: list[In]) -> Sequence[Out]:
        results = self.fn(items)
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        self.stats.calls += 1
        self.stats.items += len(items)
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        return results


def _set_exception(future: asyncio.Future[Any], err: BaseException) -> None:
    if not future.done():
        future.set_exception(err)
