"""The offer an after-action report records, in the ``decisions`` table (revision 0005).

A :class:`~service.storage.records.ReportedOffer` is stored as six nullable columns
``offer_<field>`` (:data:`service.storage.schema.OFFER_COLUMN_TYPES`), all null on a report
without one. The store checks an offer as the API does (a report written from Python is held to
the same rules) and reads the whole log's offers back as one frame for ``keepwise train``.

Rules (the CRM ``offers`` contract's, plus what only a report can get wrong):

- ``kind`` is one of :data:`features.contract.OFFER_KINDS`;
- ``offered_on`` lies from 1970-01-01 to the day the report is recorded, in the time zone
  furthest ahead (UTC+14): a report tells what has happened;
- ``cost`` is finite, from 0 to :data:`features.schemas.MAX_AMOUNT`; required for an offer
  made, absent (or 0) for a holdout;
- ``responded_on`` only with an answer (``accepted`` true or false), not before ``offered_on``
  and not in the future;
- a holdout (the campaign's randomised control group, not contacted) has no answer.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
from sqlalchemy import Connection, inspect, or_, select

from features.contract import OFFER_KINDS
from features.schemas import MAX_AMOUNT
from service.storage.records import ReportedOffer, StoreError
from service.storage.schema import OFFER_COLUMN_TYPES, decisions

EARLIEST_OFFER = date(1970, 1, 1)
LATEST_ZONE_AHEAD = timedelta(hours=14)
"""A date is "in the future" only once it is in the future in every time zone (UTC+14)."""

_FIELDS = tuple(name.removeprefix("offer_") for name in OFFER_COLUMN_TYPES)

REPORT_COLUMNS: dict[str, pl.DataType] = {
    "decision_id": pl.String(),
    "customer_id": pl.String(),
    "kind": pl.String(),
    "offered_at": pl.Date(),
    "accepted": pl.Boolean(),
    "cost": pl.Float64(),
    "responded_at": pl.Date(),
    "holdout": pl.Boolean(),
    "recorded_at": pl.Datetime("us", "UTC"),
}
"""The frame :func:`read_offer_reports` returns: the offers table's names for the offer."""


def latest_allowed_day(now: datetime) -> date:
    """The last day a report recorded at ``now`` (aware) may name: today somewhere on Earth."""
    return (now + LATEST_ZONE_AHEAD).date()


def checked_offer(offer: object, recorded_at: datetime) -> ReportedOffer | None:
    """``offer`` if it keeps the rules (module docstring), else :class:`StoreError`.

    Args:
        offer: the report's offer, or None.
        recorded_at: when the report is recorded (aware), the bound of "in the future".

    Returns:
        The offer (``holdout`` as a bool, ``cost`` as a float), or None.

    Raises:
        StoreError: a rule is broken; ``field`` is ``offer.<field>``.
    """
    if offer is None:
        return None
    if not isinstance(offer, ReportedOffer):
        raise StoreError(f"expected a ReportedOffer, got {type(offer).__name__}", field="offer")
    if offer.kind not in OFFER_KINDS:
        raise StoreError(
            f"offer kind must be one of {', '.join(OFFER_KINDS)}, got {offer.kind!r}",
            field="offer.kind",
        )
    latest = latest_allowed_day(recorded_at)
    _day(offer.offered_on, "offered_on", EARLIEST_OFFER, latest)
    holdout = offer.holdout
    if not isinstance(holdout, bool):
        raise StoreError(
            f"offer holdout must be true or false, got {holdout!r}", field="offer.holdout"
        )
    accepted = offer.accepted
    if accepted is not None and not isinstance(accepted, bool):
        raise StoreError(
            f"offer accepted must be true, false or null, got {accepted!r}", field="offer.accepted"
        )
    if holdout and accepted is not None:
        raise StoreError(
            "a held-out customer was not contacted, so there is no answer: leave accepted null",
            field="offer.accepted",
        )
    if offer.responded_on is not None:
        if accepted is None:
            raise StoreError(
                "responded_on needs an answer (accepted true or false)",
                field="offer.responded_on",
            )
        _day(offer.responded_on, "responded_on", offer.offered_on, latest)
    cost = _cost(offer.cost, holdout)
    return ReportedOffer(
        kind=offer.kind,
        offered_on=offer.offered_on,
        accepted=accepted,
        cost=cost,
        responded_on=offer.responded_on,
        holdout=holdout,
    )


def offer_values(offer: ReportedOffer | None) -> dict[str, Any]:
    """The ``offer_<field>`` column values of a checked offer (none without one)."""
    if offer is None:
        return {}
    return {f"offer_{name}": getattr(offer, name) for name in _FIELDS}


def offer_fingerprint(offer: ReportedOffer | None) -> dict[str, Any]:
    """The offer's fields as JSON values, for the report's idempotency fingerprint (a report
    without an offer adds nothing, so its fingerprint is what it was before revision 0005)."""
    return {
        name: value.isoformat() if isinstance(value, date) else value
        for name, value in offer_values(offer).items()
    }


def offer_from_row(row: Any) -> ReportedOffer | None:
    """The offer a stored ``decisions`` row records, or None."""
    kind = getattr(row, "offer_kind", None)
    if kind is None:
        return None
    values = {name: getattr(row, f"offer_{name}") for name in _FIELDS}
    values["holdout"] = bool(values["holdout"])
    return ReportedOffer(**values)


def read_offer_reports(conn: Connection) -> pl.DataFrame:
    """Every report with offer details, as :data:`REPORT_COLUMNS` (oldest recorded first).

    A row with any offer column set is returned, a kind or not: the store refuses such rows,
    but a database written by other means may hold them, and training keeps them aside with the
    reason. A store without the ``decisions`` table or before revision 0005 has none.
    """
    present = inspect(conn)
    if not present.has_table("decisions"):
        return pl.DataFrame(schema=REPORT_COLUMNS)
    columns = {column["name"] for column in present.get_columns("decisions")}
    if not set(OFFER_COLUMN_TYPES) <= columns:
        return pl.DataFrame(schema=REPORT_COLUMNS)
    offer = [decisions.c[name] for name in OFFER_COLUMN_TYPES]
    query = (
        select(decisions.c.decision_id, decisions.c.customer_id, *offer, decisions.c.recorded_at)
        .where(or_(*(column.is_not(None) for column in offer)))
        .order_by(decisions.c.recorded_at, decisions.c.id)
    )
    rows = conn.execute(query).all()
    names = list(REPORT_COLUMNS)
    return pl.DataFrame([tuple(row) for row in rows], schema=REPORT_COLUMNS, orient="row").select(
        names
    )


def _day(value: object, name: str, earliest: date, latest: date) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise StoreError(f"offer {name} must be a date, got {value!r}", field=f"offer.{name}")
    if value < earliest:
        raise StoreError(
            f"offer {name} {value.isoformat()} is before {earliest.isoformat()}",
            field=f"offer.{name}",
        )
    if value > latest:
        raise StoreError(
            f"offer {name} {value.isoformat()} is in the future; report what has happened",
            field=f"offer.{name}",
        )
    return value


def _cost(value: object, holdout: bool) -> float | None:
    if value is None:
        if holdout:
            return None
        raise StoreError(
            "offer cost is required for an offer made (its cost to the company if accepted)",
            field="offer.cost",
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreError(f"offer cost must be a number, got {value!r}", field="offer.cost")
    cost = float(value)
    if not math.isfinite(cost) or not 0 <= cost <= MAX_AMOUNT:
        raise StoreError(
            f"offer cost must be from 0 to {MAX_AMOUNT:.0e}, got {value!r}", field="offer.cost"
        )
    if holdout and cost != 0:
        raise StoreError(
            "a held-out customer was not contacted, so the offer cost nothing: leave cost null",
            field="offer.cost",
        )
    return cost
