"""The keepwise command line as a CRM admin or a data scientist uses it."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import write_world
from service.cli import EXIT_INVALID_DATA, EXIT_USAGE, app

runner = CliRunner()


def test_help_lists_the_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("generate", "validate", "demo"):
        assert command in result.output


def test_generate_twice_gives_identical_files_that_validate(tmp_path):
    for name in ("a", "b"):
        result = runner.invoke(
            app,
            [
                "generate",
                "--customers",
                "1000",
                "--seed",
                "7",
                "--out",
                str(tmp_path / name),
                "--no-summary",
            ],
        )
        assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "truth_monthly.parquet" in files and "orders.parquet" in files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    result = runner.invoke(app, ["validate", "--data", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_generate_prints_the_archetype_summary(tmp_path):
    result = runner.invoke(
        app, ["generate", "--customers", "600", "--out", str(tmp_path), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "orders.csv").exists()
    for text in ("difficult_client", "whale", "annual churn", "near-miss : minor : major"):
        assert text in result.output


def test_generate_rejects_a_bad_start_date(tmp_path):
    result = runner.invoke(app, ["generate", "--out", str(tmp_path), "--start", "2022-13-01"])
    assert result.exit_code == EXIT_USAGE
    assert "--start must be a date" in result.output


@pytest.fixture
def broken_orders(tmp_path):
    """A valid CSV world whose orders.csv gets a negative revenue and an unknown customer."""
    write_world(WorldConfig(n_customers=300, seed=5), tmp_path, "csv")
    orders = pl.read_csv(tmp_path / "orders.csv", infer_schema=False)
    orders = orders.with_columns(
        revenue=pl.when(pl.col("order_id") == orders["order_id"][3])
        .then(pl.lit("-120.5"))
        .otherwise(pl.col("revenue")),
        customer_id=pl.when(pl.col("order_id") == orders["order_id"][7])
        .then(pl.lit("C9999999"))
        .otherwise(pl.col("customer_id")),
    )
    orders.write_csv(tmp_path / "orders.csv")
    return tmp_path, orders["order_id"][3], orders["order_id"][7]


def test_validate_names_table_columns_and_checks(broken_orders):
    folder, negative_id, unknown_id = broken_orders
    result = runner.invoke(app, ["validate", "--data", str(folder)])
    assert result.exit_code == EXIT_INVALID_DATA
    output = " ".join(result.output.split())
    assert "orders" in output and "revenue" in output and "customer_id" in output
    assert "greater_than_or_equal_to(0)" in output
    assert "unknown customer" in output
    assert negative_id in output and "C9999999" in output
    assert "2 problem(s) found" in output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_from_a_real_process_has_no_traceback(broken_orders):
    folder, _, _ = broken_orders
    completed = subprocess.run(
        [sys.executable, "-m", "service.cli", "validate", "--data", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == EXIT_INVALID_DATA
    assert "Traceback" not in completed.stdout + completed.stderr
    assert "revenue" in completed.stderr


def test_validate_missing_folder_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["validate", "--data", str(tmp_path / "nope")])
    assert result.exit_code == EXIT_USAGE
    assert "is not a folder" in result.output


def test_validate_folder_without_tables_lists_each_missing_table(tmp_path):
    result = runner.invoke(app, ["validate", "--data", str(tmp_path)])
    assert result.exit_code == EXIT_INVALID_DATA
    for table in ("customers", "orders", "payments", "complaints", "offers"):
        assert table in result.output


@pytest.mark.slow
def test_demo_runs_every_step_and_stores_recommendations(tmp_path):
    result = runner.invoke(
        app,
        [
            "demo",
            "--out",
            str(tmp_path),
            "--customers",
            "2500",
            "--no-serve",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--database-url",
            f"sqlite:///{tmp_path}/keepwise.db",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "world" / "customers.parquet").exists()
    recommendations = pl.read_parquet(tmp_path / "recommendations.parquet")
    assert set(recommendations["action"]) <= {"retain", "compensate", "end"}
    output = " ".join(result.output.split())
    for text in (
        "every table meets the contract",
        "difficult_client",
        "oracle ROC AUC",
        "registered keepwise version 1",
        "champion: version 1",
        f"stored {recommendations.height:,} recommendations",
    ):
        assert text in output, text
    keys = (tmp_path / "demo-keys.toml").read_text()
    assert keys.count("[[keys]]") == 3 and "kw_" not in keys  # only hashes are stored
