"""Labels: what happened in the horizon after ``as_of`` — churn and the realised net margin.

* ``churned`` — contractual definition (``FeatureConfig.churn_definition == "contractual"``):
  ``customers.end_date`` falls in ``[as_of, as_of + horizon_days)``. Non-contractual: the
  customer places no order in that horizon.
* ``realised_net_margin`` — the net margin of the horizon, with exactly the definition of
  :mod:`features.profitability` applied to the window ``[as_of, as_of + horizon_days)``:
  orders, complaints opened and offers accepted in the horizon, and the provision for invoices
  issued in the horizon that are overdue or disputed and unpaid at its end.

Labels are only meaningful when the data reach ``as_of + horizon_days``; choosing such dates is
the caller's job (the functions here have no clock and cannot know the export date). The
population is that of :func:`features.pipeline.build_features` at ``as_of``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import polars as pl

from features import profitability
from features.assembly import Aggregation, FeatureGroup, Window, assemble, when_count
from features.config import FeatureConfig

COLUMNS: tuple[str, ...] = ("churned", "realised_net_margin")


def feature_group(as_of: date, horizon_days: int, config: FeatureConfig) -> FeatureGroup:
    """The label group for the horizon ``[as_of, as_of + horizon_days)``.

    Args:
        as_of: Snapshot date; the horizon starts on it.
        horizon_days: Length of the horizon in days (> 0).
        config: Churn definition and the net-margin rates.

    Returns:
        The group, to be assembled by :func:`features.assembly.assemble`.

    Raises:
        ValueError: ``horizon_days`` is not positive.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be > 0, got {horizon_days}")
    horizon = Window.following(as_of, horizon_days)
    margin_aggs, margin_derived = profitability.window_aggregations(horizon, "_label", config)
    in_horizon = horizon.contains("order_date")
    orders = Aggregation(
        table="orders",
        rows=in_horizon,
        zero_filled=(when_count(in_horizon).alias("_label_orders"),),
    )
    if config.churn_definition == "contractual":
        churned = pl.col("_label_end_in_horizon")
    else:
        churned = pl.col("_label_orders") == 0
    return FeatureGroup(
        name="labels",
        columns=COLUMNS,
        customer_columns=(
            horizon.contains("end_date").fill_null(False).alias("_label_end_in_horizon"),
        ),
        aggregations=(*margin_aggs, orders),
        derived=(
            margin_derived,
            (
                churned.alias("churned"),
                pl.col("_label_net_margin").alias("realised_net_margin"),
            ),
        ),
    )


def build_labels(
    tables: Mapping[str, pl.LazyFrame],
    as_of: date,
    horizon_days: int,
    config: FeatureConfig,
) -> pl.LazyFrame:
    """Labels for the customers active at ``as_of`` over the following ``horizon_days`` days.

    Args:
        tables: CRM tables keyed by name.
        as_of: Snapshot date; the horizon is ``[as_of, as_of + horizon_days)``.
        horizon_days: Length of the horizon in days.
        config: Feature configuration (churn definition, cost rates).

    Returns:
        LazyFrame with ``customer_id``, ``churned`` (bool) and ``realised_net_margin``
        (float), sorted by customer.
    """
    return assemble(tables, as_of, config, [feature_group(as_of, horizon_days, config)])
