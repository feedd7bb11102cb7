"""API keys: roles x routes, 401 vs 403, scoped keys (OWASP API1), key files and the helper."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from service.api.keys import (
    ApiKeyEntry,
    KeyConfigError,
    KeyRing,
    KeyScope,
    Role,
    hash_token,
    new_api_key,
    read_key_file,
)
from service.api.main import create_app
from service.settings import Settings
from tests.service.api.support import AS_OF, Customer, Keys, row_json

DECISION = {
    "requested": "A refund for the outage day",
    "occurred_at": "2025-01-14T10:30:00+01:00",
    "place": "Phone",
    "authority_used": "front_line: refund 120",
    "outcome": "Accepted",
}


def _call(
    client: TestClient, route: str, headers: dict[str, str], features: pl.DataFrame, own: Customer
) -> int:
    method, path = route.split(" ", 1)
    bodies: dict[str, Any] = {
        "POST /v1/recommendations": {
            "as_of": AS_OF.isoformat(),
            "customers": [row_json(features, own.index)],
        },
        "POST /v1/decisions": {"customer_id": own.customer_id, **DECISION},
    }
    path = path.replace("{customer_id}", own.customer_id)
    return client.request(method, path, json=bodies.get(route), headers=headers).status_code


ROUTES = [
    "GET /v1/customers/{customer_id}/recommendation",
    "POST /v1/recommendations",
    "GET /v1/decisions",
    "POST /v1/decisions",
    "GET /v1/model",
    "POST /v1/model/reload",
]
# expected status per role; 201 for a recorded decision
MATRIX = {
    "viewer": [200, 200, 200, 403, 200, 403],
    "agent": [200, 200, 200, 201, 200, 403],
    "admin": [200, 200, 200, 201, 200, 200],
}


@pytest.mark.parametrize("role", list(MATRIX))
def test_role_matrix(
    client: TestClient, keys: Keys, features: pl.DataFrame, own: Customer, role: str
) -> None:
    got = [_call(client, route, keys.header(role), features, own) for route in ROUTES]
    assert got == MATRIX[role]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("headers", "detail", "challenge"),
    [
        ({}, "missing API key: send 'Authorization: Bearer <key>'", 'Bearer realm="keepwise"'),
        (
            {"Authorization": "Basic dXNlcjpwYXNz"},
            "missing API key: send 'Authorization: Bearer <key>'",
            'Bearer realm="keepwise"',
        ),
        (
            {"Authorization": "Bearer kw_not-a-real-key"},
            "invalid API key",
            'Bearer realm="keepwise", error="invalid_token"',
        ),
    ],
)
def test_no_or_unknown_key_answers_401_with_a_challenge(
    client: TestClient,
    features: pl.DataFrame,
    own: Customer,
    route: str,
    headers: dict[str, str],
    detail: str,
    challenge: str,
) -> None:
    method, path = route.split(" ", 1)
    response = client.request(
        method, path.replace("{customer_id}", own.customer_id), headers=headers
    )
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"] == challenge


def test_403_names_the_role_needed(client: TestClient, keys: Keys) -> None:
    response = client.post("/v1/model/reload", headers=keys.header("agent"))
    assert response.status_code == 403
    assert response.json() == {"detail": "this API key has role 'agent'; this needs role 'admin'"}
    assert "www-authenticate" not in response.headers


def test_health_needs_no_key_and_docs_are_open(client: TestClient) -> None:
    assert client.get("/health/live").json() == {
        "status": "alive",
        "model_version": None,
        "detail": None,
    }
    assert client.get("/health/ready").json()["status"] == "ready"
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


def test_admin_routes_sit_on_their_own_router(client: TestClient) -> None:
    from service.api.routes import admin, recommendations

    assert [getattr(r, "path", None) for r in admin.router.routes] == ["/v1/model/reload"]
    assert admin.router.dependencies and not recommendations.router.dependencies
    reload_op = client.get("/openapi.json").json()["paths"]["/v1/model/reload"]["post"]
    assert reload_op["tags"] == ["admin"]
    assert reload_op["security"] == [{"ApiKey": []}]


# --- scoped keys: own customers only, every other answers 404 ------------------------------


def test_scoped_key_sees_its_own_customer_and_404_for_others(
    client: TestClient, keys: Keys, own: Customer, other: Customer
) -> None:
    for label in ("am_agent", "region_viewer"):
        mine = client.get(
            f"/v1/customers/{own.customer_id}/recommendation", headers=keys.header(label)
        )
        assert mine.status_code == 200
        theirs = client.get(
            f"/v1/customers/{other.customer_id}/recommendation", headers=keys.header(label)
        )
        unknown = client.get(
            "/v1/customers/NO-SUCH-CUSTOMER/recommendation", headers=keys.header(label)
        )
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["detail"].replace(other.customer_id, "X") == unknown.json()[
            "detail"
        ].replace("NO-SUCH-CUSTOMER", "X")


def test_scoped_key_scores_only_its_own_rows(
    client: TestClient, keys: Keys, features: pl.DataFrame, own: Customer, other: Customer
) -> None:
    def score(*rows: dict[str, Any]) -> Any:
        return client.post(
            "/v1/recommendations",
            headers=keys.header("am_agent"),
            json={"as_of": AS_OF.isoformat(), "customers": list(rows)},
        )

    assert score(row_json(features, own.index)).status_code == 200
    # the store knows the other customer: its owner wins over what the row claims
    claimed = score(row_json(features, other.index, account_manager=own.account_manager))
    assert claimed.status_code == 404
    assert claimed.json() == {"detail": f"customer(s) '{other.customer_id}' not found for this key"}
    mixed = score(row_json(features, own.index), row_json(features, other.index))
    assert mixed.status_code == 404


@pytest.mark.parametrize("label", ["am_agent", "region_viewer"])
def test_scoped_key_cannot_tell_an_unknown_customer_from_another_scopes(
    client: TestClient,
    keys: Keys,
    features: pl.DataFrame,
    own: Customer,
    other: Customer,
    label: str,
) -> None:
    """Defect 8: an unknown id answered 200 and another scope's 404, so ids leaked."""

    def score(customer_id: str) -> Any:
        row = row_json(
            features,
            other.index,
            customer_id=customer_id,
            account_manager=own.account_manager,
            region=own.region,
        )
        return client.post(
            "/v1/recommendations",
            headers=keys.header(label),
            json={"as_of": AS_OF.isoformat(), "customers": [row]},
        )

    theirs, unknown = score(other.customer_id), score("NEW-1")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"].replace(other.customer_id, "X") == unknown.json()[
        "detail"
    ].replace("NEW-1", "X")
    # a key without a scope scores a customer the store does not know
    unscoped = client.post(
        "/v1/recommendations",
        headers=keys.header("viewer"),
        json={
            "as_of": AS_OF.isoformat(),
            "customers": [row_json(features, 0, customer_id="NEW-1")],
        },
    )
    assert unscoped.status_code == 200


def test_scoped_key_records_and_lists_only_its_own_decisions(
    client: TestClient, keys: Keys, own: Customer, other: Customer
) -> None:
    headers = keys.header("am_agent")
    mine = client.post(
        "/v1/decisions", headers=headers, json={"customer_id": own.customer_id, **DECISION}
    )
    assert mine.status_code == 201
    assert mine.json()["recorded_by"] == "am_agent"
    for customer in (other.customer_id, "NO-SUCH-CUSTOMER"):
        refused = client.post(
            "/v1/decisions", headers=headers, json={"customer_id": customer, **DECISION}
        )
        assert refused.status_code == 404
        assert refused.json() == {"detail": f"customer '{customer}' not found for this key"}
    client.post(
        "/v1/decisions",
        headers=keys.header("agent"),
        json={"customer_id": other.customer_id, **DECISION},
    )
    listed = client.get("/v1/decisions", headers=headers).json()["decisions"]
    assert listed and {d["customer_id"] for d in listed} == {own.customer_id}
    foreign = client.get(
        "/v1/decisions", headers=headers, params={"customer_id": other.customer_id}
    )
    assert foreign.status_code == 200 and foreign.json()["decisions"] == []
    everyone = client.get(
        "/v1/decisions", headers=keys.header("viewer"), params={"customer_id": other.customer_id}
    ).json()["decisions"]
    assert everyone


def test_scoped_key_cannot_learn_whose_recommendation_an_id_is(
    client: TestClient, keys: Keys, own: Customer, other: Customer
) -> None:
    response = client.post(
        "/v1/decisions",
        headers=keys.header("am_agent"),
        json={
            "customer_id": own.customer_id,
            **DECISION,
            "recommendation_id": f"rec-{other.customer_id}",
            "followed_recommendation": True,
        },
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "store_rule",
            "loc": ["body", "recommendation_id"],
            "msg": "not a stored recommendation of this customer",
        }
    ]
    assert other.customer_id not in response.text


# --- key material ----------------------------------------------------------------------------


def test_new_api_key_makes_a_random_token_and_a_hashed_entry() -> None:
    token, entry = new_api_key("alice", "agent", KeyScope(account_manager="AM-007"))
    assert re.fullmatch(r"kw_[A-Za-z0-9_-]{43}", token)
    assert entry.sha256 == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert token not in entry.to_toml() and token not in entry.model_dump_json()
    assert (entry.name, entry.role, entry.account_manager, entry.region) == (
        "alice",
        Role.agent,
        "AM-007",
        None,
    )
    assert new_api_key("alice", "agent")[0] != token
    with pytest.raises(KeyConfigError, match="cannot make a key for 'bad name'"):
        new_api_key("bad name", "viewer")
    with pytest.raises(KeyConfigError):
        new_api_key("bob", "superuser")


def test_key_file_round_trip_and_authentication(tmp_path: Path) -> None:
    token, entry = new_api_key("alice", "admin", KeyScope(region='Zoë "Nord" 🚀\\'))
    path = tmp_path / "keys.toml"
    path.write_text(entry.to_toml())
    [read] = read_key_file(path)
    assert read == entry
    ring = KeyRing.from_sources(path, [])
    assert ring.authenticate(token) == entry
    assert ring.authenticate(token + "x") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[keys]]\nname = "a"\nrole = "viewer"\nsha256 = "abc"\n', r"keys\[0\]: sha256"),
        ('[[keys]]\nname = "a"\nrole = "root"\nsha256 = "' + "a" * 64 + '"\n', r"keys\[0\]: role"),
        (
            '[[keys]]\nname = "a"\nrole = "viewer"\nsha256 = "' + "a" * 64 + '"\ntoken = "x"\n',
            r"keys\[0\]: token: Extra inputs",
        ),
        ('[[key]]\nname = "a"\n', "unknown top-level key"),
        ("not toml ][", "cannot be read as TOML"),
    ],
)
def test_bad_key_files_stop_the_start(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(KeyConfigError, match=message):
        create_app(Settings(api_keys_file=path, database_url="sqlite://"))


def test_missing_key_file_and_duplicates_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="does not exist"):
        create_app(Settings(api_keys_file=tmp_path / "absent.toml", database_url="sqlite://"))
    _, entry = new_api_key("alice", "viewer")
    twin = ApiKeyEntry(name="alice", role=Role.admin, sha256="b" * 64)
    with pytest.raises(KeyConfigError, match=r"name given more than once: \['alice'\]"):
        create_app(Settings(api_keys=[entry, twin], database_url="sqlite://"))


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    token, entry = new_api_key("batch", "viewer")
    monkeypatch.setenv("KEEPWISE_API_KEYS", json.dumps([entry.model_dump(exclude_none=True)]))
    settings = Settings()
    assert (
        KeyRing.from_sources(settings.api_keys_file, settings.api_keys).authenticate(token) == entry
    )
