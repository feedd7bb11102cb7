"""The pandera schemas: derived from the contract, and each check catches what it should."""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features import contract
from features.schemas import DATE_ORDER, ENUMS, MAX_AMOUNT, NON_NEGATIVE, SCHEMAS

D = dt.date
T = dt.datetime


def _valid() -> dict[str, pl.DataFrame]:
    """One or two valid rows per table, typed per contract (required columns only)."""
    frames = {
        "customers": {
            "customer_id": ["C1", "C2"],
            "name": ["Acme", "Beta"],
            "segment": ["enterprise", "small_business"],
            "signup_date": [D(2020, 1, 1), D(2021, 6, 1)],
            "contract_type": ["annual", "monthly"],
            "region": ["north", "Overseas territories"],
            "account_manager": ["Ann", "Bob"],
            "end_date": [None, D(2023, 1, 1)],
        },
        "orders": {
            "order_id": ["O1", "O2"],
            "customer_id": ["C1", "C2"],
            "order_date": [D(2024, 1, 1), D(2024, 1, 2)],
            "revenue": [100.0, 0.0],
            "cost_of_goods": [60.0, 0.0],
            "discount": [5.0, 0.0],
        },
        "payments": {
            "invoice_id": ["I1"],
            "customer_id": ["C1"],
            "invoice_date": [D(2024, 1, 1)],
            "due_date": [D(2024, 1, 31)],
            "amount": [100.0],
            "paid_date": [None],
            "disputed": [False],
        },
        "complaints": {
            "complaint_id": ["K1", "K2"],
            "customer_id": ["C1", "C1"],
            "opened_at": [T(2024, 1, 1, 9), T(2024, 2, 1, 9)],
            "resolved_at": [T(2024, 1, 1, 9), None],
            "channel": ["phone", "web"],
            "category": ["billing_error", "outage"],
            "severity": ["minor", "major"],
            "handling_minutes": [30.0, 0.0],
            "escalations": [0, 2],
            "stage": ["feedback", "analyse"],
        },
        "offers": {
            "offer_id": ["F1"],
            "customer_id": ["C1"],
            "offered_at": [D(2024, 2, 2)],
            "kind": ["refund"],
            "cost": [50.0],
            "accepted": [None],
            "responded_at": [None],
        },
    }
    return {
        name: pl.DataFrame(data, schema={c: contract.TABLES[name].dtypes[c] for c in data})
        for name, data in frames.items()
    }


def _failures(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        SCHEMAS[table].validate(frame, lazy=True)
    return caught.value.failure_cases


def _failed_checks(table: str, frame: pl.DataFrame) -> set[tuple[str, str]]:
    return set(_failures(table, frame).select("column", "check").iter_rows())


# --- derived from the contract ------------------------------------------------------------------


def test_every_contract_table_has_a_schema_with_its_columns_and_dtypes() -> None:
    assert SCHEMAS.keys() == contract.TABLES.keys()
    for name, table in contract.TABLES.items():
        columns = SCHEMAS[name].columns
        assert list(columns) == [c.name for c in table.columns]
        for column in table.columns:
            declared = columns[column.name]
            assert declared.dtype.type == column.dtype, (name, column.name)
            assert declared.nullable == column.nullable, (name, column.name)
            assert declared.required == column.required, (name, column.name)
            assert declared.unique == (column.name == table.key), (name, column.name)


def test_rule_tables_only_name_contract_columns() -> None:
    for table, columns in NON_NEGATIVE.items():
        assert set(columns) <= set(contract.TABLES[table].dtypes), table
    for table, column in ENUMS:
        assert column in contract.TABLES[table].dtypes
    for table, pairs in DATE_ORDER.items():
        for later, earlier in pairs:
            assert {later, earlier} <= set(contract.TABLES[table].dtypes), table
    assert ENUMS[("complaints", "channel")] == contract.CHANNELS
    assert ENUMS[("complaints", "severity")] == ("near_miss", "minor", "major")
    assert ("customers", "region") not in ENUMS  # region is free text


@pytest.mark.parametrize("table", list(contract.TABLES))
def test_valid_rows_pass(table: str) -> None:
    frame = _valid()[table]
    assert SCHEMAS[table].validate(frame, lazy=True).equals(frame)


# --- one check at a time ------------------------------------------------------------------------


def test_negative_revenue_fails_non_negative_check() -> None:
    orders = _valid()["orders"].with_columns(revenue=pl.Series([100.0, -5.0]))
    cases = _failures("orders", orders)
    assert cases.select("column", "check", "failure_case", "index").rows() == [
        ("revenue", "greater_than_or_equal_to(0)", "-5.0", 1)
    ]


@pytest.mark.parametrize(
    ("table", "column"),
    [(table, column) for table, columns in NON_NEGATIVE.items() for column in columns],
)
def test_every_amount_must_be_non_negative(table: str, column: str) -> None:
    frame = _valid()[table]
    frame = frame.with_columns(pl.lit(-1, dtype=frame.schema[column]).alias(column))
    assert (column, "greater_than_or_equal_to(0)") in _failed_checks(table, frame)


def test_infinite_amount_fails_finite_check() -> None:
    orders = _valid()["orders"].with_columns(discount=pl.Series([float("inf"), 0.0]))
    assert _failed_checks("orders", orders) == {("discount", "finite")}


@pytest.mark.parametrize("table", list(contract.TABLES))
def test_duplicate_key_fails_uniqueness(table: str) -> None:
    frame = _valid()[table]
    frame = pl.concat([frame, frame.head(1)])
    key = contract.TABLES[table].key
    cases = _failures(table, frame).filter(pl.col("check") == "field_uniqueness")
    assert cases.get_column("column").unique().to_list() == [key]
    assert sorted(cases.get_column("index").to_list()) == [0, frame.height - 1]


@pytest.mark.parametrize(("table", "column"), list(ENUMS))
def test_value_outside_enum_fails_isin(table: str, column: str) -> None:
    frame = _valid()[table].with_columns(pl.lit("not_a_value").alias(column))
    checks = _failed_checks(table, frame)
    assert checks == {(column, f"isin({list(ENUMS[(table, column)])!r})")}


def test_unknown_channel_is_named_in_failure_case() -> None:
    complaints = _valid()["complaints"].with_columns(channel=pl.Series(["phone", "fax"]))
    cases = _failures("complaints", complaints)
    assert cases.select("column", "failure_case", "index").rows() == [("channel", "fax", 1)]


def test_free_text_region_passes() -> None:
    customers = _valid()["customers"].with_columns(region=pl.Series(["Nordics", "?"]))
    SCHEMAS["customers"].validate(customers, lazy=True)


def test_resolved_before_opened_fails_on_resolved_at() -> None:
    complaints = _valid()["complaints"].with_columns(
        resolved_at=pl.Series([T(2023, 12, 31, 9), None], dtype=pl.Datetime("us"))
    )
    cases = _failures("complaints", complaints)
    assert cases.select("column", "check", "index").rows() == [
        ("resolved_at", "resolved_at >= opened_at", 0)
    ]


@pytest.mark.parametrize(
    ("table", "later", "earlier"),
    [(table, later, earlier) for table, pairs in DATE_ORDER.items() for later, earlier in pairs],
)
def test_every_date_order_rule_catches_a_reversed_pair(
    table: str, later: str, earlier: str
) -> None:
    frame = _valid()[table].head(1)
    dtype = frame.schema[earlier]
    day_before = pl.col(earlier) - pl.duration(days=1)
    frame = frame.with_columns(day_before.cast(dtype).alias(later))
    assert _failed_checks(table, frame) == {(later, f"{later} >= {earlier}")}


def test_null_later_date_passes_date_order() -> None:
    payments = _valid()["payments"]  # paid_date is null: unpaid
    assert payments.get_column("paid_date").is_null().all()
    SCHEMAS["payments"].validate(payments, lazy=True)


def test_null_in_non_nullable_column_fails() -> None:
    orders = _valid()["orders"].with_columns(discount=pl.Series([None, 1.0], dtype=pl.Float64))
    assert _failed_checks("orders", orders) == {("discount", "not_nullable")}


def test_missing_required_column_fails_and_optional_column_may_be_absent() -> None:
    orders = _valid()["orders"]
    assert "quantity" not in orders.columns
    SCHEMAS["orders"].validate(orders, lazy=True)
    cases = _failures("orders", orders.drop("revenue"))
    assert ("revenue", "column_in_dataframe") in set(cases.select("failure_case", "check").rows())


def test_optional_columns_are_checked_when_present() -> None:
    offers = _valid()["offers"].with_columns(
        targeted=pl.lit(True), complaint_id=pl.lit(None, dtype=pl.String)
    )
    SCHEMAS["offers"].validate(offers, lazy=True)
    # an unknown answer is allowed (blank in the export) ...
    SCHEMAS["offers"].validate(
        offers.with_columns(targeted=pl.lit(None, dtype=pl.Boolean)), lazy=True
    )
    # ... but a present optional column must still have the contract's dtype
    offers = offers.with_columns(targeted=pl.lit("maybe"))
    assert _failed_checks("offers", offers) == {("targeted", "dtype('Boolean')")}


def test_wrong_dtype_fails_dtype_check() -> None:
    orders = _valid()["orders"].with_columns(revenue=pl.Series(["100", "abc"]))
    assert ("revenue", "dtype('Float64')") in _failed_checks("orders", orders)


def test_extra_columns_are_allowed_and_kept() -> None:
    orders = _valid()["orders"].with_columns(sales_rep=pl.lit("Zoe"))
    assert SCHEMAS["orders"].validate(orders, lazy=True).get_column("sales_rep").to_list() == [
        "Zoe",
        "Zoe",
    ]


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20))
def test_revenue_fails_exactly_on_negative_or_too_large_values(revenues: list[float]) -> None:
    n = len(revenues)
    orders = pl.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(n)],
            "customer_id": ["C1"] * n,
            "order_date": [D(2024, 1, 1)] * n,
            "revenue": revenues,
            "cost_of_goods": [0.0] * n,
            "discount": [0.0] * n,
        }
    )
    expected = sorted(i for i, value in enumerate(revenues) if not 0 <= value <= MAX_AMOUNT)
    try:
        SCHEMAS["orders"].validate(orders, lazy=True)
        failed: list[int] = []
    except pa.errors.SchemaErrors as exc:
        failed = sorted(exc.failure_cases.get_column("index").to_list())
    assert failed == expected


def test_a_held_out_offer_has_no_answer() -> None:
    offers = _valid()["offers"]
    held = offers.with_columns(holdout=pl.lit(True), accepted=pl.lit(None, dtype=pl.Boolean))
    SCHEMAS["offers"].validate(held, lazy=True)
    SCHEMAS["offers"].validate(offers.with_columns(holdout=pl.lit(False)), lazy=True)
    answered = offers.with_columns(holdout=pl.lit(True), accepted=pl.lit(True))
    assert _failed_checks("offers", answered) == {
        ("holdout", "a held-out offer has no answer (accepted is null)")
    }


def test_an_amount_too_large_to_sum_exactly_fails_naming_the_limit() -> None:
    """1e300 passed and then broke the exact (decimal) sums of the features (defect 9)."""
    orders = _valid()["orders"].with_columns(
        revenue=pl.Series([1e300, MAX_AMOUNT]), discount=pl.Series([0.0, float("nan")])
    )
    assert _failed_checks("orders", orders) == {
        ("revenue", "<= 1e+15"),
        ("discount", "not_nullable"),
    }
