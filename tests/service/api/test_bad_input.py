"""Inputs that once broke the service answer 422, naming the field (issue 15, defects 2 and 10)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.errors import MAX_ERRORS
from service.api.schemas import EXAMPLE_FEATURES
from tests.service.api.support import AppFactory, Customer, Keys, start
from tests.service.api.test_decisions import report


def _locs(response: Any) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [item["loc"] for item in response.json()["detail"]]


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: OverflowError in astimezone
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        0,  # a Unix time, not a date-time string
        1736850600,
    ],
)
def test_occurred_at_out_of_range_or_a_number_is_refused(
    client: TestClient, keys: Keys, own: Customer, occurred_at: Any
) -> None:
    answer = client.post(
        "/v1/decisions",
        headers=keys.header("agent"),
        json=report(own.customer_id, occurred_at=occurred_at),
    )
    assert _locs(answer) == [["body", "occurred_at"]]


@pytest.mark.parametrize("as_of", [0, 20250101, 1.5, True])
def test_as_of_must_be_a_date_string(client: TestClient, keys: Keys, as_of: Any) -> None:
    answer = client.post(
        "/v1/recommendations",
        headers=keys.header("viewer"),
        json={"as_of": as_of, "customers": [EXAMPLE_FEATURES]},
    )
    assert _locs(answer) == [["body", "as_of"]]


@pytest.fixture
def postgres_client(make_app: AppFactory, postgresql_url: str) -> Iterator[TestClient]:
    """The API over an empty PostgreSQL store."""
    with start(make_app(database_url=postgresql_url)) as test_client:
        yield test_client


@pytest.mark.parametrize("field", ["customer_id", "requested", "place", "outcome", "helped_by"])
def test_a_nul_character_is_the_clients_mistake_on_postgresql(
    postgres_client: TestClient, keys: Keys, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    value = "C1\x00" if field == "customer_id" else "text with a \x00 in it"
    with caplog.at_level(logging.INFO):
        answer = postgres_client.post(
            "/v1/decisions", headers=keys.header("agent"), json={**report("C1"), field: value}
        )
    assert _locs(answer) == [["body", field]]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_nul_character_in_a_path_or_query_id_is_refused_on_postgresql(
    postgres_client: TestClient, keys: Keys
) -> None:
    viewer = keys.header("viewer")
    listed = postgres_client.get("/v1/decisions", headers=viewer, params={"customer_id": "C\x00"})
    assert _locs(listed) == [["query", "customer_id"]]
    read = postgres_client.get("/v1/customers/C%00/recommendation", headers=viewer)
    assert _locs(read) == [["path", "customer_id"]]
    verdicts = postgres_client.get(
        "/v1/approvals/decided", headers=viewer, params={"customer_id": "C\x00"}
    )
    assert _locs(verdicts) == [["query", "customer_id"]]
    what_if = postgres_client.post("/v1/customers/C%00/what-if", headers=viewer, json={})
    assert ["path", "customer_id"] in _locs(what_if)
    fine = postgres_client.get("/v1/decisions", headers=viewer, params={"customer_id": "C1"})
    assert fine.status_code == 200 and fine.json()["decisions"] == []


def test_a_body_of_many_bad_rows_gets_a_short_422(client: TestClient, keys: Keys) -> None:
    """1,000 empty rows (7 KB) once got 58,000 problems back, 5.5 MB (defect 7)."""
    answer = client.post(
        "/v1/recommendations",
        headers=keys.header("viewer"),
        json={"as_of": "2025-01-01", "customers": [{}] * 1000},
    )
    assert answer.status_code == 422
    assert len(answer.content) < 20_000
    problems = answer.json()["detail"]
    assert len(problems) == MAX_ERRORS + 1
    assert problems[0]["loc"][:3] == ["body", "customers", 0]
    assert problems[-1]["type"] == "too_many_errors"
    assert problems[-1]["loc"] == ["body"]
    more = int(problems[-1]["msg"].split()[0].replace(",", ""))
    assert MAX_ERRORS + more == 1000 * len(_problems_of_one_empty_row(client, keys))


def _problems_of_one_empty_row(client: TestClient, keys: Keys) -> list[Any]:
    """The problems of one empty feature row (one per required field)."""
    answer = client.post(
        "/v1/recommendations",
        headers=keys.header("viewer"),
        json={"as_of": "2025-01-01", "customers": [{}]},
    )
    problems: list[Any] = answer.json()["detail"]
    assert 1 < len(problems) <= MAX_ERRORS
    return problems
