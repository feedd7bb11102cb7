"""The pandas baseline of the feature benchmark computes exactly the polars feature table.

Both implementations are written from the feature docstrings independently; any definition that
drifts in one of them (a window bound, a zero-fill, a null rule, the venting regex...) makes the
parity test fail with the column and example customers. The generated world is topped up with a
few hand-made customers whose events sit exactly on the boundaries (window edges, ``as_of``
itself, 29 February signups, a tenure of exactly the short window, answers given on ``as_of``),
which a random world of this size rarely hits. The comparison itself is tested too, so that "no
mismatch" cannot come from a comparison that sees nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import polars as pl
import pytest

from experiments.benchmarks import build_features as bench
from experiments.benchmarks import features_pandas
from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import World, generate_world, write_world
from features.config import FeatureConfig
from features.pipeline import build_features, feature_columns

WORLD = WorldConfig(n_customers=1500, seed=3)
# Mid-history, and the leap day (contract anniversaries of 29 February signups, window bounds).
AS_OF_DATES = (date(2025, 1, 1), date(2024, 2, 29))


@pytest.fixture(scope="module")
def small_world() -> World:
    return generate_world(WORLD)


def _edge_tables(
    as_of: date, config: FeatureConfig, schemas: dict[str, pl.Schema]
) -> dict[str, pl.DataFrame]:
    """Customers ``Z..`` with events on the boundaries of the windows at ``as_of``."""
    short, long_, sla = config.short_window_days, config.long_window_days, config.sla_hours

    def day(offset: int) -> date:
        return as_of + timedelta(days=offset)

    def at(offset: int, **delta: float) -> datetime:
        return datetime.combine(day(offset), datetime.min.time()) + timedelta(**delta)

    customer = {"name": "Edge", "segment": "enterprise", "region": "north", "account_manager": "x"}
    contracts = [  # id, signup, contract type, end date
        ("Z01", date(2020, 2, 29), "annual", None),
        ("Z02", date(2016, 2, 29), "two_year", None),
        ("Z03", date(2021, 2, 28), "two_year", None),
        ("Z04", day(-short), "annual", None),  # tenure = short window: trends are null
        ("Z05", day(-short - 1), "monthly", None),
        ("Z06", day(-long_), "annual", None),
        ("Z07", day(-long_ - 1), "two_year", None),
        ("Z08", day(-700), "monthly", as_of),  # ends on as_of: still active
        ("Z09", day(-700), "monthly", day(-1)),  # ended the day before: excluded
        ("Z10", as_of, "monthly", None),  # signs up on as_of: excluded
    ]
    customers = [
        {"customer_id": cid, "signup_date": signup, "contract_type": kind, "end_date": end}
        for cid, signup, kind, end in contracts
    ]
    order = {"revenue": 100.0, "cost_of_goods": 40.0, "discount": 5.0, "quantity": 1}
    orders = [
        {"customer_id": cid, "order_date": day(offset), "revenue": 100.0 + offset}
        for cid in ("Z05", "Z07", "Z08", "Z09", "Z10")
        for offset in (-long_ - 1, -long_, -short - 1, -short, -1, 0)
    ]
    invoice = {"amount": 250.0, "disputed": False}
    bills = [  # issued, due, paid (days from as_of; None = unpaid), disputed
        (-30, 0, 0, False),  # paid on as_of: still open at as_of, due on as_of: not overdue
        (-short, -1, None, False),  # overdue, issued on the first day of the short window
        (-short - 1, -60, None, True),
        (-long_, 5, None, True),  # disputed, not yet due
        (0, 0, None, False),  # issued on as_of: not visible
        (-long_ - 1, 0, -1, False),
    ]
    payments = [
        {
            "customer_id": "Z07" if issued == -long_ - 1 else "Z05",
            "invoice_date": day(issued),
            "due_date": day(due),
            "paid_date": None if paid is None else day(paid),
            "disputed": disputed,
        }
        for issued, due, paid, disputed in bills
    ]
    complaint = {
        "channel": "web", "category": "outage", "severity": "minor", "handling_minutes": 10.0,
        "escalations": 1, "stage": "feedback", "text": None,
    }  # fmt: skip
    complaints = [
        {"customer_id": "Z05", "opened_at": at(0), "text": "never"},
        {"customer_id": "Z05", "opened_at": at(0, microseconds=-1), "resolved_at": at(0),
         "severity": "major", "text": "USELESS COMPANY, every time, useless, Never"},
        {"customer_id": "Z05", "opened_at": at(-long_), "resolved_at": at(-long_, hours=sla)},
        {"customer_id": "Z05", "opened_at": at(-long_, seconds=-1), "resolved_at": at(-long_ + 1)},
        {"customer_id": "Z05", "opened_at": at(-short), "resolved_at": at(-short, hours=sla + 0.5),
         "severity": "near_miss", "text": "垃圾，总是这样"},
        {"customer_id": "Z07", "opened_at": at(-long_ - 35), "resolved_at": at(0, microseconds=-1)},
        {"customer_id": "Z07", "opened_at": at(-long_ - 35)},
    ]  # fmt: skip
    offer = {"kind": "refund", "cost": 75.0, "targeted": True}
    answers = [  # offered, responded (days from as_of), accepted
        (-10, 0, True),  # answered on as_of: not known yet
        (-short - 8, -short, True),  # accepted on the first day of the short window
        (-long_ - 35, -long_, True),  # made before the long window, accepted on its first day
        (-20, -1, False),
        (-5, None, None),  # no answer yet
        (-long_ - 1, -2, True),
    ]
    offers = [
        {
            "customer_id": "Z05",
            "offered_at": day(offered),
            "responded_at": None if responded is None else day(responded),
            "accepted": accepted,
        }
        for offered, responded, accepted in answers
    ]
    rows: dict[str, tuple[dict[str, Any], list[dict[str, Any]], str]] = {
        "customers": (customer, customers, "customer_id"),
        "orders": (order, orders, "order_id"),
        "payments": (invoice, payments, "invoice_id"),
        "complaints": (complaint, complaints, "complaint_id"),
        "offers": (offer, offers, "offer_id"),
    }
    tables = {}
    for name, (defaults, records, key) in rows.items():
        filled = [
            {**defaults, **record, **({} if key == "customer_id" else {key: f"{key}-{i}"})}
            for i, record in enumerate(records)
        ]
        tables[name] = pl.DataFrame(filled, schema=schemas[name])
    return tables


def _with_edges(world: World, as_of: date, config: FeatureConfig) -> World:
    schemas = {name: frame.schema for name, frame in world.tables.items()}
    edges = _edge_tables(as_of, config, schemas)
    tables = {name: pl.concat([frame, edges[name]]) for name, frame in world.tables.items()}
    return replace(world, tables=tables)


def _polars(world: World, as_of: date, config: FeatureConfig) -> pl.DataFrame:
    lazy = {name: frame.lazy() for name, frame in world.tables.items()}
    return build_features(lazy, as_of, config).collect()


def _pandas(world: World, as_of: date, config: FeatureConfig) -> pd.DataFrame:
    frames = {name: frame.to_pandas() for name, frame in world.tables.items()}
    return features_pandas.build_features(frames, as_of, config)


@pytest.mark.parametrize("as_of", AS_OF_DATES, ids=str)
@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(),
        FeatureConfig(churn_definition="non_contractual", inactivity_days=180),
        FeatureConfig(
            short_window_days=30,
            long_window_days=200,
            cost_per_escalation=10.0,
            sla_hours=48.0,
            receivables_provision_rate=0.5,
            # "every time" must count once, not as "every" + "time"
            venting_lexicon=("every", "time", "every time", "USELESS", "垃圾"),
        ),
    ],
    ids=["contractual", "non_contractual", "other_parameters"],
)
def test_pandas_and_polars_feature_tables_are_identical(small_world, as_of, config):
    world = _with_edges(small_world, as_of, config)
    expected = _polars(world, as_of, config)
    actual = _pandas(world, as_of, config)

    mismatches = bench.compare_feature_tables(expected, actual)

    assert not mismatches, "\n".join(map(str, mismatches))
    assert list(actual.columns) == ["customer_id", *feature_columns()]
    # The world exercises the features: values, zeros and nulls all occur.
    assert expected.height > 700
    for column in ("venting_words_12m", "receivables_provision_12m", "offers_accepted_12m"):
        assert expected[column].max() > 0, column
    for column in ("days_to_contract_end", "recency_days", "order_trend", "hours_to_resolve_p90"):
        assert 0 < expected[column].null_count() < expected.height, column
    edges = expected.filter(pl.col("customer_id").str.starts_with("Z"))["customer_id"].to_list()
    if config.churn_definition == "contractual":
        assert edges == [f"Z0{i}" for i in range(1, 9)]
    else:  # Z01-Z03 and Z06 never ordered and have a long tenure: lapsed
        assert edges == ["Z04", "Z05", "Z07", "Z08"]


def test_a_different_definition_is_reported_with_its_column(small_world):
    as_of, config = AS_OF_DATES[0], FeatureConfig()
    expected = _polars(small_world, as_of, config)
    actual = _pandas(small_world, as_of, replace(config, sla_hours=config.sla_hours + 6))

    mismatches = bench.compare_feature_tables(expected, actual)

    assert [m.column for m in mismatches] == ["share_resolved_beyond_24h"]
    assert mismatches[0].rows > 0 and mismatches[0].examples


def test_comparison_catches_values_nulls_dtypes_and_customers():
    expected = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "amount": [1.0, None, 3.0],
            "count": [1, 2, 3],
            "label": ["x", "y", None],
        }
    )
    assert bench.compare_feature_tables(expected, expected.reverse()) == []
    close = expected.with_columns(pl.col("amount") * (1 + 1e-12))
    assert [m.column for m in bench.compare_feature_tables(expected, close)] == ["amount"]
    assert bench.compare_feature_tables(expected, close, rtol=1e-9) == []

    changed = expected.with_columns(
        pl.Series("amount", [1.0 + 1e-6, None, 3.0]),
        pl.Series("count", [1, 2, None]),
        pl.Series("label", ["x", "y", "z"]),
    )
    found = {m.column: m for m in bench.compare_feature_tables(expected, changed)}
    assert set(found) == {"amount", "count", "label"}
    assert found["amount"].rows == 1 and found["amount"].examples[0].startswith("a:")
    assert found["count"].examples[0].startswith("c:")

    zero_for_null = expected.with_columns(pl.col("amount").fill_null(0.0))
    assert [m.column for m in bench.compare_feature_tables(expected, zero_for_null)] == ["amount"]
    as_float = expected.with_columns(pl.col("count").cast(pl.Float64))
    assert [m.problem for m in bench.compare_feature_tables(expected, as_float)] == [
        "dtype Int64 expected, Float64 actual"
    ]
    fewer = bench.compare_feature_tables(expected, expected.head(2))
    assert [(m.column, m.rows) for m in fewer] == [("customer_id", 1)]


@pytest.mark.slow
def test_cli_check_exits_1_and_names_the_column_on_a_mismatch(tmp_path, monkeypatch, capsys):
    data = tmp_path / "world"
    write_world(replace(WORLD, n_customers=400), data, "parquet")
    args = ["--data", str(data), "--as-of", "2025-01-01", "--engine", "pandas"]

    assert bench.main([*args, "--check-against-polars"]) == 0
    assert "parity: all 59 columns identical (floats to the bit)" in capsys.readouterr().out

    build = features_pandas.build_features

    def off_by_one(*a, **k):
        frame = build(*a, **k)
        return frame.assign(orders_12m=frame["orders_12m"] + 1)

    monkeypatch.setattr(features_pandas, "build_features", off_by_one)
    assert bench.main([*args, "--check-against-polars"]) == 1
    err = capsys.readouterr().err
    assert "orders_12m: values differ" in err
