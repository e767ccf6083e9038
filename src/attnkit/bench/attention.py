"""``attnkit bench attention``: time and peak memory of every attention variant against torch SDPA.

Each (variant, length, mode) cell runs in its own freshly forked worker process, one at a time, so that:

- peak memory starts from a clean process (no allocator cache or retained heap from an earlier cell);
- a cell that runs out of memory or time is killed without taking the benchmark down.

In the worker, after a tiny warm-up that initializes kernels and thread pools, one cell does:

1. an RSS pass: the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) is read
   around one pass; the increase is ``rss_peak_mb`` (everything: tensors, allocator and library overhead);
2. an allocator pass: one pass under ``torch.profiler`` with ``profile_memory=True``, which logs the CPU
   allocator's running total of live bytes at every allocation and free; the maximum of that total minus its
   starting value is ``peak_mb``: the peak of tensor memory allocated during the pass, above the inputs and
   parameters that existed before it. It is the number the memory targets use. On CUDA, ``peak_mb`` is
   ``torch.cuda.max_memory_allocated`` minus the memory allocated before the pass;
3. ``--warmup`` passes, then ``--repeats`` timed repeats of the variant, each followed by a timed repeat of
   the SDPA reference on the same inputs (paired, so that load from other processes hits both alike). A repeat
   is one pass, or a batch of passes lasting ``--min-repeat-seconds`` when one pass is shorter. ``ms`` and
   ``sdpa_ms`` are the medians over repeats and ``ratio_to_sdpa`` the median of the per-repeat ratios. Times
   are on the wall clock, or with ``--clock cpu`` the worker's CPU time (both are recorded).

A pass is ``forward`` under ``torch.no_grad()`` (mode ``fwd``) or ``forward`` then ``backward`` from a fixed
output gradient with inputs and parameters requiring gradients (mode ``fwdbwd``).

Dimension legend: ``B`` batch, ``H`` heads, ``T`` tokens (sequence length), ``D`` head size.
MB and GB here are 2**20 and 2**30 bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnkit.bench.machine import first_line_value
from attnkit.bench.machine import machine_info as shared_machine_info
from attnkit.layers import (
    Attention,
    AttentionCore,
    AttentionPooling,
    ChunkedAttention,
    LinearAttention,
    LocalAttention,
    ScaledDotScorer,
)
from attnkit.threads import check_thread_setting, resolve_threads

logger = logging.getLogger(__name__)

MB = 2**20
GB = 2**30

VARIANTS: dict[str, str] = {
    "sdpa": "torch.nn.functional.scaled_dot_product_attention (the reference)",
    "naive": "softmax(q @ k^T * scale) @ v written out (the memory baseline)",
    "fast": "attnkit Attention(ScaledDotScorer), need_weights=False (SDPA fast path)",
    "explicit": "attnkit Attention(ScaledDotScorer), need_weights=True (weights materialized)",
    "chunked": "attnkit ChunkedAttention(chunk_size), exact",
    "local": "attnkit LocalAttention(window)",
    "linear": "attnkit LinearAttention (kernel feature map)",
    "pooling": "attnkit AttentionPooling(H*D, scorer='additive') over (B, T, H*D), weights returned",
}
MODES: tuple[str, ...] = ("fwd", "fwdbwd")
DEFAULT_LENGTHS: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# Dense (T, T) matrices alive at the peak of a pass, for the variants that materialize them
# (see estimate_quadratic_bytes).
_QUADRATIC_MATRICES: dict[str, dict[str, int]] = {
    "naive": {"fwd": 2, "fwdbwd": 3},
    "explicit": {"fwd": 2, "fwdbwd": 3},
}

MEMORY_METHOD = (
    "peak_mb: peak of live tensor bytes allocated during one pass above what existed before it (inputs and "
    "parameters excluded), from the CPU allocator's running total that torch.profiler(profile_memory=True) "
    "records at every allocation and free (on CUDA: torch.cuda.max_memory_allocated minus the allocation "
    "before the pass). rss_peak_mb: increase of the process's peak resident set (VmHWM, reset via "
    "/proc/self/clear_refs) over the first full-size pass in a freshly forked process; it includes "
    "allocator and library overhead. Each cell runs in its own process."
)


@dataclass
class BenchConfig:
    """Everything that defines one benchmark run; plain fields, saved in the JSON output.

    Attributes:
        variants: names from :data:`VARIANTS`, in table order.
        lengths: sequence lengths ``T``.
        modes: ``fwd`` and/or ``fwdbwd``.
        batch: ``B``.
        heads: ``H``.
        dim: head size ``D``; pooling runs over states of size ``H * D``.
        dtype: ``float32`` or ``bfloat16``.
        causal: causal masking for every variant that supports it (pooling ignores it).
        window: ``LocalAttention`` window.
        chunk_size: ``ChunkedAttention`` block of queries.
        repeats: timed passes per cell (fewer if ``max_seconds`` runs out; at least one).
        warmup: untimed full-size passes before timing (the two memory passes come before these).
        min_repeat_seconds: a timed repeat runs a short pass this long (the mean of a batch of passes).
        clock: what ``ms`` measures: ``wall`` (elapsed time) or ``cpu`` (CPU time of the worker, all threads;
            with one thread it is the pass's cost without the time other processes held the core).
        max_seconds: time budget of one cell; no new repeat starts past it, and a cell still running at
            ``3 * max_seconds + 30`` is killed and reported as a timeout (longer lengths of that variant and
            mode are then skipped).
        skip_over_gb: skip cells whose estimated dense-matrix memory exceeds this many GB; ``None`` runs all.
        threads: ``torch.set_num_threads`` in every worker.
        device: ``cpu`` or ``cuda``.
        seed: seed for inputs and parameters.
    """

    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    lengths: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTHS))
    modes: list[str] = field(default_factory=lambda: list(MODES))
    batch: int = 1
    heads: int = 4
    dim: int = 64
    dtype: str = "float32"
    causal: bool = False
    window: int = 256
    chunk_size: int = 512
    repeats: int = 5
    warmup: int = 1
    min_repeat_seconds: float = 0.2
    clock: str = "wall"
    max_seconds: float = 300.0
    skip_over_gb: float | None = None
    threads: int = 1
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f"unknown or no variants {unknown}; choose from {', '.join(VARIANTS)}")
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError(f"--lengths must be positive integers, got {self.lengths}")
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be among {MODES}, got {self.modes}")
        for name in ("batch", "heads", "dim", "repeats", "threads", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.window < 0 or self.min_repeat_seconds < 0:
            raise ValueError("--warmup, --window and --min-repeat-seconds must be >= 0")
        if self.max_seconds <= 0:
            raise ValueError(f"--max-seconds must be > 0, got {self.max_seconds}")
        if self.skip_over_gb is not None and self.skip_over_gb <= 0:
            raise ValueError(f"--skip-over-memory must be > 0 GB, got {self.skip_over_gb}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device not in {"cpu", "cuda"}:
            raise ValueError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.clock not in {"wall", "cpu"}:
            raise ValueError(f"--clock must be wall or cpu, got {self.clock!r}")
        if self.clock == "cpu" and self.device != "cpu":
            raise ValueError(
                "--clock cpu measures CPU time, which says nothing of GPU kernels: use --clock wall"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                "--device cuda was asked for but torch.cuda.is_available() is False; use --device cpu"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass
class Cell:
    """One measurement: a variant at one length in one mode."""

    variant: str
    length: int
    mode: str


@dataclass
class CellResult:
    """What one cell measured; ``status`` is ``ok``, ``skipped``, ``timeout`` or ``error`` (see ``note``).

    Times are in milliseconds per pass on the run's clock (``ms_runs``: one per repeat, each the mean of
    ``passes_per_repeat`` passes in a row; ``wall_ms`` and ``cpu_ms`` are the medians on both clocks), memory
    in MB (2**20 bytes) above the inputs. ``ratio_to_sdpa`` is the median over repeats of
    ``variant time / SDPA time`` in the same repeat (1 for ``sdpa`` itself).
    """

    variant: str
    length: int
    mode: str
    status: str
    note: str = ""
    ms: float | None = None
    sdpa_ms: float | None = None
    ratio_to_sdpa: float | None = None
    tokens_per_s: float | None = None
    peak_mb: float | None = None
    rss_peak_mb: float | None = None
    est_quadratic_gb: float | None = None
    wall_ms: float | None = None
    cpu_ms: float | None = None
    repeats: int = 0
    passes_per_repeat: int = 1
    ms_runs: list[float] = field(default_factory=list)
    sdpa_ms_runs: list[float] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------
# Workloads: inputs, a forward function and the gradient to push back, per variant.


@dataclass
class Workload:
    """One variant, ready to run.

    Attributes:
        forward: runs the variant on the prepared inputs and returns the tensor that backward starts from.
        grad_output: gradient of that tensor for ``fwdbwd`` passes (allocated up front, not measured).
        leaves: tensors whose ``.grad`` is cleared before each pass (inputs and parameters).
    """

    forward: Callable[[], Tensor]
    grad_output: Tensor
    leaves: list[Tensor]


def estimate_quadratic_bytes(variant: str, length: int, mode: str, config: BenchConfig) -> int:
    """Bytes of the dense ``(B, H, T, T)`` matrices alive at once in a pass of ``variant``; 0 if it has none.

    ``naive`` holds the raw and the scaled scores (or the weights) in forward, and weights, their gradient and
    the scores' gradient in backward; ``explicit`` does the same with its softmax computed in float32.
    """
    matrices = _QUADRATIC_MATRICES.get(variant, {}).get(mode, 0)
    itemsize = torch.empty((), dtype=config.torch_dtype).element_size()
    if variant == "explicit":
        itemsize = max(itemsize, 4)
    return matrices * config.batch * config.heads * length * length * itemsize


def naive_attention(query: Tensor, key: Tensor, value: Tensor, *, causal: bool = False) -> Tensor:
    """Textbook attention ``softmax(q k^T / sqrt(D)) v`` that materializes the ``(B, H, T, T)`` scores."""
    scores = (query @ key.transpose(-2, -1)) * (1.0 / math.sqrt(query.shape[-1]))  # (B, H, T, T)
    if causal:
        keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()  # (T, T)
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, dim=-1) @ value  # (B, H, T, D)


def _attention_inputs(config: BenchConfig, length: int, requires_grad: bool) -> list[Tensor]:
    shape = (config.batch, config.heads, length, config.dim)  # (B, H, T, D)
    return [
        torch.randn(shape, device=config.device, dtype=config.torch_dtype).requires_grad_(requires_grad)
        for _ in range(3)
    ]


def build_workload(variant: str, config: BenchConfig, length: int, mode: str) -> Workload:
    """Inputs, module and forward of ``variant`` at ``length``; inputs require grad for ``fwdbwd``."""
    grad = mode == "fwdbwd"
    causal = config.causal
    if variant == "pooling":
        states = torch.randn(
            config.batch, length, config.heads * config.dim, device=config.device, dtype=config.torch_dtype
        ).requires_grad_(grad)  # (B, T, H*D)
        pool = AttentionPooling(config.heads * config.dim, scorer="additive").to(
            config.device, config.torch_dtype
        )
        params = [p for p in pool.parameters() if p.requires_grad]
        grad_out = torch.randn(config.batch, pool.output_dim, device=config.device, dtype=config.torch_dtype)
        return Workload(forward=lambda: pool(states).pooled, grad_output=grad_out, leaves=[states, *params])

    q, k, v = _attention_inputs(config, length, grad)
    if variant == "sdpa":

        def forward() -> Tensor:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    elif variant == "naive":

        def forward() -> Tensor:
            return naive_attention(q, k, v, causal=causal)

    else:
        core = _make_core(variant, config)
        need_weights = variant == "explicit"

        def forward() -> Tensor:
            return core(q, k, v, causal=causal, need_weights=need_weights).context

    grad_out = torch.randn_like(q, requires_grad=False)  # (B, H, T, D)
    return Workload(forward=forward, grad_output=grad_out, leaves=[q, k, v])


def _make_core(variant: str, config: BenchConfig) -> AttentionCore:
    if variant in {"fast", "explicit"}:
        return Attention(ScaledDotScorer(config.dim))
    if variant == "chunked":
        return ChunkedAttention(config.chunk_size)
    if variant == "local":
        return LocalAttention(config.window)
    if variant == "linear":
        return LinearAttention()
    raise AssertionError(f"not an attention core variant: {variant}")  # BenchConfig validates names


def run_pass(workload: Workload, mode: str) -> None:
    """One forward (``fwd``, under ``no_grad``) or forward + backward (``fwdbwd``) pass; keeps nothing."""
    if mode == "fwd":
        with torch.no_grad():
            out = workload.forward()
        del out
        return
    for leaf in workload.leaves:
        leaf.grad = None
    out = workload.forward()
    out.backward(workload.grad_output)
    del out
    for leaf in workload.leaves:
        leaf.grad = None


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass
class PassTime:
    """Milliseconds per pass: ``wall`` (elapsed) and ``cpu`` (CPU time of this process, all its threads)."""

    wall: float
    cpu: float

    def on(self, clock: str) -> float:
        return self.cpu if clock == "cpu" else self.wall


def time_pass(workload: Workload, mode: str, device: str, passes: int = 1) -> PassTime:
    """Time :func:`run_pass` over ``passes`` passes in a row; per pass."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(passes):
        run_pass(workload, mode)
    _sync(device)
    return PassTime(
        wall=(time.perf_counter() - wall) * 1e3 / passes, cpu=(time.process_time() - cpu) * 1e3 / passes
    )


# ----------------------------------------------------------------------------------------------------
# Peak memory.


def _read_status_kb(name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@contextmanager
def peak_rss_increase() -> Iterator[dict[str, int | None]]:
    """Measure the increase of the process's peak resident set over the block, in bytes.

    Yields a dict whose ``bytes`` entry is filled on exit (``None`` when ``/proc`` does not support it). Only
    meaningful in a fresh process: memory an earlier computation freed but the C heap kept is reused without
    raising RSS.
    """
    result: dict[str, int | None] = {"bytes": None}
    ok = _reset_peak_rss()
    base = _read_status_kb("VmRSS")
    try:
        yield result
    finally:
        peak = _read_status_kb("VmHWM")
        if ok and base is not None and peak is not None:
            result["bytes"] = max(0, peak - base) * 1024


@contextmanager
def _without_kineto_chatter() -> Iterator[None]:
    """Kineto writes ``USDT: profiler_start/stop`` to fd 2 on every session, whatever ``KINETO_LOG_LEVEL``
    says: drop those lines and pass any other output of the block through to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(("USDT:", "STAGE:")):
                    sys.stderr.write(line)


def allocator_peak_bytes(fn: Callable[[], None], device: str = "cpu") -> int:
    """Peak of live tensor bytes allocated while ``fn`` runs, above those allocated before it.

    On CPU it reads the allocator's running total that ``torch.profiler`` logs with every allocation and free
    when ``profile_memory=True`` (torch has no CPU peak counter); on CUDA it uses
    ``torch.cuda.max_memory_allocated``. ``fn`` should free what it allocates (its result is not kept).
    """
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - before)

    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with _without_kineto_chatter(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # The event tree is private API; it is the only place the profiler exposes the allocator's running total.
    events: list[tuple[int, int, int]] = []  # (time ns, bytes allocated (+) or freed (-), running total)
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            fields = event.extra_fields
            events.append((event.start_time_ns, fields.alloc_size, fields.total_allocated))
    if not events:
        return 0
    events.sort()
    # The running total is process-wide and may start above 0; the state before the first event is the base.
    base = events[0][2] - events[0][1]
    return max(0, max(total for _, _, total in events) - base)


# ----------------------------------------------------------------------------------------------------
# One cell, in a worker process.


def measure_cell(cell: Cell, config: BenchConfig) -> CellResult:
    """Measure one cell in the current process (the benchmark calls this in a fresh worker per cell)."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    # Initialize kernels and thread pools on a tiny problem, so the memory passes see only the cell's work.
    for name in {cell.variant, "sdpa"}:
        run_pass(build_workload(name, config, min(cell.length, 16), cell.mode), cell.mode)

    workload = build_workload(cell.variant, config, cell.length, cell.mode)
    reference = workload
    if cell.variant != "sdpa":
        reference = build_workload("sdpa", config, cell.length, cell.mode)
    with peak_rss_increase() as rss:
        first = time_pass(workload, cell.mode, config.device)
    peak = allocator_peak_bytes(lambda: run_pass(workload, cell.mode), config.device)
    ref_first = first if reference is workload else time_pass(reference, cell.mode, config.device)
    pass_ms, ref_ms = first.wall, ref_first.wall
    for _ in range(config.warmup):
        if time.perf_counter() - started > config.max_seconds:
            break
        pass_ms = time_pass(workload, cell.mode, config.device).wall
        if reference is not workload:
            ref_ms = time_pass(reference, cell.mode, config.device).wall

    # Short passes are timed in batches lasting min_repeat_seconds, so that timer resolution and scheduler
    # blips average out; variant and reference alternate, batch by batch.
    passes = _passes_per_repeat(pass_ms, config.min_repeat_seconds)
    ref_passes = _passes_per_repeat(ref_ms, config.min_repeat_seconds)
    runs: list[PassTime] = []
    ref_runs: list[PassTime] = []
    pair_seconds = 0.0
    for _ in range(config.repeats):
        if runs and time.perf_counter() - started + pair_seconds > config.max_seconds:
            break
        pair_start = time.perf_counter()
        runs.append(time_pass(workload, cell.mode, config.device, passes))
        if reference is not workload:
            ref_runs.append(time_pass(reference, cell.mode, config.device, ref_passes))
        pair_seconds = time.perf_counter() - pair_start
    if reference is workload:
        ref_runs = list(runs)

    ms_runs = [t.on(config.clock) for t in runs]
    sdpa_ms_runs = [t.on(config.clock) for t in ref_runs]
    ms = statistics.median(ms_runs)
    ratios = [a / b for a, b in zip(ms_runs, sdpa_ms_runs, strict=True)]
    rss_bytes = rss["bytes"]
    return CellResult(
        variant=cell.variant,
        length=cell.length,
        mode=cell.mode,
        status="ok",
        note="" if len(runs) == config.repeats else f"{len(runs)} of {config.repeats} repeats (time budget)",
        ms=ms,
        sdpa_ms=statistics.median(sdpa_ms_runs),
        ratio_to_sdpa=1.0 if reference is workload else statistics.median(ratios),
        tokens_per_s=config.batch * cell.length / (ms / 1e3),
        peak_mb=peak / MB,
        rss_peak_mb=None if rss_bytes is None else rss_bytes / MB,
        est_quadratic_gb=_est_gb(cell, config),
        wall_ms=statistics.median(t.wall for t in runs),
        cpu_ms=statistics.median(t.cpu for t in runs),
        repeats=len(runs),
        passes_per_repeat=passes,
        ms_runs=ms_runs,
        sdpa_ms_runs=sdpa_ms_runs,
    )


def _passes_per_repeat(pass_ms: float, min_seconds: float) -> int:
    return max(1, min(10_000, math.ceil(min_seconds * 1e3 / max(pass_ms, 1e-3))))


def _est_gb(cell: Cell, config: BenchConfig) -> float | None:
    est = estimate_quadratic_bytes(cell.variant, cell.length, cell.mode, config)
    return est / GB if est else None


def _worker(conn: Connection, cell: Cell, config: BenchConfig) -> None:
    try:
        torch.set_num_threads(config.threads)
        result = measure_cell(cell, config)
    except Exception as err:  # reported as this cell's error, the benchmark goes on
        result = CellResult(
            cell.variant, cell.length, cell.mode, status="error", note=f"{type(err).__name__}: {err}"
        )
    conn.send(result)
    conn.close()


def _context() -> Any:
    # forkserver: each worker is forked from a clean server that imported torch and attnkit but ran nothing,
    # so workers start in ~0.1 s with a fresh heap (a fork of this process would inherit its allocations).
    ctx = (
        mp.get_context("forkserver")
        if "forkserver" in mp.get_all_start_methods()
        else mp.get_context("spawn")
    )
    if ctx.get_start_method() == "forkserver":
        # torch.profiler imports torch._inductor (~2 s) on first use: do it once, in the server.
        ctx.set_forkserver_preload(["torch", "torch._inductor", __name__])
    return ctx


def run_cell_isolated(cell: Cell, config: BenchConfig) -> CellResult:
    """Run :func:`measure_cell` in a fresh worker process; a crash or a timeout becomes a result."""
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(sender, cell, config), daemon=True)
    proc.start()
    sender.close()
    hard_limit = 3 * config.max_seconds + 30
    result: CellResult | None = None
    timed_out = False
    try:
        if receiver.poll(hard_limit):
            result = receiver.recv()
        else:
            timed_out = True
    except EOFError:  # the worker died before sending
        result = None
    finally:
        if proc.is_alive() and result is None:
            proc.kill()
        proc.join()
        receiver.close()
    if result is not None:
        return result
    if timed_out:
        return CellResult(
            cell.variant, cell.length, cell.mode, "timeout", note=f"killed after {hard_limit:.0f} s"
        )
    reason = (
        "killed (SIGKILL: likely out of memory)"
        if proc.exitcode == -9
        else f"worker exit code {proc.exitcode}"
    )
    return CellResult(cell.variant, cell.length, cell.mode, "error", note=reason)


# ----------------------------------------------------------------------------------------------------
# The run: cells in order, skips, machine information, scaling exponents.


def plan_cells(config: BenchConfig) -> list[Cell]:
    """All cells, shortest lengths first, so that a long run reports the cheap cells early."""
    return [
        Cell(variant, length, mode)
        for length in sorted(set(config.lengths))
        for mode in config.modes
        for variant in config.variants
    ]


def run_benchmark(
    config: BenchConfig, measure: Callable[[Cell, BenchConfig], CellResult] = run_cell_isolated
) -> list[CellResult]:
    """Measure every cell of ``config`` with ``measure`` (one fresh worker per cell by default).

    Cells whose dense-matrix estimate exceeds ``config.skip_over_gb`` are skipped; after a timeout or a crash,
    the longer lengths of the same variant and mode are skipped.
    """
    results: list[CellResult] = []
    given_up: dict[tuple[str, str], str] = {}
    cells = plan_cells(config)
    for index, cell in enumerate(cells, start=1):
        est = estimate_quadratic_bytes(cell.variant, cell.length, cell.mode, config)
        reason = given_up.get((cell.variant, cell.mode))
        if reason is not None:
            result = CellResult(cell.variant, cell.length, cell.mode, "skipped", note=reason)
        elif config.skip_over_gb is not None and est > config.skip_over_gb * GB:
            result = CellResult(
                cell.variant, cell.length, cell.mode, "skipped", note=f"skipped (est. {est / GB:.3g} GB)"
            )
        else:
            result = measure(cell, config)
            if result.status in {"timeout", "error"}:
                given_up[(cell.variant, cell.mode)] = f"skipped ({result.status} at T={cell.length})"
        if result.est_quadratic_gb is None and est:
            result.est_quadratic_gb = est / GB
        logger.info("[%d/%d] %s", index, len(cells), _describe(result))
        results.append(result)
    return results


def _describe(r: CellResult) -> str:
    head = f"{r.variant} T={r.length} {r.mode}: "
    if r.status != "ok" or r.ms is None:
        return head + f"{r.status} {r.note}".strip()

    def fmt(x: float | None, spec: str) -> str:
        return "n/a" if x is None else format(x, spec)

    return head + (
        f"{r.ms:.2f} ms (x{fmt(r.ratio_to_sdpa, '.2f')} SDPA, {r.repeats} repeats), "
        f"peak {fmt(r.peak_mb, '.1f')} MB, RSS +{fmt(r.rss_peak_mb, '.1f')} MB"
    )


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo``, or ``None`` where there is no such file."""
    value = first_line_value("/proc/meminfo", "MemAvailable")
    return int(value.split()[0]) * 1024 if value else None


def machine_info(config: BenchConfig) -> dict[str, Any]:
    """CPU model, cores, memory, load and library versions of the machine running the benchmark."""
    info = shared_machine_info(threads=config.threads, dtype=config.dtype, device=config.device)
    if config.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def code_version() -> dict[str, Any]:
    """attnkit's version and, in a git checkout, the commit and the files of the package that differ from it.

    Workers are forked from a server that imports attnkit when the first cell starts, so a run measures the code
    as it was then, even if files change during the run.
    """
    from attnkit import __version__

    package = Path(__file__).resolve().parents[1]  # src/attnkit
    info: dict[str, Any] = {"attnkit": __version__, "git_commit": None, "uncommitted": None}
    git = ["git", "--no-optional-locks", "-C", str(package)]  # read-only: no index refresh
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    info["git_commit"] = commit
    info["uncommitted"] = sorted(line[3:] for line in status.splitlines() if line.strip())
    return info


def scaling_exponents(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log-log slopes of time and peak memory against length, per variant and mode.

    Fitted on the measured lengths from an eighth of the longest upwards, where fixed costs no longer
    dominate: 1 means linear in length, 2 quadratic.
    """
    out: list[dict[str, Any]] = []
    keys = dict.fromkeys((r["variant"], r["mode"]) for r in records)
    for variant, mode in keys:
        ok = [r for r in records if r["variant"] == variant and r["mode"] == mode and r["status"] == "ok"]
        if not ok:
            continue
        longest = max(r["length"] for r in ok)
        fit = sorted((r for r in ok if r["length"] * 8 >= longest), key=lambda r: r["length"])
        if len(fit) < 2:
            continue
        out.append(
            {
                "variant": variant,
                "mode": mode,
                "lengths": [r["length"] for r in fit],
                "time_exponent": _slope([r["length"] for r in fit], [r["ms"] for r in fit]),
                "memory_exponent": _slope([r["length"] for r in fit], [r["peak_mb"] for r in fit]),
            }
        )
    return out


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    pairs = [
        (math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y is not None and y > 0
    ]
    if len(pairs) < 2:
        return None
    mean_x = sum(p[0] for p in pairs) / len(pairs)
    mean_y = sum(p[1] for p in pairs) / len(pairs)
    var = sum((p[0] - mean_x) ** 2 for p in pairs)
    if var == 0:
        return None
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in pairs) / var


def run_report(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark and return the JSON document: machine, config, code, memory method, records, scaling."""
    machine = machine_info(config)
    code = code_version()
    started = time.time()
    results = run_benchmark(config)
    records = [asdict(r) for r in results]
    machine["load_average_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    return {
        "benchmark": "attention",
        "machine": machine,
        "config": asdict(config),
        "code": code,
        "memory_method": MEMORY_METHOD,
        "wall_seconds": round(time.time() - started, 1),
        "records": records,
        "scaling": scaling_exponents(records),
    }


# ----------------------------------------------------------------------------------------------------
# Rendering: tables (terminal and markdown) and the plot.


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _time_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    if r["status"] != "ok":
        return r["note"] or r["status"]
    return f"{_num(r['ms'])} (x{r['ratio_to_sdpa']:.2f})"


def _memory_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    if r["status"] != "ok":
        return r["note"] or r["status"]
    rss = "n/a" if r["rss_peak_mb"] is None else _num(r["rss_peak_mb"])
    return f"{_num(r['peak_mb'])} / {rss}"


def pivot_tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)``: per mode, time (ms, ratio to SDPA) and memory by variant and length."""
    records = report["records"]
    config = report["config"]
    lengths = sorted({r["length"] for r in records})
    variants = list(dict.fromkeys(r["variant"] for r in records))
    by_key = {(r["variant"], r["length"], r["mode"]): r for r in records}
    shape = f"B={config['batch']}, H={config['heads']}, D={config['dim']}, {config['dtype']}" + (
        ", causal" if config["causal"] else ""
    )
    clock = "CPU" if config.get("clock") == "cpu" else "wall"
    tables = []
    for mode in dict.fromkeys(r["mode"] for r in records):
        label = "forward" if mode == "fwd" else "forward + backward"
        header = ["variant", *[f"T={t}" for t in lengths]]
        for title, render in (
            (f"{label}: ms per pass, {clock} clock (x SDPA, paired) [{shape}]", _time_cell),
            (f"{label}: peak MB above inputs, allocator / RSS [{shape}]", _memory_cell),
        ):
            rows = [[v, *[render(by_key.get((v, t, mode))) for t in lengths]] for v in variants]
            tables.append((title, header, rows))
    scaling = report.get("scaling") or []
    if scaling:
        rows = [
            [
                s["variant"],
                s["mode"],
                f"{s['lengths'][0]}-{s['lengths'][-1]}",
                "" if s["time_exponent"] is None else f"{s['time_exponent']:.2f}",
                "" if s["memory_exponent"] is None else f"{s['memory_exponent']:.2f}",
            ]
            for s in scaling
        ]
        tables.append(
            (
                "log-log slope against length (1 = linear, 2 = quadratic)",
                ["variant", "mode", "T", "time", "memory"],
                rows,
            )
        )
    return tables


def render_markdown(report: dict[str, Any]) -> str:
    """The tables as GitHub markdown, with the machine line and the memory method."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['usable_cores']} of {m['cores']} cores usable, {m['memory_gb']} GB RAM, "
        f"torch {m['torch']} ({m['cpu_capability']}), torch threads: {m['threads']}, {m['dtype']}, "
        f"load average {m['load_average']} at start and {m.get('load_average_end')} at end.",
        "",
    ]
    code = report.get("code") or {}
    if code.get("git_commit"):
        changed = code.get("uncommitted") or []
        lines[0] += f" Code: attnkit {code['attnkit']} at commit {code['git_commit'][:10]}" + (
            f", with uncommitted changes in {', '.join(changed)}."
            if changed
            else " (no uncommitted changes)."
        )
    for title, header, rows in pivot_tables(report):
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines.append(f"Memory: {report['memory_method']}")
    return "\n".join(lines) + "\n"


def render_terminal(report: dict[str, Any]) -> None:
    """Print the tables with rich to stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    m = report["machine"]
    console.print(
        f"{m['cpu']} | {m['usable_cores']} cores | torch {m['torch']} "
        f"| threads: {m['threads']} | {m['dtype']} | {report['config'].get('clock', 'wall')} clock"
    )
    for title, header, rows in pivot_tables(report):
        console.print(f"\n[bold]{title}[/bold]")
        table = Table()
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"Memory: {report['memory_method']}", soft_wrap=True)


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Log-log plot of time (left) and peak memory (right) against length; one colour and marker per variant,
    solid for forward and dashed for forward + backward. Earlier variants are drawn wider, so that a variant
    lying on top of another (``fast`` on ``sdpa``, ``explicit`` on ``naive``) leaves it visible."""
    from matplotlib.figure import Figure

    records = [r for r in report["records"] if r["status"] == "ok"]
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    ax_time, ax_mem = fig.subplots(1, 2)
    variants = list(dict.fromkeys(r["variant"] for r in report["records"]))
    markers = "osD^vPX*"
    for variant in variants:
        i = list(VARIANTS).index(variant) if variant in VARIANTS else len(VARIANTS)  # same look in every plot
        look = {
            "color": f"C{i % 10}",
            "marker": markers[i % len(markers)],
            "ms": 4,
            "lw": max(1.0, 4.5 - 0.6 * i),
        }
        for mode, style in (("fwd", "-"), ("fwdbwd", "--")):
            rows = sorted(
                (r for r in records if r["variant"] == variant and r["mode"] == mode),
                key=lambda r: r["length"],
            )
            if not rows:
                continue
            label = f"{variant} {mode}"
            ax_time.plot([r["length"] for r in rows], [r["ms"] for r in rows], style, label=label, **look)
            mem = [(r["length"], r["peak_mb"]) for r in rows if r["peak_mb"] > 0]
            if mem:
                ax_mem.plot(*zip(*mem, strict=True), style, label=label, **look)
    c = report["config"]
    clock = "CPU" if c.get("clock") == "cpu" else "wall"
    for ax, ylabel in (
        (ax_time, f"ms per pass ({clock} clock, median)"),
        (ax_mem, "peak MB above inputs (allocator)"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    causal = ", causal" if c.get("causal") else ""
    ax_time.set_title(f"time (B={c['batch']}, H={c['heads']}, D={c['dim']}, {c['dtype']}{causal})")
    ax_mem.set_title("peak memory")
    ax_mem.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------------
# CLI.


def _memory_bound(value: str) -> str:
    if value not in {"auto", "off"}:
        try:
            if float(value) <= 0:
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a positive number of GB, 'auto' or 'off', got {value!r}"
            ) from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``attnkit bench attention``."""
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        metavar="NAME",
        help=f"variants to run (default: all): {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--lengths",
        nargs="+",
        type=int,
        default=list(DEFAULT_LENGTHS),
        metavar="T",
        help="sequence lengths (default: %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size B (default: 1)")
    parser.add_argument("--heads", type=int, default=4, help="heads H (default: 4)")
    parser.add_argument("--dim", type=int, default=64, help="head size D (default: 64); pooling uses H*D")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--causal", action="store_true", help="causal attention (pooling ignores it)")
    parser.add_argument("--window", type=int, default=256, help="LocalAttention window (default: 256)")
    parser.add_argument("--chunk-size", type=int, default=512, help="ChunkedAttention block (default: 512)")
    parser.add_argument(
        "--mode",
        choices=["fwd", "fwdbwd", "both"],
        default="both",
        help="forward only, forward + backward, or both (default)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per cell; the median is reported (default: 5)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes before timing (default: 1)")
    parser.add_argument(
        "--min-repeat-seconds",
        type=float,
        default=0.2,
        help="time a pass shorter than this in a batch lasting this long (default: 0.2)",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time on the wall clock (default) or as the worker's CPU time (with --threads 1, immune to "
        "time slicing by other processes on a shared machine); both are recorded in --json",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        help="time budget per cell: no repeat starts after it; a cell still running at "
        "3x + 30 s is killed (default: 300)",
    )
    parser.add_argument(
        "--skip-over-memory",
        type=_memory_bound,
        default="auto",
        metavar="GB",
        help="skip cells whose dense (T, T) matrices are estimated above GB; 'auto' (default) is "
        "60%% of MemAvailable at start, 'off' runs everything",
    )
    parser.add_argument(
        "--threads",
        default="auto",
        metavar="N|auto",
        help="torch threads per worker; auto (default): the cores other processes leave idle at the start",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the JSON report (machine, config, records)")
    out.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="write a log-log plot of time and memory"
    )
    parser.add_argument(
        "--from-json", type=Path, metavar="FILE", help="render a saved --json report instead of measuring"
    )


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A validated :class:`BenchConfig` from parsed options."""
    if args.skip_over_memory == "off":
        bound: float | None = None
    elif args.skip_over_memory == "auto":
        available = available_memory_bytes()
        bound = None if available is None else round(0.6 * available / GB, 1)
    else:
        bound = float(args.skip_over_memory)
    return BenchConfig(
        variants=list(dict.fromkeys(args.variants)),
        lengths=list(dict.fromkeys(args.lengths)),
        modes=list(MODES) if args.mode == "both" else [args.mode],
        batch=args.batch,
        heads=args.heads,
        dim=args.dim,
        dtype=args.dtype,
        causal=args.causal,
        window=args.window,
        chunk_size=args.chunk_size,
        repeats=args.repeats,
        warmup=args.warmup,
        min_repeat_seconds=args.min_repeat_seconds,
        clock=args.clock,
        max_seconds=args.max_seconds,
        skip_over_gb=bound,
        threads=resolve_threads(check_thread_setting(args.threads, "--threads", allow_null=False)),
        device=args.device,
        seed=args.seed,
    )


def main(args: argparse.Namespace) -> int:
    """Run (or re-render) the benchmark and print a table, markdown or JSON; optionally write the plot."""
    if args.plot is not None and not args.plot.parent.is_dir():
        raise ValueError(f"--plot: directory {args.plot.parent} does not exist")
    if args.from_json is not None:
        report = json.loads(args.from_json.read_text())
        if not isinstance(report, dict) or "records" not in report:
            raise ValueError(f"{args.from_json} is not a report written by `attnkit bench attention --json`")
    else:
        config = config_from_args(args)
        logger.info(
            "%d cells (%s) in fresh worker processes; --skip-over-memory %s GB",
            len(plan_cells(config)),
            ", ".join(config.variants),
            config.skip_over_gb,
        )
        report = run_report(config)
    if args.plot is not None:
        write_plot(report, args.plot)
        logger.info("wrote %s", args.plot)
    if args.json:
        print(json.dumps(report, indent=1))
    elif args.markdown:
        print(render_markdown(report), end="")
    else:
        render_terminal(report)
    return 0
