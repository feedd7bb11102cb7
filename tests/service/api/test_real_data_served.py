"""Issue 14's acceptance on real data: Telco (a wide table) and the CDNOW sample (a transaction
log) each get recommendations, written by ``keepwise score`` and served by the API, the same
for the same customers. Only public entry points: the CLI and the app over HTTP."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.api.schemas import recommendation_from_row
from service.api.serving import load_serving_model
from service.cli import EXIT_USAGE
from service.cli import app as cli
from tests.service.api.support import AppFactory, Keys, serve_in_process, start

pytestmark = pytest.mark.slow
runner = CliRunner()
REPO = Path(__file__).resolve().parents[3]
AS_OF = "2024-01-01"


def _shared(relative: str) -> Path:
    shared = Path(os.environ.get("KEEPWISE_SHARED_DATA", REPO.parent / "shared" / "data"))
    path = shared / relative
    if not path.is_file():
        pytest.skip(f"real data not found at {path}; set KEEPWISE_SHARED_DATA")
    return path


def _run(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _as_written(row: dict[str, Any]) -> dict[str, Any]:
    """A row of keepwise score's output in the API's JSON shape."""
    public = json.loads(json.dumps(recommendation_from_row(row), default=str))
    if "assumptions" in row:
        public["assumptions"] = row["assumptions"]
    return public


def _assert_same(served: list[dict[str, Any]], written: pl.DataFrame) -> None:
    """Every served recommendation is the one written, drivers aside for retained customers
    (the batch explains only those it acts on)."""
    by_id = {row["customer_id"]: row for row in written.iter_rows(named=True)}
    for recommendation in served:
        expected = _as_written(by_id[recommendation["customer_id"]])
        if recommendation["action"] == "retain":
            assert expected["churn_drivers"] == []
            recommendation = {**recommendation, "churn_drivers": []}
        assert recommendation == expected


def test_telco_is_served_by_the_api_as_keepwise_score_writes_it(
    tmp_path: Path, make_app: AppFactory, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    telco = _shared("telco/Telco-Customer-Churn.csv")
    mapping = str(REPO / "mappings" / "telco.toml")
    uri = f"sqlite:///{tmp_path}/m.db"
    _run("train", "--table", str(telco), "--mapping", mapping, "--tracking-uri", uri)
    _run("promote", "--model", "keepwise-telco", "--tracking-uri", uri)
    out = tmp_path / "telco.parquet"
    _run(
        "score", "--table", str(telco), "--mapping", mapping, "--out", str(out),
        "--model", "keepwise-telco@champion", "--as-of", AS_OF, "--tracking-uri", uri,
    )  # fmt: skip
    written = pl.read_parquet(out)
    # the export's rows as a user sends them: read with types, a blank TotalCharges as null
    export = pl.read_csv(telco, schema_overrides={"TotalCharges": pl.String}).with_columns(
        pl.col("TotalCharges").str.strip_chars().cast(pl.Float64, strict=False)
    )
    blanks = export.filter(pl.col("TotalCharges").is_null())
    chosen = pl.concat([blanks, export.gather_every(25)])
    app = make_app(loader=load_serving_model, mlflow_tracking_uri=uri, model_name="keepwise-telco")
    with start(app) as client:
        served = _post_in_batches(client, keys, "/v1/recommendations/table", chosen.to_dicts())
        columns = client.get("/openapi.json").json()["components"]["schemas"]["TableRow"]
    assert len(served) == chosen.height == 11 + 282
    assert {r["action"] for r in served} >= {"retain", "compensate"}
    _assert_same(served, written)
    assert "margin is assumed to be 30% of revenue" in " ".join(served[0]["assumptions"])
    assert set(columns["required"]) == set(export.columns) - {"Churn"}
    code, said = serve_in_process(
        monkeypatch, tmp_path, "--model", "keepwise-telco@champion", "--tracking-uri", uri
    )
    assert code == 0, said


def test_the_cdnow_sample_is_served_by_the_api_as_keepwise_score_writes_it(
    tmp_path: Path, make_app: AppFactory, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _shared("cdnow/CDNOW_sample.txt")
    quarterly = str(REPO / "policies" / "quarterly.toml")
    uri = f"sqlite:///{tmp_path}/m.db"
    _run(
        "train", "--transactions", str(log), "--horizon-days", "90", "--policy", quarterly,
        "--model-name", "cdnow", "--tracking-uri", uri,
    )  # fmt: skip
    _run("promote", "--model", "cdnow", "--tracking-uri", uri)
    export = tmp_path / "export"
    _run("import-transactions", "--file", str(log), "--out", str(export))
    out = tmp_path / "recs.parquet"
    as_of = "1998-07-01"
    _run(
        "score", "--data", str(export), "--out", str(out), "--as-of", as_of,
        "--model", "cdnow@champion", "--policy", quarterly, "--no-publish", "--tracking-uri", uri,
    )  # fmt: skip
    features = tmp_path / "features.parquet"
    _run("features", "--data", str(export), "--as-of", as_of, "--out", str(features))
    rows = pl.read_parquet(features).gather_every(8).to_dicts()
    app = make_app(
        loader=load_serving_model,
        mlflow_tracking_uri=uri,
        model_name="cdnow",
        policy=Path(quarterly),
    )
    with start(app) as client:
        served = _post_in_batches(client, keys, "/v1/recommendations", rows, as_of=as_of)
    assert len(served) == len(rows) > 250
    assert {r["horizon_months"] for r in served} == {3}
    _assert_same(served, pl.read_parquet(out))
    # served with the default 12-month policy, the 90-day model is refused before serving
    code, said = serve_in_process(
        monkeypatch, tmp_path, "--model", "cdnow@champion", "--tracking-uri", uri
    )
    assert code == EXIT_USAGE
    assert "the churn model's horizon is 90 days but policy" in said
    code, said = serve_in_process(
        monkeypatch,
        tmp_path,
        "--model", "cdnow@champion", "--tracking-uri", uri, "--policy", quarterly,
    )  # fmt: skip
    assert code == 0, said


def _post_in_batches(
    client: TestClient, keys: Keys, path: str, rows: list[dict[str, Any]], as_of: str = AS_OF
) -> list[dict[str, Any]]:
    served: list[dict[str, Any]] = []
    for start_at in range(0, len(rows), 100):
        answer = client.post(
            path,
            headers=keys.header("viewer"),
            json={"as_of": as_of, "customers": rows[start_at : start_at + 100]},
        )
        assert answer.status_code == 200, answer.text
        served += answer.json()["recommendations"]
    return served
