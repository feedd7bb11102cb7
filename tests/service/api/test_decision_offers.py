"""The offer part of an after-action report: stored, listed, refused with clear 422s, documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from features.contract import OFFER_KINDS
from tests.service.api.support import Customer, Keys

URL = "/v1/decisions"
OFFER = {
    "kind": "replacement",
    "offered_on": "2025-01-14",
    "accepted": True,
    "cost": 180.0,
    "responded_on": "2025-01-15",
}


def report(customer_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "requested": "Replacement of the faulty router",
        "occurred_at": "2025-01-14T10:30:00+01:00",
        "place": "Service desk Antwerp",
        "authority_used": "front_line: replacement 180",
        "outcome": "Accepted, thanked us",
        **changes,
    }


def test_a_report_with_an_offer_is_stored_and_listed_with_it(
    client: TestClient, keys: Keys, own: Customer
) -> None:
    created = client.post(
        URL, headers=keys.header("agent"), json=report(own.customer_id, offer=OFFER)
    )
    assert created.status_code == 201, created.text
    expected = {**OFFER, "holdout": False}
    assert created.json()["offer"] == expected
    held = {"kind": "gift", "offered_on": "2025-01-10", "holdout": True}
    second = client.post(
        URL, headers=keys.header("agent"), json=report(own.customer_id, offer=held)
    )
    assert second.status_code == 201, second.text
    assert second.json()["offer"] == {**held, "accepted": None, "cost": None, "responded_on": None}
    listed = client.get(
        URL, headers=keys.header("viewer"), params={"customer_id": own.customer_id, "limit": 2}
    ).json()["decisions"]
    assert [d["offer"] for d in listed] == [second.json()["offer"], expected]


def test_a_report_without_an_offer_stays_valid(
    client: TestClient, keys: Keys, own: Customer
) -> None:
    created = client.post(URL, headers=keys.header("agent"), json=report(own.customer_id))
    assert created.status_code == 201
    assert created.json()["offer"] is None


FUTURE = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()


@pytest.mark.parametrize(
    ("offer", "loc", "kind"),
    [
        ({**OFFER, "kind": "voucher"}, ["body", "offer", "kind"], "literal_error"),
        ({**OFFER, "cost": -1}, ["body", "offer", "cost"], "greater_than_equal"),
        ({**OFFER, "cost": 1e16}, ["body", "offer", "cost"], "less_than_equal"),
        (
            {**OFFER, "offered_on": FUTURE, "responded_on": None},
            ["body", "offer", "offered_on"],
            "value_error",
        ),
        ({**OFFER, "responded_on": FUTURE}, ["body", "offer", "responded_on"], "value_error"),
        ({**OFFER, "offered_on": "1969-12-31"}, ["body", "offer", "offered_on"], "value_error"),
        ({**OFFER, "offered_on": 1736812800}, ["body", "offer", "offered_on"], "value_error"),
        ({"offered_on": "2025-01-10", "accepted": True, "cost": 10.0}, ["body", "offer", "kind"],
         "missing"),
        ({"kind": "gift", "cost": 10.0}, ["body", "offer", "offered_on"], "missing"),
        ({**OFFER, "cost": None}, ["body", "offer"], "value_error"),
        ({**OFFER, "responded_on": "2025-01-13"}, ["body", "offer"], "value_error"),
        ({**OFFER, "accepted": None}, ["body", "offer"], "value_error"),
        ({**OFFER, "holdout": True, "cost": None}, ["body", "offer"], "value_error"),
        ({**OFFER, "holdout": True, "accepted": None, "responded_on": None}, ["body", "offer"],
         "value_error"),
        ({**OFFER, "coupon_code": "X1"}, ["body", "offer", "coupon_code"], "extra_forbidden"),
    ],
)  # fmt: skip
def test_a_bad_offer_answers_422_naming_the_field(
    client: TestClient,
    keys: Keys,
    own: Customer,
    offer: dict[str, Any],
    loc: list[str],
    kind: str,
) -> None:
    response = client.post(
        URL, headers=keys.header("agent"), json=report(own.customer_id, offer=offer)
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (loc, kind), error
    assert "voucher" not in response.text and "X1" not in response.text


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ({**OFFER, "cost": None}, "cost is required for an offer made"),
        ({**OFFER, "responded_on": "2025-01-13"}, "responded_on is before offered_on"),
        ({**OFFER, "accepted": None}, "responded_on needs an answer"),
        ({"kind": "gift", "offered_on": "2025-01-10", "holdout": True, "accepted": False},
         "leave accepted null"),
        ({"kind": "gift", "offered_on": "2025-01-10", "holdout": True, "cost": 5},
         "leave cost out"),
        ({**OFFER, "offered_on": FUTURE, "responded_on": None}, "offered_on is in the future"),
    ],
)  # fmt: skip
def test_the_422_message_says_what_to_fix(
    client: TestClient, keys: Keys, own: Customer, offer: dict[str, Any], message: str
) -> None:
    response = client.post(
        URL, headers=keys.header("agent"), json=report(own.customer_id, offer=offer)
    )
    assert response.status_code == 422
    assert message in response.json()["detail"][0]["msg"]


def test_the_offer_is_documented_in_openapi(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    request = schemas["ReportedOfferRequest"]
    assert request["properties"]["kind"]["enum"] == list(OFFER_KINDS)
    assert set(request["required"]) == {"kind", "offered_on"}
    assert "keepwise train" in schemas["DecisionRequest"]["properties"]["offer"]["description"]
    assert schemas["DecisionRequest"]["examples"][0]["offer"]["kind"] == "replacement"
    public = schemas["DecisionPublic"]["properties"]["offer"]
    assert public["description"].startswith("The offer the report records")
