"""The web page's "Record a decision" form carries the offer block of ``POST /v1/decisions``:
what a manager reports there reaches the decision log that `keepwise train` learns from; and a
recommendation drawn as an experiment says so on the customer's page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from service.storage import Store
from tests.service.api.support import AppFactory, Customer, Keys, start
from tests.service.api.web.pages import csrf, sign_in

REPORT = {
    "requested": "A refund for the outage day",
    "place": "Phone",
    "authority_used": "front line: refund",
    "outcome": "Customer took the refund",
    "followed": "none",
}


@pytest.fixture
def web(make_app: AppFactory, keys: Keys) -> TestClient:
    with start(make_app()) as client:
        sign_in(client, keys.tokens["agent"])
        yield client


def _record(web: TestClient, customer: Customer, **fields: str) -> Any:
    page = web.get(f"/web/customers/{customer.customer_id}")
    assert page.status_code == 200
    return web.post(
        f"/web/customers/{customer.customer_id}/decisions",
        data={"csrf_token": csrf(page.text), **REPORT, **fields},
        follow_redirects=False,
    )


def _log(web: TestClient, keys: Keys, customer: Customer) -> list[dict[str, Any]]:
    response = web.get(
        "/v1/decisions", params={"customer_id": customer.customer_id}, headers=keys.header("agent")
    )
    return list(response.json()["decisions"])


def test_the_form_offers_the_catalogue_and_no_offer_by_default(
    web: TestClient, own: Customer
) -> None:
    page = web.get(f"/web/customers/{own.customer_id}").text
    assert '<option value="" selected>no offer</option>' in page
    for kind in ("refund", "replacement", "training"):
        assert f'<option value="{kind}">' in page
    today = datetime.now(UTC).date().isoformat()
    assert f'name="offer_on" type="date" value="{today}"' in page


def test_an_accepted_offer_reaches_the_decision_log_and_the_history(
    web: TestClient, keys: Keys, own: Customer
) -> None:
    offered = (date.today() - timedelta(days=3)).isoformat()
    answered = (date.today() - timedelta(days=1)).isoformat()
    response = _record(
        web,
        own,
        offer_kind="refund",
        offer_on=offered,
        offer_answer="accepted",
        offer_cost="120.50",
        offer_responded_on=answered,
    )
    assert response.status_code == 303
    (latest, *_) = _log(web, keys, own)
    assert latest["offer"] == {
        "kind": "refund",
        "offered_on": offered,
        "accepted": True,
        "cost": 120.5,
        "responded_on": answered,
        "holdout": False,
    }
    page = web.get(f"/web/customers/{own.customer_id}").text
    assert f"Offer refund on {offered}: accepted on {answered}" in page


def test_a_holdout_is_recorded_without_answer_or_cost(
    web: TestClient, keys: Keys, own: Customer
) -> None:
    response = _record(
        web,
        own,
        offer_kind="training",
        offer_on=date.today().isoformat(),
        offer_answer="holdout",
        offer_cost="900",
    )
    assert response.status_code == 303
    offer = _log(web, keys, own)[0]["offer"]
    assert offer["holdout"] is True
    assert offer["accepted"] is None and offer["cost"] is None


def test_no_offer_kind_records_the_report_without_an_offer(
    web: TestClient, keys: Keys, own: Customer
) -> None:
    assert _record(web, own, offer_kind="", offer_cost="120").status_code == 303
    assert _log(web, keys, own)[0]["offer"] is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"offer_answer": "declined", "offer_cost": ""},
            "cost is required for an offer made",
        ),
        (
            {"offer_answer": "accepted", "offer_cost": "50", "offer_responded_on": "2020-01-01"},
            "responded_on is before offered_on",
        ),
        ({"offer_answer": "pending", "offer_cost": "-5"}, "cost: Input should be greater"),
        ({"offer_answer": "maybe", "offer_cost": "5"}, "offer: choose what happened"),
        ({"offer_answer": "pending", "offer_cost": "5", "offer_on": "next week"}, "offered_on"),
        (
            {"offer_answer": "pending", "offer_cost": "5", "offer_kind": "voucher"},
            "offer: kind",
        ),
    ],
)
def test_a_wrong_offer_is_refused_naming_the_field_and_nothing_is_stored(
    web: TestClient, keys: Keys, own: Customer, fields: dict[str, str], message: str
) -> None:
    before = _log(web, keys, own)
    response = _record(
        web, own, **{"offer_kind": "refund", "offer_on": date.today().isoformat(), **fields}
    )
    assert response.status_code == 422
    assert message in response.text
    assert _log(web, keys, own) == before


def test_an_experiment_is_marked_as_one_on_the_customer_page(
    web: TestClient, database_url: str, features: pl.DataFrame
) -> None:
    with Store(database_url) as store:
        stored = [store.latest_recommendation(c) for c in features["customer_id"]]
    explored = [s for s in stored if s is not None and s.payload.get("explored")]
    chosen = [s for s in stored if s is not None and s.payload.get("explored") is False]
    assert explored and chosen  # the default policy explores 5% of the customers
    page = web.get(f"/web/customers/{explored[0].customer_id}").text
    assert '<span class="tag experiment">experiment</span>' in page
    greedy = str(explored[0].payload["greedy_action"])
    assert f"instead of the model's best action ({greedy})" in page
    assert "experiment</span>" not in web.get(f"/web/customers/{chosen[0].customer_id}").text
