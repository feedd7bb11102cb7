"""The oracle by simulation: it agrees with what the world realises, and common random numbers make
an offer that cannot touch a customer change nothing but the bill."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from experiments.synthetic.config import WorldConfig, add_months
from experiments.synthetic.world import World, default_policy, generate_world
from features.contract import OFFER_KINDS

POLICY = default_policy()
SNAPSHOT = date(2024, 1, 1)  # two years before the export: the horizon's invoices are settled
# the company answers most grievances here, so that enough customers are offered at the snapshot
CHECK = WorldConfig(
    n_customers=8_000,
    seed=5,
    oracle_dates=(SNAPSHOT,),
    oracle_draws=16,
    targeted_offer_prob=0.9,
)


@pytest.fixture(scope="module")
def checked() -> World:
    return generate_world(CHECK, POLICY)


def _month(column: str) -> pl.Expr:
    """Months after the snapshot (0 = the snapshot month) of a date column."""
    day = pl.col(column).cast(pl.Date)
    return (day.dt.year() - SNAPSHOT.year) * 12 + day.dt.month() - SNAPSHOT.month


def _realised(world: World) -> pl.DataFrame:
    """Per customer active at the snapshot: discounted profit and churn over the horizon, as the
    CRM tables record them (independent of the simulator's expected-value bookkeeping)."""
    horizon, delta = POLICY.horizon_months, POLICY.discount_factor
    end = add_months(SNAPSHOT, horizon)
    cost_minute, cost_escalation = CHECK.cost_per_handling_minute, CHECK.cost_per_escalation
    in_horizon = lambda month: month.is_between(0, horizon - 1)  # noqa: E731
    discount = lambda month: pl.lit(delta) ** (month + 1)  # noqa: E731
    parts = [
        world.tables["orders"]
        .with_columns(m=_month("order_date"))
        .filter(in_horizon(pl.col("m")))
        .select(
            "customer_id",
            money=(pl.col("revenue") - pl.col("cost_of_goods") - pl.col("discount"))
            * discount(pl.col("m")),
        ),
        world.tables["complaints"]
        .with_columns(m=_month("opened_at"))
        .filter(in_horizon(pl.col("m")))
        .select(
            "customer_id",
            money=-(
                pl.col("handling_minutes") * cost_minute + pl.col("escalations") * cost_escalation
            )
            * discount(pl.col("m")),
        ),
        # the invoice for month m is issued on the first of month m + 1; unpaid two years on, it
        # was withheld (payments are at most 240 days late)
        world.tables["payments"]
        .with_columns(m=_month("invoice_date") - 1)
        .filter(in_horizon(pl.col("m")) & pl.col("paid_date").is_null())
        .select("customer_id", money=-pl.col("amount") * discount(pl.col("m"))),
        world.tables["offers"]
        .with_columns(m=_month("offered_at"))
        .filter(in_horizon(pl.col("m")) & pl.col("accepted").fill_null(False))
        .select("customer_id", money=-pl.col("cost") * discount(pl.col("m"))),
    ]
    money = pl.concat(parts).group_by("customer_id").agg(pl.col("money").sum())
    offered = (
        world.tables["offers"]
        .filter((_month("offered_at") == 0) & ~pl.col("holdout"))
        .group_by("customer_id")
        .agg(offered_kind=pl.col("kind").first(), offers=pl.len())
    )
    return (
        world.tables["customers"]
        .filter(
            (pl.col("signup_date") < SNAPSHOT)
            & (pl.col("end_date").is_null() | (pl.col("end_date") >= SNAPSHOT))
        )
        .select(
            "customer_id", churned=pl.col("end_date").is_not_null() & (pl.col("end_date") < end)
        )
        .join(money, on="customer_id", how="left")
        .join(offered, on="customer_id", how="left")
        .with_columns(pl.col("money").fill_null(0.0))
    )


def _oracle(world: World, action: str) -> pl.DataFrame:
    return world.truth_action_values.filter(pl.col("action") == action).select(
        "customer_id", "value", "se", "p_churn"
    )


def test_the_oracle_covers_every_customer_active_at_the_snapshot(checked):
    realised = _realised(checked)
    values = checked.truth_action_values
    assert values["as_of"].unique().to_list() == [SNAPSHOT]
    actions = ["retain", *[f"offer_{k}" for k in OFFER_KINDS], "end"]
    assert values["action"].unique(maintain_order=True).to_list() == actions
    assert set(values["customer_id"]) == set(realised["customer_id"])
    assert values.group_by("customer_id").len()["len"].unique().to_list() == [len(actions)]
    simulated = values.filter(pl.col("action") != "end")
    assert (simulated["se"] > 0).mean() > 0.5 and simulated["se"].null_count() == 0
    end = values.filter(pl.col("action") == "end")
    assert (end["value"] < 0).all() and (end["se"] == 0).all()


def test_retain_value_matches_what_untreated_customers_realise(checked):
    """Customers not offered anything at the snapshot (no grievance pending, or held out at
    random) realise, on average, the oracle's value and churn probability of "retain"."""
    untreated = (
        _realised(checked)
        .filter(pl.col("offers").is_null())
        .join(_oracle(checked, "retain"), on="customer_id")
    )
    n = untreated.height
    assert n > 3_000
    # paired: the oracle's value is the customer's expected outcome, so the differences carry
    # only the world's own noise from the snapshot on (and the oracle's draws)
    gap = untreated["money"] - untreated["value"]
    error = np.sqrt(gap.var() / n + float((untreated["se"] ** 2).sum()) / n**2)
    assert abs(gap.mean()) < 3 * error, (gap.mean(), error)
    assert error < 0.05 * untreated["value"].abs().mean()  # a tight check, not a vague one
    by_archetype = (
        untreated.join(checked.truth_customers.select("customer_id", "archetype"), on="customer_id")
        .with_columns(gap=pl.col("money") - pl.col("value"))
        .group_by("archetype")
        .agg(gap=pl.col("gap").mean(), error=pl.col("gap").std() / pl.len().sqrt(), n=pl.len())
    )
    for row in by_archetype.iter_rows(named=True):
        assert abs(row["gap"]) < 3.5 * row["error"], row
    churn_difference = untreated["churned"].mean() - untreated["p_churn"].mean()
    churn_error = np.sqrt(untreated["p_churn"].mean() * (1 - untreated["p_churn"].mean()) / n)
    assert abs(churn_difference) < 3 * churn_error, (churn_difference, churn_error)


def test_offer_churn_matches_what_offered_customers_realise(checked):
    """Customers the company made a personal offer at the snapshot churn as the oracle's offer of
    that kind says (acceptance drawn with their own probability, as in the oracle)."""
    offered = _realised(checked).filter(pl.col("offers") == 1)
    oracle = checked.truth_action_values.filter(pl.col("action").str.starts_with("offer_"))
    joined = offered.join(
        oracle.select(
            "customer_id", "p_churn", offered_kind=pl.col("action").str.strip_prefix("offer_")
        ),
        on=["customer_id", "offered_kind"],
    )
    assert joined.height > 200
    p = joined["p_churn"]
    error = np.sqrt(float((p * (1 - p)).sum())) / joined.height
    assert abs(joined["churned"].mean() - p.mean()) < 3 * error


def test_an_offer_that_cannot_touch_a_customer_changes_only_the_bill(checked):
    """Common random numbers: for a customer on whom offers have no effect (no remedy fit, no
    goodwill, not a sleeping dog, not a misuser whom training would fix), the accepted offer's path
    is the retain path, bit for bit."""
    inert = checked.truth_customers.filter(
        pl.col("offer_nil_effect")
        & ~pl.col("sleeping_dog")
        & (pl.col("archetype") != "difficult_client")
    ).select("customer_id")
    retain = _oracle(checked, "retain").join(inert, on="customer_id")
    assert retain.height > 1_000
    for kind in OFFER_KINDS:
        offer = checked.truth_action_values.filter(pl.col("action") == f"offer_{kind}")
        joined = retain.join(offer, on="customer_id", suffix="_offer")
        assert (joined["p_churn_if_accepted"] == joined["p_churn"]).all(), kind
        # a * p + (1 - a) * p: equal up to rounding
        assert np.allclose(joined["p_churn_offer"], joined["p_churn"], rtol=1e-12), kind
        assert (joined["value_offer"] <= joined["value"]).all(), kind  # only the bill differs


def test_an_offer_reminds_a_sleeping_dog_to_leave(checked):
    dogs = checked.truth_customers.filter(pl.col("sleeping_dog")).select("customer_id")
    retain = _oracle(checked, "retain").join(dogs, on="customer_id")
    assert retain.height > 100
    for kind in OFFER_KINDS:
        offer = _oracle(checked, f"offer_{kind}").join(retain, on="customer_id", suffix="_retain")
        harm = offer["p_churn"] - offer["p_churn_retain"]
        # nearly all are worse off (a few had an open grievance the remedy repairs, or are sure
        # to leave anyway), and by points
        assert (harm > 0).mean() > 0.9, kind
        assert harm.mean() > 0.01, (kind, harm.mean())


def test_a_fast_remedy_of_a_fresh_fault_keeps_recoverable_complainers(checked):
    """Recoverable complainers hit by a company-side fault in the last three months: an accepted
    refund, replacement, gift or service cuts their 12-month churn by points, not fractions."""
    fresh = (
        checked.truth_monthly.filter(
            (pl.col("month") == SNAPSHOT) & (pl.col("months_since_fault") <= 2)
        )
        .join(checked.truth_customers, on="customer_id")
        .filter(pl.col("archetype") == "recoverable_complainer")
        .select("customer_id")
    )
    retain = _oracle(checked, "retain").join(fresh, on="customer_id")
    assert retain.height > 100
    for kind in ("refund", "replacement", "gift", "service"):
        offer = checked.truth_action_values.filter(pl.col("action") == f"offer_{kind}").join(
            retain, on="customer_id", suffix="_retain"
        )
        cut = offer["p_churn_retain"] - offer["p_churn_if_accepted"]
        assert cut.mean() > 0.04, (kind, cut.mean())
        assert cut.quantile(0.9) > 0.1, (kind, cut.quantile(0.9))


def test_oracle_dates_default_to_the_test_snapshot_and_the_export():
    config = WorldConfig(n_customers=300, seed=3, oracle_draws=4)
    assert config.resolved_oracle_dates == (date(2025, 1, 1), date(2026, 1, 1))
    world = generate_world(config, POLICY)
    assert world.truth_action_values["as_of"].unique().sort().to_list() == [
        date(2025, 1, 1),
        date(2026, 1, 1),
    ]
    assert WorldConfig(n_customers=300, oracle_draws=0).resolved_oracle_dates == ()
    with pytest.raises(ValueError, match="first of a month"):
        WorldConfig(oracle_dates=(date(2024, 1, 2),))
    with pytest.raises(ValueError, match="first of a month"):
        WorldConfig(oracle_dates=(date(2027, 1, 1),))
