"""Connections cannot be held open or flooded with headers (issue 15, defect 5).

The server runs in a thread with the exact uvicorn configuration ``run()`` uses
(:func:`service.api.http_limits.server_config`), with short limits, and is probed over raw
sockets the way a slow or hostile client behaves.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.api.http_limits import server_config
from service.settings import Settings
from tests.service.api.live import free_port

LIMITS = {
    "max_header_bytes": 2048,
    "header_timeout_s": 0.6,
    "body_timeout_s": 0.6,
    "keep_alive_s": 0.6,
}


async def _echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"got {len(await request.body())} bytes")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Starlette(routes=[Route("/echo", _echo, methods=["GET", "POST"])])
    chosen = free_port()
    config = server_config(app, Settings(**LIMITS), "127.0.0.1", chosen, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield chosen
    server.should_exit = True
    thread.join(timeout=10)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def _read_all(sock: socket.socket, within_s: float = 5) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    sock.settimeout(within_s)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open over {within_s} s") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


def test_a_normal_request_is_served(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"got 5 bytes")


def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    with _connect(port) as sock:
        answer, took = _read_all(sock)
    assert answer == b"" and took < 3


def test_a_half_sent_head_gets_408(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        answer, took = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408") and took < 3


def test_a_trickled_head_cannot_reset_the_clock(port: int) -> None:
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /echo HTTP/1.1\r\n")
        answer = b""
        try:
            for _ in range(20):  # one header byte every 0.2 s: would take 4 s
                time.sleep(0.2)
                sock.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer, _ = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3


def test_a_half_sent_body_gets_408(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten..")
        answer, took = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408") and took < 3


@pytest.mark.parametrize("size", [4096, 8 * 1024 * 1024])
def test_an_oversized_header_gets_431(port: int, size: int) -> None:
    with _connect(port) as sock:
        head = b"GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"a" * size
        try:
            sock.sendall(head + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the 8 MiB were sent
        answer, _ = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431")


def test_an_idle_kept_alive_connection_is_closed(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        answer, took = _read_all(sock)
    assert answer == b"" and took < 3


def test_a_kept_alive_connection_serves_several_requests(port: int) -> None:
    with _connect(port) as sock:
        for _ in range(3):
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(0.3)  # within the keep-alive and head limits
