"""The point-in-time feature table and the training set built from snapshots of it.

:func:`build_features` gives one row per customer active at ``as_of`` — signed up before
``as_of`` and not ended before it (``end_date`` null or on/after ``as_of``); with the
non-contractual churn definition, customers who have lapsed (no order in the last
``FeatureConfig.inactivity_days`` and at least that much tenure) are left out as well.

Only events strictly before ``as_of`` are used (``order_date``, ``invoice_date``,
``offered_at`` before ``as_of``; ``opened_at`` before ``as_of`` 00:00), and each event's state is
its state at ``as_of`` (paid, resolved or answered only if that happened before ``as_of``).
Changing, adding or deleting events dated on/after ``as_of`` cannot change a feature.

Customers without events get 0 for counts and money. These stay null when there is nothing to
measure: ``recency_days`` (never ordered), ``days_since_last_complaint`` (never complained),
``hours_to_resolve_median``, ``hours_to_resolve_p90`` and ``share_resolved_beyond_24h`` (no
complaint resolved in the long window), ``days_sales_outstanding`` (nothing invoiced in the long
window), ``days_to_contract_end`` (monthly contracts), and the trends ``order_trend``,
``minor_near_miss_trend`` and ``net_margin_trend`` (tenure within the short window, so no
comparison period).

The plan is one ``group_by("customer_id")`` pass per event table joined to the customers;
collect it with ``engine="streaming"`` for large tables. Money is summed exactly (as decimals with
six places, see :func:`features.assembly.exact_sum`), so neither the engine nor the order of the
input rows changes a single bit of the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import polars as pl

from features import complaints, labels, profitability, relationship
from features.assembly import FeatureGroup, assemble
from features.config import FeatureConfig


def feature_groups(as_of: date, config: FeatureConfig) -> list[FeatureGroup]:
    """All feature groups at ``as_of``, in output order."""
    return [
        relationship.feature_group(as_of, config),
        profitability.feature_group(as_of, config),
        complaints.feature_group(as_of, config),
    ]


def feature_columns() -> list[str]:
    """Names of the feature columns (without ``customer_id``), in output order.

    The names do not depend on the configuration or the date.

    Returns:
        The column names of :func:`build_features` after ``customer_id``.
    """
    groups = feature_groups(date(2000, 1, 1), FeatureConfig())
    return [name for group in groups for name in group.columns]


def build_features(
    tables: Mapping[str, pl.LazyFrame], as_of: date, config: FeatureConfig
) -> pl.LazyFrame:
    """The feature table at ``as_of``: one row per active customer, events before ``as_of``.

    Args:
        tables: CRM tables keyed by ``customers``, ``orders``, ``payments``, ``complaints`` and
            ``offers``, with the columns and dtypes of :mod:`features.contract` (optional
            columns may be absent).
        as_of: Snapshot date.
        config: Feature configuration.

    Returns:
        LazyFrame with ``customer_id`` and :func:`feature_columns`, sorted by ``customer_id``.

    Raises:
        FeatureInputError: A table, a required column or a contract dtype is missing.
    """
    return assemble(tables, as_of, config, feature_groups(as_of, config))


def build_training_set(
    tables: Mapping[str, pl.LazyFrame],
    as_of_dates: Sequence[date],
    horizon_days: int,
    config: FeatureConfig,
) -> pl.LazyFrame:
    """Stacked snapshots: features at each ``as_of`` with the labels of the horizon after it.

    Each snapshot is one plan computing features and labels together (one pass per event table
    and snapshot); the snapshots are concatenated lazily.

    Args:
        tables: CRM tables keyed by name.
        as_of_dates: Snapshot dates (distinct). Each ``as_of + horizon_days`` should lie within
            the data, or the labels of the last snapshots are censored.
        horizon_days: Length of the label horizon in days.
        config: Feature configuration.

    Returns:
        LazyFrame with ``as_of``, ``customer_id``, the feature columns, ``churned`` and
        ``realised_net_margin``, sorted by ``as_of`` and ``customer_id``.

    Raises:
        ValueError: No dates, or a date given twice.
        FeatureInputError: The tables do not fit the contract.
    """
    dates = sorted(as_of_dates)
    if not dates:
        raise ValueError("build_training_set needs at least one as_of date")
    if len(set(dates)) != len(dates):
        raise ValueError(f"as_of_dates must be distinct, got {list(as_of_dates)}")
    snapshots = [
        assemble(
            tables,
            as_of,
            config,
            [*feature_groups(as_of, config), labels.feature_group(as_of, horizon_days, config)],
        ).select(pl.lit(as_of).alias("as_of"), pl.all())
        for as_of in dates
    ]
    return pl.concat(snapshots, how="vertical")
