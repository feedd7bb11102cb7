"""``run()`` serves the app with uvicorn (uvloop + httptools); logs carry the request id."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from model.bundle import ModelBundle
from service.api.keys import new_api_key
from service.api.schemas import EXAMPLE_FEATURES


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_run_serves_with_uvicorn_and_logs_request_ids(
    tmp_path: Path, repo: Path, bundles: dict[str, ModelBundle]
) -> None:
    bundle_dir = bundles["1"].save(tmp_path / "v7")
    token, entry = new_api_key("ops", "viewer")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "KEEPWISE_MODEL_PATH": str(bundle_dir),
        "KEEPWISE_LOG_LEVEL": "DEBUG",
        "KEEPWISE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "KEEPWISE_API_KEYS": json.dumps([entry.model_dump(mode="json", exclude_none=True)]),
    }
    code = (
        "import uvicorn.loops.uvloop, uvicorn.protocols.http.httptools_impl\n"
        f"from service.api.main import run\nrun('127.0.0.1', {port})\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready in 60 s"
            time.sleep(0.2)
        response = httpx.get(
            f"{base}/v1/model",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-abc-123"},
        )
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "trace-abc-123"
        assert response.json()["model_version"] == "v7"
        assert httpx.get(f"{base}/v1/model").status_code == 401
        forged = httpx.get(f"{base}/v1/customers/q%0aFORGED%1b%00/recommendation")
        assert forged.status_code == 401
        scored = httpx.post(
            f"{base}/v1/recommendations",
            json={"as_of": "2025-01-01", "customers": [EXAMPLE_FEATURES]},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-def-456"},
        )
        assert scored.status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert "[trace-abc-123] GET /v1/model 200" in output
    # the decoded path is logged escaped, on its own line (issue 15, defect 3)
    assert "GET /v1/customers/q\\x0aFORGED\\x1b\\x00/recommendation 401" in output
    assert not any(line.startswith("FORGED") for line in output.splitlines())
    assert "\x1b" not in output and "\x00" not in output
    # lines logged by the scoring code carry the request's id too (DEBUG: the actions decided)
    assert "model.decide_rows [trace-def-456] decided 1 customers" in output
    assert "database sqlite:///" in output and "migrated" in output
    assert (tmp_path / "serve.db").is_file()
