"""keepwise train / promote / models from the command line, as a data scientist uses them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import write_world
from service.cli import EXIT_USAGE, app

pytestmark = pytest.mark.slow
runner = CliRunner()


def _json_line(output: str) -> dict:
    return json.loads(next(line for line in output.splitlines() if line.startswith("{")))


def test_train_json_then_promote_then_models(tmp_path):
    world = tmp_path / "world"
    write_world(WorldConfig(n_customers=2_500, seed=4), world, "parquet")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = runner.invoke(app, ["train", "--data", str(world), "--tracking-uri", uri, "--json"])
    assert result.exit_code == 0, result.output
    run = _json_line(result.stdout)
    assert run["model_version"] == 1 and run["aliases"] == ["challenger"]
    for key in (
        "roc_auc",
        "pr_auc",
        "brier",
        "log_loss",
        "calibration_error",
        "empc",
        "true_hazard_roc_auc",
        "holdout_policy_profit",
        "holdout_retain_all_profit",
        "holdout_top_decile_offer_profit",
        "value_mae",
        "value_baseline_mae",
        "value_mae_vs_truth",
        "value_trailing_12m_mae_vs_truth",
        "value_coverage_90_vs_realised",
    ):
        assert key in run["metrics"], key
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(run["run_id"]).data.metrics
    for archetype in ("difficult_client", "small_stable", "whale"):
        assert f"value_mae_vs_truth.{archetype}" in logged, archetype
    artifacts = {a.path for a in client.list_artifacts(run["run_id"], "evaluation")}
    assert "evaluation/value_by_archetype.json" in artifacts

    promoted = runner.invoke(app, ["promote", "--tracking-uri", uri])
    assert promoted.exit_code == 0, promoted.output
    assert "version 1 promoted: there was no champion yet" in promoted.output
    shown = runner.invoke(app, ["models", "--tracking-uri", uri])
    assert shown.exit_code == 0 and "champion (v1)" in shown.output and "empc" in shown.output


def test_train_on_the_telco_mapping_reaches_the_reference_auc(tmp_path, shared_data):
    table = shared_data / "telco" / "Telco-Customer-Churn.csv"
    result = runner.invoke(
        app,
        [
            "train",
            "--table",
            str(table),
            "--mapping",
            "mappings/telco.toml",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    run = _json_line(result.stdout)
    assert run["model_name"] == "keepwise-telco"
    assert run["metrics"]["cv_roc_auc_mean"] >= 0.845
    assert "TotalCharges: 11 blank values" in result.stderr


def test_train_needs_one_kind_of_input(tmp_path):
    result = runner.invoke(app, ["train", "--table", str(tmp_path / "t.csv")])
    assert result.exit_code == EXIT_USAGE
    assert "--table FILE with --mapping FILE.toml" in result.output


def test_promote_without_a_registry_says_what_to_do(tmp_path):
    result = runner.invoke(app, ["promote", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"])
    assert result.exit_code == EXIT_USAGE
    assert "run `keepwise train` first" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_evaluate_scores_the_champion_on_a_newer_export(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    write_world(WorldConfig(n_customers=2_000, seed=4), tmp_path / "old", "parquet")
    write_world(WorldConfig(n_customers=2_000, seed=5, months=54), tmp_path / "new", "parquet")
    assert (
        runner.invoke(
            app, ["train", "--data", str(tmp_path / "old"), "--tracking-uri", uri, "--json"]
        ).exit_code
        == 0
    )
    assert runner.invoke(app, ["promote", "--tracking-uri", uri]).exit_code == 0
    result = runner.invoke(
        app, ["evaluate", "--data", str(tmp_path / "new"), "--tracking-uri", uri]
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "keepwise@champion (version 1)" in output and "snapshot 2025-07-01" in output
    for metric in ("roc_auc", "brier", "empc", "true_hazard_roc_auc", "value_mae"):
        assert metric in output


def test_leak_guard_excludes_a_leaky_column_unless_kept(tmp_path):
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    n = 1_500
    churn = rng.random(n) < 0.3
    frame = pl.DataFrame(
        {
            "id": [f"K{i:05d}" for i in range(n)],
            "Churn": np.where(churn, "Yes", "No"),
            "fee": np.round(rng.uniform(20, 120, n), 2),
            "tenure": rng.integers(0, 72, n),
            "contract": rng.choice(["monthly", "annual"], n),
            "cancel_flag": np.where(churn ^ (rng.random(n) < 0.01), 1, 0),  # the label, 1% noise
        }
    )
    frame.write_csv(tmp_path / "wide.csv")
    (tmp_path / "wide.toml").write_text(
        'id = "id"\nrevenue = "fee"\nmargin_rate = 0.3\n\n'
        '[label]\ncolumn = "Churn"\npositive = "Yes"\nnegative = "No"\n'
    )
    base = [
        "train",
        "--table",
        str(tmp_path / "wide.csv"),
        "--mapping",
        str(tmp_path / "wide.toml"),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/m.db",
        "--json",
    ]
    excluded = runner.invoke(app, base)
    assert excluded.exit_code == 0, excluded.output
    assert "leak guard" in excluded.stderr and "cancel_flag" in excluded.stderr
    assert _json_line(excluded.stdout)["metrics"]["cv_roc_auc_mean"] < 0.9
    kept = runner.invoke(app, [*base, "--keep-feature", "cancel_flag"])
    assert kept.exit_code == 0, kept.output
    assert _json_line(kept.stdout)["metrics"]["cv_roc_auc_mean"] > 0.95
