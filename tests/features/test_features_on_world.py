"""Feature pipelines on the synthetic world: archetype signatures and point-in-time correctness."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from experiments.synthetic.world import World
from features.config import FeatureConfig
from features.output_schema import validate_feature_table, validate_training_set
from features.pipeline import build_features, build_training_set

AS_OF = date(2024, 1, 1)


def _lazy(tables: dict[str, pl.DataFrame]) -> dict[str, pl.LazyFrame]:
    return {name: frame.lazy() for name, frame in tables.items()}


@pytest.fixture(scope="module")
def snapshot(world: World) -> pl.DataFrame:
    features = build_features(_lazy(world.tables), AS_OF, FeatureConfig()).collect()
    return features.join(world.truth_customers.select("customer_id", "archetype"), on="customer_id")


def _median_by_archetype(snapshot: pl.DataFrame, column: str) -> dict[str, float]:
    return dict(snapshot.group_by("archetype").agg(pl.col(column).median()).iter_rows())


def test_world_features_pass_the_output_schema(snapshot):
    validate_feature_table(snapshot.drop("archetype"))
    assert snapshot.height > 4000


def test_difficult_clients_have_the_lowest_net_margin(snapshot):
    margin = _median_by_archetype(snapshot, "net_margin_12m")
    assert min(margin, key=margin.get) == "difficult_client"
    assert margin["difficult_client"] < 0 < margin["profitable_loyal"]


def test_difficult_clients_have_the_highest_cost_to_serve(snapshot):
    cost = _median_by_archetype(snapshot, "cost_to_serve_12m")
    assert max(cost, key=cost.get) == "difficult_client"
    assert cost["difficult_client"] > 5 * cost["recoverable_complainer"]
    disputed = _median_by_archetype(snapshot, "receivables_disputed")
    assert max(disputed, key=disputed.get) == "difficult_client"


def test_recoverable_complainers_are_slowly_served_before_they_churn(world, snapshot):
    labels = (
        build_training_set(_lazy(world.tables), [AS_OF], 365, FeatureConfig())
        .select("customer_id", "churned")
        .collect()
    )
    frame = snapshot.join(labels, on="customer_id")
    recoverable_churners = frame.filter(
        (pl.col("archetype") == "recoverable_complainer")
        & pl.col("churned")
        & pl.col("share_resolved_beyond_24h").is_not_null()
    )
    loyal = frame.filter(
        (pl.col("archetype") == "profitable_loyal")
        & pl.col("share_resolved_beyond_24h").is_not_null()
    )
    assert recoverable_churners.height > 50
    slow_share = recoverable_churners["share_resolved_beyond_24h"].mean()
    assert slow_share > 0.45
    assert slow_share > 2 * loyal["share_resolved_beyond_24h"].mean()


def _as_known_at(tables: dict[str, pl.DataFrame], as_of: date) -> dict[str, pl.DataFrame]:
    """The CRM export as it would have looked at ``as_of``: later events and states removed."""
    midnight = datetime.combine(as_of, datetime.min.time())
    before = lambda column: pl.col(column) < as_of  # noqa: E731
    unknown_yet = lambda column, known: (  # noqa: E731
        pl.when(known).then(pl.col(column)).otherwise(None).alias(column)
    )
    return {
        "customers": tables["customers"]
        .filter(before("signup_date"))
        .with_columns(unknown_yet("end_date", before("end_date"))),
        "orders": tables["orders"].filter(before("order_date")),
        "payments": tables["payments"]
        .filter(before("invoice_date"))
        .with_columns(unknown_yet("paid_date", before("paid_date"))),
        "complaints": tables["complaints"]
        .filter(pl.col("opened_at") < midnight)
        .with_columns(unknown_yet("resolved_at", pl.col("resolved_at") < midnight)),
        "offers": tables["offers"]
        .filter(before("offered_at"))
        .with_columns(
            unknown_yet("accepted", before("responded_at")),
            unknown_yet("responded_at", before("responded_at")),
        ),
    }


@pytest.mark.parametrize("as_of", [date(2023, 3, 15), date(2025, 1, 1)])
def test_features_use_nothing_known_only_after_as_of(world, as_of):
    """The whole export vs the export cut off at as_of: every feature identical, to the bit."""
    config = FeatureConfig()
    full = build_features(_lazy(world.tables), as_of, config).collect()
    cut = build_features(_lazy(_as_known_at(world.tables, as_of)), as_of, config).collect()
    assert full.height > 3000
    assert_frame_equal(full, cut, check_exact=True)


def test_row_order_and_engine_do_not_change_a_single_bit(world):
    """A CRM export may list its rows in any order, and the nightly job streams: the features
    must not depend on either (float sums used to differ in the last bit between runs)."""
    config = FeatureConfig()
    expected = build_features(_lazy(world.tables), AS_OF, config).collect()
    shuffled = {
        name: frame.sample(fraction=1.0, shuffle=True, seed=3).lazy()
        for name, frame in world.tables.items()
    }
    for engine in ("in-memory", "streaming"):
        actual = build_features(shuffled, AS_OF, config).collect(engine=engine)
        assert_frame_equal(actual, expected, check_exact=True)


def test_stacked_training_set_has_one_row_per_customer_and_date(world):
    dates = [date(2023, 1, 1), date(2023, 7, 1), date(2024, 1, 1)]
    training = build_training_set(_lazy(world.tables), dates, 365, FeatureConfig()).collect()
    validate_training_set(training)
    assert sorted(training["as_of"].unique()) == dates
    assert training.select("customer_id", "as_of").is_duplicated().sum() == 0
    churn = training.group_by("as_of").agg(pl.col("churned").mean())["churned"]
    assert churn.min() > 0.05 and churn.max() < 0.4
