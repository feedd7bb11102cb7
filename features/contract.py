"""The CRM data contract: tables, columns, dtypes and the enumerated values keepwise understands.

Date-times (complaints.opened_at / resolved_at) carry no time zone and are read as UTC.

One place names every column so the synthetic world, the pandera schemas, the loader and the
feature pipelines cannot drift apart. The pandera schemas in :mod:`features.schemas` add the
checks (uniqueness, ranges, cross-column rules) on top of these definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

CHANNELS: tuple[str, ...] = (
    "counter",  # in person at a branch or service desk
    "feedback_card",
    "phone",
    "email",
    "return_visit",  # raised when the company calls back / visits
    "web",
    "app",
)
SEVERITIES: tuple[str, ...] = ("near_miss", "minor", "major")
# The complaint process stages, in order; "feedback" means the customer was told the outcome.
STAGES: tuple[str, ...] = ("record", "accept", "analyse", "handle", "feedback")
COMPLAINT_CATEGORIES: tuple[str, ...] = (
    "billing_error",
    "product_defect",
    "outage",
    "delivery",
    "staff_conduct",
    "usage_question",
    "custom_request",
    "price",
)
OFFER_KINDS: tuple[str, ...] = ("refund", "discount", "replacement", "training", "gift", "service")
SEGMENTS: tuple[str, ...] = ("enterprise", "mid_market", "small_business", "public_sector")
CONTRACT_TYPES: tuple[str, ...] = ("monthly", "annual", "two_year")
# Regions of the synthetic world; in real exports region is free text.
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")


@dataclass(frozen=True)
class Column:
    """One column of a CRM table."""

    name: str
    dtype: pl.DataType
    nullable: bool = False
    required: bool = True  # optional columns may be absent from an export altogether
    description: str = ""


@dataclass(frozen=True)
class Table:
    """One CRM table: its columns and its primary key."""

    name: str
    key: str
    columns: tuple[Column, ...]

    @property
    def dtypes(self) -> dict[str, pl.DataType]:
        return {column.name: column.dtype for column in self.columns}

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns if column.required)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name!r} has no column {name!r}")


_TS = pl.Datetime("us")

CUSTOMERS = Table(
    "customers",
    key="customer_id",
    columns=(
        Column("customer_id", pl.String(), description="unique customer key"),
        Column("name", pl.String()),
        Column("segment", pl.String(), description=f"one of {', '.join(SEGMENTS)}"),
        Column("signup_date", pl.Date()),
        Column("contract_type", pl.String(), description=f"one of {', '.join(CONTRACT_TYPES)}"),
        Column("region", pl.String(), nullable=True, description="free text"),
        Column("account_manager", pl.String(), nullable=True),
        Column("end_date", pl.Date(), nullable=True, description="null while active"),
    ),
)

ORDERS = Table(
    "orders",
    key="order_id",
    columns=(
        Column("order_id", pl.String()),
        Column("customer_id", pl.String()),
        Column("order_date", pl.Date()),
        Column("revenue", pl.Float64(), description="gross invoiced value, >= 0"),
        Column("cost_of_goods", pl.Float64(), description=">= 0"),
        Column("discount", pl.Float64(), description="discount granted on the order, >= 0"),
        Column("quantity", pl.Int64(), nullable=True, required=False),
    ),
)

PAYMENTS = Table(
    "payments",
    key="invoice_id",
    columns=(
        Column("invoice_id", pl.String()),
        Column("customer_id", pl.String()),
        Column("invoice_date", pl.Date(), description="when the invoice was issued"),
        Column("due_date", pl.Date()),
        Column("amount", pl.Float64(), description=">= 0"),
        Column("paid_date", pl.Date(), nullable=True, description="null = unpaid"),
        Column("disputed", pl.Boolean(), description="customer disputes or withholds it"),
    ),
)

COMPLAINTS = Table(
    "complaints",
    key="complaint_id",
    columns=(
        Column("complaint_id", pl.String()),
        Column("customer_id", pl.String()),
        Column("opened_at", _TS),
        Column("resolved_at", _TS, nullable=True, description="null while open"),
        Column("channel", pl.String(), description=f"one of {', '.join(CHANNELS)}"),
        Column("category", pl.String(), description=f"one of {', '.join(COMPLAINT_CATEGORIES)}"),
        Column("severity", pl.String(), description=f"one of {', '.join(SEVERITIES)}"),
        Column("handling_minutes", pl.Float64(), description="staff time spent, >= 0"),
        Column("escalations", pl.Int64(), description=">= 0"),
        Column("stage", pl.String(), description=f"one of {', '.join(STAGES)}"),
        Column("text", pl.String(), nullable=True, required=False),
    ),
)

OFFERS = Table(
    "offers",
    key="offer_id",
    columns=(
        Column("offer_id", pl.String()),
        Column("customer_id", pl.String()),
        Column("offered_at", pl.Date()),
        Column("kind", pl.String(), description=f"one of {', '.join(OFFER_KINDS)}"),
        Column("cost", pl.Float64(), description="cost to the company if accepted, >= 0"),
        Column("accepted", pl.Boolean(), nullable=True, description="null = no answer yet"),
        Column("responded_at", pl.Date(), nullable=True),
        Column(
            "targeted",
            pl.Boolean(),
            nullable=True,
            required=False,
            description="false for broad campaigns",
        ),
        Column("complaint_id", pl.String(), nullable=True, required=False),
        Column(
            "holdout",
            pl.Boolean(),
            nullable=True,
            required=False,
            description=(
                "true: selected for the campaign but held out at random as its control group; "
                "not contacted, so no answer (accepted null) and no cost. Null or false: a real "
                "offer"
            ),
        ),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (CUSTOMERS, ORDERS, PAYMENTS, COMPLAINTS, OFFERS)}
