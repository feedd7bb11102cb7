"""Training on CRM tables: the snapshot plan, the time split, the holdout figures."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from model.training import TrainingConfig, TrainingError, plan_snapshots


def test_plan_leaves_a_full_label_window_before_each_later_period():
    config = TrainingConfig(horizon_days=365)
    plan = plan_snapshots(date(2022, 1, 3), date(2026, 1, 1), config)
    assert plan.test == (date(2025, 1, 1),)
    assert plan.calibration == (date(2024, 1, 1),)
    assert plan.validation == (date(2023, 7, 1), date(2023, 10, 1))
    assert plan.train[-1] == date(2023, 4, 1) and plan.train[0] >= date(2022, 4, 1)
    # labels of every non-test snapshot end by the first test snapshot
    for day in (*plan.train, *plan.validation, *plan.calibration):
        assert day + timedelta(days=365) <= plan.test[0]


def test_plan_rejects_a_history_too_short_for_the_horizon():
    with pytest.raises(TrainingError, match="too short for a 365-day horizon"):
        plan_snapshots(date(2024, 6, 1), date(2026, 1, 1), TrainingConfig())


def test_training_never_sees_the_test_period(trained):
    test_day = trained.plan.test[0]
    for part in (trained.split.train, trained.split.validation, trained.split.calibration):
        assert part["as_of"].max() + timedelta(days=365) <= test_day
    assert set(trained.split.test["as_of"].unique()) == {test_day}


def test_holdout_figures_are_reported_next_to_the_true_hazard(trained):
    m = trained.metrics
    for key in (
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "calibration_error",
        "empc",
        "value_mae",
        "value_baseline_mae",
        "holdout_policy_profit",
        "holdout_retain_all_profit",
        "holdout_top_decile_offer_profit",
        "true_hazard_roc_auc",
        "true_hazard_brier",
    ):
        assert np.isfinite(m[key]), key
    assert 0.6 < m["roc_auc"] < m["true_hazard_roc_auc"] < 0.95  # honest distance to perfect
    assert m["holdout_policy_profit"] > m["holdout_top_decile_offer_profit"]


def test_calibration_does_not_hurt_on_the_holdout(trained):
    m = trained.metrics
    assert m["brier"] <= m["brier_uncalibrated"] + 0.002
    assert m["calibration_error"] < 0.05


def test_features_and_fingerprint_are_recorded(trained):
    assert len(trained.features) > 40 and trained.excluded_features == []
    assert trained.review.kept == tuple(trained.features) and trained.review.kept_leaks == ()
    assert trained.review.identifiers == ()  # computed features are not checked as identifiers
    assert trained.fingerprint["rows_customers"] == 3_000
    assert len(str(trained.fingerprint["sha256"])) == 64


def test_training_is_deterministic_and_an_empty_decision_log_changes_nothing(small_world, trained):
    from model.churn import ChurnParams
    from model.policy import load_policy
    from model.training import train_from_tables
    from model.value import ValueParams
    from service.storage.offer_columns import REPORT_COLUMNS
    from tests.conftest import REPO

    config = TrainingConfig(churn=ChurnParams(n_estimators=60), value=ValueParams(n_estimators=60))
    # `trained` had no decision log at all; this run reads an empty one
    again = train_from_tables(
        {n: f.lazy() for n, f in small_world.tables.items()},
        small_world.config.end,
        load_policy(REPO / "policies" / "default.toml"),
        config,
        truth_monthly=small_world.truth_monthly.lazy(),
        trained_at="2026-01-01T00:00:00+00:00",
        offer_reports=pl.DataFrame(schema=REPORT_COLUMNS),
    )
    assert again.test_predictions.equals(trained.test_predictions)
    assert again.metrics == trained.metrics
    assert again.bundle.summary == trained.bundle.summary
    # every number the bundle gives (churn, margin and its band, acceptance and effect per
    # kind) is the same to the bit on the test snapshot
    test = trained.split.test
    assert again.bundle.score(test).equals(trained.bundle.score(test))
    offers = small_world.tables["offers"]
    assert again.offer_sources.counts() == trained.offer_sources.counts()
    assert trained.offer_sources.counts()["crm_export"] == (
        offers.filter(pl.col("offered_at") < trained.plan.test[0]).height
    )
    assert trained.offer_sources.counts()["decision_log"] == 0


def test_value_forecast_is_scored_against_realised_and_true_margins(trained):
    m = trained.metrics
    # against the synthetic truth's expected margin the model beats both trailing averages
    for target in ("truth", "truth_horizon"):
        assert m[f"value_mae_vs_{target}"] < m[f"value_trailing_tenure_mae_vs_{target}"]
        assert (
            m[f"value_trailing_tenure_mae_vs_{target}"] < m[f"value_trailing_12m_mae_vs_{target}"]
        )
    assert m["value_mae_vs_realised"] == pytest.approx(m["value_mae"], rel=1e-12)
    # the nominal 90% band covers about 90% of realised margins, and more of the true ones
    assert 0.85 < m["value_coverage_90_vs_realised"] < 0.95
    assert m["value_coverage_95_vs_realised"] > m["value_coverage_90_vs_realised"]
    assert m["value_coverage_90_vs_truth"] > m["value_coverage_90_vs_realised"]
    forecasts = trained.value_forecasts
    assert forecasts.height == trained.split.test.height
    assert (
        forecasts.filter(pl.col("churned"))["realised"].null_count() == forecasts["churned"].sum()
    )


def test_the_margin_error_is_per_customer_and_the_same_online(trained):
    from model.uncertainty import MarginErrorModel

    bundle = trained.bundle
    assert isinstance(bundle.margin_uncertainty, MarginErrorModel)
    test = trained.split.test
    scores = bundle.score(test)
    assert scores["monthly_margin_se"].n_unique() > test.height // 2  # not a handful of bands
    assert scores["monthly_margin_se"].min() > 0
    rows = test.head(25)
    online = pl.DataFrame(bundle.score_records(rows.to_dicts()))
    for column in ("monthly_margin", "monthly_margin_se"):
        np.testing.assert_array_equal(online[column].to_numpy(), scores[column].head(25).to_numpy())
