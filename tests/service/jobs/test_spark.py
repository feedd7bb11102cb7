"""The batch on Apache Spark (local mode) gives what the single-machine job gives, row for row."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.config import FeatureConfig
from features.loader import load_tables
from features.pipeline import build_features
from model.registry import MlflowSettings, log_and_register
from service.jobs.export_parts import ExportFolder
from service.jobs.score import ScoreJob, run_score_job
from tests.service.jobs.conftest import copy_export, write_export

pytestmark = pytest.mark.slow


def _java_found() -> bool:
    home = os.environ.get("JAVA_HOME")
    return shutil.which("java") is not None or (
        home is not None and Path(home, "bin", "java").is_file()
    )


if not _java_found():
    pytest.skip(
        "Spark needs Java 17 or newer and none was found (no `java` on PATH, no JAVA_HOME)",
        allow_module_level=True,
    )

from service.jobs.spark import (  # noqa: E402 - only once Java is known to be there
    SparkEngineError,
    local_spark,
    score_features,
    score_with_spark,
)


@pytest.fixture(scope="module")
def spark():
    session = local_spark(2, shuffle_partitions=4)
    yield session
    session.stop()


def job(data: Path, out: Path, bundle, policy, **options) -> ScoreJob:
    return ScoreJob(data=data, out=out, bundle=bundle, model_version="7", policy=policy, **options)


def spark_output(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "*.parquet")


def test_the_registered_model_scores_in_spark_as_the_bundle_does(spark, trained, export, tmp_path):
    store = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    bundle_dir = trained.bundle.save(tmp_path / "bundle")
    registered = log_and_register(
        bundle_dir, settings=store, params={}, metrics={}, tags={"git_commit": "test"}
    )
    as_of = ExportFolder.open(export).export_date()
    assert as_of is not None
    features = build_features(load_tables(export).tables, as_of, FeatureConfig()).collect()

    scored = score_features(spark, spark.createDataFrame(features.to_arrow()), registered.model_uri)

    by_spark = pl.from_arrow(scored.toArrow())
    assert isinstance(by_spark, pl.DataFrame)
    assert by_spark.height == features.height > 1000
    expected = trained.bundle.score(features)
    assert_frame_equal(by_spark.sort("customer_id"), expected.sort("customer_id"), check_exact=True)


def test_ten_thousand_customers_on_spark_equal_the_single_machine_run(
    spark, world, bundle, policy, tmp_path
):
    data = write_export(world, tmp_path / "world")
    single = run_score_job(job(data, tmp_path / "single.parquet", bundle, policy))

    result = score_with_spark(
        spark, job(data, tmp_path / "spark.parquet", bundle, policy, customers_per_part=2_500)
    )

    assert result.written and not result.problems and result.summary["parts"] == 4
    expected = pl.read_parquet(tmp_path / "single.parquet")
    got = spark_output(tmp_path / "spark.parquet")
    assert expected.height == got.height > 6_000  # the active customers
    assert got["customer_id"].is_sorted()  # Spark writes the parts in customer order
    assert got.sort("customer_id").equals(expected.sort("customer_id"))
    assert result.summary["run_id"] == single.summary["run_id"]
    assert result.summary["actions"] == single.summary["actions"]


def test_rejected_rows_and_problems_are_those_of_the_single_machine_run(
    spark, export, bundle, policy, tmp_path
):
    data = copy_export(export, tmp_path / "data")
    orders = pl.read_parquet(data / "orders.parquet")
    active = pl.read_parquet(data / "customers.parquet").filter(pl.col("end_date").is_null())
    someone = orders.filter(pl.col("customer_id").is_in(active["customer_id"].implode()))[
        "customer_id"
    ][100]
    bad = orders.head(3).with_columns(
        order_id=pl.Series(["BAD-NEG", "BAD-WHO", "PADDED"]),
        revenue=pl.Series([-5.0, 10.0, 3.0]),
        # a blank-padded id is still its customer's: it must land in that customer's bucket
        customer_id=pl.Series([orders["customer_id"][0], "NOBODY", f"  {someone} "]),
    )
    pl.concat([orders[:500], bad, orders[500:]]).write_parquet(data / "orders.parquet")
    customers = pl.read_parquet(data / "customers.parquet")
    stray = customers[5:6].with_columns(segment=pl.lit("galactic"))
    pl.concat([customers, stray]).write_parquet(data / "customers.parquet")
    out = tmp_path / "out" / "spark.parquet"
    stale = out.with_name("spark.rejects")
    stale.mkdir(parents=True)
    (stale / "payments.parquet").write_bytes(b"from an earlier run")

    single = run_score_job(job(data, tmp_path / "single.parquet", bundle, policy))
    result = score_with_spark(spark, job(data, out, bundle, policy), buckets=3)

    assert result.written and not result.fatal
    assert (
        result.summary["rejected_rows"]
        == single.summary["rejected_rows"]
        == {
            "customers": 1,
            "orders": 2,
        }
    )
    for table in ("orders", "customers"):
        local = pl.read_parquet(tmp_path / "single.rejects" / f"{table}.parquet")
        assert spark_output(stale / f"{table}.parquet").equals(local)  # file order, same reasons
    assert not (stale / "payments.parquet").exists()

    def counts(problems):
        return sorted((p.table, p.column or "", p.check, p.rows) for p in problems)

    assert counts(result.problems) == counts(single.problems)
    assert spark_output(out).equals(pl.read_parquet(tmp_path / "single.parquet"))
    padded = spark_output(out).filter(pl.col("customer_id") == someone)
    assert padded.height == 1  # the padded order counted for its customer, as single-machine
    rejected = pl.read_parquet(tmp_path / "single.rejects" / "orders.parquet")["order_id"]
    assert "PADDED" not in rejected.to_list()


def test_an_unusable_table_writes_nothing_and_keeps_the_previous_output(
    spark, export, bundle, policy, tmp_path
):
    data = copy_export(export, tmp_path / "data")
    payments = pl.read_parquet(data / "payments.parquet").drop("amount")
    payments.write_parquet(data / "payments.parquet")
    out = tmp_path / "recs.parquet"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"previous run")

    result = score_with_spark(spark, job(data, out, bundle, policy), buckets=2)

    assert result.fatal and not result.written
    assert any(p.table == "payments" and "amount" in p.check for p in result.problems)
    assert (out / "part-0.parquet").read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "recs.parquet"]


def test_what_the_spark_engine_does_not_do_is_said_before_any_work(
    spark, export, bundle, policy, tmp_path
):
    csv = tmp_path / "csv"
    csv.mkdir()
    for path in export.iterdir():
        pl.read_parquet(path).write_csv(csv / f"{path.stem}.csv")
    result = score_with_spark(spark, job(csv, tmp_path / "recs.parquet", bundle, policy))
    assert result.fatal
    assert "customers.csv is CSV; the Spark engine reads Parquet exports" in str(result.problems[0])
    with pytest.raises(SparkEngineError, match="writes a Parquet folder"):
        score_with_spark(spark, job(export, tmp_path / "recs.csv", bundle, policy))
    with pytest.raises(SparkEngineError, match="budget"):
        score_with_spark(spark, job(export, tmp_path / "recs.parquet", bundle, policy, budget=1e4))


def test_the_cli_runs_the_spark_engine_and_refuses_what_it_lacks(spark, bundle, export, tmp_path):
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from model.registry import CHAMPION
    from service.cli import EXIT_OK, EXIT_USAGE, app

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    registered = log_and_register(
        bundle.save(tmp_path / "bundle"),
        settings=MlflowSettings(tracking_uri=uri),
        params={},
        metrics={},
        tags={},
    )
    MlflowClient().set_registered_model_alias("keepwise", CHAMPION, registered.version)
    base = ["score", "--data", str(export), "--tracking-uri", uri, "--no-publish"]
    runner = CliRunner()

    done = runner.invoke(app, [*base, "--out", str(tmp_path / "s.parquet"), "--engine", "spark"])
    assert done.exit_code == EXIT_OK, done.output
    local = runner.invoke(app, [*base, "--out", str(tmp_path / "l.parquet")])
    assert local.exit_code == EXIT_OK, local.output
    assert_frame_equal(
        spark_output(tmp_path / "s.parquet").sort("customer_id"),
        pl.read_parquet(tmp_path / "l.parquet"),
        check_exact=True,
    )
    refused = runner.invoke(
        app, [*base, "--out", str(tmp_path / "b.parquet"), "--engine", "spark", "--budget", "9"]
    )
    assert refused.exit_code == EXIT_USAGE
    assert "takes no --budget" in refused.output
