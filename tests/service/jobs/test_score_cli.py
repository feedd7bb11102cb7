"""`keepwise score` as a CRM batch job runs it: exit codes, messages, a kill mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from model.registry import CHAMPION, MlflowSettings, log_and_register
from service.cli import EXIT_INVALID_DATA, EXIT_OK, EXIT_USAGE, EXIT_WITH_REJECTS, app
from tests.service.jobs.conftest import copy_export

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def registry(bundle, tmp_path_factory) -> str:
    """A tracking store whose champion is the small world's model."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    settings = MlflowSettings(tracking_uri=uri)
    registered = log_and_register(
        bundle.save(root / "bundle"), settings=settings, params={}, metrics={}, tags={}
    )
    MlflowClient().set_registered_model_alias("keepwise", CHAMPION, registered.version)
    return uri


def score(registry: str, data: Path, out: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "score",
            "--data",
            str(data),
            "--out",
            str(out),
            "--tracking-uri",
            registry,
            "--database-url",
            f"sqlite:///{out.parent / 'keepwise.db'}",
            *extra,
        ],
    )


def test_a_clean_export_exits_0_and_records_the_run(registry, export, tmp_path):
    result = score(registry, export, tmp_path / "recs.parquet", "--json")
    assert result.exit_code == EXIT_OK, result.output
    assert '"published"' in result.output and '"mlflow_run_id"' in result.output
    from mlflow import MlflowClient

    run_id = result.output.split('"mlflow_run_id": "')[1].split('"')[0]
    run = MlflowClient().get_run(run_id)
    written = json.loads((tmp_path / "recs.summary.json").read_text())
    assert written["mlflow_run_id"] == run_id
    assert run.data.tags["model_version"] == "1"
    assert run.data.params["model_uri"] == "models:/keepwise/1"
    # the second run compares its churn scores with the first
    again = score(registry, export, tmp_path / "again.parquet", "--json")
    assert '"churn_score_vs_previous_run": 0.0' in again.output


def test_rejected_rows_exit_3_and_say_where_they_went(registry, export, tmp_path):
    data = copy_export(export, tmp_path / "data")
    complaints = pl.read_parquet(data / "complaints.parquet")
    bad = complaints.head(1).with_columns(complaint_id=pl.lit("BAD-1"), severity=pl.lit("huge"))
    pl.concat([complaints, bad]).write_parquet(data / "complaints.parquet")
    result = score(registry, data, tmp_path / "recs.parquet")
    assert result.exit_code == EXIT_WITH_REJECTS, result.output
    assert "1 rejected row was left out" in result.output
    assert "severity" in result.output and "Traceback" not in result.output
    assert (tmp_path / "recs.rejects" / "complaints.parquet").exists()


def test_an_unusable_table_exits_1_and_writes_nothing(registry, export, tmp_path):
    data = copy_export(export, tmp_path / "data")
    (data / "orders.parquet").write_bytes(b"not parquet")
    result = score(registry, data, tmp_path / "recs.parquet")
    assert result.exit_code == EXIT_INVALID_DATA, result.output
    assert "orders" in result.output and "nothing written" in result.output
    assert not (tmp_path / "recs.parquet").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/recs.txt"], "use .parquet or .csv"),
        (["--model", "keepwise"], "--model must be NAME@ALIAS"),
        (["--model", "nosuch@champion"], "no version of model 'nosuch'"),
        (["--as-of", "2025-13-01"], "--as-of must be a date"),
        (["--data", "{tmp}/missing"], "is not a folder"),
    ],
)
def test_usage_errors_exit_2_with_a_sentence(registry, export, tmp_path, args, message):
    filled = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = {"--data": str(export), "--out": str(tmp_path / "recs.parquet")}
    for flag, value in zip(filled[::2], filled[1::2], strict=True):
        base[flag] = value
    argv = ["score", "--tracking-uri", registry]
    for flag, value in base.items():
        argv += [flag, value]
    result = runner.invoke(app, argv)
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_run_killed_mid_way_leaves_the_previous_output(registry, export, tmp_path):
    out = tmp_path / "recs.parquet"
    out.write_bytes(b"yesterday's run")
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "score",
        "--data",
        str(export),
        "--out",
        str(out),
        "--tracking-uri",
        registry,
        "--no-publish",
        "--chunk-customers",
        "150",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    work = tmp_path / ".recs.parquet.work"
    deadline = time.monotonic() + 120
    while not list(work.glob("part-00002.parquet")) and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert out.read_bytes() == b"yesterday's run"
    assert not (tmp_path / "recs.summary.json").exists()


def test_the_budget_option_reaches_the_run(registry, export, tmp_path):
    result = score(registry, export, tmp_path / "recs.parquet", "--budget", "500")
    assert result.exit_code == EXIT_OK, result.output
    assert "offer budget 500:" in " ".join(result.output.split())
    spent = pl.read_parquet(tmp_path / "recs.parquet").filter(pl.col("action") == "compensate")
    assert spent["offer_expected_cost"].sum() <= 500


def test_keep_runs_prunes_the_older_run_from_the_store(registry, export, tmp_path):
    first = score(registry, export, tmp_path / "first.parquet", "--json")
    assert first.exit_code == EXIT_OK, first.output
    published = json.loads((tmp_path / "first.summary.json").read_text())
    later = date.fromisoformat(published["as_of"]) + timedelta(days=31)  # a newer run
    second = score(
        registry,
        export,
        tmp_path / "second.parquet",
        "--as-of",
        later.isoformat(),
        "--keep-runs",
        "1",
    )
    assert second.exit_code == EXIT_OK, second.output
    pruned = json.loads((tmp_path / "second.summary.json").read_text())["pruned"]
    assert pruned == published["published"] > 0
    assert f"pruned {pruned:,} recommendations" in " ".join(second.output.split())
