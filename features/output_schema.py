"""Pandera (polars backend) schemas for the feature table and the training set.

They check what the pipelines promise: the exact columns in order with their dtypes, one row per
customer (per ``as_of`` in the training set), no negative counts or amounts where none can be,
shares within [0, 1], which columns may be null, and a few cross-column invariants (a 3-month
count never exceeds its 12-month count, answered offers never exceed offers made, ...).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

from features.contract import CONTRACT_TYPES, SEGMENTS
from features.pipeline import feature_columns
from features.row_rules import FEATURE_TABLE_RULES, NotAbove

# Column -> (dtype, nullable, checks). Kinds: counts (Int64 >= 0), amounts (Float64 >= 0),
# signed amounts and trends (Float64, any sign), day counts, shares.
_COUNT = (pl.Int64, False, (pa.Check.ge(0),))
_AMOUNT = (pl.Float64, False, (pa.Check.ge(0),))
_SIGNED = (pl.Float64, False, ())
_TREND = (pl.Float64, True, ())

_WINDOW_SPECS: dict[str, tuple[pl.DataType | type[pl.DataType], bool, tuple[pa.Check, ...]]] = {
    "revenue": _AMOUNT,
    "cost_of_goods": _AMOUNT,
    "discounts": _AMOUNT,
    "gross_margin": _SIGNED,
    "cost_to_serve": _AMOUNT,
    "compensation": _AMOUNT,
    "receivables_provision": _AMOUNT,
    "net_margin": _SIGNED,
}

COLUMN_SPECS: dict[str, tuple[pl.DataType | type[pl.DataType], bool, tuple[pa.Check, ...]]] = {
    # relationship
    "segment": (pl.String, False, (pa.Check.isin(SEGMENTS),)),
    "region": (pl.String, False, ()),  # free text in the input contract
    "contract_type": (pl.String, False, (pa.Check.isin(CONTRACT_TYPES),)),
    "tenure_days": (pl.Int64, False, (pa.Check.ge(1),)),
    "days_to_contract_end": (pl.Int64, True, (pa.Check.in_range(0, 731),)),
    "recency_days": (pl.Int64, True, (pa.Check.ge(1),)),
    "orders_3m": _COUNT,
    "orders_12m": _COUNT,
    "monetary_12m": _AMOUNT,
    "order_trend": _TREND,
    "offers_made_12m": _COUNT,
    "offers_accepted_12m": _COUNT,
    "offers_declined_12m": _COUNT,
    # profitability
    **{f"{base}_3m": spec for base, spec in _WINDOW_SPECS.items()},
    **{f"{base}_12m": spec for base, spec in _WINDOW_SPECS.items()},
    "net_margin_trend": _TREND,
    "receivables_open": _AMOUNT,
    "receivables_overdue": _AMOUNT,
    "receivables_disputed": _AMOUNT,
    "invoiced_12m": _AMOUNT,
    "days_sales_outstanding": (pl.Float64, True, (pa.Check.ge(0),)),
    # complaints
    "complaints_3m": _COUNT,
    "complaints_12m": _COUNT,
    "minor_near_miss_trend": _TREND,
    "hours_to_resolve_median": (pl.Float64, True, (pa.Check.ge(0),)),
    "hours_to_resolve_p90": (pl.Float64, True, (pa.Check.ge(0),)),
    "share_resolved_beyond_24h": (pl.Float64, True, (pa.Check.in_range(0, 1),)),
    "escalations_12m": _COUNT,
    "open_complaints": _COUNT,
    "open_major_complaints": _COUNT,
    "repeat_complaints_12m": _COUNT,
    "days_since_last_complaint": (pl.Int64, True, (pa.Check.ge(1),)),
    "venting_words_12m": _COUNT,
    "venting_rate_12m": _AMOUNT,
}


class FeatureTableError(ValueError):
    """A feature table or training set breaks its schema.

    Attributes:
        failure_cases: Pandera's table of failures (column, check, failing value, row index).
    """

    def __init__(self, message: str, failure_cases: pl.DataFrame) -> None:
        super().__init__(message)
        self.failure_cases = failure_cases


def _spec(name: str) -> tuple[pl.DataType | type[pl.DataType], bool, tuple[pa.Check, ...]]:
    if name in COLUMN_SPECS:
        return COLUMN_SPECS[name]
    if name.startswith("complaints_") and name.endswith("_12m"):
        return _COUNT  # per severity and per channel
    raise KeyError(f"no output schema for feature column {name!r}")


def _columns() -> dict[str, pa.Column]:
    columns = {"customer_id": pa.Column(pl.String, nullable=False)}
    for name in feature_columns():
        dtype, nullable, checks = _spec(name)
        columns[name] = pa.Column(dtype, checks=list(checks), nullable=nullable)
    return columns


def _check(rule: NotAbove) -> pa.Check:
    """A row-wise pandera check of one cross-column rule (see :mod:`features.row_rules`)."""
    return pa.Check(lambda data: data.lazyframe.select(rule.expression()), name=rule.name)


def _checks() -> list[pa.Check]:
    return [_check(rule) for rule in FEATURE_TABLE_RULES]


def feature_table_schema() -> pa.DataFrameSchema:
    """Schema of :func:`features.pipeline.build_features` output (collected).

    Returns:
        A strict, ordered schema with ``customer_id`` unique.
    """
    return pa.DataFrameSchema(
        _columns(),
        checks=_checks(),
        strict=True,
        ordered=True,
        unique=["customer_id"],
        name="feature_table",
    )


def training_set_schema() -> pa.DataFrameSchema:
    """Schema of :func:`features.pipeline.build_training_set` output (collected).

    Returns:
        A strict, ordered schema with ``(as_of, customer_id)`` unique.
    """
    columns = {
        "as_of": pa.Column(pl.Date, nullable=False),
        **_columns(),
        "churned": pa.Column(pl.Boolean, nullable=False),
        "realised_net_margin": pa.Column(pl.Float64, nullable=False),
    }
    return pa.DataFrameSchema(
        columns,
        checks=_checks(),
        strict=True,
        ordered=True,
        unique=["as_of", "customer_id"],
        name="training_set",
    )


def _summarise(df: pl.DataFrame, cases: pl.DataFrame, schema_name: str | None) -> pl.DataFrame:
    """One line per failed (column, check): number of rows and up to 5 examples.

    An example names the customer of the failing row and, for a column check, the value
    (a whole-row check would otherwise print the whole row).
    """
    ids = (
        df.select(pl.col("customer_id").cast(pl.String))
        .with_row_index("index")
        .with_columns(pl.col("index").cast(pl.Int64))
        if "customer_id" in df.columns
        else pl.DataFrame(schema={"index": pl.Int64, "customer_id": pl.String})
    )
    example = pl.format("customer_id={}", pl.col("customer_id").fill_null("?"))
    example = (
        pl.when(pl.col("column") == schema_name)
        .then(example)
        .otherwise(pl.concat_str(example, pl.lit(": "), pl.col("failure_case"), ignore_nulls=True))
    )
    return (
        cases.with_columns(pl.col("index").cast(pl.Int64))
        .join(ids, on="index", how="left", maintain_order="left")
        .group_by("column", "check", maintain_order=True)
        .agg(pl.len().alias("rows"), example.head(5).alias("examples"))
    )


def _validate(df: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    try:
        return schema.validate(df, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        lines = [
            f"{'column ' + repr(column) if column != schema.name else 'rows'} fail {check} "
            f"in {rows} row(s), e.g. {examples}"
            for column, check, rows, examples in _summarise(df, cases, schema.name).iter_rows()
        ]
        raise FeatureTableError(
            f"{schema.name} breaks its schema:\n" + "\n".join(lines), cases
        ) from errors


def validate_feature_table(df: pl.DataFrame) -> pl.DataFrame:
    """Validate a collected feature table.

    Args:
        df: Output of :func:`features.pipeline.build_features`, collected.

    Returns:
        ``df`` unchanged when it is valid.

    Raises:
        FeatureTableError: Every failed check, with the column, the check, the number of
            failing rows and example values.
    """
    return _validate(df, feature_table_schema())


def validate_training_set(df: pl.DataFrame) -> pl.DataFrame:
    """Validate a collected training set.

    Args:
        df: Output of :func:`features.pipeline.build_training_set`, collected.

    Returns:
        ``df`` unchanged when it is valid.

    Raises:
        FeatureTableError: Every failed check, as in :func:`validate_feature_table`.
    """
    return _validate(df, training_set_schema())
