"""The offers history as evidence: selections with holdouts and outcomes, answers, cutoffs."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import generate_world
from features.config import FeatureConfig
from model.offer_history import COST_COLUMN, build_offer_history, has_holdouts

CUTOFF = date(2024, 1, 1)
HORIZON = 365


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.LazyFrame]:
    world = generate_world(WorldConfig(n_customers=1_500, seed=11))
    return {name: frame.lazy() for name, frame in world.tables.items()}


def test_experiments_are_targeted_selections_with_complete_outcome_windows(tables) -> None:
    history = build_offer_history(tables, CUTOFF, HORIZON, FeatureConfig())
    experiments = history.experiments
    assert history.holdouts_recorded and experiments.height > 100
    assert (experiments["as_of"].dt.day() == 1).all()
    assert (experiments["as_of"] + timedelta(days=HORIZON) <= CUTOFF).all()
    assert not experiments.select(
        pl.struct("as_of", "customer_id", "kind").is_duplicated().any()
    ).item()
    # every row is a targeted selection of its month; treated exactly when one was contacted
    offers = tables["offers"].collect().filter(pl.col("targeted").fill_null(True))
    selections = offers.group_by(
        pl.col("offered_at").dt.truncate("1mo").alias("as_of"), "customer_id", "kind"
    ).agg(contacted=(~pl.col("holdout").fill_null(False)).any())
    joined = experiments.join(selections, on=["as_of", "customer_id", "kind"], how="left")
    assert joined["contacted"].null_count() == 0
    assert joined["treated"].equals(joined["contacted"], check_names=False)
    # held-out rows have no answer; both arms have outcomes
    assert experiments.filter(~pl.col("treated"))["accepted"].null_count() == (
        experiments.filter(~pl.col("treated")).height
    )
    assert experiments["churned"].null_count() == 0
    assert (experiments[COST_COLUMN] >= 0).all()
    assert 0.1 < (~experiments["treated"]).mean() < 0.3  # the world holds out 20%


def test_answers_are_known_before_the_cutoff(tables) -> None:
    history = build_offer_history(tables, CUTOFF, HORIZON, FeatureConfig())
    answers = history.answers
    assert answers.height > history.experiments.filter(pl.col("treated")).height
    assert answers["accepted"].null_count() == 0
    keys = ["as_of", "customer_id", "kind"]
    expected = (
        tables["offers"]
        .collect()
        .filter(
            pl.col("targeted").fill_null(True)
            & ~pl.col("holdout").fill_null(False)
            & (pl.col("offered_at") < CUTOFF)
            & (pl.col("responded_at") < CUTOFF)
            & pl.col("accepted").is_not_null()
        )
        .select(pl.col("offered_at").dt.truncate("1mo").alias("as_of"), "customer_id", "kind")
        .unique()
    )
    # every answer was given before the cutoff; only customers not yet signed up on the first
    # of the month of their offer have no features there
    assert answers.select(keys).join(expected, on=keys, how="anti").height == 0
    assert answers.height >= 0.95 * expected.height


def test_without_a_holdout_column_there_is_no_experiment(tables) -> None:
    without = dict(tables, offers=tables["offers"].drop("holdout"))
    assert has_holdouts(tables["offers"]) and not has_holdouts(without["offers"])
    history = build_offer_history(without, CUTOFF, HORIZON, FeatureConfig())
    assert not history.holdouts_recorded
    assert history.experiments.height == 0
    assert history.answers.height > 0
    assert set(history.experiments.columns) >= {"treated", "churned", COST_COLUMN}


def test_partial_windows_are_censored_at_the_cutoff(tables) -> None:
    complete = build_offer_history(tables, CUTOFF, HORIZON, FeatureConfig())
    partial = build_offer_history(tables, CUTOFF, HORIZON, FeatureConfig(), min_exposure_days=28)
    experiments = partial.experiments
    exposure = experiments["exposure_days"]
    # the same complete-window rows, and more: selections with 28 days to a year of outcome
    keys = ["as_of", "customer_id", "kind"]
    full = experiments.filter(exposure == HORIZON)
    assert_frame_equal(
        full.select(keys, "treated", "churned", COST_COLUMN),
        complete.experiments.select(keys, "treated", "churned", COST_COLUMN),
    )
    short = experiments.filter(exposure < HORIZON)
    assert short.height > 100 and (~short["treated"]).sum() > 20
    window = (pl.lit(CUTOFF) - pl.col("as_of")).dt.total_days()
    assert short.select((pl.col("exposure_days") == window).all()).item()
    assert short.select((pl.col("exposure_days") >= 28).all()).item()
    # point in time: outcomes only from the window before the cutoff
    customers = tables["customers"].collect().select("customer_id", "end_date")
    ends = experiments.join(customers, on="customer_id")
    in_window = ends.select(
        (pl.col("end_date") < pl.col("as_of") + pl.duration(days=pl.col("exposure_days")))
        .fill_null(False)
        .alias("ends"),
        "churned",
        "churn_days",
        expected_days=(pl.col("end_date") - pl.col("as_of")).dt.total_days(),
    )
    assert in_window["churned"].equals(in_window["ends"], check_names=False)
    churned = in_window.filter(pl.col("churned"))
    assert churned.height > 0 and churned["churn_days"].equals(
        churned["expected_days"].cast(pl.Int32), check_names=False
    )
    assert in_window.filter(~pl.col("churned"))["churn_days"].null_count() == (
        in_window.filter(~pl.col("churned")).height
    )
    # point in time: an export taken at the cutoff gives the same rows and outcomes
    at_cutoff = dict(
        tables,
        customers=tables["customers"].with_columns(
            pl.when(pl.col("end_date") < CUTOFF).then(pl.col("end_date")).alias("end_date")
        ),
        complaints=tables["complaints"].filter(pl.col("opened_at") < CUTOFF),
        orders=tables["orders"].filter(pl.col("order_date") < CUTOFF),
        offers=tables["offers"].filter(pl.col("offered_at") < CUTOFF),
    )
    assert tables["complaints"].filter(pl.col("opened_at") >= CUTOFF).collect().height > 0
    then = build_offer_history(at_cutoff, CUTOFF, HORIZON, FeatureConfig(), min_exposure_days=28)
    assert_frame_equal(
        then.experiments.select(keys, "churned", "churn_days", "exposure_days", COST_COLUMN),
        experiments.select(keys, "churned", "churn_days", "exposure_days", COST_COLUMN),
    )


def test_a_bad_minimum_exposure_is_refused(tables) -> None:
    with pytest.raises(ValueError, match="min_exposure_days"):
        build_offer_history(tables, CUTOFF, HORIZON, FeatureConfig(), min_exposure_days=0)
