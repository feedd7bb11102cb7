"""The API's online scoring path answers exactly what the batch command stores.

``POST /v1/recommendations`` scores with :func:`model.recommend.recommend_records` (plain Python
and numpy, a millisecond per customer); the nightly batch scores with
:func:`model.recommend.recommend` (polars). Managers compare the two, so they must agree to the
last word of every reason.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from model.bundle import ModelBundle
from model.explain import explain_rows
from model.policy import Exploration, load_policy
from model.recommend import recommend, recommend_records
from service.api.feature_row import FEATURE_DTYPES, FeatureRow, rows_to_records
from service.api.routes.recommendations import INLINE_ROWS
from service.api.schemas import recommendation_payload
from service.api.scoring import score_rows
from service.settings import DEFAULT_POLICY
from tests.service.api.support import AS_OF, Keys, loader_of, row_json, serving_model, start


def _same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            _same(got[key], want[key], f"{where}.{key}")
    else:
        assert got == want, where


def test_online_recommendations_equal_the_batch_for_every_customer(
    features: pl.DataFrame, bundles: dict[str, ModelBundle]
) -> None:
    serving = serving_model(bundles["1"], "1")
    table = features.select(list(FEATURE_DTYPES))
    rows = [FeatureRow.model_validate(row) for row in table.to_dicts()]
    online = [
        recommendation_payload(row)
        for row in recommend_records(
            rows_to_records(rows),
            serving.bundle,
            serving.policy,
            as_of=AS_OF,
            model_version="1",
        )
    ]
    batch = [
        recommendation_payload(row)
        for row in recommend(
            table, serving.bundle, serving.policy, as_of=AS_OF, model_version="1"
        ).iter_rows(named=True)
    ]
    assert len(online) == len(batch) == table.height > 1_000
    for got, want in zip(online, batch, strict=True):
        _same(got, want, want["customer_id"])
    actions = {payload["action"] for payload in online}
    assert actions >= {"retain", "compensate"}, actions


@pytest.mark.parametrize("tenure_days", [365, 730])
def test_whole_years_of_tenure_are_whole_months_on_both_paths(
    features: pl.DataFrame, bundles: dict[str, ModelBundle], tenure_days: int
) -> None:
    # polars divides by a constant via its reciprocal on 2+ rows: 365 days came out as
    # 11.999999999999998 months in the batch, short of the 12-month guard-rail for "end"
    serving = serving_model(bundles["1"], "1")
    table = features.select(list(FEATURE_DTYPES)).head(30).with_columns(tenure_days=tenure_days)
    batch = recommend(table, serving.bundle, serving.policy, as_of=AS_OF, model_version="1")
    assert batch["months_of_history"].to_list() == [tenure_days / 365 * 12] * 30
    online = recommend_records(
        table.to_dicts(), serving.bundle, serving.policy, as_of=AS_OF, model_version="1"
    )
    for got, want in zip(online, batch.iter_rows(named=True), strict=True):
        _same(recommendation_payload(got), recommendation_payload(want), want["customer_id"])
    assert not any("11 months" in str(row["blocked_reason"]) for row in online)


def test_score_rows_answers_in_request_order_with_the_served_versions(
    features: pl.DataFrame, bundles: dict[str, ModelBundle]
) -> None:
    serving = serving_model(bundles["2"], "2")
    table = features.select(list(FEATURE_DTYPES)).head(25).reverse()
    rows = [FeatureRow.model_validate(row) for row in table.to_dicts()]
    body = score_rows(rows, AS_OF, serving)
    assert body.model_version == "2"
    assert [r.customer_id for r in body.recommendations] == table["customer_id"].to_list()
    batch = recommend(
        table, serving.bundle, serving.policy, as_of=AS_OF, model_version="2"
    ).iter_rows(named=True)
    for got, want in zip(body.recommendations, batch, strict=True):
        _same(got.model_dump(mode="json"), recommendation_payload(want), got.customer_id)


@pytest.mark.parametrize("size", [1, INLINE_ROWS, INLINE_ROWS + 1, 40])
def test_http_answers_equal_the_batch_on_both_paths(
    client: TestClient,
    keys: Keys,
    features: pl.DataFrame,
    bundles: dict[str, ModelBundle],
    size: int,
) -> None:
    # up to INLINE_ROWS rows are scored on the event loop (TreeSHAP on the explainer thread),
    # more in the thread pool; both must answer exactly what the batch command stores
    indices = list(range(100, 100 + 3 * size, 3))
    rows = [row_json(features, i) for i in indices]
    response = client.post(
        "/v1/recommendations",
        json={"as_of": AS_OF.isoformat(), "customers": rows},
        headers=keys.header("viewer"),
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    got = response.json()["recommendations"]
    table = features[indices].select(list(FEATURE_DTYPES))
    batch = recommend(
        table, bundles["1"], load_policy(DEFAULT_POLICY), as_of=AS_OF, model_version="1"
    )
    assert len(got) == size
    for answer, want in zip(got, batch.iter_rows(named=True), strict=True):
        _same(answer, recommendation_payload(want), want["customer_id"])


@pytest.mark.parametrize("size", [1, INLINE_ROWS + 1])
def test_drivers_parameter_sets_how_many_drivers_are_explained(
    client: TestClient, keys: Keys, features: pl.DataFrame, size: int
) -> None:
    rows = [row_json(features, i) for i in range(200, 200 + size)]
    url = "/v1/recommendations"
    body = {"as_of": AS_OF.isoformat(), "customers": rows}

    def answer(query: str) -> list[dict[str, Any]]:
        response = client.post(url + query, json=body, headers=keys.header("viewer"))
        assert response.status_code == 200, response.text
        return response.json()["recommendations"]

    default, none, five = answer(""), answer("?drivers=0"), answer("?drivers=5")
    assert all(len(r["churn_drivers"]) == 3 for r in default)
    assert all(r["churn_drivers"] == [] for r in none)
    assert all(len(r["churn_drivers"]) == 5 for r in five)
    for a, b, c in zip(default, none, five, strict=True):
        assert c["churn_drivers"][:3] == a["churn_drivers"]
        # the decision itself does not depend on how much is explained
        for key in ("action", "expected_values", "offer", "reasons", "approval_tier"):
            assert a[key] == b[key] == c[key]
    for bad in ("-1", "11", "many"):
        response = client.post(url + f"?drivers={bad}", json=body, headers=keys.header("viewer"))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "drivers"]


@pytest.mark.parametrize("size", [1, INLINE_ROWS + 1])
def test_drivers_method_chooses_how_drivers_are_attributed_on_both_paths(
    client: TestClient,
    keys: Keys,
    features: pl.DataFrame,
    bundles: dict[str, ModelBundle],
    size: int,
) -> None:
    # one row: on the event loop (TreeSHAP on the explainer thread); more: in the thread pool.
    # Customers whose Saabas and TreeSHAP drivers differ, so the method visibly matters.
    table = features.select(list(FEATURE_DTYPES))
    churn = bundles["1"].churn
    saabas, exact = (explain_rows(churn, table, 3, method=m) for m in ("saabas", "treeshap"))
    named = [
        i
        for i, (a, b) in enumerate(zip(saabas, exact, strict=True))
        if [d.feature for d in a] != [d.feature for d in b]
    ]
    indices = named[:size]
    body = {"as_of": AS_OF.isoformat(), "customers": [row_json(features, i) for i in indices]}
    table = features[indices].select(list(FEATURE_DTYPES))
    policy = load_policy(DEFAULT_POLICY)
    answers = {}
    for method in ("", "leaf_shap", "saabas", "treeshap"):
        query = f"?drivers_method={method}" if method else ""
        response = client.post(
            "/v1/recommendations" + query, json=body, headers=keys.header("viewer")
        )
        assert response.status_code == 200, response.text
        answers[method] = got = response.json()["recommendations"]
        batch = recommend(
            table,
            bundles["1"],
            policy,
            as_of=AS_OF,
            model_version="1",
            drivers_method=method or None,
        )
        for answer, want in zip(got, batch.iter_rows(named=True), strict=True):
            _same(answer, recommendation_payload(want), f"{method} {want['customer_id']}")
    assert answers[""] == answers["leaf_shap"]
    assert all(
        a["churn_drivers"] != b["churn_drivers"]
        for a, b in zip(answers["saabas"], answers["treeshap"], strict=True)
    )
    response = client.post(
        "/v1/recommendations?drivers_method=shap", json=body, headers=keys.header("viewer")
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "drivers_method"]


def test_a_model_without_a_leaf_shap_table_serves_saabas_drivers(
    make_app: Any, keys: Keys, features: pl.DataFrame, bundles: dict[str, ModelBundle]
) -> None:
    bundle = bundles["1"]
    older = dataclasses.replace(bundle, churn=dataclasses.replace(bundle.churn, leaf_shap=None))
    body = {"as_of": AS_OF.isoformat(), "customers": [row_json(features, 5)]}
    with start(make_app(loader=loader_of(older, "1"))) as client:
        default = client.post("/v1/recommendations", json=body, headers=keys.header("viewer"))
        saabas = client.post(
            "/v1/recommendations?drivers_method=saabas", json=body, headers=keys.header("viewer")
        )
        assert default.status_code == saabas.status_code == 200
        assert default.json() == saabas.json()
        refused = client.post(
            "/v1/recommendations?drivers_method=leaf_shap", json=body, headers=keys.header("viewer")
        )
    assert refused.status_code == 422
    detail = refused.json()["detail"][0]
    assert detail["loc"] == ["query", "drivers_method"]
    assert detail["msg"] == (
        "model version 1 has no leaf_shap table (trained before it existed); use "
        "drivers_method=saabas or treeshap, or retrain"
    )


def test_start_up_and_reload_keep_the_loaded_heap_out_of_garbage_collection(
    make_app: Any, keys: Keys
) -> None:
    # a full collection over the ~400k objects alive after start-up stalled requests ~160 ms
    gc.unfreeze()
    with start(make_app()) as client:
        assert client.get("/health/ready").status_code == 200
        assert gc.get_freeze_count() > 10_000
        gc.unfreeze()
        reloaded = client.post("/v1/model/reload", headers=keys.header("admin"))
        assert reloaded.status_code == 200
        assert gc.get_freeze_count() > 10_000


def test_the_api_and_the_batch_draw_the_same_experiments_and_hash_the_same_inputs(
    features: pl.DataFrame, bundles: dict[str, ModelBundle]
) -> None:
    # a policy that explores a third of the customers, so that many are explored
    base = serving_model(bundles["1"], "1")
    policy = dataclasses.replace(
        base.policy, exploration=Exploration(share=0.3, max_tier="manager")
    )
    serving = dataclasses.replace(base, policy=policy)
    table = features.select(list(FEATURE_DTYPES)).head(400)
    rows = [FeatureRow.model_validate(row) for row in table.to_dicts()]
    api = score_rows(rows, AS_OF, serving).recommendations
    batch = recommend(table, serving.bundle, policy, as_of=AS_OF, model_version="1")
    replay = ("action", "greedy_action", "propensity", "explored", "inputs_sha256")
    for got, want in zip(api, batch.iter_rows(named=True), strict=True):
        public = got.model_dump(mode="json")
        assert {name: public[name] for name in replay} == {name: want[name] for name in replay}
        assert public["offer"]["kind"] == want["offer_kind"]
        assert public["model_version"] == "1"
        assert len(public["inputs_sha256"]) == 64
    explored = batch.filter("explored")
    assert explored.height > 60
    assert (explored["propensity"] < 0.3).all()
    assert (
        batch.filter(~pl.col("explored") & (pl.col("action") != "end"))["propensity"] == 0.7
    ).all()
    # the hash is of the inputs: one more unit of revenue changes it, and nothing else does
    changed = table.with_columns(
        pl.col("revenue_12m") + pl.when(pl.int_range(400) == 0).then(1.0).otherwise(0.0)
    )
    again = recommend(changed, serving.bundle, policy, as_of=AS_OF, model_version="2")
    same = batch["inputs_sha256"] == again["inputs_sha256"]
    assert not same[0] and same[1:].all()
