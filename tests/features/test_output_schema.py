"""The output schemas accept what the pipelines produce and reject broken feature tables."""

from __future__ import annotations

import re

import polars as pl
import pytest

from features.config import FeatureConfig
from features.output_schema import (
    FeatureTableError,
    feature_table_schema,
    validate_feature_table,
    validate_training_set,
)
from features.pipeline import build_features, build_training_set, feature_columns
from tests.features.tiny_crm import AS_OF, HORIZON_DAYS, tiny_tables


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return build_features(tiny_tables(), AS_OF, FeatureConfig()).collect()


def test_schema_covers_exactly_the_feature_columns() -> None:
    assert list(feature_table_schema().columns) == ["customer_id", *feature_columns()]


def test_tiny_feature_table_is_valid(features: pl.DataFrame) -> None:
    assert validate_feature_table(features).equals(features)


def test_tiny_training_set_is_valid() -> None:
    training = build_training_set(
        tiny_tables(), [AS_OF, AS_OF.replace(month=1)], HORIZON_DAYS, FeatureConfig()
    ).collect()
    assert validate_training_set(training).height == training.height


def test_negative_count_is_rejected_with_column_and_customer(features: pl.DataFrame) -> None:
    bad = features.with_columns(
        pl.when(pl.col("customer_id") == "B")
        .then(-1)
        .otherwise(pl.col("open_complaints"))
        .alias("open_complaints")
    )
    with pytest.raises(FeatureTableError) as raised:
        validate_feature_table(bad)
    message = str(raised.value)
    assert "column 'open_complaints' fail greater_than_or_equal_to(0) in 1 row(s)" in message
    assert "customer_id=B: -1" in message
    # B's open_major_complaints (0) is now above open_complaints (-1): a row-level invariant
    assert "open_major_complaints_not_above_open_complaints" in message


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("share_resolved_beyond_24h", 1.5, "in_range(0, 1)"),
        ("revenue_12m", -0.01, "greater_than_or_equal_to(0)"),
        ("tenure_days", 0, "greater_than_or_equal_to(1)"),
        ("orders_3m", 99, "orders_3m_not_above_orders_12m"),
        ("offers_declined_12m", 5, "answered_offers_not_above_offers_made"),
        ("contract_type", "weekly", "isin"),
        ("revenue_12m", None, "not_nullable"),
    ],
)
def test_bad_values_are_rejected(
    features: pl.DataFrame, column: str, value: object, check: str
) -> None:
    bad = features.with_columns(pl.lit(value, dtype=features.schema[column]).alias(column))
    with pytest.raises(FeatureTableError, match=re.escape(check)):
        validate_feature_table(bad)


def test_duplicate_customer_is_rejected(features: pl.DataFrame) -> None:
    with pytest.raises(FeatureTableError, match="customer_id"):
        validate_feature_table(pl.concat([features, features.head(1)]))


def test_wrong_dtype_and_extra_column_are_rejected(features: pl.DataFrame) -> None:
    with pytest.raises(FeatureTableError, match="orders_12m"):
        validate_feature_table(features.with_columns(pl.col("orders_12m").cast(pl.Float64)))
    with pytest.raises(FeatureTableError, match="column_in_schema"):
        validate_feature_table(features.with_columns(pl.lit(1).alias("surprise")))
