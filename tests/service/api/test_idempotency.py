"""Retried reports are stored once with an Idempotency-Key (issue 15, defect 4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.api.support import AppFactory, Keys, start
from tests.service.api.test_decisions import report

URL = "/v1/decisions"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_client(
    request: pytest.FixtureRequest, make_app: AppFactory, tmp_path: Any
) -> Iterator[TestClient]:
    """The API over an empty store on each backend."""
    url = (
        f"sqlite:///{tmp_path / 'idem.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgresql_url")
    )
    with start(make_app(database_url=url)) as test_client:
        yield test_client


def _post(client: TestClient, keys: Keys, who: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {**keys.header(who), **({"Idempotency-Key": key} if key else {})}
    return client.post(URL, headers=headers, json=body)


def _stored(client: TestClient, keys: Keys, customer_id: str) -> list[dict[str, Any]]:
    listed = client.get(URL, headers=keys.header("viewer"), params={"customer_id": customer_id})
    decisions: list[dict[str, Any]] = listed.json()["decisions"]
    return decisions


def test_a_retry_with_the_same_key_gets_the_first_answer_and_stores_nothing(
    fresh_client: TestClient, keys: Keys
) -> None:
    key = str(uuid.uuid4())
    body = report("C100")
    first = _post(fresh_client, keys, "agent", body, key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    # the same report, sent again (also with its time in another zone: the same instant)
    again = _post(fresh_client, keys, "agent", {**body, "occurred_at": "2025-01-14T09:30Z"}, key)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert [d["decision_id"] for d in _stored(fresh_client, keys, "C100")] == [
        first.json()["decision_id"]
    ]


def test_the_same_key_with_another_report_is_a_conflict(
    fresh_client: TestClient, keys: Keys
) -> None:
    key = "retry-7"
    assert _post(fresh_client, keys, "agent", report("C200"), key).status_code == 201
    other = _post(fresh_client, keys, "agent", report("C200", outcome="Declined"), key)
    assert other.status_code == 409
    assert "already used for another report" in other.json()["detail"]
    assert len(_stored(fresh_client, keys, "C200")) == 1


def test_keys_belong_to_one_api_key_and_no_key_means_a_new_report(
    fresh_client: TestClient, keys: Keys
) -> None:
    body = report("C300")
    assert _post(fresh_client, keys, "agent", body, "k1").status_code == 201
    assert _post(fresh_client, keys, "admin", body, "k1").status_code == 201  # another key
    assert _post(fresh_client, keys, "agent", body, None).status_code == 201
    assert _post(fresh_client, keys, "agent", body, None).status_code == 201
    assert len(_stored(fresh_client, keys, "C300")) == 4


def test_concurrent_retries_store_one_report(fresh_client: TestClient, keys: Keys) -> None:
    body = report("C400")
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: _post(fresh_client, keys, "agent", body, "burst"), range(8))
        )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["decision_id"] for a in answers}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    assert len(_stored(fresh_client, keys, "C400")) == 1


@pytest.mark.parametrize("bad", ["", "has space", "tab\there", "x" * 129])
def test_a_malformed_key_is_refused(client: TestClient, keys: Keys, bad: str) -> None:
    answer = client.post(
        URL,
        headers={**keys.header("agent"), "Idempotency-Key": bad},
        json=report("C500"),
    )
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [["header", "Idempotency-Key"]]


def test_the_key_is_documented(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][URL]["post"]
    (header,) = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key" and header["description"]
    assert "409" in operation["responses"]
    assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]
