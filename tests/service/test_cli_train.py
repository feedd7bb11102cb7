"""keepwise train / promote / models from the command line, as a data scientist uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import write_world
from model.registry import MlflowSettings, log_and_register, promote
from service.cli import EXIT_NOT_PROMOTED, EXIT_USAGE, app

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
    # the offers' true gain per archetype comes with its breakdown by offer kind
    documents = {}
    for name in ("oracle_by_archetype", "offers_by_archetype_and_kind"):
        assert f"evaluation/{name}.json" in artifacts
        local = client.download_artifacts(run["run_id"], f"evaluation/{name}.json", str(tmp_path))
        documents[name] = json.loads(Path(local).read_text())
    for row in documents["oracle_by_archetype"]:
        kinds = [
            r
            for r in documents["offers_by_archetype_and_kind"]
            if r["archetype"] == row["archetype"]
        ]
        assert sum(r["offers"] for r in kinds) == row["compensated"]
        assert sum(r["true_gain"] for r in kinds) == pytest.approx(row["offer_true_gain"])
    # the CRM path reports the leak guard's judgement like the wide path
    assert run["excluded_features"] == [] and run["leak_guard"]["kept_leaks"] == []
    assert run["metrics"]["leak_guard_kept_features"] == 0.0
    assert client.get_run(run["run_id"]).data.tags["leak_guard.status"] in ("clean", "warned")

    promoted = runner.invoke(app, ["promote", "--tracking-uri", uri])
    assert promoted.exit_code == 0, promoted.output
    assert "version 1 promoted: there was no champion yet" in promoted.output
    shown = runner.invoke(app, ["models", "--tracking-uri", uri])
    assert shown.exit_code == 0 and "champion (v1)" in shown.output and "empc" in shown.output
    # training wrote the version's model card; the promotion is in the history
    card = runner.invoke(app, ["models", "--tracking-uri", uri, "--card", "1"])
    assert card.exit_code == 0, card.output
    assert card.stdout.startswith("# Model card: keepwise version 1\n")
    for section in ("## Data window", "## Leak guard", "## Performance by segment on the holdout"):
        assert section in card.stdout, section
    history = runner.invoke(app, ["models", "--tracking-uri", uri, "--history"])
    assert history.exit_code == 0 and "there was no champion yet" in history.output


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
    assert "run `keepwise train`" in " ".join(result.output.split())
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
    first = _json_line(excluded.stdout)
    assert first["metrics"]["cv_roc_auc_mean"] < 0.9
    assert first["excluded_features"] == ["cancel_flag"]
    assert first["leak_guard"]["leaks"][0]["feature"] == "cancel_flag"
    assert first["leak_guard"]["kept_leaks"] == []
    uri = f"sqlite:///{tmp_path}/m.db"
    wide = ["--model", "keepwise-wide", "--tracking-uri", uri]
    # the wide model is not the default name: promote says what to run, then finds it by name
    missing = runner.invoke(app, ["promote", "--tracking-uri", uri])
    assert missing.exit_code == EXIT_USAGE
    assert "pass --model NAME" in " ".join(missing.output.split())
    first_promotion = runner.invoke(app, ["promote", *wide])
    assert first_promotion.exit_code == 0, first_promotion.output
    assert "version 1 promoted" in first_promotion.output
    kept = runner.invoke(app, [*base, "--keep-feature", "cancel_flag"])
    assert kept.exit_code == 0, kept.output
    second = _json_line(kept.stdout)
    assert second["metrics"]["cv_roc_auc_mean"] > 0.95
    assert second["leak_guard"]["kept_leaks"] == ["cancel_flag"]
    assert second["metrics"]["leak_guard_kept_features"] == 1.0
    assert any("suspiciously good" in text for text in second["warnings"])
    assert "kept on request although leaky" in " ".join(kept.stderr.split())
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=uri).get_run(second["run_id"])
    assert run.data.tags["leak_guard.kept_leaks"] == "cancel_flag"
    assert run.data.tags["leak_guard.status"] == "kept_leak"
    refused = runner.invoke(app, ["promote", *wide])
    assert refused.exit_code == EXIT_NOT_PROMOTED
    assert "version 2 not promoted" in refused.output
    assert "kept on request (--keep-feature)" in " ".join(refused.output.split())
    listed = runner.invoke(app, ["models", *wide])
    assert listed.exit_code == 0, listed.output
    assert "leak_guard_kept_features" in listed.output and "cv_empc_mean" in listed.output
    forced = runner.invoke(app, ["promote", "--force", *wide])
    assert forced.exit_code == 0 and "version 2 promoted" in forced.output
    # the card of the leaky version says so; the history keeps the forced promotion
    card = runner.invoke(app, ["models", *wide, "--card", "2"])
    assert card.exit_code == 0, card.output
    assert "- leaks kept on request: cancel_flag" in card.stdout
    assert "## Performance by segment on out-of-fold predictions of 5-fold" in card.stdout
    assert "| small_business | 1,500 |" in card.stdout  # the segment every row was assumed in
    history = runner.invoke(app, ["models", *wide, "--history"])
    assert history.exit_code == 0 and "forced (--force)" in history.output
    assert _json_line(kept.stdout)["metrics"]["cv_roc_auc_mean"] > 0.95


def test_models_shows_enough_to_choose_and_why_the_champion_is(tmp_path, trained):
    """Two decimals hid the difference (Brier 0.10 vs 0.10); horizon, training date and the
    reason a version became champion were not shown (issue 15)."""
    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    versions = (
        (0.10034, 2.0361, "2026-01-02T03:04:05+00:00"),
        (0.09812, 2.0412, "2026-02-03T04:05:06+00:00"),
    )
    for brier, empc, trained_at in versions:
        log_and_register(
            trained.bundle.save(tmp_path / trained_at[:10]),
            settings=settings,
            params={
                "horizon_days": 365,
                "data.orders_from": "2022-01-01",
                "data.orders_to": "2025-12-31",
            },
            metrics={"brier": brier, "empc": empc},
            tags={"trained_at": trained_at},
        )
        if brier > 0.1:
            promote(settings)  # version 1 becomes champion; version 2 stays challenger
    shown = runner.invoke(app, ["models", "--tracking-uri", settings.tracking_uri])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    for figure in (
        "0.1003",
        "0.0981",
        "2.0361",
        "2.0412",
        "365",
        "2026-01-02T03:04:05",
        "2026-02-03T04:05:06",
        "2022-01-01 to 2025-12-31",
        "there was no champion yet",
        "champion (v1)",
        "challenger (v2)",
    ):
        assert figure in text, figure
    assert "why champion" in text and "promoted by" in text
    outcome = promote(settings)
    assert outcome.explanation == "empc 2.0412 is not worse than the champion's 2.0361"
