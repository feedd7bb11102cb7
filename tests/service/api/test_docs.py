"""The OpenAPI document is true to the code: every route and field described, errors as sent."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.deps import get_serving_model
from tests.service.api.support import AppFactory, Keys

PROTECTED = {
    "/v1/recommendations",
    "/v1/recommendations/table",
    "/v1/customers/{customer_id}/recommendation",
    "/v1/decisions",
    "/v1/model",
    "/v1/model/reload",
    "/v1/approvals",
    "/v1/approvals/decided",
    "/v1/customers/{customer_id}/what-if",
}


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def test_every_route_parameter_and_field_is_described(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary") and operation.get("description"), (method, path)
            for parameter in operation.get("parameters", []):
                assert parameter.get("description"), (path, parameter["name"])
    for name, schema in openapi["components"]["schemas"].items():
        assert schema.get("description"), name
        for field, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field}"


def test_bodies_carry_examples(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert schemas["RecommendationRequest"]["examples"][0]["customers"][0]["customer_id"]
    assert schemas["DecisionRequest"]["examples"][0]["requested"]


def test_documented_errors_match_what_the_routes_answer(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if path in PROTECTED:
                assert {"401", "503"} <= codes, (method, path)
                assert operation["security"] == [{"ApiKey": []}]
            else:
                assert "security" not in operation
            if method == "post" and path != "/v1/model/reload":
                assert {"400", "413", "422"} <= codes, (method, path)
    assert "403" in openapi["paths"]["/v1/decisions"]["post"]["responses"]
    assert "403" in openapi["paths"]["/v1/model/reload"]["post"]["responses"]
    assert {"403", "404", "409"} <= set(openapi["paths"]["/v1/approvals"]["post"]["responses"])
    assert (
        "404" in openapi["paths"]["/v1/customers/{customer_id}/recommendation"]["get"]["responses"]
    )


def test_422_schema_has_no_input_field(openapi: dict[str, Any]) -> None:
    item = openapi["components"]["schemas"]["ValidationError"]
    assert "input" not in item["properties"]
    assert set(item["required"]) == {"loc", "msg", "type"}


def test_a_bug_answers_json_500_with_the_request_id(make_app: AppFactory, keys: Keys) -> None:
    app = make_app()

    def broken() -> None:
        raise RuntimeError("a bug")

    app.dependency_overrides[get_serving_model] = broken
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(
            "/v1/model", headers={**keys.header("viewer"), "X-Request-ID": "bug-1"}
        )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-1"
    assert response.json() == {
        "detail": "internal error; quote the X-Request-ID header when reporting it"
    }
    assert "a bug" not in response.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_without_internet(client: TestClient, page: str) -> None:
    """Swagger UI came from a CDN: blank on a machine without internet (issue 15)."""
    html = client.get(page)
    assert html.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assets += re.findall(r"""url: ?["']([^"']+)["']""", html.text)
    assert assets, html.text
    assert not [url for url in assets if re.match(r"(https?:)?//", url)], assets
    for url in assets:
        served = client.get(url)
        assert served.status_code == 200, url
        assert served.content, url
