"""The micro-batcher groups concurrent requests, gives each caller its own results and bounds its queue."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from attnkit.serve.batching import MicroBatcher, Overloaded


class Recorder:
    """A batch function that records its batches, takes ``delay`` seconds, and fails on the item "bad"."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if "bad" in items:
            raise RuntimeError("bad item")
        time.sleep(self.delay)
        return [item.upper() for item in items]


def run(coro_fn, fn: Recorder, **options: float) -> object:  # type: ignore[no-untyped-def]
    async def main() -> object:
        with ThreadPoolExecutor(1, thread_name_prefix="model") as pool:
            batcher: MicroBatcher[str, str] = MicroBatcher(fn, pool, **options)  # type: ignore[arg-type]
            batcher.start()
            try:
                return await coro_fn(batcher)
            finally:
                await batcher.stop()

    return asyncio.run(main())


def test_concurrent_requests_share_batches_and_get_their_own_results() -> None:
    fn = Recorder(delay=0.02)

    async def clients(batcher: MicroBatcher[str, str]) -> tuple[list[list[str]], dict[str, int]]:
        requests = [[f"r{i}a", f"r{i}b"] if i % 3 == 0 else [f"r{i}"] for i in range(24)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        assert results == [[item.upper() for item in r] for r in requests]
        return results, batcher.stats.to_json_dict()

    _, stats = run(clients, fn, max_batch_size=8, max_wait_ms=5)  # type: ignore[misc]
    assert stats["requests"] == 24 and stats["items"] == 32
    assert stats["calls"] == len(fn.batches) < 24  # batching happened
    assert max(len(b) for b in fn.batches) <= 8
    assert fn.threads == {"model_0"}  # never on the event loop's thread


def test_a_lone_request_waits_at_most_max_wait() -> None:
    async def one(batcher: MicroBatcher[str, str]) -> float:
        start = time.perf_counter()
        assert await batcher.submit(["x"]) == ["X"]
        return time.perf_counter() - start

    elapsed = run(one, Recorder(), max_batch_size=8, max_wait_ms=30)
    assert 0.025 <= elapsed < 1.0  # type: ignore[operator]


def test_a_request_larger_than_the_batch_runs_whole() -> None:
    fn = Recorder()

    async def big(batcher: MicroBatcher[str, str]) -> list[str]:
        return await batcher.submit([str(i) for i in range(10)])

    assert run(big, fn, max_batch_size=4, max_wait_ms=0) == [str(i) for i in range(10)]
    assert [len(b) for b in fn.batches] == [10]


def test_full_queue_is_refused_at_once() -> None:
    fn = Recorder(delay=0.2)

    async def flood(batcher: MicroBatcher[str, str]) -> list[object]:
        first = asyncio.ensure_future(batcher.submit(["a"]))
        await asyncio.sleep(0.05)  # "a" is now running; the queue is empty
        rest = [asyncio.ensure_future(batcher.submit([f"x{i}"])) for i in range(5)]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = run(flood, fn, max_batch_size=1, max_wait_ms=0, max_queue=2)
    assert results[0] == ["A"]  # type: ignore[index]
    refused = [r for r in results if isinstance(r, Overloaded)]  # type: ignore[union-attr]
    assert len(refused) == 3 and "limit 2" in str(refused[0])


def test_a_failing_request_does_not_fail_its_batch_neighbours() -> None:
    fn = Recorder(delay=0.01)

    async def mixed(batcher: MicroBatcher[str, str]) -> list[object]:
        return await asyncio.gather(
            batcher.submit(["a"]), batcher.submit(["bad"]), batcher.submit(["c"]), return_exceptions=True
        )

    results = run(mixed, fn, max_batch_size=8, max_wait_ms=20)
    assert results[0] == ["A"] and results[2] == ["C"]  # type: ignore[index]
    assert isinstance(results[1], RuntimeError)  # type: ignore[index]


def test_submit_before_start_is_refused() -> None:
    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher: MicroBatcher[str, str] = MicroBatcher(Recorder(), pool)
            with pytest.raises(Overloaded):
                await batcher.submit(["a"])

    asyncio.run(main())


@pytest.mark.parametrize("options", [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_queue": 0}])
def test_bad_options(options: dict[str, float]) -> None:
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match=next(iter(options))):
        MicroBatcher(Recorder(), pool, **options)  # type: ignore[arg-type]
