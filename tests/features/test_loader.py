"""Loading CRM exports: typed valid rows, rejects with reasons, and problems an admin can act on."""

from __future__ import annotations

import datetime as dt
import math
import textwrap
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import contract
from features.loader import (
    REJECT_REASON,
    ContractError,
    LoadResult,
    Problem,
    load_tables,
    load_validated_tables,
    validate_tables,
)
from features.schemas import MAX_AMOUNT

CUSTOMERS = """\
    customer_id,name,segment,signup_date,contract_type,region,account_manager,end_date
    C1,Acme,enterprise,2020-01-01,annual,north,Ann,
    C2,Beta,small_business,2021-06-01,monthly,Overseas,Bob,2023-01-01
    """
ORDERS = """\
    order_id,customer_id,order_date,revenue,cost_of_goods,discount
    O1,C1,2024-01-01,100.0,60,5
    O2,C2,2024-01-02,80,40,0
    O3,C1,2024-01-03,10.5,4,0
    """
PAYMENTS = """\
    invoice_id,customer_id,invoice_date,due_date,amount,paid_date,disputed
    I1,C1,2024-01-01,2024-01-31,100,2024-01-20,false
    I2,C2,2024-01-02,2024-02-01,80,,YES
    """
COMPLAINTS = """\
    complaint_id,customer_id,opened_at,resolved_at,channel,category,severity,handling_minutes,escalations,stage
    K1,C1,2024-01-05T09:30:00,2024-01-05 10:00,phone,billing_error,minor,30,0,feedback
    K2,C2,2024-02-01 08:00,,web,outage,major,0,2,analyse
    """
OFFERS = """\
    offer_id,customer_id,offered_at,kind,cost,accepted,responded_at
    F1,C1,2024-02-02,refund,50,1,2024-02-03
    F2,C2,2024-02-03,gift,10,,
    """
WORLD = {
    "customers": CUSTOMERS,
    "orders": ORDERS,
    "payments": PAYMENTS,
    "complaints": COMPLAINTS,
    "offers": OFFERS,
}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.csv"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _world(folder: Path, **replace: str) -> Path:
    """Write the valid world as CSV, with some tables replaced by the given text."""
    for name, text in (WORLD | replace).items():
        _write(folder, name, text)
    return folder


def _messages(result: LoadResult) -> list[str]:
    return [str(problem) for problem in result.problems]


def _only(result: LoadResult) -> Problem:
    assert len(result.problems) == 1, _messages(result)
    return result.problems[0]


def _collect(result: LoadResult, table: str) -> pl.DataFrame:
    return result.tables[table].collect()


def _contract_dtypes(table: str, frame: pl.DataFrame) -> dict[str, pl.DataType]:
    return {c: dtype for c, dtype in contract.TABLES[table].dtypes.items() if c in frame.columns}


# --- valid input --------------------------------------------------------------------------------


def test_valid_csv_folder_loads_every_table_typed_per_contract(tmp_path: Path) -> None:
    result = load_tables(_world(tmp_path))

    assert result.problems == []
    assert set(result.tables) == set(contract.TABLES)
    for name in contract.TABLES:
        frame = _collect(result, name)
        assert dict(frame.schema) == _contract_dtypes(name, frame), name
        assert result.rejects[name].is_empty(), name
    assert _collect(result, "orders").get_column("revenue").to_list() == [100.0, 80.0, 10.5]


def test_csv_values_are_parsed_per_type(tmp_path: Path) -> None:
    result = load_tables(_world(tmp_path))

    complaints = _collect(result, "complaints")
    assert complaints.get_column("opened_at").to_list() == [
        dt.datetime(2024, 1, 5, 9, 30),
        dt.datetime(2024, 2, 1, 8, 0),
    ]
    assert complaints.get_column("resolved_at").to_list() == [dt.datetime(2024, 1, 5, 10), None]
    assert complaints.get_column("escalations").to_list() == [0, 2]
    assert _collect(result, "payments").get_column("disputed").to_list() == [False, True]
    assert _collect(result, "offers").get_column("accepted").to_list() == [True, None]
    customers = _collect(result, "customers")
    assert customers.get_column("end_date").to_list() == [None, dt.date(2023, 1, 1)]


def test_valid_parquet_folder_loads_with_contract_dtypes(tmp_path: Path) -> None:
    csv_dir, parquet_dir = tmp_path / "csv", tmp_path / "parquet"
    csv_dir.mkdir()
    parquet_dir.mkdir()
    expected = load_tables(_world(csv_dir))
    for name, frame in expected.tables.items():
        frame.collect().write_parquet(parquet_dir / f"{name}.parquet")

    result = load_tables(parquet_dir)

    assert result.problems == []
    for name in contract.TABLES:
        frame = _collect(result, name)
        assert dict(frame.schema) == _contract_dtypes(name, frame), name
        assert frame.equals(_collect(expected, name)), name


def test_csv_next_to_parquet_is_an_error_naming_both(tmp_path: Path) -> None:
    _world(tmp_path)
    pl.read_csv(tmp_path / "orders.csv").write_parquet(tmp_path / "orders.parquet")

    result = load_tables(tmp_path)

    fatal = [p for p in result.problems if p.fatal]
    assert [(p.table, p.fatal) for p in fatal] == [("orders", True)]
    assert "both orders.csv and orders.parquet are in" in str(fatal[0])
    assert "orders" not in result.tables


def test_a_csv_cut_in_the_middle_of_its_last_row_is_unusable(tmp_path: Path) -> None:
    _world(tmp_path)
    orders = tmp_path / "orders.csv"
    orders.write_text(orders.read_text().rstrip("\n") + "\nO4,C1,2024-01-0", encoding="utf-8")

    result = load_tables(tmp_path)

    problem = _only(result)
    assert problem.fatal and problem.table == "orders"
    assert str(problem).startswith(
        "orders: orders.csv ends in the middle of a row: line 5 has 3 of 6 fields"
    )
    # a complete last row without a line end is fine
    orders.write_text(orders.read_text() + "1,10,5,0", encoding="utf-8")
    assert load_tables(tmp_path).problems == []


def test_a_table_whose_every_row_is_rejected_is_unusable(tmp_path: Path) -> None:
    customers = CUSTOMERS.replace("enterprise", "giant").replace("small_business", "tiny")

    result = load_tables(_world(tmp_path, customers=customers))

    fatal = {p.table: str(p) for p in result.problems if p.fatal}
    # every customer rejected: so is every row that references them
    assert set(fatal) == {"customers", "orders", "payments", "complaints", "offers"}
    assert "every one of its 2 rows was rejected" in fatal["customers"]
    # an empty table is not rejected: it is just empty
    empty = load_tables(_world(tmp_path, customers=CUSTOMERS, offers=OFFERS.splitlines()[0]))
    assert not any(p.fatal for p in empty.problems)


def test_enumerations_and_categories_ignore_case_and_spacing(tmp_path: Path) -> None:
    complaints = COMPLAINTS.replace(",web,outage,major,", ",Web,Network Outage,Major,").replace(
        ",phone,billing_error,minor,", ",PHONE,billing-error,Near miss,"
    )
    customers = CUSTOMERS.replace(",small_business,", ",Small Business,")

    result = load_tables(_world(tmp_path, complaints=complaints, customers=customers))

    assert result.problems == []
    loaded = _collect(result, "complaints")
    assert loaded.get_column("channel").to_list() == ["phone", "web"]
    assert loaded.get_column("severity").to_list() == ["near_miss", "major"]
    # the category is an open set, written as an identifier
    assert loaded.get_column("category").to_list() == ["billing_error", "network_outage"]
    assert _collect(result, "customers").get_column("segment").to_list()[1] == "small_business"


def test_date_times_are_accepted_where_a_date_is(tmp_path: Path) -> None:
    offers = OFFERS.replace("F1,C1,2024-02-02,", "F1,C1,2024-02-02T15:45:10,").replace(
        ",2024-02-03\n", ",2024-02-03 09:00\n", 1
    )
    orders = ORDERS.replace("O1,C1,2024-01-01,", "O1,C1,2024-01-01 23:59,")

    result = load_tables(_world(tmp_path, offers=offers, orders=orders))

    assert result.problems == []
    loaded = _collect(result, "offers")
    assert loaded.get_column("offered_at").to_list()[0] == dt.date(2024, 2, 2)
    assert loaded.get_column("responded_at").to_list()[0] == dt.date(2024, 2, 3)
    assert _collect(result, "orders").get_column("order_date").to_list()[0] == dt.date(2024, 1, 1)


def test_optional_columns_may_be_absent_or_present(tmp_path: Path) -> None:
    orders = "order_id,customer_id,order_date,revenue,cost_of_goods,discount,quantity\n"
    orders += "O1,C1,2024-01-01,100,60,5,3\nO2,C2,2024-01-02,80,40,0,\n"
    offers = """\
        offer_id,customer_id,offered_at,kind,cost,accepted,responded_at,targeted,complaint_id
        F1,C1,2024-02-02,refund,50,1,2024-02-03,yes,K1
        F2,C2,2024-02-03,gift,10,,,no,
        """

    result = load_tables(_world(tmp_path, orders=orders, offers=offers))

    assert result.problems == []
    loaded = _collect(result, "orders")
    assert loaded.schema["quantity"] == pl.Int64
    assert loaded.get_column("quantity").to_list() == [3, None]
    assert _collect(result, "offers").get_column("targeted").to_list() == [True, False]
    assert "text" not in _collect(result, "complaints").columns  # absent stays absent


def test_extra_columns_are_kept_in_tables_and_rejects(tmp_path: Path) -> None:
    orders = "order_id,customer_id,order_date,revenue,cost_of_goods,discount,sales_rep,row\n"
    orders += "O1,C1,2024-01-01,100,60,5,Zoe,7\nO2,C1,2024-01-01,x,60,5,Max,8\n"

    result = load_tables(_world(tmp_path, orders=orders))

    assert [p.column for p in result.problems] == ["revenue"]
    assert _collect(result, "orders").select("sales_rep", "row").rows() == [("Zoe", "7")]
    assert result.rejects["orders"].select("sales_rep", "row").rows() == [("Max", "8")]


def test_header_only_file_with_all_columns_is_an_empty_table(tmp_path: Path) -> None:
    offers = "offer_id,customer_id,offered_at,kind,cost,accepted,responded_at\n"

    result = load_tables(_world(tmp_path, offers=offers))

    assert result.problems == []
    offers_frame = _collect(result, "offers")
    assert offers_frame.height == 0
    assert offers_frame.schema["offered_at"] == pl.Date


def test_load_validated_tables_returns_typed_lazy_frames(tmp_path: Path) -> None:
    tables = load_validated_tables(_world(tmp_path))

    assert set(tables) == set(contract.TABLES)
    assert all(isinstance(frame, pl.LazyFrame) for frame in tables.values())
    assert tables["payments"].collect_schema()["due_date"] == pl.Date


# --- fatal problems: the table cannot be used ---------------------------------------------------


def test_missing_column_is_fatal_and_lists_missing_and_found_columns(tmp_path: Path) -> None:
    orders = "order_id,customer_id,order_date,cost_of_goods\nO1,C1,2024-01-01,60\n"

    result = load_tables(_world(tmp_path, orders=orders))

    problem = _only(result)
    assert problem.fatal
    assert (problem.table, problem.column) == ("orders", None)
    assert str(problem) == (
        "orders: missing required columns: revenue, discount — "
        "columns found: order_id, customer_id, order_date, cost_of_goods"
    )
    assert "orders" not in result.tables
    assert "orders" not in result.rejects
    assert _collect(result, "customers").height == 2  # other tables still load


def test_empty_file_is_fatal(tmp_path: Path) -> None:
    _world(tmp_path)
    (tmp_path / "orders.csv").write_bytes(b"")

    problem = _only(load_tables(tmp_path))

    assert problem.fatal
    assert str(problem) == "orders: orders.csv is empty"


def test_header_only_file_missing_columns_is_fatal(tmp_path: Path) -> None:
    problem = _only(load_tables(_world(tmp_path, payments="invoice_id,customer_id\n")))

    assert problem.fatal
    assert problem.table == "payments"
    assert "missing required columns: invoice_date, due_date, amount, paid_date, disputed" in str(
        problem
    )


def test_non_utf8_file_is_fatal_and_names_line_and_byte_offset(tmp_path: Path) -> None:
    _world(tmp_path)
    header = b"customer_id,name,segment,signup_date,contract_type,region,account_manager,end_date\n"
    good = b"C1,Acme,enterprise,2020-01-01,annual,north,Ann,\n"
    bad = b"C2,Caf\xe9 Beta,small_business,2021-06-01,monthly,south,Bob,\n"  # Latin-1 export
    (tmp_path / "customers.csv").write_bytes(header + good + bad)

    result = load_tables(tmp_path)

    customers = [p for p in result.problems if p.table == "customers"]
    assert len(customers) == 1
    assert customers[0].fatal
    offset = len(header + good) + len(b"C2,Caf")
    assert str(customers[0]) == (
        f"customers: customers.csv is not UTF-8 text — first bad byte 0xe9 on line 3 "
        f"(byte offset {offset}); save the export as UTF-8"
    )
    assert "customers" not in result.tables


def test_missing_table_file_is_fatal(tmp_path: Path) -> None:
    _world(tmp_path)
    (tmp_path / "complaints.csv").unlink()

    problem = _only(load_tables(tmp_path))

    assert problem.fatal
    assert problem.table == "complaints"
    assert f"no complaints.parquet or complaints.csv in {tmp_path}" in str(problem)
    assert set(load_tables(tmp_path).tables) == set(contract.TABLES) - {"complaints"}


def test_without_customers_other_tables_load_unchecked(tmp_path: Path) -> None:
    _world(tmp_path)
    (tmp_path / "customers.csv").unlink()

    result = load_tables(tmp_path)

    assert [p.table for p in result.problems] == ["customers"]
    assert _collect(result, "orders").height == 3


# --- row problems: bad rows are rejected, the rest loads ----------------------------------------


def test_text_in_revenue_names_value_line_and_key(tmp_path: Path) -> None:
    orders = ORDERS.replace("O2,C2,2024-01-02,80,", "O2,C2,2024-01-02,abc,")

    result = load_tables(_world(tmp_path, orders=orders))

    problem = _only(result)
    assert (problem.table, problem.column, problem.check, problem.rows) == (
        "orders",
        "revenue",
        "not a number",
        1,
    )
    assert not problem.fatal
    assert str(problem) == "orders.revenue: 1 value is not a number: 'abc' (line 3, order_id=O2)"


def test_negative_revenue_is_reported_with_key_and_value(tmp_path: Path) -> None:
    orders = ORDERS.replace("O2,C2,2024-01-02,80,", "O2,C2,2024-01-02,-5,").replace(
        "O3,C1,2024-01-03,10.5,", "O3,C1,2024-01-03,-0.5,"
    )

    problem = _only(load_tables(_world(tmp_path, orders=orders)))

    assert str(problem) == (
        "orders.revenue: 2 rows fail 'greater_than_or_equal_to(0)' — "
        "e.g. order_id=O2 revenue=-5.0 (line 3), order_id=O3 revenue=-0.5 (line 4)"
    )


def test_duplicate_ids_keep_the_first_row_and_reject_the_later(tmp_path: Path) -> None:
    orders = textwrap.dedent(ORDERS) + "O1,C2,2024-05-01,1,1,0\n"

    result = load_tables(_world(tmp_path, orders=orders))

    problem = _only(result)
    assert (problem.column, problem.check, problem.rows) == ("order_id", "field_uniqueness", 1)
    assert "order_id=O1 (line 5)" in str(problem)
    loaded = _collect(result, "orders")
    assert loaded.get_column("order_id").to_list() == ["O1", "O2", "O3"]
    assert loaded.get_column("customer_id").to_list()[0] == "C1"  # the first O1 is kept
    rejected = result.rejects["orders"]
    assert rejected.get_column("customer_id").to_list() == ["C2"]
    assert rejected.get_column(REJECT_REASON).to_list() == [
        "order_id=O1 repeats the key of an earlier row"
    ]


def test_unknown_customer_id_is_reported_and_rejected(tmp_path: Path) -> None:
    orders = ORDERS.replace("O2,C2,", "O2,C999,")

    result = load_tables(_world(tmp_path, orders=orders))

    problem = _only(result)
    assert str(problem) == (
        "orders.customer_id: 1 row references unknown customers, e.g. C999 (line 3, order_id=O2)"
    )
    assert _collect(result, "orders").get_column("order_id").to_list() == ["O1", "O3"]
    assert result.rejects["orders"].get_column(REJECT_REASON).to_list() == [
        "customer_id=C999 is not in customers"
    ]


def test_rows_of_a_rejected_customer_are_rejected_with_that_reason(tmp_path: Path) -> None:
    customers = CUSTOMERS.replace("small_business", "retail")

    result = load_tables(_world(tmp_path, customers=customers))

    messages = _messages(result)
    assert messages[0] == (
        "customers.segment: 1 row fails "
        "'isin(['enterprise', 'mid_market', 'small_business', 'public_sector'])' — "
        "e.g. customer_id=C2 segment=retail (line 3)"
    )
    assert messages[1] == (
        "orders.customer_id: 1 row references customers whose own row was rejected, "
        "e.g. C2 (line 3, order_id=O2)"
    )
    assert [p.table for p in result.problems] == list(contract.TABLES)  # C2 is in every table
    assert _collect(result, "orders").get_column("customer_id").unique().to_list() == ["C1"]


def test_resolved_before_opened_is_reported_with_both_times(tmp_path: Path) -> None:
    complaints = COMPLAINTS.replace("2024-01-05 10:00", "2024-01-04 10:00")

    problem = _only(load_tables(_world(tmp_path, complaints=complaints)))

    assert str(problem) == (
        "complaints.resolved_at: 1 row fails 'resolved_at >= opened_at' — e.g. complaint_id=K1 "
        "resolved_at=2024-01-04 10:00:00 opened_at=2024-01-05 09:30:00 (line 2)"
    )


def test_unknown_channel_is_reported(tmp_path: Path) -> None:
    complaints = COMPLAINTS.replace(",web,", ",fax,")

    problem = _only(load_tables(_world(tmp_path, complaints=complaints)))

    assert (problem.table, problem.column, problem.rows) == ("complaints", "channel", 1)
    assert problem.check.startswith("isin(['counter', 'feedback_card', 'phone'")
    assert str(problem).endswith("— e.g. complaint_id=K2 channel=fax (line 3)")


@pytest.mark.parametrize(
    ("table", "old", "new", "expected"),
    [
        (
            "orders",
            "2024-01-02,80",
            "2024-02-30,80",
            "orders.order_date: 1 value is not a date (YYYY-MM-DD): '2024-02-30' "
            "(line 3, order_id=O2)",
        ),
        (
            "orders",
            "2024-01-02,80,",
            "2024-01-02,NaN,",
            "orders.revenue: 1 value is not a number: 'NaN' (line 3, order_id=O2)",
        ),
        (
            "complaints",
            "2024-02-01 08:00",
            "01/02/2024 08:00",
            "complaints.opened_at: 1 value is not a date-time (YYYY-MM-DD HH:MM[:SS]): "
            "'01/02/2024 08:00' (line 3, complaint_id=K2)",
        ),
        (
            "payments",
            ",YES",
            ",maybe",
            "payments.disputed: 1 value is not a yes/no value (true/false, 1/0, yes/no): "
            "'maybe' (line 3, invoice_id=I2)",
        ),
        (
            "complaints",
            ",0,2,analyse",
            ",0,1.5,analyse",
            "complaints.escalations: 1 value is not a whole number: '1.5' "
            "(line 3, complaint_id=K2)",
        ),
    ],
)
def test_values_that_do_not_parse_are_named(
    tmp_path: Path, table: str, old: str, new: str, expected: str
) -> None:
    text = WORLD[table].replace(old, new)
    assert text != WORLD[table]

    problem = _only(load_tables(_world(tmp_path, **{table: text})))

    assert str(problem) == expected


def test_values_are_trimmed_before_keys_are_matched(tmp_path: Path) -> None:
    orders = ORDERS.replace("O2,C2,", "O2 , C2 ,")

    result = load_tables(_world(tmp_path, orders=orders))

    assert result.problems == []
    assert _collect(result, "orders").row(1)[:2] == ("O2", "C2")


def test_blank_required_value_is_missing_not_a_cast_error(tmp_path: Path) -> None:
    orders = ORDERS.replace("O2,C2,2024-01-02,80,40,0", "O2,C2,2024-01-02,  ,40,0")

    problem = _only(load_tables(_world(tmp_path, orders=orders)))

    assert str(problem) == "orders.revenue: 1 row has no value — e.g. order_id=O2 (line 3)"


def test_rejects_keep_original_values_and_reasons_while_valid_rows_load(tmp_path: Path) -> None:
    orders = ORDERS.replace("O2,C2,2024-01-02,80,", "O2,C2,2024-01-02,abc,").replace(
        "O3,C1,2024-01-03,10.5,4,0", "O3,C999,2024-01-03,-1,4,0"
    )

    result = load_tables(_world(tmp_path, orders=orders))

    loaded = _collect(result, "orders")
    assert loaded.get_column("order_id").to_list() == ["O1"]
    assert loaded.schema["revenue"] == pl.Float64
    rejected = result.rejects["orders"]
    assert rejected.columns == [*textwrap.dedent(ORDERS).splitlines()[0].split(","), REJECT_REASON]
    assert rejected.select("order_id", "revenue").rows() == [("O2", "abc"), ("O3", "-1")]
    assert rejected.get_column(REJECT_REASON).to_list() == [
        "revenue='abc' is not a number",
        "revenue=-1.0 fails 'greater_than_or_equal_to(0)'; customer_id=C999 is not in customers",
    ]
    assert loaded.height + rejected.height == 3  # nothing is lost


def test_load_validated_tables_raises_with_every_problem(tmp_path: Path) -> None:
    orders = ORDERS.replace("O2,C2,2024-01-02,80,", "O2,C2,2024-01-02,-5,").replace(
        "O3,C1,", "O3,C999,"
    )
    _world(tmp_path, orders=orders)
    (tmp_path / "offers.csv").unlink()

    with pytest.raises(ContractError) as caught:
        load_validated_tables(tmp_path)

    report = str(caught.value)
    assert report.splitlines() == [
        "3 problems with the input data:",
        "  - orders.customer_id: 1 row references unknown customers, e.g. C999 "
        "(line 4, order_id=O3)",
        "  - orders.revenue: 1 row fails 'greater_than_or_equal_to(0)' — e.g. order_id=O2 "
        "revenue=-5.0 (line 3)",
        f"  - offers: no offers.parquet or offers.csv in {tmp_path}",
    ]
    assert [p.fatal for p in caught.value.problems] == [False, False, True]


# --- in-memory frames ---------------------------------------------------------------------------


def test_validate_tables_casts_compatible_dtypes_and_reports_missing_tables(
    tmp_path: Path,
) -> None:
    frames = {name: frame.collect() for name, frame in load_tables(_world(tmp_path)).tables.items()}
    frames["orders"] = frames["orders"].with_columns(pl.col("revenue").cast(pl.Int64))
    del frames["offers"]

    result = validate_tables(frames)

    assert _messages(result) == ["offers: table is missing"]
    orders = _collect(result, "orders")
    assert orders.schema["revenue"] == pl.Float64
    assert orders.get_column("revenue").to_list() == [100.0, 80.0, 10.0]


def test_validate_tables_rejects_a_column_that_cannot_hold_the_contract_type(
    tmp_path: Path,
) -> None:
    frames = {name: frame.collect() for name, frame in load_tables(_world(tmp_path)).tables.items()}
    frames["payments"] = frames["payments"].with_columns(due_date=pl.lit(True))

    problem = _only(validate_tables(frames))

    assert problem.fatal
    assert str(problem) == "payments.due_date: column has type Boolean, which cannot hold Date"


def test_validate_tables_names_rows_by_position(tmp_path: Path) -> None:
    frames = {name: frame.collect() for name, frame in load_tables(_world(tmp_path)).tables.items()}
    frames["orders"] = frames["orders"].with_columns(discount=pl.Series([0.0, float("nan"), 1.0]))

    problem = _only(validate_tables(frames))

    assert str(problem) == "orders.discount: 1 row has no value — e.g. order_id=O2 (row 2)"


def _empty_tables() -> dict[str, pl.DataFrame]:
    return {
        name: pl.DataFrame(schema={c.name: c.dtype for c in table.columns if c.required})
        for name, table in contract.TABLES.items()
    }


def _parses_as_valid_revenue(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and 0 <= value <= MAX_AMOUNT


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
            st.sampled_from(["abc", "", " ", "1,5", "nan", "inf", "-0.0", "1e3"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_every_row_is_either_loaded_or_rejected(revenues: list[str]) -> None:
    n = len(revenues)
    frames = _empty_tables()
    frames["customers"] = pl.DataFrame(
        {
            "customer_id": ["C1"],
            "name": ["Acme"],
            "segment": ["enterprise"],
            "signup_date": [dt.date(2020, 1, 1)],
            "contract_type": ["annual"],
            "region": ["north"],
            "account_manager": ["Ann"],
            "end_date": [None],
        },
        schema=contract.CUSTOMERS.dtypes,
    )
    frames["orders"] = pl.DataFrame(  # text columns, as a CSV export would give them
        {
            "order_id": [f"O{i}" for i in range(n)],
            "customer_id": ["C1"] * n,
            "order_date": ["2024-01-01"] * n,
            "revenue": revenues,
            "cost_of_goods": ["0"] * n,
            "discount": ["0"] * n,
        }
    )

    result = validate_tables(frames)

    expected = [f"O{i}" for i, text in enumerate(revenues) if _parses_as_valid_revenue(text)]
    assert _collect(result, "orders").get_column("order_id").to_list() == expected
    rejected = result.rejects["orders"]
    assert rejected.height + len(expected) == n
    assert rejected.get_column(REJECT_REASON).str.starts_with("revenue").all()
    assert sum(p.rows for p in result.problems) == rejected.height


# --- the report itself --------------------------------------------------------------------------


def test_problem_wording_counts_rows_and_values() -> None:
    one = Problem(
        "orders", "revenue", "greater_than_or_equal_to(0)", 1, ("order_id=O1 revenue=-1.0",)
    )
    many = Problem("orders", "revenue", "not a number", 4, ("'x' (line 2, order_id=O1)",))
    fatal = Problem("orders", None, "orders.csv is empty", 0, fatal=True)

    assert str(one) == (
        "orders.revenue: 1 row fails 'greater_than_or_equal_to(0)' — e.g. order_id=O1 revenue=-1.0"
    )
    assert str(many) == "orders.revenue: 4 values are not a number: 'x' (line 2, order_id=O1)"
    assert str(fatal) == "orders: orders.csv is empty"
    assert str(ContractError([one, fatal])).splitlines() == [
        "2 problems with the input data:",
        f"  - {one}",
        f"  - {fatal}",
    ]


def test_a_repeated_id_is_found_in_sorted_keys_too(tmp_path: Path) -> None:
    # sorted keys take the neighbour-comparison path, unsorted ones the hash path
    lines = textwrap.dedent(ORDERS).splitlines()
    orders = "\n".join([lines[0], lines[1], lines[1].replace(",C1,", ",C2,"), *lines[2:]]) + "\n"

    result = load_tables(_world(tmp_path, orders=orders))

    problem = _only(result)
    assert (problem.column, problem.check, problem.rows) == ("order_id", "field_uniqueness", 1)
    assert "order_id=O1 (line 3)" in str(problem)


def test_a_held_out_offer_with_an_answer_is_rejected_naming_both_columns(tmp_path: Path) -> None:
    offers = textwrap.dedent(OFFERS).replace("responded_at\n", "responded_at,holdout\n")
    offers = offers.replace("2024-02-03\n", "2024-02-03,true\n").replace(
        "gift,10,,\n", "gift,0,,,true\n"
    )

    result = load_tables(_world(tmp_path, offers=offers))

    assert str(_only(result)) == (
        "offers.holdout: 1 row fails 'a held-out offer has no answer (accepted is null)' — e.g. "
        "offer_id=F1 holdout=True accepted=True (line 2)"
    )
    kept = _collect(result, "offers")
    assert kept.get_column("offer_id").to_list() == ["F2"]
    assert kept.get_column("holdout").to_list() == [True]
