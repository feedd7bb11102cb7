"""keepwise score --table: a wide model reaches a decision, with its assumptions stated."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from features.wide_import import import_wide_table, parse_mapping
from model.bundle import MarginUncertainty, ModelBundle
from model.policy import load_policy
from model.recommend import recommend
from model.tuning import SearchConfig, TreeCandidate
from model.wide_training import WideTrainingConfig, train_wide
from service.cli import EXIT_INVALID_DATA, app

REPO = Path(__file__).resolve().parents[3]
POLICY = load_policy(REPO / "policies" / "default.toml")
runner = CliRunner()
MAPPING = """
assumed_monthly_revenue = 50.0
margin_rate = 0.4
tenure = "months"

[label]
column = "Left"
positive = "True"
negative = "False"
"""


def _wide(n: int = 1_200, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """A revenue-free, id-free export; churn risk is known (``risk``, not a column)."""
    rng = np.random.default_rng(seed)
    calls = rng.poisson(2, n)
    months = rng.integers(1, 72, n)
    risk = 1 / (1 + np.exp(-(-2.0 + 0.6 * calls - 0.03 * months)))
    left = rng.random(n) < risk
    frame = pl.DataFrame(
        {
            "Left": np.where(left, "TRUE", "false"),  # the mapping says True/False
            "calls": calls,
            "months": months,
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    return frame, risk


def _small_config() -> WideTrainingConfig:
    search = SearchConfig(candidates=(TreeCandidate(4, 20), TreeCandidate(8, 20)), max_rounds=200)
    return WideTrainingConfig(cv_folds=3, search=search, compare_plain=False)


def test_recommend_decides_on_wide_rows_with_the_assumed_value() -> None:
    frame, risk = _wide()
    imported = import_wide_table(frame, parse_mapping(_toml_dict()))
    result = train_wide(imported, _small_config())
    bundle = ModelBundle(
        churn=result.model,
        value=None,
        margin_uncertainty=MarginUncertainty((), (0.0,)),
        horizon_days=365,
        summary={},
    )
    assert imported.decisions is not None
    rows = imported.features.join(
        imported.decisions.drop("monthly_revenue"), on="customer_id", maintain_order="left"
    )
    out = recommend(rows, bundle, POLICY, as_of=date(2024, 1, 1), model_version="t", drivers=0)
    assert out.height == frame.height
    assert out.get_column("monthly_margin").unique().to_list() == [20.0]  # 40% of 50
    # risk-ranked: customers the truth puts at high risk are offered more than the safe ones
    # (the kernel's own actions: the policy's experiments are drawn at random)
    acted = (out.get_column("greedy_action") != "retain").to_numpy()
    p_churn = out.get_column("p_churn").to_numpy()
    high, low = risk >= np.quantile(risk, 0.8), risk <= np.quantile(risk, 0.2)
    assert p_churn[high].mean() > p_churn[low].mean() + 0.2
    assert acted[high].mean() > 0.05 and acted[low].mean() == 0.0
    waterfall = out.get_column("value_waterfall").struct.unnest()
    assert (waterfall.get_column("net_margin") == 20.0).all()
    assert (waterfall.get_column("revenue") == 50.0).all()


def _toml_dict() -> dict:
    import tomllib

    return tomllib.loads(MAPPING)


@pytest.mark.slow
def test_a_revenue_free_wide_table_trains_and_scores_from_the_cli(tmp_path: Path) -> None:
    frame, _ = _wide()
    table, mapping = tmp_path / "export.csv", tmp_path / "mine.toml"
    frame.write_csv(table)
    mapping.write_text(MAPPING)
    store = ["--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    trained = runner.invoke(
        app, ["train", "--table", str(table), "--mapping", str(mapping), "--cv", "3", *store]
    )
    assert trained.exit_code == 0, trained.output
    assert "no revenue column" in " ".join(trained.output.split())
    promoted = runner.invoke(app, ["promote", "--model", "keepwise-mine", *store])
    assert promoted.exit_code == 0, promoted.output
    # scoring needs no label: a table of customers whose outcome is not known yet
    unlabelled = tmp_path / "today.csv"
    frame.drop("Left").write_csv(unlabelled)
    out = tmp_path / "recs.csv"
    scored = runner.invoke(
        app,
        [
            "score", "--table", str(unlabelled), "--mapping", str(mapping), "--out", str(out),
            "--model", "keepwise-mine@champion", "--as-of", "2024-06-30", *store,
        ],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    text = " ".join(scored.output.split())
    assert "assumed: no revenue column" in text and "assumed: no id column" in text
    recommendations = pl.read_csv(out)
    assert recommendations.height == frame.height
    assert recommendations.get_column("customer_id").to_list()[:2] == [1, 2]  # row numbers
    assumptions = json.loads(recommendations.get_column("assumptions")[0])
    assert any("50.00 a month" in a for a in assumptions)
    summary = json.loads((tmp_path / "recs.summary.json").read_text())
    assert summary["customers"] == frame.height and summary["as_of"] == "2024-06-30"
    assert any(a.startswith("no revenue column") for a in summary["assumptions"])
    # a table that lacks a feature the model needs: named, nothing written
    broken = tmp_path / "broken.csv"
    frame.drop("Left", "calls").write_csv(broken)
    failed = runner.invoke(
        app,
        [
            "score", "--table", str(broken), "--mapping", str(mapping), "--out",
            str(tmp_path / "x.parquet"), "--model", "keepwise-mine@champion", *store,
        ],
    )  # fmt: skip
    assert failed.exit_code == EXIT_INVALID_DATA
    assert "calls" in failed.output and not (tmp_path / "x.parquet").exists()
    # evaluate and models know the wide model by name
    evaluated = runner.invoke(
        app,
        ["evaluate", "--table", str(table), "--mapping", str(mapping), "--model", "keepwise-mine",
         *store],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    assert "roc_auc" in evaluated.output and "keepwise-mine@champion" in evaluated.output
    listed = runner.invoke(app, ["models", "--model", "keepwise-mine", *store])
    assert listed.exit_code == 0 and "champion (v1)" in listed.output


@pytest.mark.slow
def test_telco_gets_recommendations_from_keepwise_score(tmp_path: Path) -> None:
    shared = Path(os.environ.get("KEEPWISE_SHARED_DATA", REPO.parent / "shared" / "data"))
    telco = shared / "telco" / "Telco-Customer-Churn.csv"
    if not telco.is_file():
        pytest.skip(f"real data not found at {telco}; set KEEPWISE_SHARED_DATA")
    mapping = str(REPO / "mappings" / "telco.toml")
    store = ["--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    trained = runner.invoke(app, ["train", "--table", str(telco), "--mapping", mapping, *store])
    assert trained.exit_code == 0, trained.output
    assert runner.invoke(app, ["promote", "--model", "keepwise-telco", *store]).exit_code == 0
    out = tmp_path / "telco.parquet"
    scored = runner.invoke(
        app,
        [
            "score", "--table", str(telco), "--mapping", mapping, "--out", str(out),
            "--model", "keepwise-telco@champion", "--as-of", "2024-01-01", *store,
        ],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    recommendations = pl.read_parquet(out)
    assert recommendations.height == 7_043
    actions = set(recommendations.get_column("action"))
    assert "compensate" in actions and actions <= {"retain", "compensate", "end"}
    assert "margin is assumed to be 30% of revenue" in recommendations["assumptions"][0][0]
    # the customers who did churn were more often acted on than those who stayed
    truth = pl.read_csv(telco, columns=["customerID", "Churn"])
    joined = recommendations.join(truth, left_on="customer_id", right_on="customerID")
    share = joined.group_by("Churn").agg((pl.col("action") != "retain").mean().alias("acted"))
    acted = dict(share.iter_rows())
    assert acted["Yes"] > acted["No"] + 0.2
