"""keepwise monitor as a data scientist runs it a horizon after a nightly batch: quiet on an
unchanged world, loud on a planted drift and a planted miscalibration, clear on bad input."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from experiments.synthetic.world import World
from features.config import FeatureConfig
from features.labels import build_labels
from features.loader import load_tables
from model.registry import MlflowSettings, log_and_register, promote
from service.cli import (
    EXIT_CODES,
    EXIT_INVALID_DATA,
    EXIT_NOT_PUBLISHED,
    EXIT_OK,
    EXIT_USAGE,
    app,
)
from service.commands import monitor as monitor_module
from service.storage import Store
from service.storage.records import DecisionReport
from tests.service.jobs.conftest import write_export

pytestmark = pytest.mark.slow
runner = CliRunner()
AS_OF = "2025-01-01"
EXIT_RETRAIN = 6


@pytest.fixture(scope="module")
def registry(trained, tmp_path_factory) -> str:
    """A tracking store whose champion (version 1) is the small world's model."""
    root = tmp_path_factory.mktemp("registry")
    settings = MlflowSettings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    log_and_register(
        trained.bundle.save(root / "bundle"),
        settings=settings,
        params={},
        metrics={"empc": 1.0},
        tags={},
    )
    promote(settings)
    return str(settings.tracking_uri)


@pytest.fixture(scope="module")
def unchanged_export(world: World, tmp_path_factory) -> Path:
    """A fresh world from the same simulator as the training world (other customers, other
    draws): what the company looks like when nothing has changed. Read-only."""
    return write_export(world, tmp_path_factory.mktemp("unchanged"))


def score(registry: str, data: Path, out: Path, *extra: str):
    result = runner.invoke(
        app,
        [
            "score",
            "--data",
            str(data),
            "--out",
            str(out),
            "--as-of",
            AS_OF,
            "--drivers",
            "0",
            "--tracking-uri",
            registry,
            *extra,
        ],
    )
    assert result.exit_code == EXIT_OK, result.output
    return out


def monitor(registry: str, scores: Path, data: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "monitor",
            "--scores",
            str(scores),
            "--data",
            str(data),
            "--tracking-uri",
            registry,
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def unchanged(registry, unchanged_export, tmp_path_factory) -> tuple[Path, str]:
    """The batch run on the unchanged world, published to a store: (output, store URL)."""
    folder = tmp_path_factory.mktemp("unchanged-run")
    database = f"sqlite:///{folder / 'keepwise.db'}"
    out = score(registry, unchanged_export, folder / "recs.parquet", "--database-url", database)
    return out, database


def copy_run(scores: Path, target: Path, change=None, summary_change=None) -> Path:
    """The run's output and summary under another name, optionally altered."""
    rows = pl.read_parquet(scores)
    (change or (lambda frame: frame))(rows).write_parquet(target)
    summary = json.loads(scores.with_name(scores.stem + ".summary.json").read_text())
    summary = (summary_change or (lambda s: s))(summary)
    target.with_name(target.stem + ".summary.json").write_text(json.dumps(summary))
    return target


def test_an_unchanged_world_stays_quiet_and_is_recorded(registry, unchanged, unchanged_export):
    scores, _ = unchanged
    result = monitor(registry, scores, unchanged_export, "--no-decisions")
    assert result.exit_code == EXIT_OK, result.output
    assert "no retraining needed" in result.output
    assert "Realised against predicted churn by risk bin" in result.output
    report = json.loads(scores.with_name("recs.monitoring.json").read_text())
    assert report["retrain_recommended"] is False and report["reasons"] == []
    assert report["calibration_error"] < 0.05 and report["drift"]["shifted_features"] == []
    assert {row["segment"] for row in report["by_segment"]} == {
        "enterprise",
        "mid_market",
        "small_business",
        "public_sector",
    }
    assert len(report["deciles"]) == 10 and report["calibration_bins"] == 10
    assert scores.with_name("recs.calibration.png").stat().st_size > 10_000
    # the monitoring run is linked to the model version and to the scoring run it judged
    summary = json.loads(scores.with_name("recs.summary.json").read_text())
    run = MlflowClient(tracking_uri=registry).get_run(report["mlflow_run_id"])
    assert run.data.tags["model_version"] == "1"
    assert run.data.params["model_uri"] == "models:/keepwise/1"
    assert run.data.tags["scoring_mlflow_run_id"] == summary["mlflow_run_id"]
    assert run.data.tags["retrain_recommended"] == "no"
    assert run.data.metrics["calibration_error"] == pytest.approx(report["calibration_error"])


def test_a_planted_drift_is_flagged_by_the_feature_name(registry, unchanged_export, tmp_path):
    drifted = tmp_path / "drifted"
    shutil.copytree(unchanged_export, drifted)
    orders = pl.read_parquet(drifted / "orders.parquet")
    orders.with_columns(pl.col("discount") * 4).write_parquet(drifted / "orders.parquet")
    scores = score(registry, drifted, tmp_path / "recs.parquet", "--no-publish")
    result = monitor(registry, scores, drifted, "--no-decisions", "--json")
    assert result.exit_code == EXIT_RETRAIN, result.output
    report = json.loads(result.stdout)
    shifted = report["drift"]["shifted_features"]
    assert "discounts_12m" in shifted
    # only what the discounts feed moved: nothing about tenure, complaints or payments
    assert all(name.startswith(("discounts_", "gross_margin_", "net_margin_")) for name in shifted)
    assert any(
        reason.startswith("feature discounts_12m has drifted") for reason in report["reasons"]
    )
    # the threshold is the user's: a lenient one calls the same run quiet on drift
    relaxed = monitor(
        registry, scores, drifted, "--no-decisions", "--no-record", "--json", "--max-psi", "5",
        "--max-calibration-error", "0.5",
    )  # fmt: skip
    assert relaxed.exit_code == EXIT_OK, relaxed.output
    assert json.loads(relaxed.stdout)["drift"]["shifted_features"] == []


def test_a_planted_miscalibration_is_flagged(registry, unchanged, unchanged_export, tmp_path):
    scores, _ = unchanged
    doubled = copy_run(
        scores,
        tmp_path / "doubled.parquet",
        change=lambda rows: rows.with_columns(pl.col("p_churn").mul(2).clip(upper_bound=1.0)),
    )
    result = monitor(registry, doubled, unchanged_export, "--no-decisions", "--json")
    assert result.exit_code == EXIT_RETRAIN, result.output
    report = json.loads(result.stdout)
    assert report["drift"]["shifted_features"] == []  # the world did not move; the model did
    assert report["observed_over_expected"] == pytest.approx(0.45, abs=0.1)
    (reason,) = report["reasons"]
    assert reason.startswith("calibration error") and "above the threshold 0.050" in reason
    run = MlflowClient(tracking_uri=registry).get_run(report["mlflow_run_id"])
    assert run.data.tags["retrain_recommended"] == "yes"


def test_followed_and_overridden_recommendations_are_judged_on_realised_profit(
    registry, unchanged, unchanged_export, world
):
    scores, database = unchanged
    rows = pl.read_parquet(scores).join(
        world.truth_customers.select("customer_id", "archetype"), on="customer_id"
    )
    # picked by the truth: recommendations for loyal customers followed, for difficult ones not
    followed = rows.filter(pl.col("archetype") == "profitable_loyal").head(25)
    overridden = rows.filter(pl.col("archetype") == "difficult_client").head(15)
    with Store(database) as store:
        for picked, verdict in ((followed, True), (overridden, False)):
            for row in picked.iter_rows(named=True):
                store.record_decision(
                    DecisionReport(
                        customer_id=row["customer_id"],
                        requested="a review of the account",
                        occurred_at=datetime(2025, 1, 3, 10, 0, tzinfo=UTC),
                        place="phone",
                        authority_used="front_line",
                        helped_by=None,
                        outcome="done",
                        recommendation_id=row["recommendation_id"],
                        followed_recommendation=verdict,
                        recorded_by="test",
                    )
                )
    result = monitor(
        registry, scores, unchanged_export, "--database-url", database, "--json", "--no-record"
    )
    assert result.exit_code == EXIT_OK, result.output
    table = pl.DataFrame(json.loads(result.stdout)["decisions"])
    labels = build_labels(
        load_tables(unchanged_export).tables, date.fromisoformat(AS_OF), 365, FeatureConfig()
    ).collect()
    for name, picked in (("followed", followed), ("overridden", overridden)):
        mine = table.filter(pl.col("report") == name)
        truth = labels.join(picked.select("customer_id"), on="customer_id")
        assert mine["customers"].sum() == picked.height
        assert mine["realised_net_margin"].sum() == pytest.approx(
            truth["realised_net_margin"].sum(), rel=1e-9
        )
    per_customer = {
        name: table.filter(pl.col("report") == name)["realised_net_margin"].sum() / n
        for name, n in (("followed", followed.height), ("overridden", overridden.height))
    }
    assert per_customer["followed"] > 0 > per_customer["overridden"]
    reported = table.filter(pl.col("report") != "no report")["customers"].sum()
    assert reported == followed.height + overridden.height


def test_labels_that_do_not_exist_yet_are_refused(registry, small_world, tmp_path):
    export = write_export(small_world, tmp_path / "export")
    late = tmp_path / "late.parquet"
    result = runner.invoke(
        app,
        [
            "score",
            "--data",
            str(export),
            "--out",
            str(late),
            "--as-of",
            "2025-09-01",
            "--drivers",
            "0",
            "--no-publish",
            "--tracking-uri",
            registry,
        ],
    )
    assert result.exit_code == EXIT_OK, result.output
    refused = monitor(registry, late, export, "--no-decisions")
    assert refused.exit_code == EXIT_USAGE
    assert "the labels for 2025-09-01 are not available yet" in refused.output
    assert "the export only reaches 2026-01-01" in refused.output
    assert not late.with_name("late.monitoring.json").exists()


def test_scores_of_another_model_or_run_are_refused(
    registry, unchanged, unchanged_export, tmp_path
):
    scores, _ = unchanged
    other = copy_run(
        scores,
        tmp_path / "other.parquet",
        change=lambda rows: rows.with_columns(model_version=pl.lit("7")),
        summary_change=lambda s: s | {"model_version": "7"},
    )
    refused = monitor(registry, other, unchanged_export, "--model", "keepwise@champion")
    assert refused.exit_code == EXIT_USAGE
    assert "the scores were made by version 7, not by keepwise@champion (version 1)" in (
        refused.output.replace("\n", " ")
    )
    mixed = copy_run(
        scores, tmp_path / "mixed.parquet", summary_change=lambda s: s | {"run_id": "score-x"}
    )
    refused = monitor(registry, mixed, unchanged_export, "--no-record")
    assert refused.exit_code == EXIT_USAGE
    assert "belong to different runs" in refused.output


def test_missing_columns_files_and_tables_are_named(
    registry, unchanged, unchanged_export, tmp_path
):
    scores, _ = unchanged
    no_p = copy_run(scores, tmp_path / "no_p.parquet", change=lambda rows: rows.drop("p_churn"))
    refused = monitor(registry, no_p, unchanged_export, "--no-record")
    assert refused.exit_code == EXIT_USAGE
    assert "lack the column p_churn" in refused.output
    alone = tmp_path / "alone.parquet"
    shutil.copy(scores, alone)
    refused = monitor(registry, alone, unchanged_export, "--no-record")
    assert refused.exit_code == EXIT_USAGE and "alone.summary.json does not exist" in refused.output
    broken = tmp_path / "broken"
    shutil.copytree(unchanged_export, broken)
    (broken / "customers.parquet").unlink()
    refused = monitor(registry, scores, broken, "--no-record", "--no-decisions")
    assert refused.exit_code == EXIT_INVALID_DATA
    assert "customers" in refused.output


def test_a_csv_output_is_monitored_like_the_parquet(
    registry, unchanged, unchanged_export, tmp_path
):
    scores, _ = unchanged
    rows = pl.read_parquet(scores)
    csv = tmp_path / "recs.csv"
    rows.select(c for c, t in rows.schema.items() if not t.is_nested()).write_csv(csv)
    shutil.copy(scores.with_name("recs.summary.json"), tmp_path / "recs.summary.json")
    result = monitor(registry, csv, unchanged_export, "--no-record", "--no-decisions", "--json")
    assert result.exit_code == EXIT_OK, result.output
    parquet = json.loads(scores.with_name("recs.monitoring.json").read_text())
    assert json.loads(result.stdout)["calibration_error"] == parquet["calibration_error"]


def test_the_exit_codes_are_the_clis():
    assert monitor_module.EXIT_USAGE == EXIT_USAGE
    assert monitor_module.EXIT_INVALID_DATA == EXIT_INVALID_DATA
    assert monitor_module.EXIT_NOT_RECORDED == EXIT_NOT_PUBLISHED
    assert EXIT_CODES[monitor_module.EXIT_RETRAIN_RECOMMENDED].startswith("(monitor)")
    assert monitor_module.EXIT_RETRAIN_RECOMMENDED == EXIT_RETRAIN
