"""GET /v1/model, POST /v1/model/reload (atomic swap under traffic), health, request ids."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import polars as pl
import pytest

from model.bundle import ModelBundle
from model.policy import load_policy
from service.api.request_context import RequestIdFilter
from service.api.serving import ServingModel
from service.settings import DEFAULT_POLICY, Settings
from tests.service.api.support import (
    AS_OF,
    AppFactory,
    Keys,
    failing_loader,
    row_json,
    serving_model,
    start,
)


class SwitchableLoader:
    """Serves whichever version ``current`` names; counts loads."""

    def __init__(self, bundles: dict[str, ModelBundle], current: str = "1") -> None:
        self.bundles, self.current, self.loads = bundles, current, 0

    def __call__(self, settings: Settings) -> ServingModel:
        self.loads += 1
        if self.current == "broken":
            return failing_loader(settings)
        return serving_model(self.bundles[self.current], self.current)


def test_model_facts(make_app: AppFactory, keys: Keys) -> None:
    with start(make_app()) as client:
        got = client.get("/v1/model", headers=keys.header("viewer")).json()
    assert got["model_name"] == "keepwise" and got["model_version"] == "1"
    assert got["alias"] == "champion" and got["source"] == "registry"
    assert got["trained_at"] == "2025-01-01T00:00:00+00:00"
    assert got["horizon_days"] == 365 and got["feature_count"] > 50
    assert got["metrics"] == {"roc_auc": 0.81, "empc": 12.5}
    assert got["policy_version"] == load_policy(DEFAULT_POLICY).version


def test_reload_swaps_to_the_champion_and_a_failed_reload_keeps_the_old(
    make_app: AppFactory, keys: Keys, bundles: dict[str, ModelBundle]
) -> None:
    loader = SwitchableLoader(bundles)
    with start(make_app(loader=loader)) as client:
        loader.current = "2"
        swapped = client.post("/v1/model/reload", headers=keys.header("admin"))
        assert swapped.status_code == 200
        assert swapped.json()["previous_version"] == "1" and swapped.json()["changed"] is True
        assert client.get("/v1/model", headers=keys.header("viewer")).json()["model_version"] == "2"
        loader.current = "broken"
        failed = client.post("/v1/model/reload", headers=keys.header("admin"))
        assert failed.status_code == 503
        assert failed.json()["detail"].endswith("still serving version 2")
        assert client.get("/health/ready").json() == {
            "status": "ready",
            "model_version": "2",
            "detail": None,
        }


def test_reload_brings_a_service_without_model_to_ready(
    make_app: AppFactory, keys: Keys, bundles: dict[str, ModelBundle]
) -> None:
    loader = SwitchableLoader(bundles, current="broken")
    with start(make_app(loader=loader)) as client:
        assert client.get("/health/ready").status_code == 503
        assert client.post("/v1/model/reload", headers=keys.header("admin")).status_code == 503
        loader.current = "1"
        reloaded = client.post("/v1/model/reload", headers=keys.header("admin")).json()
        assert reloaded["previous_version"] is None and reloaded["model"]["model_version"] == "1"
        assert client.get("/health/ready").status_code == 200


def test_a_model_that_cannot_score_the_api_rows_is_not_served(
    make_app: AppFactory, keys: Keys, bundles: dict[str, ModelBundle]
) -> None:
    def wrong_features(settings: Settings) -> ServingModel:
        """A model trained on a feature the API does not accept (``shoe_size``)."""
        serving = serving_model(bundles["1"], "9")
        churn = serving.bundle.churn
        encoding = replace(
            churn.encoding, feature_columns=(*churn.encoding.feature_columns, "shoe_size")
        )
        bundle = replace(serving.bundle, churn=replace(churn, encoding=encoding))
        return replace(serving, bundle=bundle)

    def buggy(settings: Settings) -> ServingModel:
        raise AttributeError("a bug in the loader")

    for loader in (wrong_features, buggy):
        with start(make_app(loader=loader)) as client:
            assert client.get("/health/ready").status_code == 503
            assert client.get("/health/live").status_code == 200


def test_reload_during_traffic_drops_no_request(
    make_app: AppFactory, keys: Keys, bundles: dict[str, ModelBundle], features: pl.DataFrame
) -> None:
    rows = [row_json(features, i) for i in range(5)]
    body = {"as_of": AS_OF.isoformat(), "customers": rows}
    loader = SwitchableLoader(bundles)
    with start(make_app(loader=loader)) as client:
        expected: dict[str, list[float]] = {}
        for version in ("1", "2"):
            loader.current = version
            assert client.post("/v1/model/reload", headers=keys.header("admin")).status_code == 200
            scored = client.post("/v1/recommendations", json=body, headers=keys.header("viewer"))
            expected[version] = [r["p_churn"] for r in scored.json()["recommendations"]]
        assert expected["1"] != expected["2"]

        stop = threading.Event()
        results: list[tuple[int, str | None, list[float] | None]] = []

        def hammer() -> None:
            while not stop.is_set():
                response = client.post(
                    "/v1/recommendations", json=body, headers=keys.header("viewer")
                )
                got = response.json() if response.status_code == 200 else {}
                results.append(
                    (
                        response.status_code,
                        got.get("model_version"),
                        [r["p_churn"] for r in got.get("recommendations", [])],
                    )
                )

        reloads: list[int] = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            workers = [pool.submit(hammer) for _ in range(8)]
            for i in range(12):
                loader.current = "1" if i % 2 else "2"
                reloads.append(
                    client.post("/v1/model/reload", headers=keys.header("admin")).status_code
                )
            stop.set()
            for worker in workers:
                worker.result()
    assert reloads == [200] * 12
    assert len(results) >= 20
    assert {status for status, _, _ in results} == {200}
    versions = {version for _, version, _ in results}
    assert versions == {"1", "2"}
    for _, answered_by, scores in results:  # every answer is wholly one model's, never a mix
        assert scores == pytest.approx(expected[str(answered_by)])


def test_request_id_is_kept_or_made_and_logged(
    make_app: AppFactory, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with start(make_app()) as client, caplog.at_level("INFO", logger="keepwise.access"):
        kept = client.get(
            "/v1/model", headers={**keys.header("viewer"), "X-Request-ID": "crm-batch-42"}
        )
        made = client.get(
            "/v1/model", headers={**keys.header("viewer"), "X-Request-ID": "bad id\nwith newline"}
        )
    assert kept.headers["x-request-id"] == "crm-batch-42"
    assert len(made.headers["x-request-id"]) == 32
    access = [
        (getattr(r, "request_id", None), r.getMessage())
        for r in caplog.records
        if r.name == "keepwise.access"
    ]
    assert ("crm-batch-42", access[0][1]) == access[0]
    assert access[0][1].startswith("GET /v1/model 200")
    assert access[1][0] == made.headers["x-request-id"]
