"""Import a bare transaction log (customer, date, amount) as contract-shaped CRM tables.

Retail logs such as CDNOW carry only purchases. :func:`import_transactions` derives the five
contract tables (:mod:`features.contract`) from them so the ordinary pipelines can run:

* **customers** — one row per customer seen in the log. ``customer_id`` is the customer column
  as text; ``signup_date`` is the first purchase date; ``end_date`` is null because a
  transaction log never records a customer leaving. The log has no descriptive attributes, so
  the other columns get fixed placeholders: ``name`` = the customer id, ``segment`` =
  :data:`SEGMENT` (``"small_business"``, the smallest contract segment), ``contract_type`` =
  :data:`CONTRACT_TYPE` (``"monthly"``, the nearest to "free to stop at any time"), ``region`` =
  :data:`REGION` (``"unknown"``), ``account_manager`` = :data:`ACCOUNT_MANAGER`
  (``"unassigned"``). They are constants, so they carry no information into a model.
* **orders** — one row per transaction (or per customer and day with ``merge_same_day``):
  ``revenue`` = the amount, ``cost_of_goods`` = amount x ``cost_rate`` (0 when no rate is
  given, which makes margin equal to revenue — pass a rate whenever one is known),
  ``discount`` = 0, ``quantity`` from ``quantity_col`` (null without one). ``order_id`` is
  ``"<customer_id>-<YYYYMMDD>-<n>"``, ``n`` numbering one customer's orders of one day after
  sorting by revenue and quantity, so ids do not depend on the input row order.
* **payments, complaints, offers** — empty, with every contract column at its contract dtype.

These data are **non-contractual**: nobody cancels, customers just stop buying, and
``end_date`` is always null. Churn labels must therefore be built with
``churn_definition="non_contractual"`` (no purchase in the label window), never from
``end_date``.

Same-day purchases: by default each transaction stays a separate order (CDNOW has a few
customers with two records on one day). The BG/NBD literature (Fader, Hardie & Lee 2005) and
the published CDNOW figures count at most one transaction per customer per day; pass
``merge_same_day=True`` to reproduce them (amounts, costs and quantities are summed).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from features.assembly import exact_sum
from features.contract import (
    COMPLAINTS,
    CUSTOMERS,
    OFFERS,
    ORDERS,
    PAYMENTS,
    Table,
)

SEGMENT = "small_business"
CONTRACT_TYPE = "monthly"
REGION = "unknown"
ACCOUNT_MANAGER = "unassigned"

CDNOW_COLUMNS: dict[str, pl.DataType] = {
    "master_id": pl.String(),
    "sample_id": pl.Int64(),
    "date": pl.Date(),
    "quantity": pl.Int64(),
    "amount": pl.Float64(),
}
_CDNOW_LINE = (
    r"^\s*(?<master_id>\d+)(?:\s+(?<sample_id>\d+))?\s+(?<date>\d{8})\s+(?<quantity>\d+)"
    r"\s+(?<amount>-?\d+(?:\.\d*)?)\s*$"
)
# The full master file's header line (whitespace-separated, four columns).
CDNOW_MASTER_HEADER = ("customer_id", "date", "number_of_cds", "dollar_value")
_ROW = "__keepwise_row"
_EXAMPLES = 5


class TransactionImportError(ValueError):
    """The transaction log cannot be imported; the message names the column, rows and values."""


def read_cdnow(path: str | Path) -> pl.DataFrame:
    """Parse a CDNOW transaction file in either of Fader & Hardie's layouts.

    * the 1/10 sample (``CDNOW_sample.txt``): no header; per line, separated by runs of
      spaces, master customer id, sample customer id, date (YYYYMMDD), number of CDs, dollar
      value;
    * the full master file (23,570 customers): a header line ``customer_id date number_of_cds
      dollar_value`` and four such columns (no sample id).

    Blank lines are skipped; CRLF and LF line ends are both accepted.

    Args:
        path: The text file.

    Returns:
        A frame with columns master_id (String, as written, zero-padded), sample_id (Int64,
        null in the four-column layout), date (Date), quantity (Int64) and amount (Float64), in
        file order.

    Raises:
        TransactionImportError: When a non-blank line does not match either layout or holds an
            impossible date; the message gives the line numbers and contents.
    """
    lines = pl.DataFrame({"line": Path(path).read_text(encoding="ascii").splitlines()})
    lines = lines.with_row_index(_ROW, offset=1).filter(pl.col("line").str.strip_chars() != "")
    if lines.height and tuple(lines.item(0, "line").lower().split()) == CDNOW_MASTER_HEADER:
        lines = lines.slice(1)
    fields = lines.with_columns(
        pl.col("line").str.extract_groups(_CDNOW_LINE).alias("fields")
    ).unnest("fields")
    parsed = fields.with_columns(
        pl.col("sample_id").cast(pl.Int64),
        pl.col("date").str.to_date("%Y%m%d", strict=False),
        pl.col("quantity").cast(pl.Int64),
        pl.col("amount").cast(pl.Float64),
    )
    bad = parsed.filter(pl.col("master_id").is_null() | pl.col("date").is_null())
    if bad.height:
        shown = bad.head(_EXAMPLES).select(pl.format("line {}: {}", _ROW, "line")).to_series()
        raise TransactionImportError(
            f"{path}: {bad.height} line(s) are not 'master_id [sample_id] YYYYMMDD quantity "
            f"amount': {'; '.join(shown.to_list())}"
        )
    return parsed.select(list(CDNOW_COLUMNS))


def is_cdnow_layout(path: str | Path) -> bool:
    """Whether a file looks like a CDNOW log: whitespace-separated, no commas, either layout."""
    with Path(path).open(encoding="ascii", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            if tuple(line.lower().split()) == CDNOW_MASTER_HEADER:
                return True
            python_pattern = _CDNOW_LINE.replace("(?<", "(?P<")  # polars' syntax -> re's
            return "," not in line and re.match(python_pattern, line.rstrip("\r\n")) is not None
    return False


_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


def read_transaction_csv(
    path: str | Path,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    quantity_col: str | None = None,
) -> pl.DataFrame:
    """Read a generic transaction CSV (one row per purchase) with typed columns.

    Dates may be ``YYYY-MM-DD``, ``YYYYMMDD`` or ISO date-times (read as their day); amounts
    and quantities are numbers. Other columns are left as text.

    Args:
        path: The CSV file (header line first).
        customer_col: Customer column.
        date_col: Purchase date column.
        amount_col: Transaction value column.
        quantity_col: Optional item-count column.

    Returns:
        The log with ``date_col`` as Date, ``amount_col`` Float64 and ``quantity_col`` Int64,
        ready for :func:`import_transactions` with the same column names.

    Raises:
        TransactionImportError: A column is missing, or a value is not a date or a number; the
            message names the column and example rows (lines, the header is line 1).
    """
    frame = pl.read_csv(path, infer_schema=False)
    wanted = [customer_col, date_col, amount_col] + ([quantity_col] if quantity_col else [])
    missing = [name for name in wanted if name not in frame.columns]
    if missing:
        raise TransactionImportError(
            f"{path}: column(s) {missing} not found; columns found: {', '.join(frame.columns)}"
            " (name them with --customer-column, --date-column, --amount-column)"
        )
    text = pl.col(date_col).str.strip_chars()
    parsed = frame.with_row_index(_ROW, offset=2).with_columns(
        pl.coalesce(
            *(text.str.to_datetime(fmt, strict=False).dt.date() for fmt in _DATE_FORMATS)
        ).alias(date_col),
        pl.col(amount_col).str.strip_chars().cast(pl.Float64, strict=False),
        *(
            [pl.col(quantity_col).str.strip_chars().cast(pl.Int64, strict=False)]
            if quantity_col
            else []
        ),
    )
    for column, kind in [(date_col, "a date"), (amount_col, "a number")] + (
        [(quantity_col, "a whole number")] if quantity_col else []
    ):
        bad = parsed.filter(pl.col(column).is_null() & frame[column].is_not_null())
        if bad.height:
            shown = ", ".join(
                f"line {line}: {value!r}"
                for line, value in zip(
                    bad[_ROW].head(_EXAMPLES),
                    frame[column].filter(parsed[column].is_null() & frame[column].is_not_null()),
                    strict=False,
                )
            )
            raise TransactionImportError(
                f"{path}: column {column!r}: {bad.height} value(s) are not {kind}: {shown}"
            )
    return parsed.drop(_ROW)


def read_transaction_log(
    path: str | Path,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str = "amount",
    quantity_col: str | None = None,
) -> tuple[pl.DataFrame, dict[str, str | None]]:
    """A transaction log in either CDNOW layout or as a generic CSV, with its column roles.

    Returns:
        The log and the keyword arguments :func:`import_transactions` needs for it.
    """
    if is_cdnow_layout(path):
        return read_cdnow(path), {
            "customer_col": "master_id",
            "date_col": "date",
            "amount_col": "amount",
            "quantity_col": "quantity",
        }
    frame = read_transaction_csv(
        path,
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        quantity_col=quantity_col,
    )
    return frame, {
        "customer_col": customer_col,
        "date_col": date_col,
        "amount_col": amount_col,
        "quantity_col": quantity_col,
    }


def import_transactions(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    customer_col: str,
    date_col: str,
    amount_col: str,
    quantity_col: str | None = None,
    cost_rate: float | None = None,
    merge_same_day: bool = False,
) -> dict[str, pl.LazyFrame]:
    """Derive the five contract tables from a transaction log (see the module docstring).

    The input is checked eagerly (a lazy frame is collected once) so that errors surface here;
    the tables are returned lazy, ready for the feature pipelines.

    Args:
        frame: One row per transaction; not modified.
        customer_col: Customer column (any dtype; becomes text).
        date_col: Purchase date column, Date or Datetime (Datetime is truncated to the day).
        amount_col: Transaction value column, numeric, >= 0.
        quantity_col: Optional item-count column, integer, >= 0.
        cost_rate: Cost of goods as a share of the amount, in [0, 1]; None means 0.
        merge_same_day: Merge one customer's transactions of the same day into one order.

    Returns:
        ``{"customers", "orders", "payments", "complaints", "offers"}`` as LazyFrames with
        exactly the contract columns and dtypes (orders include ``quantity``; the empty
        tables include the optional contract columns).

    Raises:
        TransactionImportError: When a column is missing or of the wrong dtype, or a value is
            null or negative; the message names the column and example rows.
        ValueError: When ``cost_rate`` is outside [0, 1].
    """
    if cost_rate is not None and not 0.0 <= cost_rate <= 1.0:
        raise ValueError(f"cost_rate must be in [0, 1], got {cost_rate}")
    data = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    transactions = _standardise(data, customer_col, date_col, amount_col, quantity_col)
    orders = _orders(transactions, cost_rate or 0.0, merge_same_day)
    customers = orders.group_by("customer_id").agg(pl.col("order_date").min().alias("signup_date"))
    customers = customers.sort("customer_id").select(
        "customer_id",
        pl.col("customer_id").alias("name"),
        pl.lit(SEGMENT).alias("segment"),
        "signup_date",
        pl.lit(CONTRACT_TYPE).alias("contract_type"),
        pl.lit(REGION).alias("region"),
        pl.lit(ACCOUNT_MANAGER).alias("account_manager"),
        pl.lit(None).alias("end_date"),
    )
    return {
        CUSTOMERS.name: _conform(customers, CUSTOMERS),
        ORDERS.name: _conform(orders, ORDERS),
        PAYMENTS.name: _empty(PAYMENTS),
        COMPLAINTS.name: _empty(COMPLAINTS),
        OFFERS.name: _empty(OFFERS),
    }


def _standardise(
    data: pl.DataFrame,
    customer_col: str,
    date_col: str,
    amount_col: str,
    quantity_col: str | None,
) -> pl.DataFrame:
    """Check the log and rename it to customer_id, order_date, revenue, quantity."""
    wanted = [customer_col, date_col, amount_col] + ([quantity_col] if quantity_col else [])
    missing = [name for name in wanted if name not in data.columns]
    if missing:
        raise TransactionImportError(
            f"transactions: column(s) {missing} not found; columns found: {', '.join(data.columns)}"
        )
    schema = data.schema
    if schema[date_col] not in (pl.Date, pl.Datetime):
        raise TransactionImportError(
            f"transactions: date column {date_col!r} has dtype {schema[date_col]}; "
            "parse it to Date first (read_cdnow does for CDNOW files)"
        )
    if not schema[amount_col].is_numeric():
        raise TransactionImportError(
            f"transactions: amount column {amount_col!r} has dtype {schema[amount_col]}, "
            "not numeric"
        )
    if quantity_col and not schema[quantity_col].is_integer():
        raise TransactionImportError(
            f"transactions: quantity column {quantity_col!r} has dtype "
            f"{schema[quantity_col]}, not an integer"
        )
    quantity = pl.col(quantity_col) if quantity_col else pl.lit(None)
    result = data.with_row_index(_ROW, offset=1).select(
        _ROW,
        pl.col(customer_col).cast(pl.String).str.strip_chars().alias("customer_id"),
        pl.col(date_col).cast(pl.Date).alias("order_date"),
        pl.col(amount_col).cast(pl.Float64).alias("revenue"),
        quantity.cast(pl.Int64).alias("quantity"),
    )
    checks = {
        customer_col: pl.col("customer_id").is_null() | (pl.col("customer_id") == ""),
        date_col: pl.col("order_date").is_null(),
        amount_col: pl.col("revenue").is_null() | pl.col("revenue").is_nan(),
    }
    for column, blank in checks.items():
        _fail_on(result, blank, f"column {column!r} is blank")
    _fail_on(result, pl.col("revenue") < 0, f"column {amount_col!r} is negative")
    if quantity_col:
        _fail_on(result, pl.col("quantity") < 0, f"column {quantity_col!r} is negative")
    return result.drop(_ROW)


def _fail_on(data: pl.DataFrame, condition: pl.Expr, what: str) -> None:
    bad = data.filter(condition)
    if bad.height:
        rows = bad.head(_EXAMPLES)[_ROW].to_list()
        more = ", ..." if bad.height > _EXAMPLES else ""
        raise TransactionImportError(
            f"transactions: {what} in {bad.height} row(s): rows {rows}{more}"
        )


def _orders(transactions: pl.DataFrame, cost_rate: float, merge_same_day: bool) -> pl.LazyFrame:
    orders = transactions.lazy()
    if merge_same_day:
        orders = orders.group_by("customer_id", "order_date").agg(
            exact_sum(pl.col("revenue")).alias("revenue"),
            # A day's quantity is known only when every merged transaction has one.
            pl.when(pl.col("quantity").null_count() == 0).then(pl.col("quantity").sum()),
        )
    day = ["customer_id", "order_date"]
    return orders.sort([*day, "revenue", "quantity"], nulls_last=True).with_columns(
        pl.format(
            "{}-{}-{}",
            "customer_id",
            pl.col("order_date").dt.strftime("%Y%m%d"),
            (pl.int_range(pl.len()).over(day) + 1),
        ).alias("order_id"),
        (pl.col("revenue") * cost_rate).alias("cost_of_goods"),
        pl.lit(0.0).alias("discount"),
    )


def _conform(frame: pl.LazyFrame, table: Table) -> pl.LazyFrame:
    """Select the table's columns in contract order, cast to the contract dtypes."""
    return frame.select(pl.col(name).cast(dtype) for name, dtype in table.dtypes.items())


def _empty(table: Table) -> pl.LazyFrame:
    return pl.LazyFrame(schema=table.dtypes)
