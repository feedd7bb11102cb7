"""Leak guard: fires on planted leaks (numeric, missing, categorical), not on honest features."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest

from model.leak_guard import (
    LeakReport,
    apply_leak_guard,
    find_leaky_features,
    score_features,
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
