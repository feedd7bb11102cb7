"""A keepwise API served for real by ``service.api.main.run`` in a child process (uvicorn)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A running server: its base URL, process, and (after it stopped) everything it logged."""

    base: str
    port: int
    process: subprocess.Popen[str]
    output: str = field(default="")
    stopped: bool = False

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def live_server(
    env: Mapping[str, str], cwd: Path, *, ready: bool = True, timeout_s: float = 90
) -> Iterator[LiveServer]:
    """Serve the API until the block ends (SIGINT), then keep its log in ``.output``.

    Args:
        env: ``KEEPWISE_*`` settings for the server.
        cwd: Its working directory.
        ready: Wait for ``/health/ready`` to answer 200 (else for ``/health/live``).
        timeout_s: How long to wait for it.
    """
    port = free_port()
    code = (
        "import uvicorn.loops.uvloop, uvicorn.protocols.http.httptools_impl\n"
        f"from service.api.main import run\nrun('127.0.0.1', {port})\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    server = LiveServer(f"http://127.0.0.1:{port}", port, process)
    probe = "/health/ready" if ready else "/health/live"
    try:
        problem = _wait_for(server, probe, timeout_s)
        if problem:
            _stop(server)
            raise AssertionError(f"{problem}; its log:\n{server.output}")
        yield server
    finally:
        _stop(server)


def _wait_for(server: LiveServer, probe: str, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            return f"the server ended with {server.process.returncode}"
        try:
            if httpx.get(server.base + probe, timeout=2).status_code == 200:
                return None
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            return f"the server did not answer {probe} in {timeout_s:.0f} s"
        time.sleep(0.2)


def _stop(server: LiveServer) -> None:
    process = server.process
    if server.stopped:
        return
    server.stopped = True
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        server.output = process.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        server.output = process.communicate()[0]
