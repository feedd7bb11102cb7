"""Leak guard: fires on planted leaks (numeric, missing, categorical), not on honest features."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest

from model.leak_guard import (
    KEPT_LEAKY_METRIC,
    LeakReport,
    LeakReview,
    apply_leak_guard,
    find_identifier_columns,
    find_leaky_features,
    promotion_refusal,
    review_features,
    score_features,
    suspicious_auc,
)
from tests.model.stacked_frames import FEATURES, stacked_frame


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    """Honest features plus planted leaks of the churn label."""
    data = stacked_frame(1000, seed=11)
    rng = np.random.default_rng(0)
    churned = data.get_column("churned").to_numpy()
    flip = rng.random(data.height) < 0.01
    noisy_copy = np.where(flip, ~churned, churned).astype(np.float64)
    return data.with_columns(
        # a copy of the label with 1% noise, e.g. "account closed" flag
        pl.Series("closed_flag", noisy_copy),
        # an end-of-relationship amount: negative for churners, positive otherwise (reversed)
        pl.Series(
            "final_settlement", np.where(churned, -1.0, 1.0) * rng.uniform(1, 5, data.height)
        ),
        # missing exactly when the customer churned (e.g. "next renewal date")
        pl.Series("next_renewal_days", np.where(churned, np.nan, rng.uniform(1, 300, data.height))),
        # a text category that only exists after churn
        pl.Series(
            "cancel_reason",
            np.where(churned, rng.choice(["price", "service"], data.height), None).tolist(),
            dtype=pl.String,
        ),
        # an identifier: one row per category memorises the label
        (pl.col("customer_id") + "@" + pl.col("as_of").cast(pl.String)).alias("row_key"),
    )


LEAKS = ["closed_flag", "final_settlement", "next_renewal_days", "cancel_reason", "row_key"]


def test_planted_leaks_are_found_and_honest_features_are_not(
    frame: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="model.leak_guard"):
        reports = find_leaky_features(frame, [*FEATURES, *LEAKS], "churned")
    assert sorted(report.feature for report in reports) == sorted(LEAKS)
    assert all(report.separation >= 0.98 for report in reports)
    separations = [report.separation for report in reports]
    assert separations == sorted(separations, reverse=True)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == len(LEAKS)
    assert "possible label leak" in caplog.text and "'closed_flag'" in caplog.text


def test_report_details_are_readable(frame: pl.DataFrame) -> None:
    reports = {r.feature: r for r in score_features(frame, [*FEATURES, *LEAKS], "churned", 0.98)}
    settlement = reports["final_settlement"]
    assert settlement.auc < 0.02 and settlement.separation > 0.98  # direction kept in auc
    assert "lower values go with churned" in settlement.message()
    renewal = reports["next_renewal_days"]
    assert renewal.n_missing == frame.get_column("churned").sum()
    assert renewal.missing_placement in ("low", "high")
    assert "rows missing" in renewal.message()
    assert reports["cancel_reason"].kind == "categorical"
    assert reports["segment"].kind == "categorical" and not reports["segment"].is_leaky
    assert reports["noise_a"].separation < 0.6
    assert 0.6 < reports["risk"].separation < 0.9  # a real, strong but honest signal


def test_apply_guard_excludes_reported_features_unless_kept(
    frame: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    candidates = [*FEATURES, *LEAKS]
    reports = find_leaky_features(frame, candidates, "churned")
    with caplog.at_level(logging.WARNING, logger="model.leak_guard"):
        kept, excluded = apply_leak_guard(candidates, reports, keep=["final_settlement"])
    assert kept == [*FEATURES, "final_settlement"]
    assert excluded == [name for name in LEAKS if name != "final_settlement"]
    assert "KEEPING 'final_settlement'" in caplog.text
    assert "EXCLUDING 'closed_flag'" in caplog.text
    with pytest.raises(ValueError, match=r"keep names unknown feature\(s\) \['nope'\]"):
        apply_leak_guard(candidates, reports, keep=["nope"])


def test_nothing_to_report_on_honest_features(frame: pl.DataFrame) -> None:
    assert find_leaky_features(frame, FEATURES, "churned") == []
    kept, excluded = apply_leak_guard(FEATURES, [])
    assert kept == FEATURES and excluded == []


def test_edge_cases_score_half_and_bad_input_is_named() -> None:
    frame = pl.DataFrame(
        {
            "y": [True, False, True, False],
            "constant": [1.0, 1.0, 1.0, 1.0],
            "all_null": [None, None, None, None],
            "with_inf": [float("inf"), 0.0, float("inf"), -float("inf")],
        },
        schema_overrides={"all_null": pl.Float64},
    )
    reports = {
        r.feature: r for r in score_features(frame, ["constant", "all_null", "with_inf"], "y", 0.98)
    }
    assert reports["constant"].separation == 0.5
    assert reports["all_null"].separation == 0.5 and reports["all_null"].n_missing == 4
    assert reports["with_inf"].separation == 1.0
    with pytest.raises(ValueError, match=r"frame is missing column\(s\) \['nope'\]"):
        find_leaky_features(frame, ["nope"], "y")
    with pytest.raises(ValueError, match="must be boolean or 0/1"):
        find_leaky_features(frame.with_columns(pl.lit(2).alias("y")), ["constant"], "y")
    with pytest.raises(ValueError, match="single class"):
        find_leaky_features(frame.with_columns(pl.lit(True).alias("y")), ["constant"], "y")
    with pytest.raises(ValueError, match="threshold must be within"):
        find_leaky_features(frame, ["constant"], "y", threshold=0.4)


def test_report_is_a_value_object() -> None:
    report = LeakReport("x", "churned", 0.99, 0.99, "numeric", 10, 0, "none", 0.98)
    assert report.is_leaky
    assert report.message().startswith("possible label leak: numeric feature 'x'")


# --- three levels: excluded, warned, identifiers ---------------------------------------------


def _review_frame(n: int = 2_000) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    churned = rng.random(n) < 0.3
    surnames = np.array([f"Surname{i:03d}" for i in range(600)])
    return pl.DataFrame(
        {
            "churned": churned,
            "honest": churned * 0.8 + rng.normal(0, 1, n),
            "leak": np.where(rng.random(n) < 0.005, ~churned, churned).astype(np.float64),
            # a vendor churn score: ROC AUC about 0.94
            "vendor_score": churned + rng.normal(0, 0.455, n),
            "Surname": rng.choice(surnames, n),
            "RowNumber": np.arange(1, n + 1),
            "notes": [f"customer called about the bill number {i}" for i in range(n)],
            "Latitude": rng.choice(np.linspace(30, 45, 200), n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "balance": rng.uniform(0, 1e5, n),  # floats unique per row are not identifiers
        }
    )


def test_review_excludes_leaks_warns_proxies_and_drops_identifiers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = _review_frame()
    features = [c for c in frame.columns if c != "churned"]
    with caplog.at_level(logging.WARNING, logger="model.leak_guard"):
        review = review_features(frame, features, "churned")
    assert [r.feature for r in review.leaks] == ["leak"]
    assert [r.feature for r in review.proxies] == ["vendor_score"]
    assert 0.90 <= review.proxies[0].separation < 0.98
    assert {r.feature: r.reason for r in review.identifiers} == {
        "Surname": "high-cardinality text",
        "RowNumber": "unique per row",
        "notes": "free text",
        "Latitude": "name",
    }
    assert review.excluded == ("leak", "Surname", "RowNumber", "notes", "Latitude")
    assert review.kept == ("honest", "vendor_score", "plan", "balance")
    assert review.status == "warned" and review.kept_leaks == ()
    assert review.metrics()[KEPT_LEAKY_METRIC] == 0.0
    assert "suspiciously strong feature: numeric feature 'vendor_score'" in caplog.text
    assert "identifier-like column 'Surname'" in caplog.text
    record = review.to_dict()
    assert record["warned"] == [
        {"feature": "vendor_score", "roc_auc": review.proxies[0].separation}
    ]
    assert record["leaks"][0]["feature"] == "leak" and not record["leaks"][0]["kept"]


def test_kept_leak_marks_the_review_and_refuses_promotion() -> None:
    frame = _review_frame()
    review = review_features(frame, ["honest", "leak", "Surname"], "churned", keep=["leak"])
    assert review.kept == ("honest", "leak") and review.excluded == ("Surname",)
    assert review.kept_leaks == ("leak",) and review.status == "kept_leak"
    assert review.tags()["leak_guard.kept_leaks"] == "leak"
    refusal = promotion_refusal(review.metrics())
    assert refusal is not None and "1 feature(s)" in refusal and "--force" in refusal
    assert promotion_refusal({"empc": 1.0}) is None
    # keeping an identifier is a choice, not a leak: no mark
    plain = review_features(frame, ["honest", "Surname"], "churned", keep=["Surname"])
    assert plain.kept == ("honest", "Surname") and plain.kept_leaks == ()
    assert promotion_refusal(plain.metrics()) is None
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['nope'\]"):
        review_features(frame, ["honest"], "churned", keep=["nope"])


def test_suspiciously_good_auc_is_warned_only_above_the_threshold() -> None:
    assert suspicious_auc(0.96) is None and suspicious_auc(0.97) is None
    message = suspicious_auc(0.983)
    assert message is not None and message.startswith("suspiciously good") and "0.983" in message
    review = LeakReview(kept=("x",), excluded=()).with_cv_auc(0.99)
    assert review.status == "suspicious" and review.tags()["leak_guard.suspicious_auc"] == "yes"


def test_small_categories_and_ordinary_names_are_not_identifiers() -> None:
    rng = np.random.default_rng(0)
    n = 500
    frame = pl.DataFrame(
        {
            "PlanName": rng.choice(["a", "b", "c"], n),  # a name word, but 3 values
            "State": rng.choice([f"S{i}" for i in range(50)], n),  # 10 rows per value
            "tenure": rng.integers(0, 72, n),
            "LongDistance": rng.choice(["Yes", "No"], n),
        }
    )
    assert find_identifier_columns(frame, frame.columns) == []
