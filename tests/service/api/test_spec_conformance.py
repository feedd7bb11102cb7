"""What the OpenAPI spec promises, the API does (issue 15, defect 10, found by fuzzing).

``as_of: 0`` and other numbers as dates are covered in ``test_bad_input.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.api.support import Keys

INTEGER_FEATURE = "complaints_12m"


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def _example_row(openapi: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = openapi["components"]["schemas"]["RecommendationRequest"]["examples"][0][
        "customers"
    ][0]
    return row


def test_a_whole_number_float_is_an_integer_as_the_spec_says(
    client: TestClient, keys: Keys, openapi: dict[str, Any]
) -> None:
    field = openapi["components"]["schemas"]["FeatureRow"]["properties"][INTEGER_FEATURE]
    assert "integer" in str(field)  # JSON Schema: 3.0 is an integer
    row = _example_row(openapi)

    def score(value: Any) -> Any:
        return client.post(
            "/v1/recommendations",
            headers=keys.header("viewer"),
            json={"as_of": "2025-01-01", "customers": [{**row, INTEGER_FEATURE: value}]},
        )

    as_int, as_float = score(int(row[INTEGER_FEATURE])), score(float(row[INTEGER_FEATURE]))
    assert as_int.status_code == as_float.status_code == 200, as_float.text
    assert as_int.json()["recommendations"] == as_float.json()["recommendations"]
    for value in (0.5, "1", True):
        refused = score(value)
        assert refused.status_code == 422
        assert [p["loc"] for p in refused.json()["detail"]] == [
            ["body", "customers", 0, INTEGER_FEATURE]
        ]


def test_the_documented_decision_example_is_accepted(
    client: TestClient, keys: Keys, openapi: dict[str, Any]
) -> None:
    example = openapi["components"]["schemas"]["DecisionRequest"]["examples"][0]
    answer = client.post("/v1/decisions", headers=keys.header("agent"), json=example)
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/decisions", {"GET", "HEAD", "POST"}),
        ("/v1/recommendations", {"POST"}),
        ("/v1/customers/C1/recommendation", {"GET", "HEAD"}),
    ],
)
def test_405_allow_lists_every_method_of_the_path(
    client: TestClient, keys: Keys, path: str, allowed: set[str]
) -> None:
    answer = client.request("DELETE", path, headers=keys.header("admin"))
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == allowed


def test_the_spec_states_the_uniqueness_rule_the_api_enforces(
    client: TestClient, keys: Keys, openapi: dict[str, Any]
) -> None:
    customers = openapi["components"]["schemas"]["RecommendationRequest"]["properties"]["customers"]
    assert customers["x-unique-by"] == "customer_id"
    assert "may appear only once" in customers["description"]
    row = _example_row(openapi)
    repeated = client.post(
        "/v1/recommendations",
        headers=keys.header("viewer"),
        json={"as_of": "2025-01-01", "customers": [row, row]},
    )
    assert repeated.status_code == 422
