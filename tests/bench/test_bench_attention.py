"""Tests of ``attnkit bench attention``: report structure, the memory measurement, skips, and the plot.

No timing assertions: the machine is shared and times are noisy.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from attnkit import cli
from attnkit.bench.attention import (
    MB,
    VARIANTS,
    BenchConfig,
    Cell,
    CellResult,
    allocator_peak_bytes,
    estimate_quadratic_bytes,
    peak_rss_increase,
    run_benchmark,
    run_cell_isolated,
    scaling_exponents,
)

SMALL = [
    "--lengths",
    "64",
    "128",
    "--repeats",
    "1",
    "--warmup",
    "0",
    "--min-repeat-seconds",
    "0",
    "--threads",
    "1",
]


def _run_json(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code = cli.main(["bench", "attention", *SMALL, "--json", *extra])
    assert code == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """Every variant at T=64 and 128, both modes, one repeat; with a plot."""
    plot = tmp_path_factory.mktemp("bench") / "attention.png"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(["bench", "attention", *SMALL, "--json", "--plot", str(plot)])
    assert code == 0
    return json.loads(stdout.getvalue()), plot


def test_report_has_every_cell_and_the_machine(small_run: tuple[dict[str, Any], Path]) -> None:
    report, _ = small_run
    assert set(report) >= {"machine", "config", "code", "memory_method", "records", "scaling"}
    assert report["code"]["attnkit"]
    machine = report["machine"]
    assert machine["torch"] == torch.__version__
    assert machine["threads"] == 1 and machine["dtype"] == "float32" and machine["cores"] >= 1
    assert machine["cpu"]
    records = report["records"]
    cells = {(r["variant"], r["length"], r["mode"]) for r in records}
    assert cells == {(v, t, m) for v in VARIANTS for t in (64, 128) for m in ("fwd", "fwdbwd")}
    for r in records:
        assert r["status"] == "ok", r
        assert r["ms"] > 0 and r["sdpa_ms"] > 0 and r["repeats"] == 1
        ratios = sorted(a / b for a, b in zip(r["ms_runs"], r["sdpa_ms_runs"], strict=True))
        assert r["ratio_to_sdpa"] == pytest.approx(ratios[len(ratios) // 2])  # one repeat: the median
        assert r["tokens_per_s"] == pytest.approx(r["length"] / (r["ms"] / 1e3))
        assert r["peak_mb"] > 0
        assert r["rss_peak_mb"] is None or r["rss_peak_mb"] >= 0


def test_sdpa_ratio_is_exactly_one(small_run: tuple[dict[str, Any], Path]) -> None:
    report, _ = small_run
    sdpa = [r for r in report["records"] if r["variant"] == "sdpa"]
    assert len(sdpa) == 4
    assert all(r["ratio_to_sdpa"] == 1.0 for r in sdpa)


def test_plot_is_a_png(small_run: tuple[dict[str, Any], Path]) -> None:
    import matplotlib.image

    _, plot = small_run
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(plot)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400


def test_saved_report_renders_as_markdown_and_table(
    small_run: tuple[dict[str, Any], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, _ = small_run
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    assert cli.main(["bench", "attention", "--from-json", str(saved), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "| variant | T=64 | T=128 |" in markdown
    assert "forward + backward: ms per pass" in markdown
    assert "(x1.00)" in markdown  # the sdpa row
    assert cli.main(["bench", "attention", "--from-json", str(saved)]) == 0
    assert "peak MB above inputs" in capsys.readouterr().out


def test_allocator_peak_is_the_peak_not_the_end() -> None:
    def work() -> None:
        big = torch.ones(16 * MB // 4)  # 16 MiB of float32
        bigger = torch.ones(64 * MB // 4)  # 64 MiB: with `big`, 80 MiB live at once
        del big, bigger
        small = torch.ones(4 * MB // 4)  # 4 MiB at the end
        del small

    assert allocator_peak_bytes(work) / MB == pytest.approx(80, rel=0.01)


def test_allocator_peak_excludes_tensors_that_existed_before() -> None:
    existing = torch.ones(32 * MB // 4)

    def in_place() -> None:
        existing.mul_(2)  # allocates nothing

    assert allocator_peak_bytes(in_place) < 0.1 * MB


def test_rss_peak_sees_a_known_allocation() -> None:
    with peak_rss_increase() as rss:
        block = torch.ones(64 * MB // 4)  # 64 MiB, every page touched
        del block
    if rss["bytes"] is None:
        pytest.skip("/proc/self/clear_refs is not available")
    assert 60 * MB <= rss["bytes"] <= 80 * MB


def test_naive_cell_peak_matches_the_hand_count() -> None:
    """Naive forward at T=512 holds two (B, H, T, T) float32 matrices plus the (B, H, T, D) output."""
    config = BenchConfig(
        variants=["naive"], lengths=[512], repeats=1, warmup=0, min_repeat_seconds=0, threads=1
    )
    fwd = run_cell_isolated(Cell("naive", 512, "fwd"), config)
    assert fwd.status == "ok", fwd.note
    scores = 4 * 512 * 512 * 4  # B=1, H=4, float32
    output = 4 * 512 * 64 * 4
    assert fwd.peak_mb == pytest.approx((2 * scores + output) / MB, rel=0.05)
    assert estimate_quadratic_bytes("naive", 512, "fwd", config) == 2 * scores
    bwd = run_cell_isolated(Cell("naive", 512, "fwdbwd"), config)
    assert bwd.status == "ok", bwd.note
    assert 3 * scores / MB <= bwd.peak_mb <= 1.25 * 3 * scores / MB


def test_cells_over_the_memory_bound_are_skipped_with_the_estimate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = _run_json(capsys, "--variants", "naive", "sdpa", "--mode", "fwd", "--skip-over-memory", "0.0004")
    by_variant = {(r["variant"], r["length"]): r for r in report["records"]}
    skipped = by_variant[("naive", 128)]  # 2 * 4 * 128^2 * 4 bytes = 0.5 MB > 0.0004 GB
    assert skipped["status"] == "skipped" and skipped["ms"] is None
    assert skipped["note"] == "skipped (est. 0.000488 GB)"
    assert by_variant[("naive", 64)]["status"] == "ok"  # 0.125 MB
    assert skipped["est_quadratic_gb"] == pytest.approx(2 * 4 * 128 * 128 * 4 / 2**30)
    assert by_variant[("sdpa", 128)]["status"] == "ok"


def test_after_a_timeout_longer_lengths_are_skipped() -> None:
    config = BenchConfig(variants=["naive", "sdpa"], lengths=[64, 128, 256], modes=["fwd"], threads=1)
    calls: list[tuple[str, int]] = []

    def fake(cell: Cell, cfg: BenchConfig) -> CellResult:
        calls.append((cell.variant, cell.length))
        if cell.variant == "naive" and cell.length == 128:
            return CellResult(cell.variant, cell.length, cell.mode, "timeout", note="killed")
        return CellResult(cell.variant, cell.length, cell.mode, "ok", ms=1.0, sdpa_ms=1.0, ratio_to_sdpa=1.0)

    results = run_benchmark(config, measure=fake)
    assert ("naive", 256) not in calls and ("sdpa", 256) in calls
    last = next(r for r in results if r.variant == "naive" and r.length == 256)
    assert last.status == "skipped" and last.note == "skipped (timeout at T=128)"


def test_scaling_exponents_recover_known_powers() -> None:
    records = [
        {"variant": "v", "mode": "fwd", "status": "ok", "length": t, "ms": 3e-6 * t**2, "peak_mb": 0.01 * t}
        for t in (128, 1024, 2048, 4096, 8192)
    ]
    (fit,) = scaling_exponents(records)
    assert fit["lengths"] == [1024, 2048, 4096, 8192]  # an eighth of the longest and up
    assert fit["time_exponent"] == pytest.approx(2.0)
    assert fit["memory_exponent"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "argv",
    [["--lengths", "0"], ["--repeats", "0"], ["--max-seconds", "0"]],
)
def test_bad_options_are_user_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "attention", *argv]) == 2
    assert "error:" in capsys.readouterr().err
