"""Profitability features: what a customer earns us, net of what serving them costs.

For a window ``[start, end)`` (the trailing 3 and 12 months before ``as_of``, or the label
horizon after it):

* ``revenue``, ``cost_of_goods``, ``discounts`` — sums over orders dated in the window;
  ``gross_margin = revenue - cost_of_goods - discounts`` (``orders.revenue`` is the gross
  invoiced value before the discount).
* ``cost_to_serve = handling_minutes * cost_per_handling_minute + escalations *
  cost_per_escalation`` over complaints opened in the window.
* ``compensation`` — cost of offers accepted in the window (``accepted`` is true and
  ``responded_at`` falls in the window). An answer without a ``responded_at`` cannot be placed in
  time and is treated as no answer.
* ``receivables_provision`` — expected bad debt. Rule: an invoice issued in the window that is
  still unpaid at the window's end (``paid_date`` null or on/after ``end``) and is then either
  overdue (``due_date < end``) or disputed/withheld counts with
  ``receivables_provision_rate`` (default 100 %) of its amount. Each invoice counts once.
* ``net_margin = gross_margin - cost_to_serve - compensation - receivables_provision``.

At ``as_of`` (not windowed), from invoices issued before ``as_of`` and their payment state at
``as_of`` (a ``paid_date`` on/after ``as_of`` means unpaid then):

* ``receivables_open`` — unpaid amount; ``receivables_overdue`` — unpaid and past due
  (``due_date < as_of``); ``receivables_disputed`` — unpaid and disputed.
* ``invoiced_12m`` — amount invoiced in the long window;
  ``days_sales_outstanding = receivables_open / invoiced_12m * long_window_days`` (null when
  nothing was invoiced in the long window).

``net_margin_trend`` — monthly net margin in the last 3 months minus that of the 9 months
before, normalised by the days the customer was a customer (see
:func:`features.assembly.monthly_trend`).

Note: the ``disputed`` flag has no date in the contract; it is the flag's state at export time.
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
    when_sum,
)
from features.config import FeatureConfig

WINDOW_COLUMNS: tuple[str, ...] = (
    "revenue",
    "cost_of_goods",
    "discounts",
    "gross_margin",
    "cost_to_serve",
    "compensation",
    "receivables_provision",
    "net_margin",
)
RECEIVABLE_COLUMNS: tuple[str, ...] = (
    "receivables_open",
    "receivables_overdue",
    "receivables_disputed",
    "invoiced_12m",
    "days_sales_outstanding",
)


def output_columns() -> tuple[str, ...]:
    """Names of the profitability feature columns, in output order."""
    windowed = tuple(f"{base}_{tag}" for tag in ("3m", "12m") for base in WINDOW_COLUMNS)
    return (*windowed, "net_margin_trend", *RECEIVABLE_COLUMNS)


def window_aggregations(
    window: Window, tag: str, config: FeatureConfig
) -> tuple[tuple[Aggregation, ...], tuple[pl.Expr, ...]]:
    """Aggregations and derived columns for the profitability of one window.

    Args:
        window: The period ``[start, end)``; payment and offer states are judged at ``end``.
        tag: Suffix of the column names (``"12m"`` gives ``revenue_12m`` and so on); a tag
            starting with ``_`` is used as a prefix of intermediate names instead
            (``"_label"`` gives ``_label_revenue``).
        config: Cost rates and the provision rate.

    Returns:
        The per-table aggregations and one stage of derived columns
        (``gross_margin`` and ``net_margin``).
    """

    def name(base: str) -> str:
        return f"{tag}_{base}" if tag.startswith("_") else f"{base}_{tag}"

    in_orders = window.contains("order_date")
    orders = Aggregation(
        table="orders",
        rows=in_orders,
        zero_filled=(
            when_sum(in_orders, pl.col("revenue")).alias(name("revenue")),
            when_sum(in_orders, pl.col("cost_of_goods")).alias(name("cost_of_goods")),
            when_sum(in_orders, pl.col("discount")).alias(name("discounts")),
        ),
    )
    in_complaints = window.contains_timestamp("opened_at")
    serve_cost = (
        pl.col("handling_minutes") * config.cost_per_handling_minute
        + pl.col("escalations").cast(pl.Float64) * config.cost_per_escalation
    )
    complaints = Aggregation(
        table="complaints",
        rows=in_complaints,
        zero_filled=(when_sum(in_complaints, serve_cost).alias(name("cost_to_serve")),),
    )
    accepted = (
        pl.col("accepted").eq(True)
        & window.contains("responded_at")
        & (pl.col("offered_at") < window.end)
    ).fill_null(False)
    offers = Aggregation(
        table="offers",
        rows=accepted,
        zero_filled=(when_sum(accepted, pl.col("cost")).alias(name("compensation")),),
    )
    unpaid_at_end = pl.col("paid_date").is_null() | (pl.col("paid_date") >= window.end)
    doubtful = (
        window.contains("invoice_date")
        & unpaid_at_end
        & ((pl.col("due_date") < window.end) | pl.col("disputed"))
    ).fill_null(False)
    payments = Aggregation(
        table="payments",
        rows=window.contains("invoice_date"),
        zero_filled=(
            (when_sum(doubtful, pl.col("amount")) * config.receivables_provision_rate).alias(
                name("receivables_provision")
            ),
        ),
    )
    gross = pl.col(name("revenue")) - pl.col(name("cost_of_goods")) - pl.col(name("discounts"))
    net = (
        gross
        - pl.col(name("cost_to_serve"))
        - pl.col(name("compensation"))
        - pl.col(name("receivables_provision"))
    )
    derived = (gross.alias(name("gross_margin")), net.alias(name("net_margin")))
    return (orders, complaints, offers, payments), derived


def receivable_aggregation(as_of: date, config: FeatureConfig) -> Aggregation:
    """Receivables at ``as_of`` from the invoices issued before it (see module docstring)."""
    issued = pl.col("invoice_date") < as_of
    unpaid = issued & (pl.col("paid_date").is_null() | (pl.col("paid_date") >= as_of))
    long_window = Window.trailing(as_of, config.long_window_days)
    return Aggregation(
        table="payments",
        # every sum below is over unpaid or long-window invoices; leaving out the invoices paid
        # before as_of (most of the history) keeps them out of the payments pass altogether
        rows=unpaid | long_window.contains("invoice_date"),
        zero_filled=(
            when_sum(unpaid, pl.col("amount")).alias("receivables_open"),
            when_sum(unpaid & (pl.col("due_date") < as_of), pl.col("amount")).alias(
                "receivables_overdue"
            ),
            when_sum(unpaid & pl.col("disputed").fill_null(False), pl.col("amount")).alias(
                "receivables_disputed"
            ),
            when_sum(long_window.contains("invoice_date"), pl.col("amount")).alias("invoiced_12m"),
        ),
    )


def feature_group(as_of: date, config: FeatureConfig) -> FeatureGroup:
    """The profitability feature group at ``as_of`` (3 and 12 month windows, receivables).

    Args:
        as_of: Snapshot date; only events before it are used.
        config: Feature configuration.

    Returns:
        The group, to be assembled by :func:`features.assembly.assemble`.
    """
    aggregations: list[Aggregation] = []
    derived: list[pl.Expr] = []
    for tag, days in (("3m", config.short_window_days), ("12m", config.long_window_days)):
        aggs, window_derived = window_aggregations(Window.trailing(as_of, days), tag, config)
        aggregations += aggs
        derived += window_derived
    aggregations.append(receivable_aggregation(as_of, config))
    dso = (
        pl.when(pl.col("invoiced_12m") > 0)
        .then(pl.col("receivables_open") / pl.col("invoiced_12m") * config.long_window_days)
        .otherwise(None)
        .alias("days_sales_outstanding")
    )
    trend = monthly_trend("net_margin_3m", "net_margin_12m", config).alias("net_margin_trend")
    return FeatureGroup(
        name="profitability",
        columns=output_columns(),
        aggregations=tuple(aggregations),
        derived=(tuple(derived), (trend, dso)),
    )


def build_profitability_features(
    tables: Mapping[str, pl.LazyFrame], as_of: date, config: FeatureConfig
) -> pl.LazyFrame:
    """Profitability features alone, one row per customer active at ``as_of``.

    Args:
        tables: CRM tables keyed by name (``customers``, ``orders``, ``payments``,
            ``complaints``, ``offers``).
        as_of: Snapshot date; only events before it are used.
        config: Feature configuration.

    Returns:
        LazyFrame with ``customer_id`` and the profitability columns, sorted by customer.
    """
    return assemble(tables, as_of, config, [feature_group(as_of, config)])
