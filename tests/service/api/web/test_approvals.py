"""The approvals queue: who may approve what, one verdict per recommendation, and the
after-action report written with it (API and web page alike)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.api.support import AppFactory, Customer, Keys, start
from tests.service.api.web.pages import csrf, sign_in


@pytest.fixture
def api(make_app: AppFactory, tmp_path: Any, database_url: str) -> TestClient:
    # a private copy of the seeded store: verdicts must not leak into other tests
    copy = tmp_path / "keepwise.db"
    copy.write_bytes(open(database_url.removeprefix("sqlite:///"), "rb").read())
    with start(make_app(database_url=f"sqlite:///{copy}")) as client:
        yield client


def _waiting(api: TestClient, keys: Keys, tier: str, key: str = "director") -> dict[str, Any]:
    queue = api.get("/v1/approvals", params={"tier": tier, "limit": 500}, headers=keys.header(key))
    assert queue.status_code == 200
    items = queue.json()["items"]
    assert items, f"the seeded store has nothing waiting for {tier}"
    return items[0]


def _verdict(recommendation_id: str, verdict: str = "approved") -> dict[str, Any]:
    return {
        "recommendation_id": recommendation_id,
        "verdict": verdict,
        "note": "checked the figures",
        "requested": "approval of the recommended action",
        "place": "head office",
        "outcome": "as recommended",
    }


def test_the_queue_holds_only_tiers_above_the_front_line(api: TestClient, keys: Keys) -> None:
    items = api.get("/v1/approvals", params={"limit": 500}, headers=keys.header("viewer")).json()
    tiers = {item["approval_tier"] for item in items["items"]}
    assert tiers and tiers <= {"manager", "director"}
    assert all(item["action"] != "retain" for item in items["items"])
    assert not any(item["approvable"] for item in items["items"])  # a viewer approves nothing
    ends = [item for item in items["items"] if item["action"] == "end"]
    assert all(item["approval_tier"] == "director" for item in ends)


def test_a_director_approves_and_the_report_is_in_the_decision_log(
    api: TestClient, keys: Keys
) -> None:
    item = _waiting(api, keys, "director")
    answer = api.post(
        "/v1/approvals", json=_verdict(item["recommendation_id"]), headers=keys.header("director")
    )
    assert answer.status_code == 201
    approval = answer.json()
    assert (approval["verdict"], approval["authority"], approval["required_tier"]) == (
        "approved",
        "director",
        "director",
    )
    log = api.get(
        "/v1/decisions", params={"customer_id": item["customer_id"]}, headers=keys.header("viewer")
    ).json()["decisions"]
    (report,) = [d for d in log if d["decision_id"] == approval["decision_id"]]
    assert report["recommendation_id"] == item["recommendation_id"]
    assert report["followed_recommendation"] is True
    assert report["recorded_by"] == "director"
    assert report["authority_used"].startswith("director: approved")
    queue = api.get("/v1/approvals", params={"limit": 500}, headers=keys.header("director"))
    assert item["recommendation_id"] not in {i["recommendation_id"] for i in queue.json()["items"]}
    again = api.post(
        "/v1/approvals",
        json=_verdict(item["recommendation_id"], "rejected"),
        headers=keys.header("director"),
    )
    assert again.status_code == 409
    assert "already has a verdict" in again.json()["detail"]


def test_a_manager_cannot_approve_what_needs_a_director(api: TestClient, keys: Keys) -> None:
    item = _waiting(api, keys, "director")
    answer = api.post(
        "/v1/approvals", json=_verdict(item["recommendation_id"]), headers=keys.header("manager")
    )
    assert answer.status_code == 403
    assert answer.json()["detail"] == (
        "this key approves up to the manager tier; this needs the director tier"
    )


@pytest.mark.parametrize("key", ["viewer", "viewer_director", "agent"])
def test_keys_without_approval_authority_cannot_approve(
    api: TestClient, keys: Keys, key: str
) -> None:
    item = _waiting(api, keys, "manager")
    answer = api.post(
        "/v1/approvals", json=_verdict(item["recommendation_id"]), headers=keys.header(key)
    )
    assert answer.status_code == 403


def test_a_scoped_approver_cannot_reach_another_scope(
    api: TestClient, keys: Keys, own: Customer
) -> None:
    queue = api.get("/v1/approvals", params={"limit": 500}, headers=keys.header("am_director"))
    mine = queue.json()["items"]
    assert all(item["account_manager"] == own.account_manager for item in mine)
    everyone = api.get("/v1/approvals", params={"limit": 500}, headers=keys.header("director"))
    foreign = next(
        i for i in everyone.json()["items"] if i["account_manager"] != own.account_manager
    )
    answer = api.post(
        "/v1/approvals",
        json=_verdict(foreign["recommendation_id"]),
        headers=keys.header("am_director"),
    )
    assert answer.status_code == 404


def test_the_web_page_approves_through_the_same_path(api: TestClient, keys: Keys) -> None:
    item = _waiting(api, keys, "manager")
    page = sign_in(api, keys.tokens["manager"])
    queue = api.get("/web/approvals", params={"tier": "manager"})
    assert item["customer_id"] in queue.text
    form = {**_verdict(item["recommendation_id"], "rejected"), "csrf_token": csrf(page.text)}
    form.pop("recommendation_id")
    done = api.post(f"/web/approvals/{item['recommendation_id']}", data=form)
    assert done.status_code == 200
    verdicts = api.get(
        "/v1/approvals/decided",
        params={"customer_id": item["customer_id"]},
        headers=keys.header("viewer"),
    ).json()["approvals"]
    assert [(v["verdict"], v["decided_by"]) for v in verdicts] == [("rejected", "manager")]
    customer = api.get(f"/web/customers/{item['customer_id']}")
    assert "Rejected</strong> by manager" in customer.text


def test_a_viewer_sees_the_queue_but_no_verdict_form(api: TestClient, keys: Keys) -> None:
    item = _waiting(api, keys, "manager")
    page = sign_in(api, keys.tokens["viewer"])
    queue = api.get("/web/approvals")
    assert "You cannot approve" in queue.text
    assert 'name="verdict"' not in queue.text
    form = {**_verdict(item["recommendation_id"]), "csrf_token": csrf(page.text)}
    refused = api.post(f"/web/approvals/{item['recommendation_id']}", data=form)
    assert refused.status_code == 403
