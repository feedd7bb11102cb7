"""A damaged model file never takes the server down (issue 15, defect 1).

LightGBM 4.7 aborts the process when it parses a truncated model text. The server must stay
up: not ready, with a message, when the model it starts with is damaged; still serving the old
model when a reload meets a damaged one.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from model.bundle import ModelBundle
from service.api.keys import new_api_key
from service.api.schemas import EXAMPLE_FEATURES
from tests.service.api.live import live_server

pytestmark = pytest.mark.slow


def _truncate_churn_booster(bundle_dir: Path) -> None:
    booster = bundle_dir / "churn" / "booster.txt"
    text = booster.read_text()
    booster.write_text(text[: len(text) // 2])


def _env(tmp_path: Path, bundle_dir: Path, entries: list[dict[str, str]]) -> dict[str, str]:
    return {
        "KEEPWISE_MODEL_PATH": str(bundle_dir),
        "KEEPWISE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "KEEPWISE_API_KEYS": json.dumps(entries),
    }


def test_reload_of_a_damaged_model_keeps_the_old_one_serving(
    tmp_path: Path, bundles: dict[str, ModelBundle]
) -> None:
    bundle_dir = bundles["1"].save(tmp_path / "v1")
    token, entry = new_api_key("ops", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    body = {"as_of": "2025-01-01", "customers": [EXAMPLE_FEATURES]}
    env = _env(tmp_path, bundle_dir, [entry.model_dump(mode="json", exclude_none=True)])
    with live_server(env, tmp_path) as server:
        before = httpx.post(f"{server.base}/v1/recommendations", json=body, headers=headers)
        assert before.status_code == 200
        _truncate_churn_booster(bundle_dir)
        reload = httpx.post(f"{server.base}/v1/model/reload", headers=headers, timeout=120)
        assert server.alive(), "the reload killed the server"
        assert reload.status_code == 503
        detail = reload.json()["detail"]
        assert "churn/booster.txt cannot be loaded" in detail
        assert "still serving version v1" in detail
        after = httpx.post(f"{server.base}/v1/recommendations", json=body, headers=headers)
        assert after.status_code == 200 and after.json() == before.json()
        assert httpx.get(f"{server.base}/health/ready").status_code == 200
    assert "reload failed" in server.output


def test_a_damaged_model_at_start_up_leaves_the_server_up_and_not_ready(
    tmp_path: Path, bundles: dict[str, ModelBundle]
) -> None:
    bundle_dir = bundles["1"].save(tmp_path / "v1")
    _truncate_churn_booster(bundle_dir)
    token, entry = new_api_key("ops", "viewer")
    env = _env(tmp_path, bundle_dir, [entry.model_dump(mode="json", exclude_none=True)])
    with live_server(env, tmp_path, ready=False) as server:
        ready = httpx.get(f"{server.base}/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert "could not be loaded" in ready.json()["detail"]
        scored = httpx.post(
            f"{server.base}/v1/recommendations",
            json={"as_of": "2025-01-01", "customers": [EXAMPLE_FEATURES]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert scored.status_code == 503
        assert server.alive()
    assert "churn/booster.txt cannot be loaded" in server.output
