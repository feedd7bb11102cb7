"""Building blocks shared by the feature groups: time windows, aggregations and their assembly.

A feature group (relationship, profitability, complaints, labels) is described as data: columns
computed on the customers table, aggregation expressions per event table, and derived columns
computed after the joins. :func:`assemble` turns any set of groups into one lazy plan with exactly
one ``group_by("customer_id").agg(...)`` pass per event table, left-joined on ``customer_id`` to
the active customers. Columns whose names start with ``_`` are intermediates and are dropped.

Point-in-time conventions used throughout:

* A window ``[start, end)`` contains dates ``start <= d < end``; for complaint timestamps the
  bounds are the midnights that start ``start`` and ``end``.
* Features at ``as_of`` use only events strictly before ``as_of`` (before ``as_of`` 00:00 for
  timestamps); the state of an event (paid, resolved, answered) is its state at ``as_of``, decided
  by comparing its state date with ``as_of``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import reduce

import polars as pl

from features.config import FeatureConfig
from features.contract import TABLES

# Days in an average month; trends are expressed per month.
DAYS_PER_MONTH = 365.0 / 12.0

EVENT_TABLES: tuple[str, ...] = ("orders", "payments", "complaints", "offers")


class FeatureInputError(ValueError):
    """The tables handed to a feature pipeline do not fit the data contract."""


@dataclass(frozen=True)
class Window:
    """A half-open period ``[start, end)`` of calendar days."""

    start: date
    end: date

    @classmethod
    def trailing(cls, as_of: date, days: int) -> Window:
        """The ``days`` days before ``as_of``: ``[as_of - days, as_of)``."""
        return cls(as_of - timedelta(days=days), as_of)

    @classmethod
    def following(cls, as_of: date, days: int) -> Window:
        """The ``days`` days from ``as_of`` on: ``[as_of, as_of + days)``."""
        return cls(as_of, as_of + timedelta(days=days))

    def contains(self, column: str) -> pl.Expr:
        """Whether the date column ``column`` falls in the window."""
        return pl.col(column).is_between(self.start, self.end, closed="left")

    def contains_timestamp(self, column: str) -> pl.Expr:
        """Whether the timestamp column ``column`` falls in the window (midnight bounds)."""
        return pl.col(column).is_between(midnight(self.start), midnight(self.end), closed="left")


def midnight(day: date) -> datetime:
    """The timestamp at which ``day`` starts."""
    return datetime.combine(day, time())


# Amounts are summed as decimals with six places. A float sum depends on the order of its terms,
# and the streaming engine adds partial sums in whatever order its threads finish: the same
# export gave features (and model metrics) differing in the last bit from run to run. A decimal
# sum is exact, so it depends on neither the engine's scheduling nor the order of the rows.
EXACT_SUM_DTYPE = pl.Decimal(38, 6)


def exact_sum(value: pl.Expr) -> pl.Expr:
    """Sum of ``value`` as a Float64 that does not depend on the order of the rows.

    Each value is rounded to six decimal places (a millionth of a currency unit) and the sum is
    taken exactly; NaN counts as missing, as it does in the table schemas.
    """
    return value.fill_nan(None).cast(EXACT_SUM_DTYPE).sum().cast(pl.Float64)


def when_sum(mask: pl.Expr, value: pl.Expr | float) -> pl.Expr:
    """Sum of ``value`` over the rows where ``mask`` holds (0 for none), as an exact sum."""
    value_expr = value if isinstance(value, pl.Expr) else pl.lit(float(value))
    return exact_sum(pl.when(mask).then(value_expr))


def when_count(mask: pl.Expr) -> pl.Expr:
    """Number of rows where ``mask`` holds, as Int64 (null masks count as false)."""
    return mask.fill_null(False).sum().cast(pl.Int64)


def monthly_trend(recent: str, total: str, config: FeatureConfig) -> pl.Expr:
    """Monthly rate over the short window minus the monthly rate over the period before it.

    ``recent`` holds the amount of the short window (last ``short_window_days``) and ``total``
    the amount of the long window; the comparison period is their difference (the
    ``long - short`` days before the short window). Rates are normalised by the days the
    customer was actually a customer in each period (``_tenure_days``), so a customer who signed
    up eight months ago is not shown a rising trend just because they were absent earlier. The
    trend is null when the comparison period lies entirely before signup.

    Args:
        recent: Column with the amount in the short window.
        total: Column with the amount in the long window.
        config: Window lengths.

    Returns:
        ``(recent / recent_days - (total - recent) / prior_days) * 365 / 12``.
    """
    short, long_ = config.short_window_days, config.long_window_days
    tenure = pl.col("_tenure_days")
    recent_days = pl.min_horizontal(tenure, pl.lit(short))
    prior_days = pl.min_horizontal(tenure, pl.lit(long_)) - short
    recent_rate = pl.col(recent) / recent_days
    prior_rate = (pl.col(total) - pl.col(recent)) / prior_days
    return (
        pl.when(prior_days > 0)
        .then((recent_rate - prior_rate) * DAYS_PER_MONTH)
        .otherwise(None)
        .cast(pl.Float64)
    )


@dataclass(frozen=True)
class Aggregation:
    """Aggregation expressions evaluated per customer on one event table.

    Attributes:
        table: Name of the event table (``orders``, ``payments``, ``complaints``, ``offers``).
        rows: Row filter the expressions need (e.g. ``order_date < as_of``); the assembled pass
            reads the union of the filters of all aggregations on the table. The expressions
            must still apply their own masks: the union may let more rows through.
        zero_filled: Expressions whose result is 0 for a customer without rows (counts, money).
        nullable: Expressions that stay null for a customer without rows (medians, last dates).
        separate_pass: None (the default) joins the table's single shared pass. A name gives the
            aggregation its own group-by over just its filtered rows and columns: for
            expressions the streaming engine cannot run (median, quantile), which would
            otherwise pull the whole shared pass into memory.
    """

    table: str
    rows: pl.Expr
    zero_filled: tuple[pl.Expr, ...] = ()
    nullable: tuple[pl.Expr, ...] = ()
    separate_pass: str | None = None


@dataclass(frozen=True)
class FeatureGroup:
    """A set of features: what to compute on customers, per event table, and afterwards.

    Attributes:
        name: Name of the group, for messages.
        columns: Names of the group's output columns, in output order; every column the group
            produces that does not start with ``_`` must be listed.
        customer_columns: Expressions evaluated on the customers table (one row per customer).
        aggregations: Per-table aggregations.
        derived: Stages of expressions evaluated after the joins, in order; each stage may use
            the columns produced by the earlier ones.
    """

    name: str
    columns: tuple[str, ...]
    customer_columns: tuple[pl.Expr, ...] = ()
    aggregations: tuple[Aggregation, ...] = ()
    derived: tuple[tuple[pl.Expr, ...], ...] = ()


def check_tables(tables: Mapping[str, pl.LazyFrame], needed: Sequence[str]) -> None:
    """Check that the needed tables are present with the contract's required columns and dtypes.

    Only the schema is resolved (no data is read); value checks belong to
    :mod:`features.schemas`.

    Args:
        tables: The CRM tables by name.
        needed: Names of the tables the caller reads.

    Raises:
        FeatureInputError: A table is missing, or one of its columns is missing or has a dtype
            other than the contract's.
    """
    for name in needed:
        if name not in tables:
            raise FeatureInputError(f"table {name!r} is missing; got tables {sorted(tables)}")
        schema = tables[name].collect_schema()
        for column in TABLES[name].columns:
            if column.name not in schema:
                if column.required:
                    raise FeatureInputError(
                        f"table {name!r} is missing required column {column.name!r}; "
                        f"it has columns {list(schema.names())}"
                    )
                continue
            if schema[column.name] != column.dtype:
                raise FeatureInputError(
                    f"table {name!r} column {column.name!r} has dtype {schema[column.name]}, "
                    f"the contract says {column.dtype}"
                )


def with_optional_columns(frame: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """Add the contract's optional columns that ``frame`` lacks, as typed nulls."""
    present = set(frame.collect_schema().names())
    missing = [
        pl.lit(None, dtype=column.dtype).alias(column.name)
        for column in TABLES[table].columns
        if not column.required and column.name not in present
    ]
    return frame.with_columns(missing) if missing else frame


def active_customers(customers: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """Customers active at ``as_of``: signed up before it and not ended before it."""
    return customers.filter(
        (pl.col("signup_date") < as_of)
        & (pl.col("end_date").is_null() | (pl.col("end_date") >= as_of))
    )


def population_aggregation(as_of: date, config: FeatureConfig) -> Aggregation | None:
    """The extra orders aggregation that the non-contractual population rule needs."""
    if config.churn_definition != "non_contractual":
        return None
    before = pl.col("order_date") < as_of
    return Aggregation(
        table="orders",
        rows=before,
        nullable=(
            pl.when(before).then(pl.col("order_date")).max().alias("_population_last_order"),
        ),
    )


def population_filter(as_of: date, config: FeatureConfig) -> pl.Expr | None:
    """Filter on the assembled frame removing lapsed non-contractual customers (or None)."""
    if config.churn_definition != "non_contractual":
        return None
    since = as_of - timedelta(days=config.inactivity_days)
    return (pl.col("_tenure_days") < config.inactivity_days) | (
        pl.col("_population_last_order") >= since
    ).fill_null(False)


def assemble(
    tables: Mapping[str, pl.LazyFrame],
    as_of: date,
    config: FeatureConfig,
    groups: Sequence[FeatureGroup],
) -> pl.LazyFrame:
    """Assemble feature groups into one lazy plan: one row per customer active at ``as_of``.

    Args:
        tables: The CRM tables (``customers`` and the event tables the groups read).
        as_of: Snapshot date; decides the population (see :func:`active_customers`, and
            ``FeatureConfig.inactivity_days`` for non-contractual churn).
        config: Feature configuration.
        groups: Feature groups to compute.

    Returns:
        A LazyFrame with ``customer_id`` and the groups' columns, sorted by ``customer_id``.

    Raises:
        FeatureInputError: The tables do not fit the contract.
    """
    aggregations = [agg for group in groups for agg in group.aggregations]
    extra = population_aggregation(as_of, config)
    if extra is not None:
        aggregations.append(extra)
    by_pass: dict[tuple[str, str], list[Aggregation]] = {}
    for agg in aggregations:
        by_pass.setdefault((agg.table, agg.separate_pass or ""), []).append(agg)
    check_tables(tables, ["customers", *{table for table, _ in by_pass}])

    frame = active_customers(tables["customers"], as_of).select(
        "customer_id",
        (pl.lit(as_of) - pl.col("signup_date")).dt.total_days().alias("_tenure_days"),
        *[expr for group in groups for expr in group.customer_columns],
    )

    zero_filled: list[str] = []
    for (table, _), aggs in sorted(
        by_pass.items(), key=lambda item: (EVENT_TABLES.index(item[0][0]), item[0][1])
    ):
        rows = reduce(operator.or_, [agg.rows for agg in aggs])
        exprs = [expr for agg in aggs for expr in (*agg.zero_filled, *agg.nullable)]
        per_customer = (
            with_optional_columns(tables[table], table)
            .filter(rows)
            .group_by("customer_id")
            .agg(exprs)
        )
        frame = frame.join(per_customer, on="customer_id", how="left")
        zero_filled += [expr.meta.output_name() for agg in aggs for expr in agg.zero_filled]

    if zero_filled:
        frame = frame.with_columns(pl.col(zero_filled).fill_null(0))
    keep = population_filter(as_of, config)
    if keep is not None:
        frame = frame.filter(keep)
    for group in groups:
        for stage in group.derived:
            frame = frame.with_columns(stage)

    columns = ["customer_id", *[name for group in groups for name in group.columns]]
    produced = [name for name in frame.collect_schema().names() if not name.startswith("_")]
    if sorted(produced) != sorted(columns):
        raise RuntimeError(
            f"feature groups {[group.name for group in groups]} declare columns {columns} "
            f"but produce {produced}"
        )
    return frame.select(columns).sort("customer_id")
