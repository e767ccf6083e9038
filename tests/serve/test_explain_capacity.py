"""Explanations have their own bounded capacity: /predict does not wait behind them, a full explanation queue is
503, an explanation over its time limit is 504, and explanations computed unit by unit equal explain()'s."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

import attnkit.explain
from attnkit.explain import check_methods, explain
from attnkit.explain.methods import has_self_attention
from attnkit.predictor import Predictor
from attnkit.serve import ExplainPool, ExplainTimeout, Overloaded, ServeConfig, TorchBackend, create_app
from attnkit.serve.explaining import ExplainJob, explain_within, thread_budget

ServerFactory = Callable[[FastAPI], AbstractContextManager[str]]
TEXTS = ["The plot was GREAT, really.", "awful and boring film"]


@pytest.fixture(scope="module")
def predictor(bag_run: Path) -> Predictor:
    return Predictor(bag_run)


def expanded(predictor: Predictor, methods: list[str]) -> list[str]:
    _, ids, mask = predictor.encode(["a b"])
    return check_methods(methods, predictor.model, has_layers=has_self_attention(predictor.model, ids, mask))


def job(predictor: Predictor, methods: list[str], **kwargs: Any) -> ExplainJob:
    options: dict[str, Any] = {
        "target": None,
        "layers": False,
        "deadline": time.monotonic() + 60,
        "limit_s": 60,
    }
    options.update(kwargs)
    return ExplainJob(list(TEXTS), expanded(predictor, methods), **options)


def assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["methods"] == w["methods"] and g["label"] == w["label"] and g["target"] == w["target"]
        assert [t["text"] for t in g["tokens"]] == [t["text"] for t in w["tokens"]]
        for gt, wt in zip(g["tokens"], w["tokens"], strict=True):
            assert gt["scores"].keys() == wt["scores"].keys()
            for method, value in wt["scores"].items():
                assert gt["scores"][method] == pytest.approx(value, rel=1e-4, abs=1e-5), method
        if w["layers"] is None:
            assert g["layers"] is None
        else:
            np.testing.assert_allclose(
                np.array(g["layers"]["attention"]), np.array(w["layers"]["attention"]), atol=1e-5
            )


def test_unit_by_unit_equals_one_explain_call(predictor: Predictor, transformer_run: Path) -> None:
    reference = [e.to_json_dict() for e in explain(predictor, TEXTS, ["all"])]
    assert_same(explain_within(predictor, job(predictor, ["all"])), reference)
    targeted = [e.to_json_dict() for e in explain(predictor, TEXTS, ["loo", "attention"], target="neg")]
    assert_same(explain_within(predictor, job(predictor, ["loo", "attention"], target="neg")), targeted)
    # A transformer: attention brings rollout, and the layer maps come with the first unit.
    other = Predictor(transformer_run)
    want = [e.to_json_dict() for e in explain(other, TEXTS, ["grad-input", "attention"], layers=True)]
    got = explain_within(other, job(other, ["grad-input", "attention"], layers=True))
    assert got[0]["methods"] == ["grad-input", "attention", "rollout"]
    assert_same(got, want)


def test_deadline_is_checked_before_every_unit(predictor: Predictor) -> None:
    ticks = iter(range(100))
    clock = lambda: float(next(ticks))  # noqa: E731  # one second passes per unit
    work = job(predictor, ["attention", "gradient", "loo"], deadline=3.5, limit_s=3.5)
    with pytest.raises(ExplainTimeout, match=r"limit of 3.5 s \(4 of 6 text x method steps done\)"):
        explain_within(predictor, work, clock=clock)


def test_thread_budget_leaves_cores_to_predict() -> None:
    assert thread_budget(None, explain_workers=1, explain_threads=1, cores=2) == 1
    assert thread_budget(None, explain_workers=2, explain_threads=2, cores=16) == 12
    assert thread_budget(None, explain_workers=4, explain_threads=1, cores=2) == 1  # never below one
    assert thread_budget(3, explain_workers=1, explain_threads=1, cores=2) == 3  # given: kept


@pytest.fixture
def slow_explain(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Every explain() unit blocks until the returned event is set (or 10 s pass)."""
    release = threading.Event()
    real = attnkit.explain.explain

    def blocked(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(attnkit.explain, "explain", blocked)
    yield release
    release.set()


def test_predict_does_not_wait_behind_explanations(
    predictor: Predictor, running_server: ServerFactory, slow_explain: threading.Event
) -> None:
    """While explanations hold every explain worker and fill the queue, /predict answers at once; one more
    explanation is 503; the held ones finish once released."""
    app = create_app(TorchBackend(predictor), ServeConfig(max_pending_explains=2, explain_timeout_s=20))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        results: list[httpx.Response] = []
        held = [
            threading.Thread(
                target=lambda: results.append(http.post("/explain", json={"text": "great film"}))
            )
            for _ in range(2)
        ]
        for thread in held:
            thread.start()
        deadline = time.monotonic() + 10
        while http.get("/health").json()["explain"]["pending"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        start = time.perf_counter()
        for i in range(5):
            assert http.post("/predict", json={"text": f"a great film {i}"}).status_code == 200
        predict_seconds = (time.perf_counter() - start) / 5
        refused = http.post("/explain", json={"text": "one too many"})
        slow_explain.set()
        for thread in held:
            thread.join()
        health = http.get("/health").json()["explain"]
    assert predict_seconds < 1.0  # on one shared worker it would wait the whole explanation out
    assert refused.status_code == 503 and refused.json()["error"] == "overloaded"
    assert refused.headers["retry-after"] == "1"
    assert [r.status_code for r in results] == [200, 200]
    assert health["pending"] == 0 and health["rejected"] == 1


def test_explanation_over_its_time_limit_is_504(
    predictor: Predictor, running_server: ServerFactory, slow_explain: threading.Event
) -> None:
    app = create_app(TorchBackend(predictor), ServeConfig(explain_timeout_s=1.0))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        start = time.perf_counter()
        late = http.post("/explain", json={"text": "great film", "methods": ["attention", "ig"]})
        seconds = time.perf_counter() - start
        slow_explain.set()
        # The slot is given back once the unit in progress ends; then explanations work again.
        deadline = time.monotonic() + 15
        while http.get("/health").json()["explain"]["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        again = http.post("/explain", json={"text": "great film"})
        timeouts = http.get("/health").json()["explain"]["timeouts"]
    assert late.status_code == 504, late.text
    assert late.json()["error"] == "explain_timeout" and "time limit of 1 s" in late.json()["detail"]
    assert 0.9 < seconds < 5.0  # answered at the limit, not when the work ended
    assert again.status_code == 200 and timeouts == 1


def test_pool_refuses_when_full_and_when_stopped(predictor: Predictor) -> None:
    async def scenario() -> None:
        pool = ExplainPool(predictor, workers=1, threads=1, max_pending=1, timeout_s=30)
        with pytest.raises(Overloaded, match="not running"):
            await pool.run(["a"], ["attention"], target=None, layers=False)
        pool.start()
        try:
            first = asyncio.ensure_future(pool.run(["great film"], ["attention"], target=None, layers=False))
            await asyncio.sleep(0)
            with pytest.raises(Overloaded, match="1 explanations are already running"):
                await pool.run(["b"], ["attention"], target=None, layers=False)
            result = await first
            assert result[0]["methods"] == ["attention"]
        finally:
            pool.stop()

    asyncio.run(scenario())


def test_process_workers_explain_like_the_library(predictor: Predictor) -> None:
    """A process worker loads the run itself and gives explain()'s numbers; bad methods are ValueErrors."""
    want = [e.to_json_dict() for e in explain(predictor, TEXTS, ["attention", "grad-input"])]

    async def scenario() -> list[dict[str, Any]]:
        pool = ExplainPool(predictor, workers=1, threads=1, max_pending=2, timeout_s=120, isolation="process")
        pool.start()
        try:
            return await pool.run(TEXTS, ["attention", "grad-input"], target=None, layers=False)
        finally:
            pool.stop()

    assert_same(asyncio.run(scenario()), want)


@pytest.mark.slow
def test_a_stuck_process_worker_is_killed_and_replaced(predictor: Predictor, monkeypatch: Any) -> None:
    """A worker that stops responding (SIGSTOP) gets 504 at the limit, is killed after the grace period, and a
    fresh worker serves the next request."""
    import attnkit.serve.explaining as explaining

    monkeypatch.setattr(explaining, "KILL_GRACE_S", 0.5)

    async def scenario() -> tuple[float, list[dict[str, Any]], int]:
        pool = ExplainPool(predictor, workers=1, threads=1, max_pending=2, timeout_s=60, isolation="process")
        pool.start()
        try:
            await pool.run(["warm up"], ["attention"], target=None, layers=False)  # the worker is up
            (worker,) = pool._processes
            assert worker.process.pid is not None
            os.kill(worker.process.pid, signal.SIGSTOP)
            pool.timeout_s = 1.0
            start = time.monotonic()
            with pytest.raises(ExplainTimeout):
                await pool.run(["great film"], ["attention"], target=None, layers=False)
            seconds = time.monotonic() - start
            pool.timeout_s = 120.0
            again = await pool.run(["great film"], ["attention"], target=None, layers=False)
            return seconds, again, pool.restarts
        finally:
            pool.stop()

    seconds, again, restarts = asyncio.run(scenario())
    assert seconds < 3.0 and restarts == 1 and again[0]["methods"] == ["attention"]


class FakeProcessWorker:
    """Stands in for :class:`~attnkit.serve.explaining.ProcessWorker` without spawning a process.

    ``boots`` scripts the starts (True: ready, False: the run cannot be loaded); each job waits for ``gate``
    (so a test decides when the "process" stops), then answers like a worker that stopped at a unit boundary.
    """

    boots: ClassVar[list[bool]] = []
    gate = threading.Event()
    started: ClassVar[list[FakeProcessWorker]] = []

    def __init__(self, run_dir: Path, device: str, threads: int, nice: int) -> None:
        self.ok = self.boots.pop(0)
        self.broken = False
        self.jobs = 0
        self.process = self  # _kill() reaches the process through this attribute
        self.started.append(self)

    def wait_ready(self) -> None:
        if not self.ok:
            raise RuntimeError("the explanation worker could not load the run: MemoryError")

    def roundtrip(self, job: ExplainJob) -> tuple[str, Any]:
        self.jobs += 1
        self.gate.wait(10)
        if self.broken:
            return ("killed", "the explanation worker stopped")
        if time.monotonic() > job.deadline:
            return ("timeout", "over the limit")
        return ("ok", [{"text": text} for text in job.texts])

    def alive(self) -> bool:
        return not self.broken

    def is_alive(self) -> bool:
        return not self.broken

    def kill(self) -> None:
        self.broken = True


@pytest.fixture
def fake_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeProcessWorker]]:
    import attnkit.serve.explaining as explaining

    monkeypatch.setattr(FakeProcessWorker, "boots", [])
    monkeypatch.setattr(FakeProcessWorker, "gate", threading.Event())
    monkeypatch.setattr(FakeProcessWorker, "started", [])
    monkeypatch.setattr(explaining, "ProcessWorker", FakeProcessWorker)
    yield FakeProcessWorker
    FakeProcessWorker.gate.set()


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_process_slot_stays_taken_while_the_worker_still_runs(
    predictor: Predictor, fake_workers: type[FakeProcessWorker]
) -> None:
    """After a 504 the process worker may go on (until it stops at a unit or is killed): its slot stays taken,
    so no more than ``max_pending`` explanations are ever queued; it is freed when the worker stops."""
    fake_workers.boots[:] = [True]

    async def scenario() -> None:
        pool = ExplainPool(predictor, workers=1, threads=1, max_pending=1, timeout_s=0.2, isolation="process")
        pool.start()
        try:
            await _until(lambda: pool._idle is not None and pool._idle.qsize() == 1)
            with pytest.raises(ExplainTimeout):
                await pool.run(["a"], ["attention"], target=None, layers=False)
            assert pool.stats()["pending"] == 1  # the worker has not stopped yet
            with pytest.raises(Overloaded, match="1 explanations are already running"):
                await pool.run(["b"], ["attention"], target=None, layers=False)
            fake_workers.gate.set()  # it stops at its next unit and is kept
            await _until(lambda: pool.pending == 0)
            pool.timeout_s = 30
            assert await pool.run(["c"], ["attention"], target=None, layers=False) == [{"text": "c"}]
            assert pool.restarts == 0 and len(fake_workers.started) == 1
        finally:
            pool.stop()

    asyncio.run(scenario())


def test_process_job_dropped_while_queued_frees_its_slot(
    predictor: Predictor, fake_workers: type[FakeProcessWorker]
) -> None:
    """A job that times out waiting for a busy worker never reaches one: its slot is freed at the 504."""
    fake_workers.boots[:] = [True]

    async def scenario() -> None:
        pool = ExplainPool(predictor, workers=1, threads=1, max_pending=2, timeout_s=0.2, isolation="process")
        pool.start()
        try:
            await _until(lambda: pool._idle is not None and pool._idle.qsize() == 1)
            busy = asyncio.ensure_future(pool.run(["a"], ["attention"], target=None, layers=False))
            await _until(lambda: fake_workers.started[0].jobs == 1)
            with pytest.raises(ExplainTimeout):
                await pool.run(["b"], ["attention"], target=None, layers=False)  # queued behind "a"
            with pytest.raises(ExplainTimeout):
                await busy
            assert pool.pending == 1  # only "a", whose worker still runs
            fake_workers.gate.set()
            await _until(lambda: pool.pending == 0)
            assert fake_workers.started[0].jobs == 1  # "b" was dropped, never sent
        finally:
            pool.stop()

    asyncio.run(scenario())


def test_a_failed_restart_heals_once_a_worker_starts_again(
    predictor: Predictor, fake_workers: type[FakeProcessWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only worker dies, its restart fails (503 naming why), a later request starts one again: served."""
    import attnkit.serve.explaining as explaining

    monkeypatch.setattr(explaining, "RETRY_BOOT_S", 0.0)
    fake_workers.boots[:] = [True, False, True]

    async def scenario() -> None:
        pool = ExplainPool(predictor, workers=1, threads=1, max_pending=2, timeout_s=30, isolation="process")
        pool.start()
        try:
            await _until(lambda: pool._idle is not None and pool._idle.qsize() == 1)
            fake_workers.started[0].kill()  # the process dies while idle
            fake_workers.gate.set()
            with pytest.raises(Overloaded, match="being restarted"):
                await pool.run(["a"], ["attention"], target=None, layers=False)
            await _until(lambda: len(fake_workers.started) == 2 and not pool._boots)
            with pytest.raises(Overloaded, match=r"unavailable: .*MemoryError; retrying"):
                await pool.run(["b"], ["attention"], target=None, layers=False)
            await _until(lambda: pool._idle is not None and pool._idle.qsize() == 1)
            assert pool._failure is None
            assert await pool.run(["c"], ["attention"], target=None, layers=False) == [{"text": "c"}]
            assert pool.restarts == 1 and len(fake_workers.started) == 3
        finally:
            pool.stop()

    asyncio.run(scenario())


def test_a_failed_start_is_not_retried_before_its_wait(
    predictor: Predictor, fake_workers: type[FakeProcessWorker]
) -> None:
    """A run that cannot be loaded does not spawn a process per request: one retry per RETRY_BOOT_S at most."""
    fake_workers.boots[:] = [False, True]

    async def scenario() -> None:
        pool = ExplainPool(predictor, workers=1, threads=1, max_pending=2, timeout_s=30, isolation="process")
        pool.start()
        try:
            await _until(lambda: pool._failure is not None and not pool._boots)
            for _ in range(3):
                with pytest.raises(Overloaded, match="unavailable"):
                    await pool.run(["a"], ["attention"], target=None, layers=False)
            assert len(fake_workers.started) == 1
        finally:
            pool.stop()

    asyncio.run(scenario())
