"""What-if on a stored recommendation: the same kernel, the same inputs, the same bits."""

from __future__ import annotations

import pytest

from model.policy import load_policy
from service.api.whatif import WhatIfError, what_if
from service.settings import DEFAULT_POLICY
from service.storage import Store


@pytest.fixture(scope="module")
def payloads(database_url: str) -> list[dict]:
    with Store(database_url) as store:
        ids = [row[0] for row in _customer_ids(store)]
        return [store.latest_recommendation(c).payload for c in ids]


def _customer_ids(store: Store) -> list[tuple[str]]:
    from service.storage import PortfolioFilter

    page = store.portfolio_page(PortfolioFilter(), sort="customer_id", descending=False, limit=60)
    return [(row.customer_id,) for row in page.rows]


def test_the_recommended_offer_at_its_cost_reproduces_the_stored_values(payloads) -> None:
    policy = load_policy(DEFAULT_POLICY)
    for payload in payloads:
        answer = what_if(payload, policy, payload["offer"]["kind"])
        assert answer.ev_retain == payload["expected_values"]["retain"]
        assert answer.ev_end == payload["expected_values"]["end"]
        assert answer.ev_offer == payload["expected_values"]["offers"][payload["offer"]["kind"]]
        assert answer.unit_cost == payload["offer"]["unit_cost"]
        for kind, stored in payload["expected_values"]["offers"].items():
            assert what_if(payload, policy, kind).ev_offer == stored


def test_a_dearer_offer_loses_exactly_its_expected_extra_cost(payloads) -> None:
    policy = load_policy(DEFAULT_POLICY)
    for payload in payloads:
        kind = payload["offer"]["kind"]
        base = what_if(payload, policy, kind, payload["offer"]["unit_cost"])
        dearer = what_if(payload, policy, kind, payload["offer"]["unit_cost"] + 1000.0)
        assert dearer.ev_offer == pytest.approx(base.ev_offer - 1000.0 * base.acceptance, abs=1e-6)
        assert dearer.ev_retain == base.ev_retain
        if dearer.action == "compensate":
            assert base.action == "compensate"  # a dearer offer never becomes the choice


def test_bad_what_if_input_says_what_is_wrong(payloads) -> None:
    policy = load_policy(DEFAULT_POLICY)
    with pytest.raises(WhatIfError, match="not in policy"):
        what_if(payloads[0], policy, "pony")
    with pytest.raises(WhatIfError, match="offer cost must be an amount"):
        what_if(payloads[0], policy, "gift", -5.0)
    with pytest.raises(WhatIfError, match="re-run the batch"):
        what_if({**payloads[0], "decision_inputs": None}, policy, "gift")


def test_the_api_what_if_answers_with_the_kernel_and_keeps_to_the_scope(
    client, keys, own, other, payloads
) -> None:
    stored = client.get(
        f"/v1/customers/{own.customer_id}/recommendation", headers=keys.header("am_agent")
    ).json()
    kind = stored["offer"]["kind"]
    answer = client.post(
        f"/v1/customers/{own.customer_id}/what-if",
        json={"offer_kind": kind},
        headers=keys.header("am_agent"),
    )
    assert answer.status_code == 200
    assert answer.json()["ev_offer"] == stored["expected_values"]["offers"][kind]
    assert answer.json()["ev_retain"] == stored["expected_values"]["retain"]
    hidden = client.post(
        f"/v1/customers/{other.customer_id}/what-if",
        json={"offer_kind": kind},
        headers=keys.header("am_agent"),
    )
    assert hidden.status_code == 404
    negative = client.post(
        f"/v1/customers/{own.customer_id}/what-if",
        json={"offer_kind": kind, "unit_cost": -1},
        headers=keys.header("viewer"),
    )
    assert negative.status_code == 422
