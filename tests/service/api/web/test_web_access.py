"""Sign-in, sessions, CSRF and scope on the web page: nothing without a key, nothing of
another scope through lists, filters, search, export or a customer's page."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from service.api.keys import new_api_key
from service.web.sessions import SESSION_COOKIE, SessionStore
from tests.service.api.support import AppFactory, Customer, Keys, start
from tests.service.api.web.pages import csrf, customers_listed, sign_in


@pytest.fixture
def web(make_app: AppFactory) -> TestClient:
    with start(make_app()) as client:
        yield client


def test_every_page_sends_an_anonymous_visitor_to_sign_in(web: TestClient) -> None:
    for path in (
        "/web/",
        "/web/approvals",
        "/web/model",
        "/web/portfolio.csv",
        "/web/customers/C1",
    ):
        response = web.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/web/sign-in?next=")


def test_a_wrong_key_is_refused_and_a_right_one_opens_a_session(
    web: TestClient, keys: Keys
) -> None:
    refused = sign_in(web, "kw_not-a-key")
    assert refused.status_code == 401
    assert "That API key is not valid." in refused.text
    assert SESSION_COOKIE not in web.cookies
    signed_in = sign_in(web, keys.tokens["viewer"])
    assert signed_in.status_code == 200
    assert "Signed in as <strong>viewer</strong>" in signed_in.text
    assert signed_in.headers["content-security-policy"].startswith("default-src 'self'")


def test_sign_in_without_the_form_token_is_refused(web: TestClient, keys: Keys) -> None:
    response = web.post(
        "/web/sign-in", data={"api_key": keys.tokens["viewer"], "csrf_token": "forged"}
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in web.cookies


def test_sign_in_never_redirects_off_site(web: TestClient, keys: Keys) -> None:
    form = web.get("/web/sign-in")
    response = web.post(
        "/web/sign-in",
        data={"csrf_token": csrf(form.text), "api_key": keys.tokens["viewer"], "next": "//evil"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/web/"


def test_a_form_without_the_session_token_writes_nothing(
    web: TestClient, keys: Keys, own: Customer
) -> None:
    sign_in(web, keys.tokens["agent"])
    before = web.get(
        "/v1/decisions", params={"customer_id": own.customer_id}, headers=keys.header("agent")
    ).json()["decisions"]
    response = web.post(
        f"/web/customers/{own.customer_id}/decisions",
        data={"requested": "x", "place": "y", "authority_used": "z", "outcome": "w"},
    )
    assert response.status_code == 403
    history = web.get(
        "/v1/decisions", params={"customer_id": own.customer_id}, headers=keys.header("agent")
    )
    assert history.json()["decisions"] == before


def test_sign_out_ends_the_session(web: TestClient, keys: Keys) -> None:
    page = sign_in(web, keys.tokens["viewer"])
    web.post("/web/sign-out", data={"csrf_token": csrf(page.text)})
    assert web.get("/web/", follow_redirects=False).status_code == 303


def test_sessions_expire_when_idle_and_after_the_absolute_limit() -> None:
    _, entry = new_api_key("someone", "viewer")
    sessions = SessionStore(idle=timedelta(minutes=30), absolute=timedelta(hours=8))
    start_at = datetime(2026, 1, 1, 8, tzinfo=UTC)
    session = sessions.open(entry, start_at)
    assert sessions.touch(session.session_id, start_at + timedelta(minutes=29)) is not None
    assert sessions.touch(session.session_id, start_at + timedelta(minutes=60)) is None
    busy = sessions.open(entry, start_at)
    for minutes in range(20, 8 * 60, 20):  # used every 20 minutes, all day
        assert sessions.touch(busy.session_id, start_at + timedelta(minutes=minutes))
    assert sessions.touch(busy.session_id, start_at + timedelta(hours=8, minutes=1)) is None
    assert sessions.touch("unknown", start_at) is None


def test_a_scoped_key_sees_only_its_customers_everywhere(
    web: TestClient, keys: Keys, own: Customer, other: Customer
) -> None:
    sign_in(web, keys.tokens["am_agent"])
    page = web.get("/web/", params={"per_page": 200})
    listed = customers_listed(page.text)
    assert own.customer_id in listed
    assert other.customer_id not in listed
    # filters, search and export cannot reach another account manager's customers
    assert (
        customers_listed(web.get("/web/", params={"account_manager": other.account_manager}).text)
        == []
    )
    assert other.customer_id not in customers_listed(
        web.get("/web/", params={"q": other.customer_id}).text
    )
    assert f">{other.account_manager}<" not in page.text  # not even as a filter choice
    exported = list(csv.DictReader(io.StringIO(web.get("/web/portfolio.csv").text)))
    assert exported and {row["account_manager"] for row in exported} == {own.account_manager}
    assert web.get(f"/web/customers/{other.customer_id}").status_code == 404
    assert web.get(f"/web/customers/{own.customer_id}").status_code == 200


def test_the_export_is_the_current_list_in_its_order(web: TestClient, keys: Keys) -> None:
    sign_in(web, keys.tokens["viewer"])
    params = {"action": "compensate", "sort": "p_churn", "order": "desc"}
    exported = list(csv.DictReader(io.StringIO(web.get("/web/portfolio.csv", params=params).text)))
    page = web.get("/web/", params={**params, "per_page": 200})
    assert {row["action"] for row in exported} == {"compensate"}
    risks = [float(row["p_churn"]) for row in exported]
    assert risks == sorted(risks, reverse=True)
    shown = min(200, len(exported))
    assert customers_listed(page.text)[:shown] == [row["customer_id"] for row in exported][:shown]
    assert f"{len(exported):,} customers" in page.text


def test_the_model_page_shows_the_served_model(
    make_app: AppFactory, keys: Keys, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    empty = f"sqlite:///{tmp_path / 'empty-mlflow.db'}"
    MlflowClient(tracking_uri=empty).search_registered_models()  # creates the empty store
    with start(make_app(mlflow_tracking_uri=empty)) as client:
        sign_in(client, keys.tokens["viewer"])
        page = client.get("/web/model")
    assert page.status_code == 200
    assert "keepwise version 1" in page.text or "version 1" in page.text
    assert "Policy" in page.text
    assert "no champion or challenger yet" in page.text
    missing = f"sqlite:///{tmp_path / 'mistyped.db'}"
    with start(make_app(mlflow_tracking_uri=missing)) as client:
        sign_in(client, keys.tokens["viewer"])
        page = client.get("/web/model")
    assert page.status_code == 200 and "there is no MLflow store at" in page.text
    assert not (tmp_path / "mistyped.db").exists()


def test_the_customer_page_shows_the_money_and_the_what_if(
    web: TestClient, keys: Keys, own: Customer
) -> None:
    sign_in(web, keys.tokens["viewer"])
    page = web.get(f"/web/customers/{own.customer_id}")
    assert "Expected value of every action" in page.text
    assert "Value waterfall" in page.text
    assert "no CRM export is configured" in page.text  # no KEEPWISE_DATA_DIR in this app
    assert "Record decision" not in page.text  # a viewer reads only
    what_if = web.get(f"/web/customers/{own.customer_id}", params={"offer": "gift", "cost": "75"})
    assert "With only <strong>gift</strong> at unit cost 75" in what_if.text
    refused = web.get(f"/web/customers/{own.customer_id}", params={"offer": "gift", "cost": "x"})
    assert "the offer cost must be a number" in refused.text


def test_the_customer_page_reads_complaints_and_offers_from_the_export(
    make_app: AppFactory, keys: Keys, tmp_path: Path, api_world: Any
) -> None:
    complaints = api_world.tables["complaints"]
    api_world.tables["offers"].write_parquet(tmp_path / "offers.parquet")
    complaints.write_parquet(tmp_path / "complaints.parquet")
    counts = (
        complaints.group_by("customer_id")
        .len()
        .filter(pl.col("len") < 1000)  # under the page's cap: every complaint is drawn
        .sort("len", descending=True)
    )
    with start(make_app(data_dir=tmp_path)) as client:
        sign_in(client, keys.tokens["viewer"])
        for customer_id, count in counts.head(20).iter_rows():
            page = client.get(f"/web/customers/{customer_id}")
            if page.status_code == 404:  # not active at the scoring date
                continue
            assert f">{count} complaints, oldest left" in page.text
            late = complaints.filter(
                (pl.col("customer_id") == customer_id)
                & ((pl.col("resolved_at") - pl.col("opened_at")) > pl.duration(hours=24))
            ).height
            assert page.text.count('class="dot-late"') == late
            break
        else:
            pytest.fail("none of the 20 most complaining customers has a recommendation")


def test_exported_text_cannot_run_as_a_spreadsheet_formula() -> None:
    from service.web.pages import _csv_cell

    assert _csv_cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert _csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert _csv_cell("Anna Adler") == "Anna Adler"
    assert _csv_cell(-12.5) == -12.5  # numbers stay numbers
