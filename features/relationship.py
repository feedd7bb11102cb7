"""Relationship features: who the customer is, how long and how often they have bought, and
what we have offered them.

* ``segment``, ``region``, ``contract_type`` — copied from ``customers`` (their state at export
  time: the contract keeps no history of them).
* ``tenure_days`` — days from ``signup_date`` to ``as_of``.
* ``days_to_contract_end`` — days from ``as_of`` to the end of the current contract term: the
  first date on/after ``as_of`` that is a whole number of terms (1 year for ``annual``, 2 years
  for ``two_year``) after ``signup_date`` (a 29 February signup renews on 28 February). Null for
  ``monthly`` (renews every month) and any other contract type.
* RFM: ``recency_days`` (days since the last order before ``as_of``; null if there was none),
  ``orders_3m`` and ``orders_12m`` (frequency), ``monetary_12m`` (mean revenue per order over the
  long window; 0 without orders).
* ``order_trend`` — monthly order rate in the last 3 months minus that of the 9 months before
  (see :func:`features.assembly.monthly_trend`; null when tenure is within the short window).
* Offers made in the long window (``offered_at`` in it): ``offers_made_12m``;
  ``offers_accepted_12m`` and ``offers_declined_12m`` count those with an answer known at
  ``as_of`` (``responded_at`` before ``as_of``); a later or undated answer counts as none yet.
  Rows with ``holdout`` true record a customer held out of a campaign as its control group:
  no offer was made, so they count nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import polars as pl

from features.assembly import (
    Aggregation,
    FeatureGroup,
    Window,
    assemble,
    monthly_trend,
    when_count,
    when_sum,
)
from features.config import FeatureConfig

CONTRACT_TERM_YEARS: dict[str, int] = {"annual": 1, "two_year": 2}

COLUMNS: tuple[str, ...] = (
    "segment",
    "region",
    "contract_type",
    "tenure_days",
    "days_to_contract_end",
    "recency_days",
    "orders_3m",
    "orders_12m",
    "monetary_12m",
    "order_trend",
    "offers_made_12m",
    "offers_accepted_12m",
    "offers_declined_12m",
)


def days_to_contract_end(as_of: date) -> pl.Expr:
    """Days from ``as_of`` to the end of the current contract term (see module docstring).

    Args:
        as_of: Snapshot date; must be after ``signup_date``.

    Returns:
        Int64 expression on the customers table, null for monthly and unknown contract types.
    """
    term = pl.col("contract_type").replace_strict(
        CONTRACT_TERM_YEARS, default=None, return_dtype=pl.Int64
    )
    elapsed_years = pl.lit(as_of.year, dtype=pl.Int64) - pl.col("signup_date").dt.year()
    terms = elapsed_years // term
    candidate = pl.col("signup_date").dt.offset_by(pl.format("{}y", terms * term))
    following = pl.col("signup_date").dt.offset_by(pl.format("{}y", (terms + 1) * term))
    term_end = pl.when(candidate >= as_of).then(candidate).otherwise(following)
    return (term_end - pl.lit(as_of)).dt.total_days().cast(pl.Int64)


def feature_group(as_of: date, config: FeatureConfig) -> FeatureGroup:
    """The relationship feature group at ``as_of``.

    Args:
        as_of: Snapshot date; only events before it are used.
        config: Feature configuration (window lengths).

    Returns:
        The group, to be assembled by :func:`features.assembly.assemble`.
    """
    before = pl.col("order_date") < as_of
    short = Window.trailing(as_of, config.short_window_days).contains("order_date")
    long_ = Window.trailing(as_of, config.long_window_days).contains("order_date")
    orders = Aggregation(
        table="orders",
        rows=before,
        zero_filled=(
            when_count(short).alias("orders_3m"),
            when_count(long_).alias("orders_12m"),
            # the same sum as profitability's revenue_12m, which the engine then computes once;
            # monetary_12m divides it by orders_12m instead of a separate mean over every order
            when_sum(long_, pl.col("revenue")).alias("_revenue_12m"),
        ),
        nullable=(pl.when(before).then(pl.col("order_date")).max().alias("_last_order_date"),),
    )
    made = Window.trailing(as_of, config.long_window_days).contains("offered_at") & ~pl.col(
        "holdout"
    ).fill_null(False)
    answered = made & (pl.col("responded_at") < as_of)
    offers = Aggregation(
        table="offers",
        rows=made,
        zero_filled=(
            when_count(made).alias("offers_made_12m"),
            when_count(answered & pl.col("accepted").eq(True)).alias("offers_accepted_12m"),
            when_count(answered & pl.col("accepted").eq(False)).alias("offers_declined_12m"),
        ),
    )
    return FeatureGroup(
        name="relationship",
        columns=COLUMNS,
        customer_columns=(
            pl.col("segment"),
            pl.col("region"),
            pl.col("contract_type"),
            (pl.lit(as_of) - pl.col("signup_date"))
            .dt.total_days()
            .cast(pl.Int64)
            .alias("tenure_days"),
            days_to_contract_end(as_of).alias("days_to_contract_end"),
        ),
        aggregations=(orders, offers),
        derived=(
            (
                (pl.lit(as_of) - pl.col("_last_order_date"))
                .dt.total_days()
                .cast(pl.Int64)
                .alias("recency_days"),
                monthly_trend("orders_3m", "orders_12m", config).alias("order_trend"),
                pl.when(pl.col("orders_12m") > 0)
                .then(pl.col("_revenue_12m") / pl.col("orders_12m"))
                .otherwise(0.0)
                .alias("monetary_12m"),
            ),
        ),
    )


def build_relationship_features(
    tables: Mapping[str, pl.LazyFrame], as_of: date, config: FeatureConfig
) -> pl.LazyFrame:
    """Relationship features alone, one row per customer active at ``as_of``.

    Args:
        tables: CRM tables keyed by name.
        as_of: Snapshot date; only events before it are used.
        config: Feature configuration.

    Returns:
        LazyFrame with ``customer_id`` and the relationship columns, sorted by customer.
    """
    return assemble(tables, as_of, config, [feature_group(as_of, config)])
