"""Serving benchmark: load test of `attnkit serve` on loopback, and int8 vs fp32 ONNX accuracy and speed.

Load test: for each backend, start `attnkit serve RUN_DIR --backend B --threads 1` on 127.0.0.1 (a fresh
process), then run N concurrent clients (each a loop of POST /predict with one test-split text, keep-alive
connections) for a bounded time per N. Reports requests/s, p50/p90/p99 latency, errors and the server's mean
batch size. A run with `--max-batch-size 1` (no batching) at the highest concurrency is the reference for what
micro-batching buys.

Explain load (``--explain-load``): one `attnkit serve` process on the first backend; 32 clients loop POST
/predict alone for ``--phase-seconds``, then again while 6 more clients loop POST /explain with ``methods:
["all"]`` on the longest test texts, alternating (``--repeats`` loaded phases, each between two unloaded ones:
on a shared machine the background load drifts, and alternating shows by how much). Every request has a client
timeout (``--request-timeout``, 10 s). Reports per phase requests/s, p50/p99, timeouts and errors of /predict,
and the explanations completed, refused (503) and over their time limit (504); and the ratios of the means.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/serve_load.py runs/sst2-bilstm \\
        --data sst2:dev --explain-load --out benchmarks/results/serve-explain-load-sst2-bilstm.json

Accuracy and speed: PyTorch, ONNX fp32 and ONNX int8 (dynamic quantization) on the whole test split: accuracy,
agreement with PyTorch, batched throughput (batch 64) and single-text latency (tokenization included), one
thread each.

    ATTNKIT_DATA=../shared/datasets .venv/bin/python benchmarks/serve_load.py runs/sst2-bilstm \\
        --data sst2:dev --out benchmarks/results/serve-sst2-bilstm.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from attnkit.bench.machine import load_average, machine_info
from attnkit.data import load_source
from attnkit.export import INT8_FILE, ONNX_FILE, export_onnx
from attnkit.predictor import Predictor
from attnkit.serve.backends import OnnxBackend, TorchBackend


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`attnkit serve` in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, run_dir: Path, backend: str, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "attnkit.cli", "serve", str(run_dir), "--port", str(self.port)]
        self.command = [*cmd, "--backend", backend, *extra]
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start in 120 s")
            time.sleep(0.2)

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/health", timeout=10).json()["batching"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for POST /predict.

    A plain asyncio stream instead of an HTTP library keeps the load generator's CPU cost per request small
    (it shares the 2 cores with the server).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode("ascii") + body)
        status_line = await self.reader.readline()
        length = 0
        closing = False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                closing = True
        await self.reader.readexactly(length)
        if closing:
            await self.close()
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def post_with_timeout(connection: Connection, path: str, body: bytes, timeout: float | None) -> str:
    """POST and return the status as text, or the kind of failure (``timeout``, ``OSError``, ...)."""
    try:
        status = await asyncio.wait_for(connection.post(path, body), timeout)
        return str(status)
    except asyncio.TimeoutError:
        await connection.close()  # the answer may still come: never read it as the next one's
        return "timeout"
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as err:
        await connection.close()
        return type(err).__name__


async def loop_requests(
    connection: Connection,
    path: str,
    bodies: list[bytes],
    first: int,
    step: int,
    until: float,
    timeout: float | None,
    latencies: list[float],
    outcomes: dict[str, int],
) -> None:
    """POST ``bodies`` in turn (from ``first``, every ``step``-th) until ``until``; records 200 latencies (ms)
    and counts every outcome by status or failure kind."""
    i = first
    while time.perf_counter() < until:
        start = time.perf_counter()
        kind = await post_with_timeout(connection, path, bodies[i % len(bodies)], timeout)
        if kind == "200":
            latencies.append(1000 * (time.perf_counter() - start))
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if kind in ("503", "429"):
            await asyncio.sleep(0.05)  # refused at once: do not spin
        i += step


def latency_summary(latencies: list[float], elapsed: float) -> dict[str, Any]:
    quantiles = np.percentile(latencies, [50, 90, 99]) if latencies else [float("nan")] * 3
    return {
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(quantiles[0]), 2),
        "p90_ms": round(float(quantiles[1]), 2),
        "p99_ms": round(float(quantiles[2]), 2),
        "max_ms": round(max(latencies), 2) if latencies else None,
    }


async def load(
    port: int, texts: list[str], clients: int, seconds: float, timeout: float | None = None
) -> dict[str, Any]:
    """``clients`` concurrent loops of POST /predict (one text each) for ``seconds``; latencies in ms."""
    bodies = [json.dumps({"text": t}).encode("utf-8") for t in texts]
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    connections = [Connection(port) for _ in range(clients)]
    await asyncio.gather(*(c.post("/predict", bodies[0]) for c in connections))  # connect and warm up
    began = time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(
        *(
            loop_requests(c, "/predict", bodies, k, clients, deadline, timeout, latencies, outcomes)
            for k, c in enumerate(connections)
        )
    )
    elapsed = time.perf_counter() - began
    await asyncio.gather(*(c.close() for c in connections))
    errors = {k: v for k, v in outcomes.items() if k != "200"}
    return {
        "clients": clients,
        **latency_summary(latencies, elapsed),
        "errors": sum(errors.values()),
        "timeouts": errors.get("timeout", 0),
        "error_kinds": errors,
    }


async def load_with_explanations(
    port: int,
    texts: list[str],
    explain_texts: list[str],
    clients: int,
    explain_clients: int,
    seconds: float,
    timeout: float,
) -> dict[str, Any]:
    """:func:`load` while ``explain_clients`` loop POST /explain ``methods: ["all"]`` on ``explain_texts``."""
    bodies = [json.dumps({"text": t, "methods": ["all"]}).encode("utf-8") for t in explain_texts]
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    connections = [Connection(port) for _ in range(explain_clients)]
    began = time.perf_counter()
    until = began + seconds + 2.0  # they start 1 s before the predict phase and stop after it
    explainers = asyncio.gather(
        *(
            loop_requests(c, "/explain", bodies, k, explain_clients, until, timeout, latencies, outcomes)
            for k, c in enumerate(connections)
        )
    )
    await asyncio.sleep(1.0)
    predict = await load(port, texts, clients, seconds, timeout)
    await explainers
    elapsed = time.perf_counter() - began
    await asyncio.gather(*(c.close() for c in connections))
    explain = {
        "clients": explain_clients,
        **latency_summary(latencies, elapsed),
        "refused_503": outcomes.get("503", 0),
        "over_time_limit_504": outcomes.get("504", 0),
        "timeouts": outcomes.get("timeout", 0),
        "outcomes": outcomes,
    }
    return {**predict, "explain": explain}


def explain_load_test(
    run_dir: Path,
    backend: str,
    texts: list[str],
    clients: int,
    explain_clients: int,
    seconds: float,
    timeout: float,
    extra: list[str],
    repeats: int = 1,
) -> dict[str, Any]:
    """/predict alone and under explanation load, alternating (``repeats`` loaded phases, each between two
    unloaded ones): one server, one run. On a shared machine the background load drifts; alternating shows it."""
    explain_texts = sorted(texts, key=len, reverse=True)[:50]  # the longest: the costliest explanations
    server = Server(run_dir, backend, extra)
    phases = []
    names = ["unloaded"] + ["with_explain_load", "unloaded"] * repeats
    try:
        # Measure a server at steady state: its explanation workers loaded and warm (retry past 503/504).
        warm_body = {"text": explain_texts[0], "methods": ["all"]}
        give_up = time.monotonic() + 300
        while httpx.post(server.url + "/explain", json=warm_body, timeout=300).status_code != 200:
            if time.monotonic() > give_up:
                raise RuntimeError("the explanation workers were not ready in 300 s")
            time.sleep(1.0)
        for name in names:
            before = server.stats()
            load_before = load_average()
            if name == "with_explain_load":
                coro = load_with_explanations(
                    server.port, texts, explain_texts, clients, explain_clients, seconds, timeout
                )
            else:
                coro = load(server.port, texts, clients, seconds, timeout)
            result = {"phase": name, **asyncio.run(coro)}
            after = server.stats()
            calls = after["calls"] - before["calls"]
            result["mean_batch"] = round((after["items"] - before["items"]) / calls, 2) if calls else None
            result["load_average_before"] = load_before
            result["load_average_after"] = load_average()
            print(json.dumps({"backend": backend, **result}), flush=True)
            phases.append(result)
        health = httpx.get(server.url + "/health", timeout=10).json()
    finally:
        server.stop()

    def mean(name: str, key: str) -> float:
        return statistics.fmean(p[key] for p in phases if p["phase"] == name)

    ratios = {
        "throughput_unloaded_over_loaded": round(
            mean("unloaded", "requests_per_s") / max(mean("with_explain_load", "requests_per_s"), 1e-9), 2
        ),
        "p99_loaded_over_unloaded": round(
            mean("with_explain_load", "p99_ms") / mean("unloaded", "p99_ms"), 2
        ),
        "p50_loaded_over_unloaded": round(
            mean("with_explain_load", "p50_ms") / mean("unloaded", "p50_ms"), 2
        ),
    }
    print(json.dumps(ratios), flush=True)
    return {
        "backend": backend,
        "command": " ".join(server.command[1:]),
        "phases": phases,
        "ratios": ratios,
        "server_explain_stats": health.get("explain"),
    }


def load_test(
    run_dir: Path, backend: str, texts: list[str], levels: list[tuple[int, float]], extra: list[str]
) -> dict[str, Any]:
    server = Server(run_dir, backend, extra)
    results = []
    try:
        for clients, seconds in levels:
            before = server.stats()
            load_before = load_average()
            result = asyncio.run(load(server.port, texts, clients, seconds))
            after = server.stats()
            calls = after["calls"] - before["calls"]
            result["mean_batch"] = round((after["items"] - before["items"]) / calls, 2) if calls else None
            result["load_average_before"] = load_before
            result["load_average_after"] = load_average()
            print(json.dumps({"backend": backend, "extra": extra, **result}), flush=True)
            results.append(result)
    finally:
        server.stop()
    return {"backend": backend, "command": " ".join(server.command[1:]), "levels": results}


def accuracy_and_speed(run_dir: Path, texts: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, agreement, batched throughput and single-text latency of PyTorch, ONNX fp32 and ONNX int8."""
    torch.set_num_threads(1)
    predictor = Predictor(run_dir)
    backends = {
        "torch": TorchBackend(predictor),
        "onnx-fp32": OnnxBackend(predictor, run_dir / ONNX_FILE, threads=1),
        "onnx-int8": OnnxBackend(predictor, run_dir / INT8_FILE, threads=1),
    }
    gold = np.array([predictor.labels.index(label) for label in labels])
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted batches, as a server sees
    out: dict[str, Any] = {"n": len(texts)}
    reference: np.ndarray | None = None
    for name, backend in backends.items():
        backend.predict_proba(texts[:64])  # warm-up
        start = time.perf_counter()
        probs = np.zeros((len(texts), len(predictor.labels)), dtype=np.float32)
        for s in range(0, len(order), 64):
            rows = order[s : s + 64]
            probs[rows] = backend.predict_proba([texts[i] for i in rows])
        batched = time.perf_counter() - start
        singles = []
        for text in texts[:300]:
            t0 = time.perf_counter()
            backend.predict_proba([text])
            singles.append(1000 * (time.perf_counter() - t0))
        pred = probs.argmax(1)
        if reference is None:
            reference = probs
        out[name] = {
            "accuracy": round(float((pred == gold).mean()), 4),
            "agreement_with_torch": round(float((pred == reference.argmax(1)).mean()), 4),
            "max_abs_prob_diff_vs_torch": float(np.abs(probs - reference).max()),
            "batched_texts_per_s": round(len(texts) / batched, 1),
            "single_text_p50_ms": round(statistics.median(singles), 3),
            "file_bytes": None if name == "torch" else (backend.path.stat().st_size),  # type: ignore[attr-defined]
        }
        print(json.dumps({name: out[name]}), flush=True)
    fp32, int8 = out["onnx-fp32"], out["onnx-int8"]
    out["int8_vs_fp32"] = {
        "accuracy_change_points": round(100 * (int8["accuracy"] - fp32["accuracy"]), 2),
        "batched_speedup": round(int8["batched_texts_per_s"] / fp32["batched_texts_per_s"], 2),
        "single_text_speedup": round(fp32["single_text_p50_ms"] / int8["single_text_p50_ms"], 2),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", required=True, help="labelled test split, e.g. sst2:dev")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seconds", nargs="+", type=float, default=[10, 10, 30], help="per --clients level")
    parser.add_argument("--threads", type=int, default=1, help="server compute threads")
    parser.add_argument(
        "--no-batching-reference", action="store_true", help="skip the --max-batch-size 1 run"
    )
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument(
        "--explain-load",
        action="store_true",
        help="only the explain-load scenario: /predict alone, under explanation load, alone again",
    )
    parser.add_argument("--predict-clients", type=int, default=32, help="explain-load: /predict clients")
    parser.add_argument("--explain-clients", type=int, default=6, help="explain-load: /explain clients")
    parser.add_argument("--phase-seconds", type=float, default=20.0, help="explain-load: seconds per phase")
    parser.add_argument("--repeats", type=int, default=2, help="explain-load: loaded phases (alternating)")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="client timeout per request")
    parser.add_argument("--server-args", default="", help="more `attnkit serve` options, one string")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if len(args.seconds) != len(args.clients):
        parser.error("--seconds needs one value per --clients level")

    examples = load_source(args.data)
    texts = [e.text for e in examples]
    report: dict[str, Any] = {
        "machine": machine_info(),
        "run_dir": str(args.run_dir),
        "data": args.data,
        "command": " ".join(sys.argv),
        "load_average_start": load_average(),
    }
    extra = ["--threads", str(args.threads), *shlex.split(args.server_args)]
    if args.explain_load:
        report["explain_load"] = explain_load_test(
            args.run_dir,
            args.backends[0],
            texts,
            args.predict_clients,
            args.explain_clients,
            args.phase_seconds,
            args.request_timeout,
            extra,
            args.repeats,
        )
        report["load_average_end"] = load_average()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
        return
    if not (args.run_dir / ONNX_FILE).is_file() or not (args.run_dir / INT8_FILE).is_file():
        report["export"] = export_onnx(args.run_dir, quantize=True).to_json_dict()
    if not args.skip_load:
        levels = list(zip(args.clients, args.seconds, strict=True))
        report["load"] = [load_test(args.run_dir, b, texts, levels, extra) for b in args.backends]
        if not args.no_batching_reference:
            top = [levels[-1]]
            report["load_no_batching"] = [
                load_test(args.run_dir, b, texts, top, [*extra, "--max-batch-size", "1"])
                for b in args.backends
            ]
    report["accuracy_and_speed"] = accuracy_and_speed(args.run_dir, texts, [e.label for e in examples])
    report["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
