"""Portfolio reads: the recommendations in force, filtered, sorted and paged in SQL.

The page a manager reads first lists up to 100,000 customers; everything here runs in the
database on the plain columns revision 0003 copies out of each payload (indexed where a filter
uses them), so a page costs a few index reads and never parses JSON. A key's scope (account
manager and/or region) is ANDed with the user's filters in every query, so no filter, sort,
search or export can reach a customer outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Select, and_, exists, func, select

from service.storage.records import StoreError
from service.storage.schema import approvals, latest_recommendations

SORT_COLUMNS: tuple[str, ...] = (
    "expected_value",
    "ev_retain",
    "p_churn",
    "monthly_margin",
    "net_margin",
    "offer_cost",
    "customer_id",
    "segment",
    "region",
    "account_manager",
    "action",
    "approval_tier",
)
MAX_PORTFOLIO_PAGE = 500


@dataclass(frozen=True)
class PortfolioFilter:
    """Which recommendations in force to read; every given field must match (AND).

    Attributes:
        scope_account_manager: the reader's scope (from the API key): only this manager's.
        scope_region: the reader's scope: only this region's.
        segment, region, account_manager, action, approval_tier: the user's filters.
        customer_prefix: customer ids starting with this text (search).
        pending_tiers: only recommendations needing one of these tiers that have no verdict
            yet (the approvals queue).
    """

    scope_account_manager: str | None = None
    scope_region: str | None = None
    segment: str | None = None
    region: str | None = None
    account_manager: str | None = None
    action: str | None = None
    approval_tier: str | None = None
    customer_prefix: str | None = None
    pending_tiers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PortfolioRow:
    """One customer's recommendation in force, as the portfolio lists it."""

    customer_id: str
    recommendation_id: str
    segment: str | None
    region: str | None
    account_manager: str | None
    action: str
    approval_tier: str | None
    expected_value: float | None
    ev_retain: float | None
    p_churn: float | None
    monthly_margin: float | None
    net_margin: float | None
    offer_kind: str | None
    offer_cost: float | None
    as_of: date


@dataclass(frozen=True)
class PortfolioPage:
    """A page of rows and the number of rows matching the filter in all."""

    rows: list[PortfolioRow]
    total: int


@dataclass(frozen=True)
class ActionTally:
    """Customers and summed expected values for one (action, approval tier) pair."""

    action: str
    approval_tier: str | None
    customers: int
    expected_value: float
    ev_retain: float


ROW_COLUMNS = tuple(PortfolioRow.__dataclass_fields__)


def _where(query: Select[Any], f: PortfolioFilter) -> Select[Any]:
    c = latest_recommendations.c
    equal = {
        c.account_manager: (f.scope_account_manager, f.account_manager),
        c.region: (f.scope_region, f.region),
        c.segment: (None, f.segment),
        c.action: (None, f.action),
        c.approval_tier: (None, f.approval_tier),
    }
    conditions = [
        column == value for column, values in equal.items() for value in values if value is not None
    ]
    if f.customer_prefix:
        escaped = f.customer_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(c.customer_id.like(f"{escaped}%", escape="\\"))
    if f.pending_tiers is not None:
        decided = exists().where(approvals.c.recommendation_id == c.recommendation_id)
        conditions += [c.approval_tier.in_(f.pending_tiers), ~decided]
    return query.where(and_(*conditions)) if conditions else query


def _checked_page(sort: str, limit: int, offset: int) -> None:
    if sort not in SORT_COLUMNS:
        raise StoreError(
            f"sort must be one of {', '.join(SORT_COLUMNS)}, got {sort!r}", field="sort"
        )
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise StoreError(f"limit must be an integer, got {limit!r}", field="limit")
    if not 1 <= limit <= MAX_PORTFOLIO_PAGE:
        raise StoreError(
            f"limit must be from 1 to {MAX_PORTFOLIO_PAGE}, got {limit}", field="limit"
        )
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise StoreError(f"offset must be a non-negative integer, got {offset!r}", field="offset")


def portfolio_page(
    conn: Connection,
    f: PortfolioFilter,
    *,
    sort: str,
    descending: bool,
    limit: int,
    offset: int,
) -> PortfolioPage:
    """A page of the filtered portfolio, sorted (ties and nulls last, by customer id)."""
    _checked_page(sort, limit, offset)
    c = latest_recommendations.c
    order = (c[sort].desc() if descending else c[sort].asc()).nulls_last()
    query = _where(select(*[c[name] for name in ROW_COLUMNS]), f).order_by(order, c.customer_id)
    rows = conn.execute(query.limit(limit).offset(offset)).all()
    total = conn.execute(
        _where(select(func.count()).select_from(latest_recommendations), f)
    ).scalar_one()
    return PortfolioPage([PortfolioRow(**row._asdict()) for row in rows], int(total))


def portfolio_rows(
    conn: Connection, f: PortfolioFilter, *, sort: str, descending: bool
) -> list[PortfolioRow]:
    """Every row of the filtered portfolio, sorted as :func:`portfolio_page` (for exports)."""
    _checked_page(sort, 1, 0)
    c = latest_recommendations.c
    order = (c[sort].desc() if descending else c[sort].asc()).nulls_last()
    query = _where(select(*[c[name] for name in ROW_COLUMNS]), f).order_by(order, c.customer_id)
    return [PortfolioRow(**row._asdict()) for row in conn.execute(query).all()]


def portfolio_tallies(conn: Connection, f: PortfolioFilter) -> list[ActionTally]:
    """Customers and summed expected values by action and approval tier."""
    c = latest_recommendations.c
    query = _where(
        select(
            c.action,
            c.approval_tier,
            func.count().label("customers"),
            func.coalesce(func.sum(c.expected_value), 0.0).label("expected_value"),
            func.coalesce(func.sum(c.ev_retain), 0.0).label("ev_retain"),
        ),
        f,
    ).group_by(c.action, c.approval_tier)
    return [
        ActionTally(
            row.action,
            row.approval_tier,
            int(row.customers),
            float(row.expected_value),
            float(row.ev_retain),
        )
        for row in conn.execute(query.order_by(c.action, c.approval_tier)).all()
    ]


def portfolio_net_margins(conn: Connection, f: PortfolioFilter) -> list[float]:
    """Every matching customer's trailing monthly net margin (the whale curve's input)."""
    c = latest_recommendations.c
    query = _where(select(c.net_margin), f).where(c.net_margin.is_not(None))
    return [float(value) for value in conn.execute(query).scalars()]


def portfolio_options(conn: Connection, f: PortfolioFilter) -> dict[str, list[str]]:
    """The distinct segments, regions, account managers, actions and tiers within a scope
    (the choices a filter offers; nothing outside the scope)."""
    scope = PortfolioFilter(
        scope_account_manager=f.scope_account_manager, scope_region=f.scope_region
    )
    options: dict[str, list[str]] = {}
    for name in ("segment", "region", "account_manager", "action", "approval_tier"):
        column = latest_recommendations.c[name]
        query = _where(select(column), scope).where(column.is_not(None))
        options[name] = sorted(conn.execute(query.distinct()).scalars())
    return options
