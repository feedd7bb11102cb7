"""A new user's first hour, following the README (issue 15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.api.keys import new_api_key
from service.cli import DEFAULT_KEY_FILES, DEMO_FOLDER, DEMO_KEY_FILE
from tests.service.api.live import REPO, free_port


def _serve_plainly(cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """`keepwise serve --port P` from ``cwd``, with no KEEPWISE_* key setting."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEEPWISE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/m.db"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the server did not start: {process.communicate()[0]}")


def test_the_demos_keys_work_with_a_plain_serve(tmp_path: Path) -> None:
    """After `keepwise demo`, `keepwise serve` said "no API keys" and the tokens got 401."""
    assert DEFAULT_KEY_FILES[-1] == DEMO_FOLDER / DEMO_KEY_FILE
    keys = tmp_path / DEMO_FOLDER / DEMO_KEY_FILE  # where the demo writes them by default
    keys.parent.mkdir()
    token, entry = new_api_key("demo-viewer", "viewer")
    keys.write_text(entry.to_toml())
    process, base = _serve_plainly(tmp_path)
    try:
        model = httpx.get(f"{base}/v1/model", headers={"Authorization": f"Bearer {token}"})
        unknown = httpx.get(f"{base}/v1/model", headers={"Authorization": "Bearer kw_nope"})
    finally:
        process.send_signal(signal.SIGINT)
        log = process.communicate(timeout=30)[0]
    assert unknown.status_code == 401
    assert model.status_code == 503, model.text  # the key is known; there is no model yet
    assert f"API keys from {DEMO_FOLDER / DEMO_KEY_FILE}" in log
    assert "no API keys are configured" not in log
