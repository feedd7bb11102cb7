"""Relationship features on the tiny CRM (see tiny_crm.py for the data and the windows)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import polars as pl
import pytest

from features.config import FeatureConfig
from features.relationship import build_relationship_features, days_to_contract_end
from tests.features.tiny_crm import AS_OF, row, tiny_tables

MONTH = 365 / 12


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return build_relationship_features(tiny_tables(), AS_OF, FeatureConfig()).collect()


def test_population_is_the_customers_active_at_as_of(features: pl.DataFrame) -> None:
    # D ended 2024-06-15 (< AS_OF); E signs up on AS_OF (not before it); C ends on AS_OF: kept.
    assert features["customer_id"].to_list() == ["A", "B", "C", "F"]


def test_difficult_client(features: pl.DataFrame) -> None:
    a = row(features, "A")
    assert (a["segment"], a["region"], a["contract_type"]) == ("enterprise", "north", "annual")
    # 2020-03-15 -> 2024-07-01: 4 years (365+365+365+366) + 108 days
    assert a["tenure_days"] == 1569
    # next annual anniversary on/after AS_OF: 2025-03-15, 257 days later
    assert a["days_to_contract_end"] == 257
    # last order before AS_OF: a4 on 2024-05-20 (a5 on AS_OF is invisible) -> 42 days
    assert a["recency_days"] == 42
    # long window: a2, a3, a4 (a1 is older); short window: a4
    assert (a["orders_3m"], a["orders_12m"]) == (1, 3)
    # (2000 + 1000 + 500) / 3 orders
    assert a["monetary_12m"] == pytest.approx(3500 / 3)
    # 1 order in 91 days vs 2 orders in the 274 days before, per month
    assert a["order_trend"] == pytest.approx((1 / 91 - 2 / 274) * MONTH)
    # fa1 (declined 2024-03-10) and fa2 (answer 2024-07-03 = after AS_OF: no answer yet);
    # fa0 was made before the long window
    assert (a["offers_made_12m"], a["offers_accepted_12m"], a["offers_declined_12m"]) == (2, 0, 1)


def test_good_client(features: pl.DataFrame) -> None:
    b = row(features, "B")
    assert b["contract_type"] == "two_year"
    assert b["tenure_days"] == 538  # 2023-01-10 -> 2024-07-01
    # two-year terms from 2023-01-10: the current one ends 2025-01-10, 193 days after AS_OF
    assert b["days_to_contract_end"] == 193
    assert b["recency_days"] == 1  # b4 on 2024-06-30
    # b1 (2023-07-01) is one day before the long window; b2 is its first day;
    # b3 (2024-04-01) is the first day of the short window
    assert (b["orders_3m"], b["orders_12m"]) == (2, 3)
    assert b["monetary_12m"] == pytest.approx(800.0)  # (800 + 1200 + 400) / 3
    assert b["order_trend"] == pytest.approx((2 / 91 - 1 / 274) * MONTH)
    # fb1 accepted; fb2 has no answer
    assert (b["offers_made_12m"], b["offers_accepted_12m"], b["offers_declined_12m"]) == (2, 1, 0)


def test_customers_without_events(features: pl.DataFrame) -> None:
    c = row(features, "C")
    assert c["tenure_days"] == 61
    assert c["days_to_contract_end"] is None  # monthly
    assert c["recency_days"] is None  # c1 is on AS_OF: no order before it
    assert (c["orders_3m"], c["orders_12m"], c["monetary_12m"]) == (0, 0, 0.0)
    assert c["order_trend"] is None  # tenure 61 < 91 days: no comparison period
    assert (c["offers_made_12m"], c["offers_accepted_12m"], c["offers_declined_12m"]) == (0, 0, 0)
    f = row(features, "F")
    assert f["tenure_days"] == 1277
    assert f["recency_days"] == 427  # 2023-05-01 -> 2024-07-01
    assert f["orders_12m"] == 0
    assert f["order_trend"] == 0.0  # no orders in either period


def test_order_trend_uses_the_days_the_customer_existed() -> None:
    # Signed up 200 days before AS_OF, one order 150 days before AS_OF (in the prior period).
    # The prior period covers only 200 - 91 = 109 days of the customer's life.
    tables = tiny_tables()
    signup = AS_OF - timedelta(days=200)
    tables["customers"] = tables["customers"].with_columns(
        pl.when(pl.col("customer_id") == "C")
        .then(pl.lit(signup))
        .otherwise(pl.col("signup_date"))
        .alias("signup_date")
    )
    extra = pl.LazyFrame(
        [("c0", "C", AS_OF - timedelta(days=150), 10.0, 1.0, 0.0)],
        schema=tables["orders"].collect_schema(),
        orient="row",
    )
    tables["orders"] = pl.concat([tables["orders"], extra])
    c = row(build_relationship_features(tables, AS_OF, FeatureConfig()).collect(), "C")
    assert c["order_trend"] == pytest.approx((0 / 91 - 1 / 109) * MONTH)


@pytest.mark.parametrize(
    ("signup", "contract_type", "as_of", "expected"),
    [
        (date(2020, 6, 15), "annual", date(2024, 6, 15), 0),  # on the anniversary itself
        (date(2020, 6, 15), "annual", date(2024, 6, 16), 364),  # next: 2025-06-15
        (date(2020, 6, 15), "two_year", date(2023, 6, 16), 365),  # term ends 2024-06-15
        (date(2020, 6, 15), "two_year", date(2022, 6, 15), 0),
        (date(2020, 2, 29), "annual", date(2023, 3, 1), 365),  # renews 2024-02-29
        (date(2020, 2, 29), "annual", date(2022, 3, 1), 364),  # renews 2023-02-28
        (date(2020, 6, 15), "monthly", date(2024, 1, 1), None),
    ],
)
def test_days_to_contract_end(
    signup: date, contract_type: str, as_of: date, expected: int | None
) -> None:
    frame = pl.DataFrame({"signup_date": [signup], "contract_type": [contract_type]})
    assert frame.select(days_to_contract_end(as_of)).item() == expected


def test_non_contractual_population_drops_lapsed_customers() -> None:
    # F's last order (2023-05-01) is 427 days old > 365 and F's tenure is >= 365: lapsed.
    # C has no order at all, but its tenure (61 days) is shorter than the inactivity period.
    config = replace(FeatureConfig(), churn_definition="non_contractual")
    frame = build_relationship_features(tiny_tables(), AS_OF, config).collect()
    assert frame["customer_id"].to_list() == ["A", "B", "C"]
    longer = replace(config, inactivity_days=500)
    frame = build_relationship_features(tiny_tables(), AS_OF, longer).collect()
    assert frame["customer_id"].to_list() == ["A", "B", "C", "F"]


def test_held_out_offers_are_not_offers_made() -> None:
    """A campaign's randomised control group is recorded with holdout true: no offer was made."""
    tables = tiny_tables()
    held = pl.DataFrame(
        {
            "offer_id": ["fh1", "fh2"],
            "customer_id": ["B", "B"],
            "offered_at": [date(2024, 4, 2), date(2024, 6, 1)],
            "kind": ["gift", "discount"],
            "cost": [0.0, 0.0],
            "accepted": pl.Series([None, None], dtype=pl.Boolean),
            "responded_at": pl.Series([None, None], dtype=pl.Date),
            "holdout": [True, True],
        }
    )
    offers = pl.concat(
        [tables["offers"].with_columns(holdout=pl.lit(None, dtype=pl.Boolean)), held.lazy()]
    )
    with_holdouts = build_relationship_features(
        tables | {"offers": offers}, AS_OF, FeatureConfig()
    ).collect()
    without = build_relationship_features(tables, AS_OF, FeatureConfig()).collect()
    assert with_holdouts.equals(without)
    # a false holdout flag is an ordinary offer
    offers = offers.with_columns(holdout=pl.lit(False))
    counted = build_relationship_features(tables | {"offers": offers}, AS_OF, FeatureConfig())
    assert row(counted.collect(), "B")["offers_made_12m"] == 4
