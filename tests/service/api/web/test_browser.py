"""The web page in a real browser (headless Chromium): the manager's journey end to end.

Open the portfolio, filter, follow a customer, run a what-if, record a decision, approve the
recommendation as a director, see both in the history; a viewer cannot approve; a scoped key
sees only its own customers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.api.support import AppFactory, Customer, Keys
from tests.service.api.web.browser import browser, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as launched:
        yield launched


@pytest.fixture
def site(make_app: AppFactory, tmp_path: Path, database_url: str) -> Iterator[str]:
    copy = tmp_path / "keepwise.db"
    copy.write_bytes(Path(database_url.removeprefix("sqlite:///")).read_bytes())
    with serving(make_app(database_url=f"sqlite:///{copy}")) as base:
        yield base


def _sign_in(chromium: Any, base: str, token: str) -> Any:
    page = chromium.new_page(viewport={"width": 1366, "height": 900})
    page.goto(f"{base}/web/")
    page.get_by_label("API key").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/web/")
    return page


def test_filter_follow_what_if_decide_approve_and_see_the_history(
    chromium: Any, site: str, keys: Keys
) -> None:
    page = _sign_in(chromium, site, keys.tokens["agent"])
    page.get_by_label("Action").select_option("end")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"action=end"))
    rows = page.locator("table.list tbody tr")
    assert rows.count() > 0
    assert set(rows.locator("td:nth-child(5)").all_inner_texts()) == {"end"}
    customer_id = rows.first.locator("td").first.inner_text()
    rows.first.get_by_role("link").click()
    page.wait_for_url(f"{site}/web/customers/{customer_id}")
    assert page.get_by_role("heading", name=re.compile(f"Customer {customer_id}")).is_visible()

    page.get_by_label("Offer", exact=True).select_option("training")
    page.get_by_label("Unit cost").fill("400")
    page.get_by_role("button", name="Recompute").click()
    result = page.locator("#what-if-result")
    result.wait_for()
    assert "With only training at unit cost 400" in result.inner_text()
    assert page.locator(".what-if-action").inner_text() in ("retain", "compensate", "end")

    page.get_by_label("What the customer asked for").fill("Account review after escalations")
    page.get_by_label("Where (branch, channel, site)").fill("Phone")
    page.get_by_label("Authority used").fill("front_line: none, escalated to the director")
    page.get_by_label("Outcome").fill("Escalated for the end decision")
    page.get_by_label("Offer made").select_option("training")
    page.get_by_label("What happened").select_option("declined")
    page.get_by_label("Its cost if accepted").fill("900")
    page.get_by_role("button", name="Record decision").click()
    page.wait_for_url(re.compile(r"done=decision"))
    assert page.get_by_role("status").first.inner_text() == "Decision recorded."
    history = page.locator("#history").inner_text()
    assert "Account review after escalations" in history
    assert re.search(r"Offer training on \d{4}-\d{2}-\d{2}: declined, cost 900", history)
    page.close()

    director = _sign_in(chromium, site, keys.tokens["director"])
    director.get_by_role("link", name="Approvals").click()
    director.get_by_role("link", name=re.compile("^Director")).click()
    row = director.locator("table.list tbody tr", has_text=customer_id)
    while row.count() == 0:  # the customer may be on a later page of the queue
        director.get_by_role("link", name="Next").click()
        row = director.locator("table.list tbody tr", has_text=customer_id)
    row.locator("summary").click()
    row.get_by_label("Note (why)").fill("Certain losses; remedies refused")
    row.get_by_label("Outcome").fill("End at the notice date")
    row.get_by_role("button", name="Approve").click()
    director.wait_for_url(re.compile(r"done=approved"))
    director.goto(f"{site}/web/customers/{customer_id}")
    history = director.locator("#history").inner_text()
    assert "Approved by director (director; needed director)" in history
    assert "Account review after escalations" in history
    director.close()


def test_a_viewer_cannot_approve(chromium: Any, site: str, keys: Keys) -> None:
    page = _sign_in(chromium, site, keys.tokens["viewer"])
    page.get_by_role("link", name="Approvals").click()
    assert "You cannot approve" in page.locator("main").inner_text()
    assert page.get_by_role("button", name="Approve").count() == 0
    page.locator("table.list tbody tr").first.get_by_role("link").click()
    assert page.get_by_role("button", name="Record decision").count() == 0
    assert page.get_by_role("button", name="Approve").count() == 0
    page.close()


def test_a_scoped_key_sees_only_its_customers(
    chromium: Any, site: str, keys: Keys, own: Customer, other: Customer
) -> None:
    page = _sign_in(chromium, site, keys.tokens["am_agent"])
    page.get_by_label("Rows per page").select_option("200")
    page.get_by_role("button", name="Show").click()
    managers = set(page.locator("table.list tbody tr td:nth-child(4)").all_inner_texts())
    assert managers == {own.account_manager}
    options = page.get_by_label("Account manager").locator("option").all_inner_texts()
    assert other.account_manager not in options
    response = page.goto(f"{site}/web/customers/{other.customer_id}")
    assert response is not None and response.status == 404
    page.close()
