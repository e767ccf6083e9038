"""Compute threads that never hurt: ``auto`` uses the cores other processes leave idle, and keeps checking.

On a busy machine a second OpenMP thread that has no core of its own spin-waits against the other processes and
can make training 10x slower than one thread; on an idle machine one thread leaves cores unused. ``auto``
measures, over the last few seconds, how many cores the *other* processes kept busy (all CPU time on the
machine, from ``/proc/stat``, minus this process's own) and runs torch on the cores that are left, at least one.
:class:`ThreadGovernor` re-checks every ``interval`` seconds, so a run that starts on an idle laptop and meets a
second job drops to one thread within seconds, and takes the cores back when the job ends.

Where there is no ``/proc/stat`` (macOS), the one-minute load average stands in for the machine's busy cores;
where neither exists (Windows), ``auto`` uses every usable core. ``BENCHMARKS.md`` ("Threads that never hurt")
measures the setting against one thread and all cores, idle and beside a CPU-bound process.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

AUTO = "auto"

#: A thread setting as configs and command lines give it: a count, ``"auto"``, or ``None`` (torch's own default:
#: every core).
ThreadSetting = int | str | None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The most compute threads a setting may ask for: 4 per CPU core (torch segfaults far above)."""
    return 4 * (os.cpu_count() or 1)


def check_thread_setting(value: object, name: str, *, allow_null: bool = True) -> ThreadSetting:
    """``value`` as a :data:`ThreadSetting`, or ``ValueError`` naming ``name`` and what is allowed.

    ``allow_null`` is False for command-line options, where there is no ``null`` to write.
    """
    if value == AUTO or (value is None and allow_null):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    limit = max_threads()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        null = ", null (torch's default: every core)" if allow_null else ""
        raise ValueError(
            f"{name} must be auto (the cores other processes leave idle){null} or a number in [1, {limit}] "
            f"(4 per CPU core of this machine), got {value!r}"
        )
    return value


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used since boot by every process (``None`` when unknown) and by this one, at a time."""

    machine_busy: float | None
    own: float
    wall: float


def _proc_stat_busy() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores) from ``/proc/stat``; ``None`` if absent."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def sample_cpu() -> CpuSample:
    """The machine's and this process's CPU time now."""
    return CpuSample(machine_busy=_proc_stat_busy(), own=time.process_time(), wall=time.monotonic())


def others_busy_cores(before: CpuSample, after: CpuSample) -> float | None:
    """How many cores processes other than this one kept busy between two samples; ``None`` if unknown.

    Falls back to the one-minute load average minus this process's own use where ``/proc/stat`` is missing.
    """
    wall = after.wall - before.wall
    if wall <= 0:
        return None
    own_cores = max(0.0, after.own - before.own) / wall
    if before.machine_busy is not None and after.machine_busy is not None:
        return max(0.0, (after.machine_busy - before.machine_busy) / wall - own_cores)
    try:
        return max(0.0, os.getloadavg()[0] - own_cores)
    except (AttributeError, OSError):
        return None


def threads_for(others: float | None, cores: int, cap: int | None = None) -> int:
    """Threads for a process that may use ``min(cores, cap)`` cores while others keep ``others`` busy.

    A core counts as free when at least about 70% of it is idle (``floor(free + 0.3)``): a half-busy core
    is not worth a spinning thread. Unknown load (``None``) gives every core. Always at least 1.
    """
    limit = max(1, min(cores, cap) if cap else cores)
    if others is None:
        return limit
    return max(1, min(limit, math.floor(cores - others + 0.3)))


class ThreadGovernor:
    """Keeps torch's intra-op thread count right for the machine's load (``auto``) or fixed (a number).

    Call :meth:`start` once, then :meth:`maybe_update` often (after every training step, before every served
    batch): it costs a clock read except once per ``interval`` seconds, when it re-measures the other processes'
    load over the interval just gone and changes the thread count if it should. torch's thread count belongs to
    the calling thread's parallel regions: call both methods from the thread that computes.

    Args:
        setting: ``"auto"``, a fixed count, or ``None`` (leave torch's default alone).
        interval: seconds between re-checks under ``auto``.
        cap: the most threads ``auto`` may use (e.g. the cores left to a server's predict worker); ``None``:
            every usable core, divided among the ranks of a run started by ``torchrun`` on this machine.
        sampler / setter / clock: the CPU sampler, the thread setter and the wall clock it compares with
            (tests pass fakes); ``cores``: the usable cores (default :func:`usable_cores`).
    """

    def __init__(
        self,
        setting: ThreadSetting,
        *,
        interval: float = 5.0,
        cap: int | None = None,
        sampler: Callable[[], CpuSample] = sample_cpu,
        setter: Callable[[int], None] = torch.set_num_threads,
        clock: Callable[[], float] = time.monotonic,
        cores: int | None = None,
    ) -> None:
        self.setting = setting
        self.interval = interval
        self.cores = cores or usable_cores()
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        self.cap = cap if cap is not None else max(1, self.cores // max(1, local_ranks))
        self._sampler, self._setter, self._clock = sampler, setter, clock
        self._last: CpuSample | None = None
        self.threads: int | None = None
        #: ``(seconds since start, threads)`` at the start and at every change.
        self.changes: list[tuple[float, int]] = []
        self._started = 0.0

    @property
    def auto(self) -> bool:
        return self.setting == AUTO

    def start(self, probe_seconds: float = 0.25) -> int | None:
        """Set the thread count now; ``auto`` first watches the machine for ``probe_seconds``."""
        if self.setting is None:
            return None
        if not self.auto:
            assert isinstance(self.setting, int)
            self._apply(self.setting)
            return self.threads
        first = self._sampler()
        if probe_seconds > 0 and self._sampler is sample_cpu:
            time.sleep(probe_seconds)
        self._last = self._sampler()
        self._started = self._last.wall
        self._apply(threads_for(others_busy_cores(first, self._last), self.cores, self.cap))
        return self.threads

    def maybe_update(self) -> None:
        """Re-check the load if ``interval`` seconds have passed since the last check (``auto`` only)."""
        if not self.auto or self._last is None:
            return
        now = self._clock()
        if now - self._last.wall < self.interval:
            return
        sample = self._sampler()
        others = others_busy_cores(self._last, sample)
        self._last = sample
        wanted = threads_for(others, self.cores, self.cap)
        if wanted != self.threads:
            log.info(
                "threads: %s -> %d (other processes keep %.1f of %d cores busy)",
                self.threads,
                wanted,
                others or 0.0,
                self.cores,
            )
            self._apply(wanted)

    def _apply(self, threads: int) -> None:
        self._setter(threads)
        self.threads = threads
        since = (self._last.wall - self._started) if self._last is not None else 0.0
        self.changes.append((round(since, 1), threads))


def resolve_threads(setting: ThreadSetting, probe_seconds: float = 0.25) -> int:
    """A thread count decided once: the number itself, every usable core (``None``), or for ``auto`` the cores
    left idle over a ``probe_seconds`` look at the machine (benchmarks fix their count for the whole run)."""
    if isinstance(setting, int):
        return setting
    if setting is None:
        return usable_cores()
    first = sample_cpu()
    time.sleep(probe_seconds)
    return threads_for(others_busy_cores(first, sample_cpu()), usable_cores())
