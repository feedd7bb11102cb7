"""Monitoring on planted worlds: calibrated predictions stay quiet, planted miscalibration and
drift are flagged by name, the reader gets the tables the verdict rests on."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pytest

from model.metrics import expected_calibration_error
from model.monitoring import (
    FOLLOWED,
    NOT_REPORTED,
    OVERRIDDEN,
    MonitoringError,
    MonitoringThresholds,
    calibration_noise_p95,
    check_labels_available,
    churn_by_group,
    decision_outcomes,
    drift_findings,
    join_outcomes,
    monitor,
)

AS_OF = date(2025, 1, 1)
SEGMENTS = ("enterprise", "mid_market", "small_business", "public_sector")
REGIONS = ("north", "south")


def world(n: int = 6_000, seed: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scores whose probabilities are the truth: each label is drawn with the predicted p."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 8.0, n)
    churned = rng.random(n) < p
    ids = [f"C{i:07d}" for i in range(n)]
    scored = pl.DataFrame(
        {
            "customer_id": ids,
            "p_churn": p,
            "segment": [SEGMENTS[i % 4] for i in range(n)],
            "region": [REGIONS[i % 2] for i in range(n)],
            "model_version": "3",
            "run_id": "score-2025-01-01-abc",
            "recommendation_id": [f"R{i}" for i in range(n)],
            "action": ["retain" if i % 3 else "compensate" for i in range(n)],
        }
    )
    labels = pl.DataFrame(
        {
            "customer_id": ids,
            "churned": churned,
            "realised_net_margin": np.where(churned, -100.0, 1_000.0) + rng.normal(0, 10, n),
        }
    )
    return scored, labels


QUIET_DRIFT = {"features": {"tenure_days": 0.01, "revenue_12m": 0.04}, "shifted_features": []}


def test_calibrated_predictions_in_an_unchanged_world_stay_quiet():
    scored, labels = world()
    report = monitor(scored, labels, as_of=AS_OF, horizon_days=365, drift=QUIET_DRIFT)
    assert not report.retrain_recommended and report.reasons == []
    assert report.customers == 6_000 and report.unmatched == 0
    assert report.calibration_error < report.thresholds.max_calibration_error
    assert report.observed_over_expected == pytest.approx(1.0, abs=0.05)
    assert report.drift.shifted_features == []


def test_planted_miscalibration_is_flagged_with_the_figures_behind_it():
    scored, labels = world()
    doubled = scored.with_columns(pl.col("p_churn").mul(2).clip(upper_bound=1.0))
    report = monitor(doubled, labels, as_of=AS_OF, horizon_days=365, drift=QUIET_DRIFT)
    assert report.retrain_recommended
    assert report.observed_over_expected == pytest.approx(0.5, abs=0.05)
    (reason,) = report.reasons
    assert reason.startswith(f"calibration error {report.calibration_error:.3f} is above")
    assert "observed/expected 0.5" in reason
    shifted = scored.with_columns(pl.col("p_churn").add(0.08).clip(upper_bound=1.0))
    assert monitor(shifted, labels, as_of=AS_OF, horizon_days=365, drift=None).retrain_recommended


def test_planted_drift_is_flagged_by_feature_name_against_the_users_threshold():
    scored, labels = world()
    drift = {
        "features": {"tenure_days": 0.01, "discounts_12m": 0.31, "revenue_12m": 0.15},
        "churn_score_vs_previous_run": 0.05,
    }
    report = monitor(scored, labels, as_of=AS_OF, horizon_days=365, drift=drift)
    assert report.drift.shifted_features == ["discounts_12m"]
    assert report.reasons == [
        "feature discounts_12m has drifted: PSI 0.310 against the training data is above the "
        "threshold 0.20"
    ]
    strict = MonitoringThresholds(max_psi=0.1)
    flagged = monitor(scored, labels, as_of=AS_OF, horizon_days=365, drift=drift, thresholds=strict)
    assert flagged.drift.shifted_features == ["discounts_12m", "revenue_12m"]
    lenient = MonitoringThresholds(max_psi=0.5)
    quiet = monitor(scored, labels, as_of=AS_OF, horizon_days=365, drift=drift, thresholds=lenient)
    assert not quiet.retrain_recommended


def test_drifting_churn_scores_recommend_retraining():
    drift = {"features": {"tenure_days": 0.01}, "churn_score_vs_previous_run": 0.42}
    findings = drift_findings(drift, 0.2)
    assert findings.churn_score_psi == 0.42 and findings.shifted_features == []
    scored, labels = world(n=2_000)
    report = monitor(scored, labels, as_of=AS_OF, horizon_days=365, drift=drift)
    assert report.reasons == [
        "the churn scores have drifted: PSI 0.420 against the previous scoring run is above "
        "the threshold 0.20"
    ]


def test_no_drift_figures_are_said_to_be_missing_not_taken_as_quiet():
    scored, labels = world(n=2_000)
    report = monitor(
        scored,
        labels,
        as_of=AS_OF,
        horizon_days=365,
        drift={"features": None, "note": "the model has no training profile"},
    )
    assert report.drift.features is None
    assert "drift not measured: the model has no training profile" in report.notes


def test_the_decile_table_is_the_reliability_table_behind_the_calibration_error():
    scored, labels = world()
    report = monitor(scored, labels, as_of=AS_OF, horizon_days=365, drift=None)
    deciles = report.deciles
    assert deciles["bin"].to_list() == list(range(1, 11))
    assert deciles["customers"].sum() == 6_000
    weighted = (deciles["customers"] * deciles["gap"].abs()).sum() / 6_000
    assert weighted == pytest.approx(report.calibration_error, rel=1e-12)
    assert deciles["predicted"].is_sorted()
    joined = scored.join(labels, on="customer_id")
    assert report.calibration_error == expected_calibration_error(
        joined["churned"].cast(pl.Int8).to_numpy(), joined["p_churn"].to_numpy(), n_bins=10
    )


def test_by_segment_and_region_are_counted_from_the_rows():
    scored, labels = world()
    report = monitor(scored, labels, as_of=AS_OF, horizon_days=365, drift=None)
    joined = scored.join(labels, on="customer_id")
    for column, table in (("segment", report.by_segment), ("region", report.by_region)):
        truth = joined.group_by(column).agg(
            n=pl.len(), rate=pl.col("churned").mean(), p=pl.col("p_churn").mean()
        )
        merged = table.join(truth, on=column)
        assert merged.height == truth.height
        assert (merged["customers"] == merged["n"]).all()
        assert np.allclose(merged["realised"], merged["rate"])
        assert np.allclose(merged["predicted"], merged["p"])


def test_a_group_with_one_class_has_no_roc_auc():
    frame = pl.DataFrame(
        {"segment": ["a", "a", "b", "b"], "p_churn": [0.1, 0.2, 0.3, 0.4], "churned": [0, 1, 0, 0]}
    )
    table = churn_by_group(frame, "segment")
    assert table.filter(pl.col("segment") == "b")["roc_auc"][0] is None
    assert table.filter(pl.col("segment") == "a")["roc_auc"][0] == 1.0


def test_the_noise_floor_is_what_calibration_alone_produces():
    p = np.random.default_rng(1).beta(1.2, 8.0, 2_000)
    floor = calibration_noise_p95(p, 10, seed=7)
    assert floor == calibration_noise_p95(p, 10, seed=7)  # seeded
    # the same draws through the one ECE implementation give the same figure
    rng = np.random.default_rng(7)
    slow = [
        expected_calibration_error((rng.random(p.size) < p).astype(int), p, n_bins=10)
        for _ in range(200)
    ]
    assert floor == pytest.approx(float(np.quantile(slow, 0.95)), rel=1e-12)
    exceed = 0
    for seed in range(40):
        y = (np.random.default_rng(100 + seed).random(p.size) < p).astype(int)
        exceed += expected_calibration_error(y, p, n_bins=10) > floor
    assert exceed <= 6  # about 5% of calibrated samples exceed the 95th percentile
    assert calibration_noise_p95(np.repeat(p, 10), 10) < floor  # more customers, less noise


def test_a_threshold_below_the_noise_floor_is_called_out():
    scored, labels = world(n=1_000)
    tight = MonitoringThresholds(max_calibration_error=0.001)
    report = monitor(scored, labels, as_of=AS_OF, horizon_days=365, drift=None, thresholds=tight)
    assert any("below the noise floor on 1,000 customers" in note for note in report.notes)


def test_followed_and_overridden_are_told_apart_by_the_latest_report():
    scored, labels = world(n=600)
    joined, _ = join_outcomes(scored, labels)
    churners = joined.filter(pl.col("churned") == 1)["recommendation_id"].head(30).to_list()
    stayers = joined.filter(pl.col("churned") == 0)["recommendation_id"].head(40).to_list()
    early, late = datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)
    log = pl.DataFrame(
        {
            # the churners were first reported followed, then corrected to overridden
            "recommendation_id": churners + churners + stayers,
            "followed_recommendation": [True] * 30 + [False] * 30 + [True] * 40,
            "recorded_at": [early] * 30 + [late] * 30 + [early] * 40,
        }
    )
    table = decision_outcomes(joined, log)
    by_report = table.group_by("report").agg(
        pl.col("customers").sum(),
        pl.col("realised_net_margin").sum(),
        churn=(pl.col("realised_churn") * pl.col("customers")).sum(),
    )
    figures = {row["report"]: row for row in by_report.iter_rows(named=True)}
    assert figures[OVERRIDDEN]["customers"] == 30 and figures[OVERRIDDEN]["churn"] == 30
    assert figures[FOLLOWED]["customers"] == 40 and figures[FOLLOWED]["churn"] == 0
    assert figures[NOT_REPORTED]["customers"] == 600 - 70
    expected = joined.filter(pl.col("recommendation_id").is_in(stayers))["realised_net_margin"]
    assert figures[FOLLOWED]["realised_net_margin"] == pytest.approx(expected.sum())
    assert table["report"].to_list()[0] == FOLLOWED


def test_labels_before_the_horizon_has_passed_are_refused():
    check_labels_available(AS_OF, 365, date(2026, 1, 1))
    with pytest.raises(MonitoringError) as refused:
        check_labels_available(AS_OF, 365, date(2025, 9, 1))
    assert str(refused.value) == (
        "the labels for 2025-01-01 are not available yet: a 365-day horizon needs data up to "
        "2026-01-01, and the export only reaches 2025-09-01 (122 days short); monitor this run "
        "with an export taken on or after 2026-01-01"
    )


def test_bad_input_is_named():
    scored, labels = world(n=200)
    with pytest.raises(MonitoringError, match="^no column p_churn in the scores$"):
        monitor(scored.drop("p_churn"), labels, as_of=AS_OF, horizon_days=365, drift=None)
    with pytest.raises(MonitoringError, match="^no column churned in the labels$"):
        monitor(scored, labels.drop("churned"), as_of=AS_OF, horizon_days=365, drift=None)
    mixed = scored.with_columns(
        model_version=pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("2")).otherwise(pl.lit("3"))
    )
    with pytest.raises(MonitoringError, match="mix 2 values of model_version"):
        monitor(mixed, labels, as_of=AS_OF, horizon_days=365, drift=None)
    other = labels.with_columns(pl.lit("X").add(pl.col("customer_id")).alias("customer_id"))
    with pytest.raises(MonitoringError, match="none of the 200 scored customers"):
        monitor(scored, other, as_of=AS_OF, horizon_days=365, drift=None)
    gap = scored.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise("p_churn").alias("p_churn")
    )
    with pytest.raises(MonitoringError, match="1 row without a churn probability.*C0000003"):
        monitor(gap, labels, as_of=AS_OF, horizon_days=365, drift=None)
    with pytest.raises(MonitoringError, match="between 0 and 1"):
        MonitoringThresholds(max_calibration_error=0.0)


def test_customers_missing_from_the_later_export_are_counted_not_guessed():
    scored, labels = world(n=500)
    report = monitor(scored, labels.head(450), as_of=AS_OF, horizon_days=365, drift=None)
    assert report.customers == 450 and report.unmatched == 50
    assert any("50 scored customers were not active" in note for note in report.notes)
    assert report.to_dict()["unmatched_customers"] == 50
