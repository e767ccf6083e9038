"""Slow and idle clients cannot hold the server: head and body timeouts, a head size limit, a connection cap.

Each test serves a real run with uvicorn on 127.0.0.1 (the protocol ``attnkit serve`` uses) and talks to it
with raw sockets, so that a request can be sent one byte at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from attnkit.predictor import Predictor
from attnkit.serve import ConnectionLimits, ServeConfig, TorchBackend, create_app

ServerFactory = Callable[[FastAPI], AbstractContextManager[str]]
HEAD = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def predictor(bag_run: Path) -> Predictor:
    return Predictor(bag_run)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def read_until_closed(reader: asyncio.StreamReader, limit: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` seconds pass)."""
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
        except ConnectionError:  # closed with our bytes unread: a reset
            return data + b"<closed>"
        if not chunk:
            return data + b"<closed>"
        data += chunk
    return data


async def slowloris(port: int, payload: bytes, interval: float, limit: float) -> tuple[float, bytes]:
    """Send ``payload`` one byte every ``interval`` s; returns when the server closed it and what it said."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(read_until_closed(reader, limit))
    try:
        for byte in payload:
            if answer.done():
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(interval)
        data = await answer
    finally:
        writer.close()
    return time.monotonic() - start, data


def test_slowloris_cannot_deny_service(predictor: Predictor, running_server: ServerFactory) -> None:
    """200 connections sending one header byte per second: normal /predict requests still succeed meanwhile,
    and every slow connection is closed with 408 within the head timeout."""
    limits = ConnectionLimits(header_timeout_s=2.0, max_connections=150)
    app = create_app(TorchBackend(predictor), ServeConfig(connections=limits))
    expected = predictor.predict(["a great film"])[0].to_json_dict()

    async def scenario(port: int) -> tuple[list[tuple[float, bytes]], list[tuple[int, float]]]:
        slow = [asyncio.ensure_future(slowloris(port, HEAD, 1.0, 8.0)) for _ in range(200)]
        await asyncio.sleep(0.5)  # all of them are connected and dribbling
        served: list[tuple[int, float]] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(10):
                start = time.monotonic()
                response = await client.post("/predict", json={"text": "a great film"})
                assert response.json()["label"] == expected["label"]
                served.append((response.status_code, time.monotonic() - start))
                await asyncio.sleep(0.1)
        return await asyncio.gather(*slow), served

    with running_server(app) as url:
        closed, served = asyncio.run(scenario(port_of(url)))
        assert httpx.get(url + "/health").json()["status"] == "ok"
    assert [status for status, _ in served] == [200] * 10
    assert max(seconds for _, seconds in served) < 2.0  # not queued behind the slow ones
    times = [seconds for seconds, _ in closed]
    assert max(times) < limits.header_timeout_s + 2.0  # none outlived the head timeout (plus slack)
    evicted = [data for _, data in closed if b"408" not in data]
    timed_out = [data for _, data in closed if b"408" in data]
    # Over the cap of 150, the longest-waiting slow connections were closed to make room.
    assert len(timed_out) >= 100 and all(b'"header_timeout"' in d for d in timed_out)
    assert all(d.endswith(b"<closed>") for d in evicted)


def test_slow_body_and_oversized_head_are_cut(predictor: Predictor, running_server: ServerFactory) -> None:
    limits = ConnectionLimits(header_timeout_s=2.0, body_timeout_s=1.0, max_header_bytes=2048)
    app = create_app(TorchBackend(predictor), ServeConfig(connections=limits))

    async def scenario(port: int) -> tuple[tuple[float, bytes], bytes, tuple[float, bytes]]:
        body = json.dumps({"text": "a great film"}).encode()
        head = HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body[:3])  # the head at once, then the body one byte per 0.3 s
        start = time.monotonic()
        answer = asyncio.ensure_future(read_until_closed(reader, 6.0))
        for byte in body[3:]:
            if answer.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.3)
        slow_body = (time.monotonic() - start, await answer)
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b"X-Filler: " + b"a" * 4000)  # a head that never ends and is too big
        big_head = await read_until_closed(reader, 5.0)
        writer.close()

        idle = await slowloris(port, b"", 0.0, 6.0)  # connects and sends nothing
        return slow_body, big_head, idle

    with running_server(app) as url:
        (seconds, slow_body), big_head, (idle_seconds, idle) = asyncio.run(scenario(port_of(url)))
        assert httpx.post(url + "/predict", json={"text": "still serving"}).status_code == 200
    assert b"408" in slow_body and b'"body_timeout"' in slow_body and seconds < limits.body_timeout_s + 1.5
    assert b"431" in big_head and b'"header_too_large"' in big_head
    assert idle == b"<closed>" and idle_seconds < limits.header_timeout_s + 1.5  # closed without a word


def test_at_the_cap_idle_connections_make_room(predictor: Predictor, running_server: ServerFactory) -> None:
    """60 idle connections against a cap of 20: the server keeps at most ~20 open, and new clients get in."""
    limits = ConnectionLimits(header_timeout_s=30.0, max_connections=20)
    app = create_app(TorchBackend(predictor), ServeConfig(connections=limits))

    async def scenario(port: int) -> tuple[int, int]:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(60)]
        await asyncio.sleep(0.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"text": "a great film"}'
        writer.write(HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
        writer.close()
        still_open = 0
        for r, w in idle:
            try:
                closed = await asyncio.wait_for(r.read(1), 0.05) == b""
            except asyncio.TimeoutError:
                closed = False
            except ConnectionError:
                closed = True
            still_open += not closed
            w.close()
        return status, still_open

    with running_server(app) as url:
        status, still_open = asyncio.run(scenario(port_of(url)))
    assert status == 200
    assert still_open <= limits.max_connections


def test_connection_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="header_timeout_s"):
        ConnectionLimits(header_timeout_s=0)
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimits(max_connections=0)


@pytest.mark.slow
def test_the_issue_attack_does_not_deny_service(predictor: Predictor, running_server: ServerFactory) -> None:
    """Issue 15's numbers: 2,000 slow-header and 1,000 slow-body connections (one byte a second) against the
    default connection cap, while 79 probe requests come in: every probe is answered."""
    limits = ConnectionLimits(header_timeout_s=3.0, body_timeout_s=3.0)
    app = create_app(TorchBackend(predictor), ServeConfig(connections=limits))
    body_head = HEAD + b"Content-Length: 1000\r\n\r\n"

    async def slow_body(port: int) -> tuple[float, bytes]:
        start = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(body_head)
        answer = asyncio.ensure_future(read_until_closed(reader, 10.0))
        while not answer.done() and time.monotonic() - start < 10:
            writer.write(b"a")
            await asyncio.sleep(1.0)
        writer.close()
        return time.monotonic() - start, await answer

    async def scenario(port: int) -> tuple[list[int], list[tuple[float, bytes]]]:
        slow = [asyncio.ensure_future(slowloris(port, HEAD * 3, 1.0, 10.0)) for _ in range(2000)]
        slow += [asyncio.ensure_future(slow_body(port)) for _ in range(1000)]
        await asyncio.sleep(1.0)
        codes = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for i in range(79):
                try:
                    response = await client.post("/predict", json={"text": f"probe {i}"})
                    codes.append(response.status_code)
                except httpx.HTTPError:
                    codes.append(0)
                await asyncio.sleep(0.05)
        return codes, await asyncio.gather(*slow)

    with running_server(app) as url:
        codes, closed = asyncio.run(scenario(port_of(url)))
    assert codes == [200] * 79
    # Every slow connection was closed by the server (by a timeout or to make room), none by the client.
    assert all(data.endswith(b"<closed>") for _, data in closed)


def test_a_request_the_parser_refuses_gets_a_json_error(
    predictor: Predictor, running_server: ServerFactory
) -> None:
    """``Content-Length: abc`` and a broken request line got uvicorn's plain-text "Invalid HTTP request"."""
    app = create_app(TorchBackend(predictor), ServeConfig())

    async def send(port: int, raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        answer = await read_until_closed(reader, 5.0)
        writer.close()
        return answer

    bad = [
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
        b"GARBAGE\x00 / HTTP/1.1\r\n\r\n",
    ]
    with running_server(app) as url:
        answers = [asyncio.run(send(port_of(url), raw)) for raw in bad]
        assert httpx.post(url + "/predict", json={"text": "still serving"}).status_code == 200
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request") and b"content-type: application/json" in head
        assert json.loads(body.removesuffix(b"<closed>"))["error"] == "invalid_http"
