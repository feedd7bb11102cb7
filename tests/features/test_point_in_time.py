"""Point-in-time properties of build_features on random small CRMs (hypothesis).

* Redrawing everything that happens on/after ``as_of`` — events dated then are changed, deleted
  or added; payments, resolutions, offer answers and contract ends that happen then are moved or
  undone — leaves every feature unchanged.
* Moving one event to just before ``as_of`` changes the features it should.
* The output schema holds, and reordering the input rows changes nothing.

Amounts are multiples of 0.25 so that float sums are exact whatever the summation order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from features.config import FeatureConfig
from features.contract import (
    CHANNELS,
    COMPLAINT_CATEGORIES,
    CONTRACT_TYPES,
    OFFER_KINDS,
    SEGMENTS,
    SEVERITIES,
    STAGES,
    TABLES,
)
from features.output_schema import validate_feature_table
from features.pipeline import build_features

AS_OF = date(2024, 7, 1)
CUTOFF = datetime(2024, 7, 1)
CONFIG = FeatureConfig()
TEXTS = (None, "", "always late", "USELESS company, every time", "每次都坏 垃圾", "fine", "never")

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

amounts = st.integers(0, 4000).map(lambda n: n / 4)
# Window edges are drawn often: the day before AS_OF, AS_OF itself, the first and last days
# of the short (91) and long (365) windows.
past_days = st.integers(-450, -1) | st.sampled_from([-1, -91, -92, -365, -366])
future_days = st.integers(0, 200) | st.just(0)
any_days = past_days | future_days


def day(offset: int) -> date:
    return AS_OF + timedelta(days=offset)


@dataclass
class World:
    """A small CRM as rows (dicts) per table."""

    customers: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    payments: list[dict] = field(default_factory=list)
    complaints: list[dict] = field(default_factory=list)
    offers: list[dict] = field(default_factory=list)

    def tables(self) -> dict[str, pl.LazyFrame]:
        return {
            name: pl.LazyFrame(getattr(self, name), schema=TABLES[name].dtypes, orient="row")
            if getattr(self, name)
            else pl.LazyFrame(schema=TABLES[name].dtypes)
            for name in TABLES
        }

    def active_ids(self) -> list[str]:
        return [
            c["customer_id"]
            for c in self.customers
            if c["signup_date"] < AS_OF and (c["end_date"] is None or c["end_date"] >= AS_OF)
        ]


def _customer(draw: st.DrawFn, customer_id: str, *, active: bool) -> dict:
    signup = day(draw(st.integers(-800, -1) if active else st.integers(-800, 30)))
    if active or draw(st.booleans()):
        end = None if draw(st.booleans()) else day(draw(future_days))
    else:
        end = signup + timedelta(days=draw(st.integers(0, 900)))
    return {
        "customer_id": customer_id,
        "name": customer_id,
        "segment": draw(st.sampled_from(SEGMENTS)),
        "signup_date": signup,
        "contract_type": draw(st.sampled_from(CONTRACT_TYPES)),
        "region": "north",
        "account_manager": "am",
        "end_date": max(end, signup) if end is not None else None,
    }


def _order(draw: st.DrawFn, ids: list[str], days: st.SearchStrategy[int]) -> dict:
    return {
        "order_id": "",
        "customer_id": draw(st.sampled_from(ids)),
        "order_date": day(draw(days)),
        "revenue": draw(amounts),
        "cost_of_goods": draw(amounts),
        "discount": draw(amounts),
    }


def _paid(draw: st.DrawFn, invoice: date) -> date | None:
    if draw(st.booleans()):
        return None
    return invoice + timedelta(days=draw(st.integers(0, 120) | st.just(0)))


def _payment(draw: st.DrawFn, ids: list[str], days: st.SearchStrategy[int]) -> dict:
    invoice = day(draw(days))
    return {
        "invoice_id": "",
        "customer_id": draw(st.sampled_from(ids)),
        "invoice_date": invoice,
        "due_date": invoice + timedelta(days=draw(st.integers(0, 60))),
        "amount": draw(amounts),
        "paid_date": _paid(draw, invoice),
        "disputed": draw(st.booleans()),
    }


def _resolved(draw: st.DrawFn, opened: datetime) -> datetime | None:
    if draw(st.booleans()):
        return None
    return opened + timedelta(minutes=draw(st.integers(0, 200 * 60) | st.just(0)))


def _complaint(draw: st.DrawFn, ids: list[str], days: st.SearchStrategy[int]) -> dict:
    minutes = draw(st.integers(0, 24 * 60 - 1) | st.just(0))
    opened = CUTOFF + timedelta(days=draw(days), minutes=minutes)
    return {
        "complaint_id": "",
        "customer_id": draw(st.sampled_from(ids)),
        "opened_at": opened,
        "resolved_at": _resolved(draw, opened),
        "channel": draw(st.sampled_from(CHANNELS)),
        "category": draw(st.sampled_from(COMPLAINT_CATEGORIES[:3])),
        "severity": draw(st.sampled_from(SEVERITIES)),
        "handling_minutes": draw(amounts),
        "escalations": draw(st.integers(0, 3)),
        "stage": draw(st.sampled_from(STAGES)),
        "text": draw(st.sampled_from(TEXTS)),
    }


def _answer(draw: st.DrawFn, offered: date) -> tuple[bool | None, date | None]:
    if draw(st.booleans()):
        return None, None
    return draw(st.booleans()), offered + timedelta(days=draw(st.integers(0, 40)))


def _offer(draw: st.DrawFn, ids: list[str], days: st.SearchStrategy[int]) -> dict:
    offered = day(draw(days))
    accepted, responded = _answer(draw, offered)
    return {
        "offer_id": "",
        "customer_id": draw(st.sampled_from(ids)),
        "offered_at": offered,
        "kind": draw(st.sampled_from(OFFER_KINDS)),
        "cost": draw(amounts),
        "accepted": accepted,
        "responded_at": responded,
    }


MAKERS = {
    "orders": _order,
    "payments": _payment,
    "complaints": _complaint,
    "offers": _offer,
}
KEYS = {"orders": "order_id", "payments": "invoice_id", "complaints": "complaint_id",
        "offers": "offer_id"}  # fmt: skip


def _numbered(table: str, rows: list[dict]) -> list[dict]:
    return [{**r, KEYS[table]: f"{table[0]}{i}"} for i, r in enumerate(rows)]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """1-4 customers (the first one active at AS_OF) and 0-8 events per table around AS_OF."""
    n = draw(st.integers(1, 4))
    customers = [_customer(draw, f"K{i}", active=i == 0) for i in range(n)]
    ids = [c["customer_id"] for c in customers]
    world = World(customers=customers)
    for table, make in MAKERS.items():
        count = draw(st.integers(0, 8))
        rows = [make(draw, ids, any_days) for _ in range(count)]
        setattr(world, table, _numbered(table, rows))
    return world


def _happened_before(table: str, row: dict) -> bool:
    column = {"orders": "order_date", "payments": "invoice_date", "offers": "offered_at"}
    if table == "complaints":
        return row["opened_at"] < CUTOFF
    return row[column[table]] < AS_OF


def redraw_the_future(draw: st.DrawFn, world: World) -> World:
    """The same past, a different future: everything on/after AS_OF is drawn again."""
    ids = [c["customer_id"] for c in world.customers] + ["NEW"]
    customers = []
    for c in world.customers:
        if c["end_date"] is None or c["end_date"] >= AS_OF:
            earliest = max(AS_OF, c["signup_date"])
            end = None if draw(st.booleans()) else earliest + timedelta(days=draw(future_days))
            c = {**c, "end_date": end}
        customers.append(c)
    customers.append(_customer(draw, "NEW", active=False) | {"signup_date": day(5)})
    customers[-1]["end_date"] = None
    future = World(customers=customers)
    for table, make in MAKERS.items():
        rows = []
        for r in getattr(world, table):
            if not _happened_before(table, r):
                if draw(st.booleans()):  # delete it, or replace it by another future event
                    rows.append(make(draw, ids, future_days))
                continue
            rows.append(_redraw_state(draw, table, r))
        rows += [make(draw, ids, future_days) for _ in range(draw(st.integers(0, 3)))]
        setattr(future, table, _numbered(table, rows))
    return future


def _redraw_state(draw: st.DrawFn, table: str, r: dict) -> dict:
    """Redraw the parts of a past event that happen on/after AS_OF."""
    r = dict(r)
    if table == "payments":
        if r["paid_date"] is None or r["paid_date"] >= AS_OF:
            r["paid_date"] = None if draw(st.booleans()) else day(draw(future_days))
        if r["due_date"] >= AS_OF:
            r["due_date"] = day(draw(future_days))
    elif table == "complaints":
        if r["resolved_at"] is None or r["resolved_at"] >= CUTOFF:
            r["resolved_at"] = _resolved(draw, CUTOFF)
    elif table == "offers":
        if r["responded_at"] is None or r["responded_at"] >= AS_OF:
            r["accepted"], r["responded_at"] = _answer(draw, AS_OF)
    return r


def _features(world: World) -> pl.DataFrame:
    return build_features(world.tables(), AS_OF, CONFIG).collect()


@SETTINGS
@given(world=worlds(), data=st.data())
def test_the_future_does_not_change_features(world: World, data: st.DataObject) -> None:
    other = redraw_the_future(data.draw, world)
    assert_frame_equal(_features(other), _features(world), check_exact=True)


@SETTINGS
@given(world=worlds(), data=st.data())
def test_an_order_moved_before_as_of_counts(world: World, data: st.DataObject) -> None:
    active = world.active_ids()
    order = _order(data.draw, active, future_days) | {"order_id": "moved"}
    world.orders.append(order)
    before = _features(world)
    order["order_date"] = day(-1)
    after = _features(world)
    customer = order["customer_id"]
    old, new = (
        before.filter(pl.col("customer_id") == customer),
        after.filter(pl.col("customer_id") == customer),
    )
    assert new["orders_3m"].item() == old["orders_3m"].item() + 1
    assert new["orders_12m"].item() == old["orders_12m"].item() + 1
    assert new["revenue_3m"].item() == old["revenue_3m"].item() + order["revenue"]
    assert new["revenue_12m"].item() == old["revenue_12m"].item() + order["revenue"]
    assert new["recency_days"].item() == 1
    assert_frame_equal(  # nobody else changes
        after.filter(pl.col("customer_id") != customer),
        before.filter(pl.col("customer_id") != customer),
    )


@SETTINGS
@given(world=worlds(), data=st.data())
def test_a_complaint_moved_before_as_of_counts(world: World, data: st.DataObject) -> None:
    complaint = _complaint(data.draw, world.active_ids(), future_days) | {"complaint_id": "m"}
    world.complaints.append(complaint)
    before = _features(world)
    complaint["opened_at"] = CUTOFF - timedelta(minutes=1)
    after = _features(world)
    old, new = (
        frame.filter(pl.col("customer_id") == complaint["customer_id"]).to_dicts()[0]
        for frame in (before, after)
    )
    for column in (
        "complaints_3m",
        "complaints_12m",
        f"complaints_{complaint['severity']}_12m",
        f"complaints_{complaint['channel']}_12m",
    ):
        assert new[column] == old[column] + 1, column
    cost = complaint["handling_minutes"] * 1.5 + complaint["escalations"] * 250.0
    assert new["cost_to_serve_12m"] == old["cost_to_serve_12m"] + cost
    assert new["escalations_12m"] == old["escalations_12m"] + complaint["escalations"]
    assert new["days_since_last_complaint"] == 1
    # resolved_at is after the old opened_at >= AS_OF, so the complaint is open at AS_OF
    assert new["open_complaints"] == old["open_complaints"] + 1


@SETTINGS
@given(world=worlds(), data=st.data())
def test_a_payment_moved_before_as_of_closes_the_receivable(
    world: World, data: st.DataObject
) -> None:
    invoice = _payment(data.draw, world.active_ids(), past_days) | {"invoice_id": "moved"}
    invoice["paid_date"] = day(data.draw(future_days))
    world.payments.append(invoice)
    before = _features(world)
    invoice["paid_date"] = max(invoice["invoice_date"], day(-1))
    after = _features(world)
    old, new = (
        frame.filter(pl.col("customer_id") == invoice["customer_id"]).to_dicts()[0]
        for frame in (before, after)
    )
    assert new["receivables_open"] == old["receivables_open"] - invoice["amount"]
    if invoice["disputed"]:
        assert new["receivables_disputed"] == old["receivables_disputed"] - invoice["amount"]


@SETTINGS
@given(world=worlds(), seed=st.integers(0, 2**16))
def test_schema_holds_and_row_order_does_not_matter(world: World, seed: int) -> None:
    features = _features(world)
    validate_feature_table(features)
    assert features["customer_id"].to_list() == sorted(world.active_ids())
    shuffled = {
        name: frame.collect().sample(fraction=1.0, shuffle=True, seed=seed).lazy()
        for name, frame in world.tables().items()
    }
    assert_frame_equal(
        build_features(shuffled, AS_OF, CONFIG).collect(), features, check_exact=True
    )
