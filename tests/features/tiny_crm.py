"""A tiny hand-written CRM for the feature tests; every expected number is worked out by hand.

Snapshot ``AS_OF = 2024-07-01``. With the default windows:

* long window (12m, 365 days):  [2023-07-02, 2024-07-01)
* short window (3m, 91 days):   [2024-04-01, 2024-07-01)
* prior period (the 9 months):  [2023-07-02, 2024-04-01), 274 days
* label horizon (92 days):      [2024-07-01, 2024-10-01)

Customers (active at AS_OF = signed up before it, not ended before it):

* A — the difficult enterprise client: annual contract, many complaints full of venting words,
  a disputed invoice, overdue invoices, a declined training offer.
* B — a good mid-market client, two-year contract, pays, one quick complaint, takes a refund;
  its contract ends 2024-09-30 (inside the horizon).
* C — signed up 2024-05-01 on a monthly contract, ends on AS_OF itself (still active at AS_OF),
  first order on AS_OF (not visible to features).
* F — a monthly customer whose last order was 2023-05-01: active contractually, lapsed for
  the non-contractual definition (no order in 365 days, tenure >= 365).
* D — ended 2024-06-15 (before AS_OF) and E — signs up on AS_OF: both excluded; their events
  must not leak into anything.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from features.contract import TABLES

AS_OF = date(2024, 7, 1)
HORIZON_DAYS = 92
D = date
T = datetime


def _frame(table: str, rows: list[tuple], columns: tuple[str, ...]) -> pl.LazyFrame:
    dtypes = TABLES[table].dtypes
    schema = {name: dtypes[name] for name in columns}
    return pl.LazyFrame(rows, schema=schema, orient="row")


CUSTOMER_COLUMNS = (
    "customer_id", "name", "segment", "signup_date", "contract_type", "region",
    "account_manager", "end_date",
)  # fmt: skip
CUSTOMERS = [
    ("A", "Acme", "enterprise", D(2020, 3, 15), "annual", "north", "am1", None),
    ("B", "Bolt", "mid_market", D(2023, 1, 10), "two_year", "south", "am2", D(2024, 9, 30)),
    ("C", "Cleo", "small_business", D(2024, 5, 1), "monthly", "east", "am1", D(2024, 7, 1)),
    ("D", "Dune", "public_sector", D(2019, 1, 1), "annual", "west", "am2", D(2024, 6, 15)),
    ("E", "Echo", "enterprise", D(2024, 7, 1), "monthly", "central", "am1", None),
    ("F", "Fade", "small_business", D(2021, 1, 1), "monthly", "west", "am2", None),
]

ORDER_COLUMNS = ("order_id", "customer_id", "order_date", "revenue", "cost_of_goods", "discount")
ORDERS = [
    ("a1", "A", D(2023, 5, 1), 1000.0, 600.0, 0.0),  # before the long window
    ("a2", "A", D(2023, 10, 15), 2000.0, 1200.0, 100.0),  # prior period
    ("a3", "A", D(2024, 2, 1), 1000.0, 700.0, 50.0),  # prior period
    ("a4", "A", D(2024, 5, 20), 500.0, 400.0, 0.0),  # short window
    ("a5", "A", D(2024, 7, 1), 9999.0, 1.0, 0.0),  # on AS_OF: horizon only
    ("a6", "A", D(2024, 8, 15), 3000.0, 1000.0, 0.0),  # horizon
    ("b1", "B", D(2023, 7, 1), 800.0, 300.0, 0.0),  # one day before the long window
    ("b2", "B", D(2023, 7, 2), 800.0, 300.0, 0.0),  # first day of the long window
    ("b3", "B", D(2024, 4, 1), 1200.0, 500.0, 200.0),  # first day of the short window
    ("b4", "B", D(2024, 6, 30), 400.0, 100.0, 0.0),  # last day before AS_OF
    ("c1", "C", D(2024, 7, 1), 50.0, 20.0, 0.0),  # on AS_OF: horizon only
    ("d1", "D", D(2024, 6, 1), 5000.0, 0.0, 0.0),  # ended customer
    ("e1", "E", D(2024, 7, 2), 5000.0, 0.0, 0.0),  # customer signing up on AS_OF
    ("f1", "F", D(2023, 5, 1), 100.0, 50.0, 0.0),  # F's last order
]

PAYMENT_COLUMNS = (
    "invoice_id", "customer_id", "invoice_date", "due_date", "amount", "paid_date", "disputed",
)  # fmt: skip
PAYMENTS = [
    ("pa0", "A", D(2022, 1, 10), D(2022, 2, 9), 700.0, None, False),  # old, unpaid, overdue
    ("pa1", "A", D(2023, 10, 15), D(2023, 11, 14), 2000.0, D(2023, 11, 10), False),  # paid
    ("pa2", "A", D(2024, 2, 1), D(2024, 3, 2), 1000.0, None, True),  # overdue + disputed
    ("pa3", "A", D(2024, 5, 20), D(2024, 6, 19), 500.0, D(2024, 7, 10), False),  # paid later
    ("pa4", "A", D(2024, 6, 25), D(2024, 7, 25), 300.0, None, False),  # open, not yet due
    ("pa5", "A", D(2024, 7, 5), D(2024, 8, 4), 2999.0, None, False),  # horizon, overdue at end
    ("pb1", "B", D(2024, 4, 1), D(2024, 5, 1), 1200.0, D(2024, 5, 1), False),  # paid
    ("pb2", "B", D(2024, 6, 30), D(2024, 7, 30), 400.0, None, True),  # disputed, not yet due
    ("pb3", "B", D(2024, 6, 1), D(2024, 6, 20), 100.0, D(2024, 7, 1), False),  # paid ON AS_OF
    ("pd1", "D", D(2024, 6, 1), D(2024, 6, 2), 5000.0, None, True),  # ended customer
]

COMPLAINT_COLUMNS = (
    "complaint_id", "customer_id", "opened_at", "resolved_at", "channel", "category", "severity",
    "handling_minutes", "escalations", "stage", "text",
)  # fmt: skip
COMPLAINTS = [
    # opened before the long window, resolved inside it: only in the resolution statistics
    ("ca0", "A", T(2023, 3, 1, 12), T(2023, 7, 5, 12), "feedback_card", "delivery",
     "near_miss", 20.0, 0, "feedback", "late"),  # 3024 h
    ("ca1", "A", T(2023, 9, 10, 9), T(2023, 9, 12, 9), "phone", "product_defect",
     "minor", 60.0, 1, "feedback", "This USELESS company, always broken!"),  # 48 h, 2 words
    ("ca2", "A", T(2024, 4, 20, 10), T(2024, 4, 20, 16), "email", "product_defect",
     "near_miss", 30.0, 0, "feedback", "每次都这样，破公司"),  # 6 h, 2 words
    ("ca3", "A", T(2024, 4, 15, 8), None, "counter", "billing_error",
     "major", 120.0, 2, "handle", "worst service, every time, never fixed"),  # open, 3 words
    ("ca4", "A", T(2024, 6, 30, 23), T(2024, 7, 2, 9), "app", "product_defect",
     "minor", 10.0, 0, "analyse", None),  # resolved after AS_OF: open at AS_OF
    ("ca5", "A", T(2024, 7, 1, 0), None, "web", "outage",
     "major", 500.0, 5, "record", "always always"),  # at AS_OF 00:00: horizon only
    ("cb1", "B", T(2024, 5, 5, 10), T(2024, 5, 5, 12, 30), "web", "delivery",
     "near_miss", 15.0, 0, "feedback", "Came late, NEVERtheless fine"),  # 2.5 h, 1 word
    ("cb2", "B", T(2024, 8, 1, 10), None, "phone", "outage",
     "minor", 40.0, 1, "record", None),  # horizon
    ("cd1", "D", T(2024, 6, 1, 10), None, "phone", "outage",
     "major", 999.0, 9, "record", "always"),  # ended customer
]  # fmt: skip

OFFER_COLUMNS = (
    "offer_id", "customer_id", "offered_at", "kind", "cost", "accepted", "responded_at",
)  # fmt: skip
OFFERS = [
    ("fa0", "A", D(2023, 1, 15), "refund", 50.0, True, D(2023, 1, 20)),  # before the window
    ("fa1", "A", D(2024, 3, 1), "training", 400.0, False, D(2024, 3, 10)),  # declined
    ("fa2", "A", D(2024, 6, 20), "gift", 100.0, True, D(2024, 7, 3)),  # answered after AS_OF
    ("fb1", "B", D(2024, 5, 6), "refund", 80.0, True, D(2024, 5, 7)),  # accepted
    ("fb2", "B", D(2024, 6, 28), "discount", 30.0, None, None),  # no answer
    ("fd1", "D", D(2024, 6, 1), "refund", 500.0, True, D(2024, 6, 2)),  # ended customer
]


def tiny_tables(*, with_text: bool = True) -> dict[str, pl.LazyFrame]:
    """The tiny CRM as lazy tables; ``with_text=False`` drops the optional complaint text."""
    complaint_columns = COMPLAINT_COLUMNS if with_text else COMPLAINT_COLUMNS[:-1]
    complaints = [row[: len(complaint_columns)] for row in COMPLAINTS]
    return {
        "customers": _frame("customers", CUSTOMERS, CUSTOMER_COLUMNS),
        "orders": _frame("orders", ORDERS, ORDER_COLUMNS),
        "payments": _frame("payments", PAYMENTS, PAYMENT_COLUMNS),
        "complaints": _frame("complaints", complaints, complaint_columns),
        "offers": _frame("offers", OFFERS, OFFER_COLUMNS),
    }


def row(frame: pl.DataFrame, customer_id: str) -> dict:
    """The row of one customer as a dict."""
    rows = frame.filter(pl.col("customer_id") == customer_id).to_dicts()
    assert len(rows) == 1, f"expected one row for {customer_id}, got {len(rows)}"
    return rows[0]
