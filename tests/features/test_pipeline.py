"""The assembled feature table and training set on the tiny CRM (see tiny_crm.py)."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.assembly import FeatureInputError
from features.complaints import build_complaint_features
from features.config import FeatureConfig
from features.labels import build_labels
from features.pipeline import build_features, build_training_set, feature_columns
from features.profitability import build_profitability_features
from features.relationship import build_relationship_features
from tests.features.tiny_crm import AS_OF, HORIZON_DAYS, tiny_tables

CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return build_features(tiny_tables(), AS_OF, CONFIG).collect()


def test_one_row_per_active_customer_with_every_column(features: pl.DataFrame) -> None:
    assert features["customer_id"].to_list() == ["A", "B", "C", "F"]
    assert features.columns == ["customer_id", *feature_columns()]
    assert len(feature_columns()) == len(set(feature_columns()))


def test_equals_the_feature_groups_side_by_side(features: pl.DataFrame) -> None:
    tables = tiny_tables()
    parts = [
        build(tables, AS_OF, CONFIG).collect()
        for build in (
            build_relationship_features,
            build_profitability_features,
            build_complaint_features,
        )
    ]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.join(part, on="customer_id", how="left", maintain_order="left")
    assert_frame_equal(features, joined)


def test_lazy_and_streaming_agree(features: pl.DataFrame) -> None:
    plan = build_features(tiny_tables(), AS_OF, CONFIG)
    assert isinstance(plan, pl.LazyFrame)
    assert_frame_equal(plan.collect(engine="streaming"), features)


def test_reordered_input_rows_give_identical_output(features: pl.DataFrame) -> None:
    reversed_tables = {name: frame.reverse() for name, frame in tiny_tables().items()}
    assert_frame_equal(build_features(reversed_tables, AS_OF, CONFIG).collect(), features)
    shuffled = {
        name: frame.collect().sample(fraction=1.0, shuffle=True, seed=7).lazy()
        for name, frame in tiny_tables().items()
    }
    assert_frame_equal(build_features(shuffled, AS_OF, CONFIG).collect(), features)


def test_renaming_customers_only_renames_rows(features: pl.DataFrame) -> None:
    names = {"A": "z1", "B": "y2", "C": "x3", "D": "w4", "E": "v5", "F": "u6"}
    renamed = {
        name: frame.with_columns(pl.col("customer_id").replace_strict(names))
        for name, frame in tiny_tables().items()
    }
    result = build_features(renamed, AS_OF, CONFIG).collect()
    back = {new: old for old, new in names.items()}
    result = result.with_columns(pl.col("customer_id").replace_strict(back)).sort("customer_id")
    assert_frame_equal(result, features)


def test_missing_table_is_named() -> None:
    tables = tiny_tables()
    del tables["offers"]
    with pytest.raises(FeatureInputError, match="table 'offers' is missing"):
        build_features(tables, AS_OF, CONFIG)


def test_missing_column_is_named() -> None:
    tables = tiny_tables()
    tables["orders"] = tables["orders"].drop("discount")
    with pytest.raises(
        FeatureInputError, match="table 'orders' is missing required column 'discount'"
    ):
        build_features(tables, AS_OF, CONFIG)


def test_wrong_dtype_is_named() -> None:
    tables = tiny_tables()
    tables["complaints"] = tables["complaints"].with_columns(pl.col("opened_at").cast(pl.Date))
    with pytest.raises(FeatureInputError, match="'complaints' column 'opened_at' has dtype Date"):
        build_features(tables, AS_OF, CONFIG)


def test_extra_and_optional_columns() -> None:
    tables = tiny_tables(with_text=False)
    tables["orders"] = tables["orders"].with_columns(pl.lit(3, pl.Int64).alias("quantity"))
    tables["offers"] = tables["offers"].with_columns(
        pl.lit(True).alias("targeted"), pl.lit("note").alias("free_text_note")
    )
    frame = build_features(tables, AS_OF, CONFIG).collect()
    assert frame.columns == ["customer_id", *feature_columns()]
    assert frame["venting_words_12m"].sum() == 0


def test_training_set_stacks_features_and_labels() -> None:
    tables = tiny_tables()
    dates = [AS_OF, date(2024, 1, 1)]
    training = build_training_set(tables, dates, HORIZON_DAYS, CONFIG).collect()
    assert training.columns == [
        "as_of",
        "customer_id",
        *feature_columns(),
        "churned",
        "realised_net_margin",
    ]
    assert training["as_of"].unique(maintain_order=True).to_list() == [date(2024, 1, 1), AS_OF]
    for as_of in dates:
        snapshot = training.filter(pl.col("as_of") == as_of).drop("as_of")
        expected = build_features(tables, as_of, CONFIG).join(
            build_labels(tables, as_of, HORIZON_DAYS, CONFIG), on="customer_id", how="left"
        )
        assert_frame_equal(snapshot, expected.sort("customer_id").collect())
    # on 2024-01-01: C has not signed up and D (ended 2024-06-15) is still a customer
    early = training.filter(pl.col("as_of") == date(2024, 1, 1))
    assert early["customer_id"].to_list() == ["A", "B", "D", "F"]


@pytest.mark.parametrize(("dates", "message"), [([], "at least one"), ([AS_OF, AS_OF], "distinct")])
def test_training_set_rejects_bad_dates(dates: list[date], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_training_set(tiny_tables(), dates, HORIZON_DAYS, CONFIG)


def test_one_pass_per_event_table_plus_the_narrow_resolution_pass() -> None:
    """One group-by per event table, and one more over just the resolved complaints' hours
    (median and quantile cannot stream, so they stay out of the wide complaints pass)."""
    plan = build_features(tiny_tables(), AS_OF, CONFIG).explain(optimized=False)
    assert plan.count("AGGREGATE") == 5
