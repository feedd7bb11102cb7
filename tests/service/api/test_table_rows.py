"""A model trained on a wide table, served: its own rows in, the batch's recommendations out.

One small synthetic export (ids, a whole-number fee, a code column whose levels look numeric, a
0/1 flag, a boolean, tenure, a segment column, a planted leak, a free-text column the mapping
drops, the label) is trained with ``keepwise train --table`` into a registry once per module;
the tests serve it through the app factory and call the API as a user with that export would.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from typer.testing import CliRunner

from model.bundle import ModelBundle
from model.policy import load_policy
from model.registry import MlflowSettings, load_registered_bundle
from service.api.schemas import EXAMPLE_FEATURES, recommendation_from_row
from service.api.serving import load_serving_model
from service.cli import EXIT_USAGE
from service.cli import app as cli
from service.settings import Settings
from tests.service.api.support import AppFactory, Keys, serve_in_process, start

runner = CliRunner()
DEFAULT = load_policy(Path(__file__).resolve().parents[3] / "policies" / "default.toml")
NAME = "keepwise-mine"
TABLE = "/v1/recommendations/table"
MAPPING = """
description = "a synthetic export"
id = "Account"
revenue = "Fee"
margin_rate = 0.4
tenure = "Months"
segment = "Tier"
drop = ["Notes"]

[label]
column = "Left"
positive = "yes"
negative = "no"

[columns.Flag]
dtype = "categorical"

[columns.Autopay]
dtype = "boolean"
"""
READ = ["Account", "Fee", "Code", "Flag", "Autopay", "Months", "Tier", "Calls", "Usage"]
IGNORED = ["Closed", "Notes", "Left"]


@dataclass(frozen=True)
class Wide:
    """The trained model's registry and the export it was trained on."""

    folder: Path
    export: pl.DataFrame  # typed as generated (what a user's JSON holds)
    risk: np.ndarray  # the true churn probability of each row
    uri: str

    def settings(self, **changes: Any) -> dict[str, Any]:
        return {"mlflow_tracking_uri": self.uri, "model_name": NAME, **changes}

    def rows(self, index: slice | list[int], drop: tuple[str, ...] = ("Left",)) -> list[dict]:
        frame = self.export.drop(*drop)
        chosen = frame[index] if isinstance(index, slice) else frame[index]
        return chosen.to_dicts()


def _export(n: int = 900, seed: int = 5) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    calls = rng.poisson(2, n)
    months = rng.integers(0, 72, n)
    code = rng.choice(["01", "1", "B"], n)  # categorical, with no rule in the mapping
    risk = 1 / (1 + np.exp(-(-1.5 + 0.7 * calls - 0.04 * months + 0.8 * (code == "01"))))
    left = rng.random(n) < risk
    usage = rng.gamma(2.0, 10.0, n).round(2)
    blanks = rng.random(n) < 0.05
    frame = pl.DataFrame(
        {
            "Account": [f"A-{i:05d}" for i in range(n)],
            "Fee": rng.integers(20, 120, n),  # whole numbers: typed float64 all the same
            "Code": code,
            "Flag": rng.choice(["0", "1"], n),
            "Autopay": rng.random(n) < 0.5,
            "Months": months,
            "Tier": rng.choice(["Small Business", "Mid-Market", "enterprise"], n),
            "Calls": calls,
            "Usage": [None if blank else float(u) for blank, u in zip(blanks, usage, strict=True)],
            "Closed": np.where(left, "closed", "open"),  # the label by another name: a leak
            "Notes": [f"called on day {i}" for i in range(n)],
            "Left": np.where(left, "yes", "no"),
        }
    )
    return frame, risk


def _train(table: Path, mapping: Path, uri: str) -> None:
    """`keepwise train --table` as a user runs it (2 folds: the tests need a model, not CV)."""
    trained = runner.invoke(
        cli,
        ["train", "--table", str(table), "--mapping", str(mapping), "--cv", "2",
         "--tracking-uri", uri],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Wide:
    folder = tmp_path_factory.mktemp("wide")
    export, risk = _export()
    table, mapping = folder / "export.csv", folder / "mine.toml"
    export.write_csv(table)
    mapping.write_text(MAPPING)
    uri = f"sqlite:///{folder}/m.db"
    _train(table, mapping, uri)
    promoted = runner.invoke(cli, ["promote", "--model", NAME, "--tracking-uri", uri])
    assert promoted.exit_code == 0, promoted.output
    return Wide(folder, export, risk, uri)


@pytest.fixture
def table_app(make_app: AppFactory, wide: Wide) -> Any:
    return make_app(loader=load_serving_model, **wide.settings())


@pytest.fixture
def table_client(table_app: Any) -> Any:
    with start(table_app) as client:
        yield client


def _post(client: TestClient, keys: Keys, rows: list[dict], role: str = "viewer", **params: Any):
    return client.post(
        TABLE,
        headers=keys.header(role),
        params=params,
        json={"as_of": "2025-01-01", "customers": rows},
    )


def test_the_openapi_schema_lists_the_served_models_columns(
    table_client: TestClient, keys: Keys
) -> None:
    spec = table_client.get("/openapi.json").json()
    body = spec["paths"][TABLE]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/TableRecommendationRequest"
    row = spec["components"]["schemas"]["TableRow"]
    assert list(row["properties"]) == [*READ, *IGNORED]
    assert set(row["required"]) == set(READ)
    assert row["additionalProperties"] is False
    fields = row["properties"]
    assert fields["Fee"]["type"] == "number" and fields["Fee"]["minimum"] == 0  # revenue
    assert {"type": "integer"} in fields["Code"]["anyOf"]  # text, or its digits
    assert "`01`, `1`, `B`" in fields["Code"]["description"]
    assert {"type": "null"} in fields["Usage"]["anyOf"]  # blank cells as null
    assert "boolean" in json.dumps(fields["Autopay"])
    assert "leak guard" in fields["Closed"]["description"]  # accepted and ignored
    assert fields["Left"]["default"] is None
    assert "enterprise, mid_market" in fields["Tier"]["description"]
    described = spec["paths"][TABLE]["post"]["description"]
    assert f"model `{NAME}` version 1" in described and "`Calls`" in described
    # the documented example is a valid request
    example = spec["components"]["schemas"]["TableRecommendationRequest"]["examples"][0]
    answer = table_client.post(TABLE, headers=keys.header("viewer"), json=example)
    assert answer.status_code == 200, answer.text


def test_rows_get_what_keepwise_score_table_writes_for_them(
    wide: Wide, table_client: TestClient, keys: Keys
) -> None:
    chosen = list(range(0, 240, 3))
    table = wide.folder / "today.csv"
    wide.export.drop("Left")[chosen].write_csv(table)
    out = wide.folder / "today.parquet"
    scored = runner.invoke(
        cli,
        ["score", "--table", str(table), "--mapping", str(wide.folder / "mine.toml"),
         "--out", str(out), "--model", f"{NAME}@champion", "--as-of", "2025-01-01",
         "--tracking-uri", wide.uri],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    batch = pl.read_parquet(out)
    answer = _post(table_client, keys, wide.rows(chosen, drop=()))  # the label may come along
    assert answer.status_code == 200, answer.text
    online = answer.json()["recommendations"]
    assert [r["customer_id"] for r in online] == batch["customer_id"].to_list()
    actions = {r["action"] for r in online}
    assert {"retain", "compensate"} <= actions  # both kinds of answer are compared
    for served, row in zip(online, batch.iter_rows(named=True), strict=True):
        written = {
            **json.loads(json.dumps(recommendation_from_row(row), default=str)),
            "assumptions": row["assumptions"],
        }
        if served["action"] == "retain":  # the batch explains only customers it acts on
            assert written["churn_drivers"] == [] and len(served["churn_drivers"]) == 3
            served = {**served, "churn_drivers": []}
        assert served == written
    assert any("margin is assumed to be 40% of revenue" in a for a in online[0]["assumptions"])
    # the decisions follow the truth: high true risk is acted on more than low
    risk = wide.risk[chosen]
    acted = np.array([r["action"] != "retain" for r in online])
    assert (
        acted[risk >= np.quantile(risk, 0.75)].mean()
        > acted[risk <= np.quantile(risk, 0.25)].mean()
    )


def test_a_small_table_is_typed_as_the_training_table_was(
    wide: Wide, table_client: TestClient, keys: Keys
) -> None:
    """Five rows whose codes are all "01": read alone, they look like the number 1 (which
    would be the level "1"), so the batch reads them again with the training type."""
    rows = wide.export.filter(pl.col("Code") == "01").head(5).drop("Left")
    table = wide.folder / "five.csv"
    rows.write_csv(table)
    out = wide.folder / "five.parquet"
    scored = runner.invoke(
        cli,
        ["score", "--table", str(table), "--mapping", str(wide.folder / "mine.toml"),
         "--out", str(out), "--model", f"{NAME}@champion", "--drivers", "0",
         "--tracking-uri", wide.uri],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    served = _post(table_client, keys, rows.to_dicts(), drivers=0).json()["recommendations"]
    assert [r["p_churn"] for r in served] == pl.read_parquet(out)["p_churn"].to_list()
    as_other_code = _post(
        table_client, keys, [{**row, "Code": "1"} for row in rows.to_dicts()], drivers=0
    ).json()["recommendations"]
    assert [r["p_churn"] for r in as_other_code] != [r["p_churn"] for r in served]


def test_codes_sent_as_numbers_and_whole_floats_are_read_as_the_export_holds_them(
    wide: Wide, table_client: TestClient, keys: Keys
) -> None:
    row = wide.rows([3])[0]
    as_text = _post(table_client, keys, [{**row, "Flag": "1", "Calls": 2}])
    as_numbers = _post(table_client, keys, [{**row, "Flag": 1, "Calls": 2.0}])
    assert as_text.status_code == as_numbers.status_code == 200, as_numbers.text
    assert as_text.json() == as_numbers.json()


BAD_VALUES = [
    ("Fee", -1.0),
    ("Fee", "12"),
    ("Fee", None),
    ("Fee", 1e300),
    ("Calls", 2.5),
    ("Calls", "3"),
    ("Calls", True),
    ("Code", True),
    ("Code", 1.5),
    ("Autopay", "yes"),
    ("Months", -1),
    ("Account", "A\n1"),
    ("Account", None),
    ("Tier", None),
]


@pytest.mark.parametrize(("column", "value"), BAD_VALUES)
def test_a_bad_value_answers_422_naming_the_row_and_column(
    wide: Wide, table_client: TestClient, keys: Keys, column: str, value: Any
) -> None:
    rows = wide.rows([0, 1])
    rows[1] = {**rows[1], column: value}
    answer = _post(table_client, keys, rows)
    assert answer.status_code == 422, answer.text
    assert [problem["loc"] for problem in answer.json()["detail"]] == [
        ["body", "customers", 1, column]
    ]


def test_every_other_bad_request_answers_422_and_never_echoes_the_input(
    wide: Wide, table_client: TestClient, keys: Keys
) -> None:
    row = wide.rows([0])[0]
    header = {**keys.header("viewer"), "Content-Type": "application/json"}

    def problems(body: Any) -> list[tuple[tuple, str]]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = table_client.post(TABLE, headers=header, content=raw)
        assert answer.status_code == 422, answer.text
        assert "zebra-7" not in answer.text  # the values sent never come back
        return [(tuple(p["loc"]), p["type"]) for p in answer.json()["detail"]]

    body = {"as_of": "2025-01-01", "customers": [row]}
    missing = {k: v for k, v in row.items() if k != "Months"}
    assert problems({**body, "customers": [missing]}) == [
        (("body", "customers", 0, "Months"), "missing")
    ]
    assert problems({**body, "customers": [{**row, "Colour": "zebra-7"}]}) == [
        (("body", "customers", 0, "Colour"), "extra_forbidden")
    ]
    assert problems({**body, "customers": [{**row, "Tier": "zebra-7"}]}) == [
        (("body", "customers", 0, "Tier"), "string_pattern_mismatch")
    ]
    nan = json.dumps(body).replace('"Usage": ' + json.dumps(row["Usage"]), '"Usage": NaN')
    assert problems(nan.encode()) == [(("body", "customers", 0, "Usage"), "finite_number")]
    repeated = problems({**body, "customers": [row, row]})
    assert repeated == [(("body",), "value_error")]
    assert problems({**body, "customers": []})[0][0] == ("body", "customers")
    assert problems({"customers": [row]}) == [(("body", "as_of"), "missing")]
    assert problems({**body, "as_of": "2025-13-01"})[0][0] == ("body", "as_of")
    assert problems(b'{"as_of": "2025-01-01", "customers": [zebra-7')[0][1] == "json_invalid"
    not_utf8 = table_client.post(TABLE, headers=header, content=b'{"as_of": "\xff"}')
    assert not_utf8.status_code == 400


def test_each_route_sends_the_other_kind_of_row_elsewhere(
    table_client: TestClient, client: TestClient, keys: Keys, wide: Wide
) -> None:
    crm_rows = {"as_of": "2025-01-01", "customers": [EXAMPLE_FEATURES]}
    refused = table_client.post("/v1/recommendations", headers=keys.header("viewer"), json=crm_rows)
    assert refused.status_code == 409
    assert "POST /v1/recommendations/table" in refused.json()["detail"]
    elsewhere = _post(client, keys, wide.rows([0]))  # `client` serves a CRM model
    assert elsewhere.status_code == 409
    assert "send its feature rows" in elsewhere.json()["detail"]
    spec = client.get("/openapi.json").json()["components"]["schemas"]
    assert "No such model is served now" in spec["TableRecommendationRequest"]["description"]


def test_a_key_scoped_to_an_account_manager_scores_only_its_own_customers(
    table_client: TestClient, keys: Keys, wide: Wide
) -> None:
    answer = _post(table_client, keys, wide.rows([0]), role="am_agent")
    assert answer.status_code == 404
    assert "A-00000" in answer.json()["detail"]


def test_a_reload_to_another_kind_of_model_changes_the_documented_body(
    make_app: AppFactory, wide: Wide, keys: Keys, bundles: dict[str, ModelBundle]
) -> None:
    served: list[str] = []

    def loader(settings: Settings) -> Any:  # the wide model, then a CRM model
        if not served:
            served.append("wide")
            return load_serving_model(settings)
        from tests.service.api.support import serving_model

        return serving_model(bundles["1"], "7")

    with start(make_app(loader=loader, **wide.settings())) as client:
        before = client.get("/openapi.json").json()["components"]["schemas"]
        assert "TableRow" in before
        reloaded = client.post("/v1/model/reload", headers=keys.header("admin"))
        assert reloaded.status_code == 200, reloaded.text
        after = client.get("/openapi.json").json()["components"]["schemas"]
        assert "No such model" in after["TableRecommendationRequest"]["description"]
        assert _post(client, keys, wide.rows([0])).status_code == 409


def _save_as(wide: Wide, folder: Path, **changes: Any) -> Path:
    """The registered bundle saved to ``folder`` with ``changes`` (e.g. another horizon)."""
    bundle, _ = load_registered_bundle(MlflowSettings(tracking_uri=wide.uri, model_name=NAME))
    return dataclasses.replace(bundle, **changes).save(folder)


def test_a_reload_to_a_model_the_policy_does_not_price_keeps_the_old_one(
    make_app: AppFactory, wide: Wide, keys: Keys, tmp_path: Path
) -> None:
    folder = _save_as(wide, tmp_path / "v2")
    with start(make_app(loader=load_serving_model, model_path=str(folder))) as client:
        assert _post(client, keys, wide.rows([0])).status_code == 200
        _save_as(wide, folder, horizon_days=90)  # a 90-day model replaces the folder
        reloaded = client.post("/v1/model/reload", headers=keys.header("admin"))
        assert reloaded.status_code == 503
        said = " ".join(reloaded.json()["detail"].split())
        assert "the churn model's horizon is 90 days but policy" in said
        assert "still serving version v2" in said
        assert _post(client, keys, wide.rows([0])).status_code == 200


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
QUERY = {
    "drivers": {str(n) for n in range(11)},
    "drivers_method": {"leaf_shap", "saabas", "treeshap"},
}


def _breaks_the_spec(case: Any, request_model: Any) -> bool:
    """Whether the body or a declared query parameter breaks the served model's spec."""
    for name, allowed in QUERY.items():
        values = (case.query or {}).get(name)
        listed = values if isinstance(values, list | tuple) else [values]
        if values is not None and not {str(v) for v in listed} <= allowed:
            return True
    try:
        request_model.model_validate_json(json.dumps(case.body))
    except (ValidationError, TypeError, ValueError):
        return True
    return False


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_table_rows_get_documented_answers_and_no_500(
    table_app: Any, keys: Keys, wide: Wide, mode: GenerationMode
) -> None:
    """Generated bodies and parameters, valid and not: no 500, every answer as documented, and
    every body or parameter that breaks the served model's spec refused. (Unknown query
    parameters, which schemathesis also counts as breaking the spec, are left out: the API
    ignores them on every route.)"""
    served = load_serving_model(Settings(**wide.settings()))
    assert served.table is not None
    request_model = served.table.request_model
    schema = schemathesis.openapi.from_asgi("/openapi.json", table_app)
    operation = schema[TABLE]["POST"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=int(os.environ.get("KEEPWISE_FUZZ_EXAMPLES", "30")),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    def fuzz(case: Any) -> None:
        case.query = {k: v for k, v in (case.query or {}).items() if k in QUERY}
        case.headers = keys.header("admin")  # the route takes no other header
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        if _breaks_the_spec(case, request_model):
            assert response.status_code in (400, 422), (case.body, response.text)
        else:
            assert response.status_code == 200, (case.body, response.text)

    try:
        fuzz()
    finally:
        asgi.shutdown_lifespans()


def test_serve_refuses_a_model_whose_horizon_the_policy_does_not_price(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, wide: Wide, repo: Path
) -> None:
    folder = str(_save_as(wide, tmp_path / "quarterly-model", horizon_days=90))
    code, said = serve_in_process(monkeypatch, tmp_path, KEEPWISE_MODEL_PATH=folder)
    assert code == EXIT_USAGE
    assert "cannot serve: model bundle" in said
    assert (
        f"the churn model's horizon is 90 days but policy {DEFAULT.version} prices decisions "
        "over 12 months" in said
    )
    assert "Serve a fitting policy with --policy FILE" in said
    quarterly = str(repo / "policies" / "quarterly.toml")
    code, said = serve_in_process(
        monkeypatch, tmp_path, "--policy", quarterly, KEEPWISE_MODEL_PATH=folder
    )
    assert code == 0, said
    code, said = serve_in_process(monkeypatch, tmp_path, "--policy", "nowhere.toml")
    assert code == EXIT_USAGE and "--policy nowhere.toml is not a file" in said


def test_serve_refuses_a_wide_model_that_does_not_say_which_columns_it_takes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, wide: Wide
) -> None:
    registered = ModelBundle.load(_save_as(wide, tmp_path / "new"))
    summary = {k: v for k, v in registered.summary.items() if k != "wide_table"}
    folder = str(_save_as(wide, tmp_path / "old", summary=summary))
    code, said = serve_in_process(monkeypatch, tmp_path, KEEPWISE_MODEL_PATH=folder)
    assert code == EXIT_USAGE
    assert "was trained on a wide table (keepwise train --table) before keepwise recorded" in said
    code, said = serve_in_process(
        monkeypatch, tmp_path, "--model", f"{NAME}@champion", "--tracking-uri", wide.uri
    )
    assert code == 0, said  # the registered model records them


def test_a_table_without_ids_numbers_the_rows_and_says_so(
    tmp_path: Path, make_app: AppFactory, keys: Keys
) -> None:
    export, _ = _export(n=400, seed=9)
    export = export.drop("Account", "Fee")  # no id, no revenue: both assumed
    mapping = MAPPING.replace('id = "Account"\n', "").replace(
        'revenue = "Fee"', "assumed_monthly_revenue = 50.0"
    )
    table, mapping_file = tmp_path / "plain.csv", tmp_path / "plain.toml"
    export.write_csv(table)
    mapping_file.write_text(mapping)
    uri = f"sqlite:///{tmp_path}/m.db"
    _train(table, mapping_file, uri)
    app = make_app(loader=load_serving_model, mlflow_tracking_uri=uri, model_name="keepwise-plain",
                   model_alias="challenger")  # fmt: skip
    rows = export.drop("Left").head(3).to_dicts()
    with start(app) as client:
        answer = _post(client, keys, rows)
    assert answer.status_code == 200, answer.text
    served = answer.json()["recommendations"]
    assert [r["customer_id"] for r in served] == ["1", "2", "3"]
    said = " ".join(served[0]["assumptions"])
    assert "customer_id is the data row number" in said and "50.00 a month" in said
    assert "label is taken to cover 365 days" in said  # the mapping gives no horizon_days
    assert {r["monthly_revenue"] for r in served} == {50.0}


def test_the_mappings_label_window_is_the_models_horizon_and_the_policy_must_match(
    tmp_path: Path,
) -> None:
    export, _ = _export(n=400, seed=11)
    table, mapping_file = tmp_path / "quarter.csv", tmp_path / "quarter.toml"
    export.write_csv(table)
    mapping_file.write_text("horizon_days = 91\n" + MAPPING)  # "left within the quarter"
    uri = f"sqlite:///{tmp_path}/m.db"
    _train(table, mapping_file, uri)
    rows = tmp_path / "rows.csv"
    export.drop("Left").head(20).write_csv(rows)

    def score(*extra: str) -> Any:
        return runner.invoke(
            cli,
            ["score", "--table", str(rows), "--mapping", str(mapping_file),
             "--out", str(tmp_path / "out.parquet"), "--model", "keepwise-quarter@challenger",
             "--tracking-uri", uri, *extra],
        )  # fmt: skip

    refused = score()
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert "the churn model's horizon is 91 days" in " ".join(refused.output.split())
    quarterly = Path(__file__).resolve().parents[3] / "policies" / "quarterly.toml"
    priced = score("--policy", str(quarterly))
    assert priced.exit_code == 0, priced.output
    assert not any(
        "horizon_days" in text
        for text in pl.read_parquet(tmp_path / "out.parquet")["assumptions"][0]
    )
