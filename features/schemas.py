"""Pandera schemas (polars backend) for the five CRM tables.

The schemas are derived from :data:`features.contract.TABLES` - dtypes, nullability and which
columns are required come from there - and add the checks a dtype cannot express:

* unique keys (``order_id``, ``invoice_id``, ``complaint_id``, ``offer_id``, ``customer_id`` in
  ``customers``);
* non-negative, finite amounts (money, handling minutes, escalations), at most
  :data:`MAX_AMOUNT`: features sum them exactly as 38-digit decimals with six places
  (:data:`features.assembly.EXACT_SUM_DTYPE`, at most 10^32), so a billion rows of the largest
  amount still fit; a value such as 1e300 is a data error, not a conversion failure later;
* enumerated values (segment, contract type, channel, category, severity, stage, offer kind);
  ``region`` is free text;
* cross-column date order (``resolved_at >= opened_at`` and friends), declared on the later
  column so a failure names the column an admin has to fix;
* a held-out offer (``holdout`` true: the campaign's randomised control group, never
  contacted) carries no answer: ``accepted`` is null.

Optional columns (``required=False`` in the contract) may be absent; unknown extra columns are
allowed and kept (``strict=False``). The row-level behaviour of the loader (rejects, readable
problems) lives in :mod:`features.loader`; this module only declares.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandera.polars as pa
import polars as pl

from features.contract import (
    CHANNELS,
    COMPLAINT_CATEGORIES,
    CONTRACT_TYPES,
    OFFER_KINDS,
    SEGMENTS,
    SEVERITIES,
    STAGES,
    TABLES,
    Table,
)

# Columns whose values are counts or amounts of money/time and can never be negative.
NON_NEGATIVE: Mapping[str, tuple[str, ...]] = {
    "orders": ("revenue", "cost_of_goods", "discount"),
    "payments": ("amount",),
    "complaints": ("handling_minutes", "escalations"),
    "offers": ("cost",),
}

# The largest amount (or count) accepted in one cell: 10^15, a quadrillion currency units.
MAX_AMOUNT = 1e15

# (table, column) -> the closed set of values the column may take.
ENUMS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("customers", "segment"): SEGMENTS,
    ("customers", "contract_type"): CONTRACT_TYPES,
    ("complaints", "channel"): CHANNELS,
    ("complaints", "severity"): SEVERITIES,
    ("complaints", "stage"): STAGES,
    ("offers", "kind"): OFFER_KINDS,
}
# Columns whose values the loader writes as identifiers: trimmed, lower case, runs of spaces
# and hyphens as one underscore ("Near miss" -> "near_miss", "Web" -> "web"). The enumerations
# above, and the complaint category: an open set (COMPLAINT_CATEGORIES are the synthetic
# world's; features only compare a customer's categories with each other).
NORMALISED: frozenset[tuple[str, str]] = frozenset({*ENUMS, ("complaints", "category")})
OPEN_CATEGORIES_EXAMPLES: tuple[str, ...] = COMPLAINT_CATEGORIES

# table -> (later column, earlier column) pairs: the later one must not precede the earlier one.
DATE_ORDER: Mapping[str, tuple[tuple[str, str], ...]] = {
    "customers": (("end_date", "signup_date"),),
    "payments": (("due_date", "invoice_date"), ("paid_date", "invoice_date")),
    "complaints": (("resolved_at", "opened_at"),),
    "offers": (("responded_at", "offered_at"),),
}


# (table, column) -> (check name, the other columns a failure example shows, rule as an expression
# that is true where the row is fine).
ROW_RULES: Mapping[tuple[str, str], tuple[str, tuple[str, ...], pl.Expr]] = {
    ("offers", "holdout"): (
        "a held-out offer has no answer (accepted is null)",
        ("accepted",),
        pl.col("holdout").is_null() | ~pl.col("holdout") | pl.col("accepted").is_null(),
    ),
}


def row_rule_check(table: str, column: str) -> pa.Check:
    """The pandera check of the cross-column rule declared on ``table.column`` in ROW_RULES."""
    name, _, rule = ROW_RULES[(table, column)]

    def _check(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(rule)

    return pa.Check(_check, name=name, error=name)


def date_order_check(later: str, earlier: str) -> pa.Check:
    """Build a column check asserting ``later >= earlier`` row by row.

    A null on either side passes: a null ``resolved_at`` means "still open", and a null in a
    non-nullable column is reported by the nullability check instead.

    Args:
        later: Column the check is attached to (the one that must not come first).
        earlier: Column it is compared with, in the same frame.

    Returns:
        A pandera check named ``"<later> >= <earlier>"``.
    """
    rule = f"{later} >= {earlier}"

    def _check(data: pa.PolarsData) -> pl.LazyFrame:
        value, other = pl.col(data.key), pl.col(earlier)
        return data.lazyframe.select(value.is_null() | other.is_null() | (value >= other))

    return pa.Check(_check, name=rule, error=rule)


def _not_infinite() -> pa.Check:
    # NaN already counts as null for pandera's polars backend; infinity passes ">= 0" though.
    def _check(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(~pl.col(data.key).is_infinite())

    return pa.Check(_check, name="finite", error="finite")


def _at_most(limit: float, *, float_column: bool) -> pa.Check:
    # polars orders NaN above every number: NaN is left to the null checks and infinity to the
    # "finite" check, so each bad value gets one reason
    rule = f"<= {limit:.0e}"

    def _check(data: pa.PolarsData) -> pl.LazyFrame:
        value = pl.col(data.key)
        within = value <= limit
        if float_column:
            within = within | value.is_nan() | value.is_infinite()
        return data.lazyframe.select(within)

    return pa.Check(_check, name=rule, error=rule)


def _column_checks(table: Table, column: str, dtype: pl.DataType) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if column in NON_NEGATIVE.get(table.name, ()):
        checks.append(pa.Check.ge(0))
        checks.append(_at_most(MAX_AMOUNT, float_column=dtype.is_float()))
        if dtype.is_float():
            checks.append(_not_infinite())
    if (table.name, column) in ENUMS:
        checks.append(pa.Check.isin(list(ENUMS[(table.name, column)])))
    checks.extend(
        date_order_check(later, earlier)
        for later, earlier in DATE_ORDER.get(table.name, ())
        if later == column
    )
    if (table.name, column) in ROW_RULES:
        checks.append(row_rule_check(table.name, column))
    return checks


def build_schema(table: Table) -> pa.DataFrameSchema:
    """Build the pandera schema of one contract table.

    Args:
        table: The contract table (see :data:`features.contract.TABLES`).

    Returns:
        A non-strict, non-coercing schema: dtypes must already match the contract (the loader
        casts before validating), optional columns may be missing and extra columns pass.
    """
    columns = {
        column.name: pa.Column(
            column.dtype,
            checks=_column_checks(table, column.name, column.dtype),
            nullable=column.nullable,
            unique=column.name == table.key,
            required=column.required,
            description=column.description or None,
        )
        for column in table.columns
    }
    return pa.DataFrameSchema(columns, strict=False, coerce=False, name=table.name)


SCHEMAS: dict[str, pa.DataFrameSchema] = {name: build_schema(t) for name, t in TABLES.items()}
