"""Tests for features.orders_import: CDNOW parsing and contract tables from a transaction log."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pytest

from features.contract import TABLES
from features.orders_import import (
    ACCOUNT_MANAGER,
    CDNOW_COLUMNS,
    CONTRACT_TYPE,
    REGION,
    SEGMENT,
    TransactionImportError,
    import_transactions,
    is_cdnow_layout,
    read_cdnow,
    read_transaction_csv,
    read_transaction_log,
)

REPO = Path(__file__).resolve().parents[2]
CDNOW_ARGS = {"customer_col": "sample_id", "date_col": "date", "amount_col": "amount"}


def _shared_data() -> Path:
    configured = os.environ.get("KEEPWISE_SHARED_DATA")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    path = _shared_data() / "cdnow" / "CDNOW_sample.txt"
    if not path.is_file():
        pytest.skip(
            f"real data not found at {path}; set KEEPWISE_SHARED_DATA to the shared/data folder"
        )
    return read_cdnow(path)


@pytest.fixture(scope="module")
def tables(cdnow: pl.DataFrame) -> dict[str, pl.DataFrame]:
    lazy = import_transactions(cdnow, **CDNOW_ARGS, quantity_col="quantity", cost_rate=0.6)
    return {name: frame.collect() for name, frame in lazy.items()}


def _tiny() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "cust": [7, 7, 7, 3],
            "day": [
                dt.date(1997, 1, 2),
                dt.date(1997, 1, 1),
                dt.date(1997, 1, 1),
                dt.date(1997, 2, 1),
            ],
            "value": [5.0, 30.0, 10.0, 0.0],
            "n": [1, 3, 1, None],
        },
        schema_overrides={"n": pl.Int32},
    )


# --- CDNOW -------------------------------------------------------------------------------------


def test_read_cdnow_counts_and_dates(cdnow: pl.DataFrame) -> None:
    assert cdnow.schema == pl.Schema(CDNOW_COLUMNS)
    assert cdnow.height == 6919
    assert cdnow["sample_id"].n_unique() == 2357
    assert cdnow["master_id"].n_unique() == 2357
    assert cdnow["date"].min() == dt.date(1997, 1, 1)
    assert cdnow["date"].max() == dt.date(1998, 6, 30)
    assert cdnow.row(0) == ("00004", 1, dt.date(1997, 1, 1), 2, 29.33)


def test_cdnow_tables_have_exact_contract_dtypes(tables: dict[str, pl.DataFrame]) -> None:
    assert set(tables) == set(TABLES)
    for name, frame in tables.items():
        assert frame.schema == pl.Schema(TABLES[name].dtypes), name


def test_cdnow_tables_pass_the_contract_schemas(tables: dict[str, pl.DataFrame]) -> None:
    from features.schemas import build_schema

    for name, frame in tables.items():
        build_schema(TABLES[name]).validate(frame)


def test_cdnow_orders_and_customers(tables: dict[str, pl.DataFrame]) -> None:
    orders, customers = tables["orders"], tables["customers"]
    assert orders.height == 6919
    assert customers.height == 2357
    assert orders["order_id"].n_unique() == 6919
    assert orders["revenue"].sum() == pytest.approx(244_091.94)  # awk '{s+=$5}' on the file
    assert orders["cost_of_goods"].to_list() == pytest.approx((orders["revenue"] * 0.6).to_list())
    assert orders["discount"].unique().to_list() == [0.0]
    assert orders["quantity"].null_count() == 0
    first = orders.group_by("customer_id").agg(pl.col("order_date").min().alias("first"))
    joined = customers.join(first, on="customer_id", how="full", validate="1:1")
    assert (joined["signup_date"] == joined["first"]).all()
    assert customers["end_date"].null_count() == 2357
    constant = customers.select("segment", "contract_type", "region", "account_manager").unique()
    assert constant.rows() == [(SEGMENT, CONTRACT_TYPE, REGION, ACCOUNT_MANAGER)]


def test_cdnow_side_tables_are_empty(tables: dict[str, pl.DataFrame]) -> None:
    for name in ("payments", "complaints", "offers"):
        assert tables[name].height == 0, name


def test_cdnow_merge_same_day_reproduces_the_published_holdout_count(
    cdnow: pl.DataFrame,
) -> None:
    merged = import_transactions(cdnow, **CDNOW_ARGS, merge_same_day=True)["orders"].collect()
    assert merged.height == 6696 < 6919
    assert merged.select("customer_id", "order_date").is_duplicated().sum() == 0
    assert merged["revenue"].sum() == pytest.approx(cdnow["amount"].sum())
    # Fader, Hardie & Lee (2005): 1,882 repeat transactions in weeks 40-78 (from 1997-10-01).
    assert merged.filter(pl.col("order_date") >= dt.date(1997, 10, 1)).height == 1882


def test_cdnow_order_ids_do_not_depend_on_row_order(cdnow: pl.DataFrame) -> None:
    shuffled = cdnow.sample(fraction=1.0, shuffle=True, seed=11)
    assert shuffled["sample_id"].to_list() != cdnow["sample_id"].to_list()
    first = import_transactions(cdnow, **CDNOW_ARGS)["orders"].collect()
    second = import_transactions(shuffled, **CDNOW_ARGS)["orders"].collect()
    assert first.equals(second)


def test_read_cdnow_names_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "cdnow.txt"
    path.write_text(
        " 00004 0001 19970101  2   29.33\r\n\r\n 00005 0002 1997-01-01  1  9.99\r\n"
        " 00006 0003 19970231  1  9.99\r\n"
    )
    with pytest.raises(TransactionImportError) as raised:
        read_cdnow(path)
    message = str(raised.value)
    assert "2 line(s)" in message
    assert "line 3:  00005 0002 1997-01-01  1  9.99" in message
    assert "line 4:" in message  # 31 February


# --- small logs --------------------------------------------------------------------------------


def test_order_ids_number_same_day_orders_by_value() -> None:
    orders = import_transactions(
        _tiny(), customer_col="cust", date_col="day", amount_col="value", quantity_col="n"
    )["orders"].collect()
    assert orders.select("order_id", "revenue", "quantity", "cost_of_goods").rows() == [
        ("3-19970201-1", 0.0, None, 0.0),
        ("7-19970101-1", 10.0, 1, 0.0),
        ("7-19970101-2", 30.0, 3, 0.0),
        ("7-19970102-1", 5.0, 1, 0.0),
    ]


def test_merge_same_day_sums_value_and_quantity() -> None:
    tables = import_transactions(
        _tiny().lazy(),
        customer_col="cust",
        date_col="day",
        amount_col="value",
        quantity_col="n",
        cost_rate=0.5,
        merge_same_day=True,
    )
    orders = tables["orders"].collect()
    assert orders.select("order_id", "revenue", "cost_of_goods", "quantity").rows() == [
        ("3-19970201-1", 0.0, 0.0, None),
        ("7-19970101-1", 40.0, 20.0, 4),
        ("7-19970102-1", 5.0, 2.5, 1),
    ]
    customers = tables["customers"].collect()
    assert customers.select("customer_id", "signup_date").rows() == [
        ("3", dt.date(1997, 2, 1)),
        ("7", dt.date(1997, 1, 1)),
    ]


def test_without_quantity_column_quantity_is_null_int64() -> None:
    orders = import_transactions(_tiny(), customer_col="cust", date_col="day", amount_col="value")[
        "orders"
    ].collect()
    assert orders.schema["quantity"] == pl.Int64
    assert orders["quantity"].null_count() == 4


def test_missing_column_is_named() -> None:
    with pytest.raises(TransactionImportError, match=r"\['amount'\] not found; columns found"):
        import_transactions(_tiny(), customer_col="cust", date_col="day", amount_col="amount")


def test_text_dates_are_rejected() -> None:
    frame = _tiny().with_columns(pl.col("day").cast(pl.String))
    with pytest.raises(TransactionImportError, match="'day' has dtype String"):
        import_transactions(frame, customer_col="cust", date_col="day", amount_col="value")


def test_negative_or_blank_amount_names_the_row() -> None:
    negative = _tiny().with_columns(pl.Series("value", [5.0, -1.0, 10.0, 0.0]))
    with pytest.raises(
        TransactionImportError, match=r"'value' is negative in 1 row\(s\): rows \[2\]"
    ):
        import_transactions(negative, customer_col="cust", date_col="day", amount_col="value")
    blank = _tiny().with_columns(pl.Series("value", [5.0, None, 10.0, None]))
    with pytest.raises(
        TransactionImportError, match=r"'value' is blank in 2 row\(s\): rows \[2, 4\]"
    ):
        import_transactions(blank, customer_col="cust", date_col="day", amount_col="value")


def test_cost_rate_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="cost_rate must be in"):
        import_transactions(
            _tiny(), customer_col="cust", date_col="day", amount_col="value", cost_rate=1.5
        )


# --- both CDNOW layouts and a generic CSV ------------------------------------------------------


def test_the_master_layout_reads_like_the_sample(tmp_path: Path, cdnow: pl.DataFrame) -> None:
    """The full master file: a header line and four columns (no sample id)."""
    rows = cdnow.head(200)
    master = tmp_path / "CDNOW_master.txt"
    lines = [
        f"{m} {d.strftime('%Y%m%d')} {q:>3} {a:8.2f}"
        for m, d, q, a in rows.select("master_id", "date", "quantity", "amount").iter_rows()
    ]
    master.write_text("customer_id date number_of_cds dollar_value\n" + "\n".join(lines) + "\n")
    assert is_cdnow_layout(master)
    assert is_cdnow_layout(_shared_data() / "cdnow" / "CDNOW_sample.txt")
    read = read_cdnow(master)
    assert read.get_column("sample_id").null_count() == 200
    assert read.drop("sample_id").equals(rows.drop("sample_id"))
    log, columns = read_transaction_log(master)
    assert columns["customer_col"] == "master_id" and log.height == 200


def test_a_generic_transaction_csv_is_read_with_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    path.write_text(
        "client,when,value,items\nA,2024-01-05,10.5,1\nB,20240106,3,2\nA,2024-02-01T10:00:00,7,1\n"
    )
    assert not is_cdnow_layout(path)
    log, columns = read_transaction_log(
        path, customer_col="client", date_col="when", amount_col="value"
    )
    assert log.get_column("when").to_list() == [
        dt.date(2024, 1, 5),
        dt.date(2024, 1, 6),
        dt.date(2024, 2, 1),
    ]
    tables = import_transactions(log, **columns)  # type: ignore[arg-type]
    orders = tables["orders"].collect()
    assert orders.height == 3 and orders.get_column("revenue").sum() == 20.5


def test_a_generic_csv_names_bad_dates_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    path.write_text("customer_id,date,amount\nA,2024-01-05,1\nB,05/01/2024,2\n")
    with pytest.raises(
        TransactionImportError, match=r"'date': 1 value\(s\) are not a date: line 3"
    ):
        read_transaction_csv(path)
    with pytest.raises(TransactionImportError, match=r"\['spend'\] not found"):
        read_transaction_csv(path, amount_col="spend")
