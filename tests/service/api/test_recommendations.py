"""POST /v1/recommendations and GET /v1/customers/{id}/recommendation as a client sees them."""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema_rs
import polars as pl
import pytest
from fastapi.testclient import TestClient

from features.contract import CONTRACT_TYPES, SEGMENTS
from model.policy import load_policy
from model.recommend import recommend
from service.api.feature_row import FEATURE_COLUMNS, FeatureRow
from service.api.schemas import EXAMPLE_FEATURES, MAX_BATCH
from service.settings import DEFAULT_POLICY
from tests.service.api.support import AS_OF, Customer, Keys, failing_loader, row_json, start

URL = "/v1/recommendations"


def body(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"as_of": AS_OF.isoformat(), "customers": list(rows)}


def post_raw(client: TestClient, keys: Keys, text: str, key: str = "viewer") -> Any:
    return client.post(
        URL, content=text.encode(), headers={**keys.header(key), "Content-Type": "application/json"}
    )


def test_request_model_is_the_feature_schema(features: pl.DataFrame) -> None:
    schema = FeatureRow.model_json_schema()
    assert list(schema["properties"]) == ["customer_id", "account_manager", *FEATURE_COLUMNS]
    assert FEATURE_COLUMNS == tuple(
        c for c in features.columns if c not in ("customer_id", "account_manager")
    )
    assert schema["properties"]["segment"]["enum"] == list(SEGMENTS)
    assert schema["properties"]["contract_type"]["enum"] == list(CONTRACT_TYPES)
    assert schema["properties"]["revenue_12m"]["minimum"] == 0
    assert schema["properties"]["tenure_days"]["minimum"] == 1
    assert "enum" not in schema["properties"]["region"]
    assert set(schema["required"]) == {"customer_id", *FEATURE_COLUMNS}
    assert schema["additionalProperties"] is False
    FeatureRow.model_validate(EXAMPLE_FEATURES)


def test_one_customer_gets_the_batch_functions_answer(
    client: TestClient, keys: Keys, features: pl.DataFrame, bundles: dict
) -> None:
    response = client.post(URL, json=body(row_json(features, 3)), headers=keys.header("viewer"))
    assert response.status_code == 200
    got = response.json()
    assert got["model_version"] == "1"
    assert got["policy_version"] == load_policy(DEFAULT_POLICY).version
    [rec] = got["recommendations"]
    expected = recommend(
        features.slice(3, 1).drop("account_manager"),
        bundles["1"],
        load_policy(DEFAULT_POLICY),
        as_of=AS_OF,
        model_version="1",
    ).row(0, named=True)
    assert rec["customer_id"] == expected["customer_id"]
    assert rec["action"] == expected["action"]
    assert rec["p_churn"] == pytest.approx(expected["p_churn"])
    assert rec["expected_values"]["retain"] == pytest.approx(expected["ev_retain"])
    assert rec["offer"]["kind"] == expected["offer_kind"]
    assert rec["reasons"] == expected["reasons"]
    assert rec["churn_drivers"] and all(isinstance(t, str) for t in rec["churn_drivers"])
    assert rec["as_of"] == AS_OF.isoformat()


def test_batch_answers_in_request_order(
    client: TestClient, keys: Keys, features: pl.DataFrame
) -> None:
    rows = [row_json(features, i) for i in (40, 7, 19, 2)]
    response = client.post(URL, json=body(*rows), headers=keys.header("viewer"))
    assert response.status_code == 200
    assert [r["customer_id"] for r in response.json()["recommendations"]] == [
        r["customer_id"] for r in rows
    ]


def test_full_batch_of_the_documented_limit_is_scored(
    client: TestClient, keys: Keys, features: pl.DataFrame
) -> None:
    rows = [row_json(features, i) for i in range(MAX_BATCH)]
    response = client.post(URL, json=body(*rows), headers=keys.header("viewer"))
    assert response.status_code == 200
    assert len(response.json()["recommendations"]) == MAX_BATCH


def test_response_validates_against_the_apps_own_openapi_schema(
    client: TestClient, keys: Keys, features: pl.DataFrame, own: Customer
) -> None:
    openapi = client.get("/openapi.json").json()

    def validator(name: str) -> Any:
        return jsonschema_rs.Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": openapi["components"]}
        )

    scored = client.post(
        URL, json=body(*(row_json(features, i) for i in range(50))), headers=keys.header("viewer")
    ).json()
    validator("RecommendationBatchPublic").validate(scored)
    stored = client.get(
        f"/v1/customers/{own.customer_id}/recommendation", headers=keys.header("viewer")
    ).json()
    validator("StoredRecommendationPublic").validate(stored)
    assert openapi["paths"][URL]["post"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/RecommendationBatchPublic"}


# --- 422: bad bodies, field by field, never echoing the input --------------------------------

SECRET = "Zanzibar-Logistics-77"


@pytest.mark.parametrize(
    ("change", "loc", "kind"),
    [
        ({"revenue_12m": -10.0}, ["revenue_12m"], "greater_than_equal"),
        ({"tenure_days": 0}, ["tenure_days"], "greater_than_equal"),
        ({"share_resolved_beyond_24h": 1.5}, ["share_resolved_beyond_24h"], "less_than_equal"),
        ({"segment": "galactic_empire"}, ["segment"], "literal_error"),
        ({"contract_type": "weekly"}, ["contract_type"], "literal_error"),
        ({"orders_12m": "many"}, ["orders_12m"], "int_type"),
        ({"orders_12m": 3.5}, ["orders_12m"], "int_type"),
        ({"revenue_12m": "1000"}, ["revenue_12m"], "float_type"),
        ({"region": ""}, ["region"], "string_too_short"),
        ({"revenue_12m": None}, ["revenue_12m"], "float_type"),
        ({"revenu_12m": 1.0}, ["revenu_12m"], "extra_forbidden"),
        ({"revenue_12m": 1e300}, ["revenue_12m"], "less_than_equal"),
    ],
)
def test_bad_fields_answer_422_at_the_field(
    client: TestClient, keys: Keys, features: pl.DataFrame, change: dict, loc: list[str], kind: str
) -> None:
    row = row_json(features, 0, customer_id=SECRET, **change)
    response = client.post(URL, json=body(row), headers=keys.header("viewer"))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "customers", 0, *loc]
    assert error["type"] == kind
    assert "input" not in error
    assert SECRET not in response.text and "galactic" not in response.text


def test_missing_field_is_named(client: TestClient, keys: Keys, features: pl.DataFrame) -> None:
    row = row_json(features, 0)
    del row["net_margin_12m"]
    response = client.post(URL, json=body(row), headers=keys.header("viewer"))
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "missing",
            "msg": "Field required",
            "loc": ["body", "customers", 0, "net_margin_12m"],
        }
    ]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_answer_422_not_500(
    client: TestClient, keys: Keys, features: pl.DataFrame, literal: str
) -> None:
    text = json.dumps(body(row_json(features, 0))).replace(
        '"revenue_12m": ' + json.dumps(features["revenue_12m"][0]), f'"revenue_12m": {literal}'
    )
    assert literal in text
    response = post_raw(client, keys, text)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error == {
        "type": "finite_number",
        "msg": "Input should be a finite number",
        "loc": ["body", "customers", 0, "revenue_12m"],
    }


def test_nan_in_a_nullable_field_is_refused_too(
    client: TestClient, keys: Keys, features: pl.DataFrame
) -> None:
    row = row_json(features, 0, order_trend=math.nan)
    response = post_raw(client, keys, json.dumps(body(row)))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "order_trend"


@pytest.mark.parametrize(
    ("text", "loc"),
    [
        ('{"as_of": "2025-01-01", "customers": [', ["body", 38]),
        ('{"as_of": "yesterday", "customers": []}', ["body", "as_of"]),
        ('{"customers": []}', ["body", "as_of"]),
        ("[1, 2, 3]", ["body"]),
    ],
)
def test_malformed_bodies_answer_422(
    client: TestClient, keys: Keys, text: str, loc: list[Any]
) -> None:
    response = post_raw(client, keys, text)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


def test_empty_and_oversized_batches_answer_422(
    client: TestClient, keys: Keys, features: pl.DataFrame
) -> None:
    empty = client.post(URL, json=body(), headers=keys.header("viewer"))
    assert empty.status_code == 422
    assert empty.json()["detail"][0]["type"] == "too_short"
    row = row_json(features, 0)
    too_many = [{**row, "customer_id": f"X{i}"} for i in range(MAX_BATCH + 1)]
    response = client.post(URL, json=body(*too_many), headers=keys.header("viewer"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "too_long"


def test_repeated_customer_ids_answer_422(
    client: TestClient, keys: Keys, features: pl.DataFrame
) -> None:
    row = row_json(features, 0)
    response = client.post(
        URL, json=body(row, row_json(features, 1), row), headers=keys.header("viewer")
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"]
    assert "rows [2] repeat" in error["msg"]


def test_cross_column_rule_of_the_feature_schema_answers_422(
    client: TestClient, keys: Keys, features: pl.DataFrame
) -> None:
    row = row_json(features, 0, orders_3m=50, orders_12m=10, customer_id=SECRET)
    response = client.post(
        URL, json=body(row_json(features, 1), row), headers=keys.header("viewer")
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "feature_rule",
            "loc": ["body", "customers", 1],
            "msg": "orders_3m must not be above orders_12m",
        }
    ]
    assert SECRET not in response.text


# --- 413: body size limit -------------------------------------------------------------------


def test_body_over_the_limit_answers_413_before_reading(
    make_app: Any, keys: Keys, features: pl.DataFrame
) -> None:
    with start(make_app(max_body_bytes=10_000)) as client:
        rows = [row_json(features, i) for i in range(20)]
        text = json.dumps(body(*rows))
        assert len(text) > 10_000
        response = post_raw(client, keys, text)
        assert response.status_code == 413
        assert response.json() == {
            "detail": "request body larger than 10,000 bytes; send at "
            "most 1,000 customers per request (use the batch "
            "command for more)"
        }
        assert response.headers["x-request-id"]
        # no Content-Length (chunked): counted while read
        chunks = [text[i : i + 4096].encode() for i in range(0, len(text), 4096)]
        streamed = client.post(
            URL,
            content=iter(chunks),
            headers={**keys.header("viewer"), "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        assert streamed.json()["detail"].startswith("request body larger than 10,000 bytes")
        small = client.post(URL, json=body(rows[0]), headers=keys.header("viewer"))
        assert small.status_code == 200


# --- 503: no model yet ----------------------------------------------------------------------


def test_no_model_answers_503_and_not_ready(
    make_app: Any, keys: Keys, features: pl.DataFrame, own: Customer
) -> None:
    with start(make_app(loader=failing_loader)) as client:
        response = client.post(URL, json=body(row_json(features, 0)), headers=keys.header("viewer"))
        assert response.status_code == 503
        assert response.json()["detail"].startswith("no model is loaded yet")
        assert response.headers["retry-after"] == "30"
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        assert "alias" not in ready.text  # reasons stay in the log, not on an open route
        assert client.get("/health/live").status_code == 200
        assert client.get("/v1/model", headers=keys.header("viewer")).status_code == 503
        # what needs no model keeps working
        stored = client.get(
            f"/v1/customers/{own.customer_id}/recommendation", headers=keys.header("viewer")
        )
        assert stored.status_code == 200
        # without a key it is still 401, not 503: nothing but health without a key
        assert client.post(URL, json=body(row_json(features, 0))).status_code == 401


# --- stored recommendations -----------------------------------------------------------------


def test_stored_recommendation_of_the_last_batch_run(
    client: TestClient, keys: Keys, own: Customer
) -> None:
    response = client.get(
        f"/v1/customers/{own.customer_id}/recommendation", headers=keys.header("viewer")
    )
    assert response.status_code == 200
    got = response.json()
    assert got["customer_id"] == own.customer_id
    assert got["recommendation_id"] == f"rec-{own.customer_id}"
    assert got["run_id"] == "batch-2025-01-01"
    assert got["model_version"] == "1"
    assert got["action"] in ("retain", "compensate", "end")


def test_unknown_customer_answers_404_with_a_helpful_message(
    client: TestClient, keys: Keys
) -> None:
    response = client.get("/v1/customers/NOPE-1/recommendation", headers=keys.header("viewer"))
    assert response.status_code == 404
    assert response.json() == {
        "detail": "no stored recommendation for customer 'NOPE-1': the "
        "id is unknown, was not in the last batch run, or is "
        "outside this key's scope"
    }


def test_over_long_customer_id_in_the_path_answers_422(client: TestClient, keys: Keys) -> None:
    response = client.get(
        f"/v1/customers/{'C' * 129}/recommendation", headers=keys.header("viewer")
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "customer_id"]
