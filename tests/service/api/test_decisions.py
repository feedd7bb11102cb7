"""POST /v1/decisions and GET /v1/decisions: reports are validated, stored, listed, never lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.storage import StoreError
from tests.service.api.support import AppFactory, Customer, Keys, start

URL = "/v1/decisions"


def report(customer_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "requested": "Replacement of the faulty router",
        "occurred_at": "2025-01-14T10:30:00+01:00",
        "place": "Service desk Antwerp",
        "authority_used": "front_line: replacement 180",
        "helped_by": "J. Peeters",
        "outcome": "Accepted, thanked us",
        **changes,
    }


def test_report_is_stored_and_listed_newest_first(
    client: TestClient, keys: Keys, own: Customer
) -> None:
    first = client.post(
        URL,
        headers=keys.header("agent"),
        json=report(
            own.customer_id,
            recommendation_id=f"rec-{own.customer_id}",
            followed_recommendation=True,
        ),
    )
    assert first.status_code == 201
    stored = first.json()
    assert stored["recorded_by"] == "agent"
    assert stored["occurred_at"] == "2025-01-14T09:30:00Z"  # kept in UTC
    assert stored["followed_recommendation"] is True
    second = client.post(
        URL, headers=keys.header("admin"), json=report(own.customer_id, outcome="Declined")
    )
    assert second.status_code == 201
    listed = client.get(
        URL, headers=keys.header("viewer"), params={"customer_id": own.customer_id, "limit": 2}
    ).json()
    assert [d["decision_id"] for d in listed["decisions"]] == [
        second.json()["decision_id"],
        stored["decision_id"],
    ]
    assert listed["limit"] == 2 and listed["offset"] == 0


@pytest.mark.parametrize(
    ("change", "loc", "kind"),
    [
        ({"occurred_at": "2025-01-14T10:30:00"}, ["body", "occurred_at"], "timezone_aware"),
        ({"occurred_at": "last tuesday"}, ["body", "occurred_at"], "datetime_from_date_parsing"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, ["body", "occurred_at"], "value_error"),
        ({"outcome": "   "}, ["body", "outcome"], "string_pattern_mismatch"),
        ({"place": None}, ["body", "place"], "string_type"),
        ({"followed_recommendation": True}, ["body"], "value_error"),
        ({"recommendation_id": "rec-x"}, ["body"], "value_error"),
        ({"mood": "grumpy"}, ["body", "mood"], "extra_forbidden"),
    ],
)
def test_bad_reports_answer_422(
    client: TestClient, keys: Keys, own: Customer, change: dict[str, Any], loc: list[str], kind: str
) -> None:
    response = client.post(
        URL, headers=keys.header("agent"), json=report(own.customer_id, **change)
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (loc, kind)
    assert "grumpy" not in response.text and "last tuesday" not in response.text


def test_missing_items_are_each_named(client: TestClient, keys: Keys) -> None:
    response = client.post(URL, headers=keys.header("agent"), json={"customer_id": "C1"})
    assert response.status_code == 422
    assert {tuple(e["loc"]) for e in response.json()["detail"]} == {
        ("body", name)
        for name in ("requested", "occurred_at", "place", "authority_used", "outcome")
    }


def test_unknown_recommendation_id_answers_422(
    client: TestClient, keys: Keys, own: Customer
) -> None:
    response = client.post(
        URL,
        headers=keys.header("agent"),
        json=report(
            own.customer_id, recommendation_id="rec-made-up", followed_recommendation=False
        ),
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "recommendation_id"]


def test_paging_bounds_answer_422(client: TestClient, keys: Keys) -> None:
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "ten"}):
        response = client.get(URL, headers=keys.header("viewer"), params=params)
        assert response.status_code == 422, params


def test_concurrent_reports_are_all_kept(client: TestClient, keys: Keys, other: Customer) -> None:
    customer, n = other.customer_id, 200
    before = client.get(
        URL, headers=keys.header("viewer"), params={"customer_id": customer, "limit": 1000}
    ).json()["decisions"]

    def post(i: int) -> tuple[int, str]:
        response = client.post(
            URL, headers=keys.header("agent"), json=report(customer, outcome=f"outcome {i}")
        )
        return response.status_code, response.json()["decision_id"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(post, range(n)))
    assert [status for status, _ in results] == [201] * n
    ids = {decision_id for _, decision_id in results}
    assert len(ids) == n
    after = client.get(
        URL, headers=keys.header("viewer"), params={"customer_id": customer, "limit": 1000}
    ).json()["decisions"]
    assert len(after) == len(before) + n
    assert ids <= {d["decision_id"] for d in after}
    assert {d["outcome"] for d in after} >= {f"outcome {i}" for i in range(n)}


class _DownStore:
    """A store whose database is unreachable."""

    def close(self) -> None:
        """Nothing to release."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise StoreError("could not record a decision: OperationalError: disk I/O error")

        return fail


def test_store_failure_answers_503_and_says_nothing_was_written(
    make_app: AppFactory, keys: Keys, own: Customer
) -> None:
    with start(make_app(store_opener=lambda settings: _DownStore())) as client:
        response = client.post(URL, headers=keys.header("agent"), json=report(own.customer_id))
        assert response.status_code == 503
        assert response.json() == {
            "detail": "the store is unavailable; nothing was written, retry later"
        }
        assert "disk I/O" not in response.text
        assert client.get(URL, headers=keys.header("viewer")).status_code == 503
        assert (
            client.get(
                f"/v1/customers/{own.customer_id}/recommendation", headers=keys.header("viewer")
            ).status_code
            == 503
        )
