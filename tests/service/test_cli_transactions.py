"""A transaction log (CDNOW) from the command line: train, import, promote, score."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from model.policy import load_policy
from service.cli import EXIT_USAGE, app

pytestmark = pytest.mark.slow
runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
QUARTERLY = str(REPO / "policies" / "quarterly.toml")


def _cdnow() -> Path:
    shared = Path(os.environ.get("KEEPWISE_SHARED_DATA", REPO.parent / "shared" / "data"))
    path = shared / "cdnow" / "CDNOW_sample.txt"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}; set KEEPWISE_SHARED_DATA")
    return path


def test_a_cdnow_log_trains_and_scores_from_the_cli(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    store = ["--tracking-uri", uri]
    trained = runner.invoke(
        app,
        [
            "train", "--transactions", str(_cdnow()), "--horizon-days", "90",
            "--policy", QUARTERLY, "--model-name", "cdnow", "--json", *store,
        ],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    run = json.loads(next(line for line in trained.stdout.splitlines() if line.startswith("{")))
    assert run["model_name"] == "cdnow" and 0.55 < run["metrics"]["roc_auc"] < 0.95
    assert "2,357 customers (CDNOW layout)" in " ".join(trained.stderr.split())

    export = tmp_path / "export"
    imported = runner.invoke(
        app, ["import-transactions", "--file", str(_cdnow()), "--out", str(export)]
    )
    assert imported.exit_code == 0, imported.output
    assert runner.invoke(app, ["promote", "--model", "cdnow", *store]).exit_code == 0
    out = tmp_path / "recs.parquet"
    scored = runner.invoke(
        app,
        [
            "score", "--data", str(export), "--out", str(out), "--model", "cdnow@champion",
            "--policy", QUARTERLY, "--no-publish", *store,
        ],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    recommendations = pl.read_parquet(out)
    assert recommendations.height == 2_357
    assert set(recommendations.get_column("action")) <= {"retain", "compensate", "end"}

    # the model's 90 days and the default policy's 12 months disagree: the command says why
    mismatch = runner.invoke(
        app,
        [
            "score", "--data", str(export), "--out", str(tmp_path / "x.parquet"),
            "--model", "cdnow@champion", "--no-publish", *store,
        ],
    )  # fmt: skip
    assert mismatch.exit_code == EXIT_USAGE
    text = " ".join(mismatch.output.split())
    default = load_policy(REPO / "policies" / "default.toml")
    expected = f"horizon is 90 days but policy {default.version} prices decisions over 12 months"
    assert expected in text
    assert not (tmp_path / "x.parquet").exists()


def test_train_refuses_a_horizon_the_policy_does_not_price(tmp_path: Path) -> None:
    refused = runner.invoke(
        app,
        ["train", "--transactions", str(_cdnow()), "--horizon-days", "90",
         "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
    )  # fmt: skip
    assert refused.exit_code == EXIT_USAGE
    assert "Train with --horizon-days 365" in " ".join(refused.output.split())


def test_a_non_contractual_export_needs_the_churn_definition(tmp_path: Path) -> None:
    """Trained as contractual (end_date), a log has no churner: the error says so."""
    refused = runner.invoke(
        app,
        ["train", "--transactions", str(_cdnow()), "--horizon-days", "90",
         "--policy", QUARTERLY, "--churn-definition", "contractual",
         "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
    )  # fmt: skip
    assert refused.exit_code != 0
    assert "no customer churned" in " ".join(refused.output.split())
