"""The keepwise command line as a CRM admin or a data scientist uses it."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import polars as pl
import pytest
from typer.testing import CliRunner

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import write_world
from service.cli import EXIT_INVALID_DATA, EXIT_USAGE, EXIT_WITH_REJECTS, app

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
def test_demo_generates_validates_and_summarises(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--customers", "2000"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "world" / "customers.parquet").exists()
    output = " ".join(result.output.split())
    assert "every table meets the contract" in output
    assert "difficult_client" in output and "oracle ROC AUC" in output


def test_features_writes_one_row_per_active_customer_with_labels(tmp_path):
    write_world(WorldConfig(n_customers=400, seed=9), tmp_path / "world", "parquet")
    out = tmp_path / "features.parquet"
    result = runner.invoke(
        app,
        [
            "features",
            "--data",
            str(tmp_path / "world"),
            "--as-of",
            "2024-07-01",
            "--out",
            str(out),
            "--labels-horizon-days",
            "365",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(out)
    customers = pl.read_parquet(tmp_path / "world" / "customers.parquet")
    active = customers.filter(
        (pl.col("signup_date") < date(2024, 7, 1))
        & (pl.col("end_date").is_null() | (pl.col("end_date") >= date(2024, 7, 1)))
    )
    assert sorted(table["customer_id"]) == sorted(active["customer_id"])
    assert {"churned", "realised_net_margin", "as_of", "net_margin_12m"} <= set(table.columns)
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.partial"))


def test_features_with_rejected_rows_writes_output_and_rejects_and_exits_3(broken_orders):
    folder, negative_id, _ = broken_orders
    out = folder / "out" / "features.parquet"
    result = runner.invoke(
        app, ["features", "--data", str(folder), "--as-of", "2024-07-01", "--out", str(out)]
    )
    assert result.exit_code == EXIT_WITH_REJECTS, result.output
    assert pl.read_parquet(out).height > 0
    rejects = pl.read_parquet(folder / "out" / "features.rejects" / "orders.parquet")
    assert rejects.height == 2
    assert negative_id in rejects["order_id"].to_list()
    reasons = sorted(rejects["reject_reason"].to_list())
    assert reasons == [
        "customer_id=C9999999 is not in customers",
        "revenue=-120.5 fails 'greater_than_or_equal_to(0)'",
    ]


def test_features_with_an_unusable_table_writes_nothing_and_exits_1(tmp_path):
    write_world(WorldConfig(n_customers=200, seed=9), tmp_path, "csv")
    (tmp_path / "payments.csv").write_bytes(b"")
    out = tmp_path / "f.parquet"
    result = runner.invoke(
        app, ["features", "--data", str(tmp_path), "--as-of", "2024-07-01", "--out", str(out)]
    )
    assert result.exit_code == EXIT_INVALID_DATA
    assert "payments" in result.output and "empty" in result.output
    assert not out.exists()


def test_features_rejects_a_bad_date(tmp_path):
    result = runner.invoke(
        app,
        [
            "features",
            "--data",
            str(tmp_path),
            "--as-of",
            "01/07/2024",
            "--out",
            str(tmp_path / "f.parquet"),
        ],
    )
    assert result.exit_code == EXIT_USAGE
    assert "--as-of must be a date YYYY-MM-DD" in result.output
