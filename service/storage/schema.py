"""Table definitions (SQLAlchemy Core), the single source the store queries against.

The migrations in ``service/storage/migrations/versions`` create exactly these tables; a test
compares the migrated database with this metadata so the two cannot drift.

- ``recommendations``: every saved recommendation (history; a re-run with the same id updates it).
- ``latest_recommendations``: per customer, a pointer to the recommendation in force — the
  newest ``as_of``, and among equal ``as_of`` the last saved. Scope (account manager, region)
  is read through it, so it costs an index lookup, not a scan of the history.
- ``decisions``: the decision log (after-action reports), append-only; a report sent with an
  idempotency key is stored once per key and API key. Revision 0005 adds the offer a report
  records (``offer_<field>`` of :class:`service.storage.records.ReportedOffer`; all null on a
  report without one), the evidence ``keepwise train`` adds to the CRM's offers history.
- ``approvals``: the verdict (approved or rejected, with a note) on a recommendation above the
  front line's authority, one per recommendation, linked to the after-action report recorded
  with it (revision 0004).

Revision 0004 also copies, per customer, the recommendation in force's owner, action and the
figures the portfolio page filters and sorts on (segment, approval tier, expected value of the
recommended action, ...) into ``latest_recommendations``: paging, counting and summing 100,000
customers then reads that narrow table, never the wide rows with their JSON payloads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

ID_LENGTH = 128  # customer, recommendation, run, version and key names
ACTION_LENGTH = 32
DECISION_ID_LENGTH = 32  # uuid4 hex
IDEMPOTENCY_KEY_LENGTH = 128

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back in UTC, on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no timezone type, so the value is stored as
    naive UTC text (which also sorts correctly). Naive datetimes are refused: a timestamp
    without a zone is ambiguous, and the decision log must not guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC (naive UTC on SQLite)."""
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return the stored timestamp as an aware UTC datetime."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> JSON:
    """JSON column type: ``jsonb`` on PostgreSQL, JSON text elsewhere."""
    return JSON().with_variant(JSONB(), "postgresql")


def serial_type() -> BigInteger:
    """Auto-increment key type: BIGINT, but INTEGER on SQLite (its rowid alias)."""
    return BigInteger().with_variant(Integer(), "sqlite")


recommendations = Table(
    "recommendations",
    metadata,
    Column("recommendation_id", String(ID_LENGTH), primary_key=True),
    Column("customer_id", String(ID_LENGTH), nullable=False, index=True),
    Column("account_manager", String(ID_LENGTH), nullable=True),
    Column("region", String(ID_LENGTH), nullable=True),
    Column("as_of", Date, nullable=False),
    Column("action", String(ACTION_LENGTH), nullable=False),
    Column("model_version", String(ID_LENGTH), nullable=False),
    Column("policy_version", String(ID_LENGTH), nullable=False),
    Column("run_id", String(ID_LENGTH), nullable=False, index=True),
    Column("payload", json_type(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "account_manager"),
    Index(None, "region"),
)

# Payload paths of the portfolio columns of ``recommendations`` (revision 0004).
PORTFOLIO_PATHS: dict[str, tuple[str, ...]] = {
    "segment": ("segment",),
    "approval_tier": ("approval_tier",),
    "ev_retain": ("expected_values", "retain"),
    "p_churn": ("p_churn",),
    "monthly_margin": ("monthly_margin",),
    "net_margin": ("value_waterfall", "net_margin"),
    "offer_kind": ("offer", "kind"),
    "offer_cost": ("offer", "unit_cost"),
}
# expected_value is the value of the recommended action: the payload path by action
CHOSEN_VALUE_PATHS: dict[str, tuple[str, ...]] = {
    "retain": ("expected_values", "retain"),
    "compensate": ("expected_values", "best_offer"),
    "end": ("expected_values", "end"),
}
# the recommended action's value, in payloads since exploration (read before the paths above)
RECOMMENDED_VALUE_PATH: tuple[str, ...] = ("expected_values", "recommended")
TEXT_PORTFOLIO_COLUMNS = frozenset({"segment", "approval_tier", "offer_kind"})

latest_recommendations = Table(
    "latest_recommendations",
    metadata,
    Column("customer_id", String(ID_LENGTH), primary_key=True),
    Column(
        "recommendation_id",
        String(ID_LENGTH),
        ForeignKey("recommendations.recommendation_id"),
        nullable=False,
        index=True,
    ),
    Column("as_of", Date, nullable=False),
    # revision 0004: the recommendation in force's owner, action and the payload figures the
    # portfolio page filters and sorts on (see PORTFOLIO_PATHS), so its queries read this
    # narrow table only
    Column("account_manager", String(ID_LENGTH), nullable=True),
    Column("region", String(ID_LENGTH), nullable=True),
    Column("action", String(ACTION_LENGTH), nullable=True),
    Column("segment", String(ACTION_LENGTH), nullable=True),
    Column("approval_tier", String(ID_LENGTH), nullable=True),
    Column("expected_value", Float, nullable=True),
    Column("ev_retain", Float, nullable=True),
    Column("p_churn", Float, nullable=True),
    Column("monthly_margin", Float, nullable=True),
    Column("net_margin", Float, nullable=True),
    Column("offer_kind", String(ACTION_LENGTH), nullable=True),
    Column("offer_cost", Float, nullable=True),
    Index(None, "account_manager"),
    Index(None, "region"),
    Index(None, "action"),
    Index(None, "segment"),
    Index(None, "approval_tier"),
)

# revision 0005: a reported offer's fields (service.storage.records.ReportedOffer), column
# "offer_<field>" each
OFFER_COLUMN_TYPES: dict[str, Any] = {
    "offer_kind": String(ACTION_LENGTH),
    "offer_offered_on": Date(),
    "offer_accepted": Boolean(),
    "offer_cost": Float(),
    "offer_responded_on": Date(),
    "offer_holdout": Boolean(),
}

decisions = Table(
    "decisions",
    metadata,
    Column("id", serial_type(), primary_key=True, autoincrement=True),
    Column("decision_id", String(DECISION_ID_LENGTH), nullable=False, unique=True),
    Column("customer_id", String(ID_LENGTH), nullable=False),
    Column("requested", Text, nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("place", Text, nullable=False),
    Column("authority_used", Text, nullable=False),
    Column("helped_by", Text, nullable=True),
    Column("outcome", Text, nullable=False),
    Column(
        "recommendation_id",
        String(ID_LENGTH),
        ForeignKey("recommendations.recommendation_id"),
        nullable=True,
        index=True,
    ),
    Column("followed_recommendation", Boolean, nullable=True),
    Column("recorded_by", String(ID_LENGTH), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False, index=True),
    # revision 0003: the client's Idempotency-Key (unique per API key) and its report's hash
    Column("idempotency_key", String(IDEMPOTENCY_KEY_LENGTH), nullable=True),
    Column("request_sha256", String(64), nullable=True),
    # revision 0005: the offer the report records (ReportedOffer; null without one)
    *(Column(name, type_, nullable=True) for name, type_ in OFFER_COLUMN_TYPES.items()),
    # revision 0002: a customer's decision history, newest first, without a sort
    Index(None, "customer_id", "recorded_at"),
    Index(None, "recorded_by", "idempotency_key", unique=True),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", serial_type(), primary_key=True, autoincrement=True),
    Column("approval_id", String(DECISION_ID_LENGTH), nullable=False, unique=True),
    Column(
        "recommendation_id",
        String(ID_LENGTH),
        ForeignKey("recommendations.recommendation_id"),
        nullable=False,
        unique=True,  # one verdict per recommendation: a second approver is refused
    ),
    Column("customer_id", String(ID_LENGTH), nullable=False),
    Column("required_tier", String(ID_LENGTH), nullable=False),
    Column("verdict", String(ACTION_LENGTH), nullable=False),
    Column("note", Text, nullable=False),
    Column("decided_by", String(ID_LENGTH), nullable=False),
    Column("authority", String(ID_LENGTH), nullable=False),
    Column(
        "decision_id",
        String(DECISION_ID_LENGTH),
        ForeignKey("decisions.decision_id"),
        nullable=False,
    ),
    Column("decided_at", UTCDateTime(), nullable=False),
    Index(None, "customer_id", "decided_at"),
)
