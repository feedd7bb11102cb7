"""Portfolio columns on latest_recommendations (copied from the payload) and the approvals table.

The web page pages, filters and sorts 100,000 customers by segment, action, approval tier and
expected value; reading those out of each JSON payload (or even past it, in the wide
``recommendations`` rows) costs seconds per page. The store now writes them, with the owner and
the action, next to each customer's pointer to the recommendation in force; this revision adds
the columns, fills them for the recommendations in force already stored, indexes them, and adds
``approvals``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.storage.schema import (
    ACTION_LENGTH,
    CHOSEN_VALUE_PATHS,
    DECISION_ID_LENGTH,
    ID_LENGTH,
    PORTFOLIO_PATHS,
    TEXT_PORTFOLIO_COLUMNS,
    UTCDateTime,
    serial_type,
)

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLOAT_COLUMNS = ("expected_value", "ev_retain", "p_churn", "monthly_margin", "net_margin")
_INDEXED = ("account_manager", "region", "action", "segment", "approval_tier")


def _extract(dialect: str, path: tuple[str, ...], text: bool) -> str:
    if dialect == "postgresql":
        pointer = "{" + ",".join(path) + "}"
        return f"(r.payload #>> '{pointer}')" + ("" if text else "::double precision")
    return f"json_extract(r.payload, '$.{'.'.join(path)}')"


def upgrade() -> None:
    """Add and fill the portfolio columns; create ``approvals``."""
    with op.batch_alter_table("latest_recommendations") as batch:
        for name in ("account_manager", "region", "approval_tier"):
            batch.add_column(sa.Column(name, sa.String(ID_LENGTH), nullable=True))
        for name in ("action", "segment", "offer_kind"):
            batch.add_column(sa.Column(name, sa.String(ACTION_LENGTH), nullable=True))
        for name in (*_FLOAT_COLUMNS, "offer_cost"):
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
    dialect = op.get_bind().dialect.name
    assignments = [
        f"{name} = {_extract(dialect, path, name in TEXT_PORTFOLIO_COLUMNS)}"
        for name, path in PORTFOLIO_PATHS.items()
    ]
    chosen = " ".join(
        f"WHEN '{action}' THEN {_extract(dialect, path, False)}"
        for action, path in CHOSEN_VALUE_PATHS.items()
    )
    assignments += [
        f"expected_value = CASE r.action {chosen} END",
        "account_manager = r.account_manager",
        "region = r.region",
        "action = r.action",
    ]
    op.execute(
        f"UPDATE latest_recommendations SET {', '.join(assignments)} FROM recommendations AS r "
        "WHERE r.recommendation_id = latest_recommendations.recommendation_id"
    )
    for name in _INDEXED:
        op.create_index(f"ix_latest_recommendations_{name}", "latest_recommendations", [name])
    op.create_table(
        "approvals",
        sa.Column("id", serial_type(), primary_key=True, autoincrement=True),
        sa.Column("approval_id", sa.String(DECISION_ID_LENGTH), nullable=False),
        sa.Column("recommendation_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("customer_id", sa.String(ID_LENGTH), nullable=False),
        sa.Column("required_tier", sa.String(ID_LENGTH), nullable=False),
        sa.Column("verdict", sa.String(ACTION_LENGTH), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(ID_LENGTH), nullable=False),
        sa.Column("authority", sa.String(ID_LENGTH), nullable=False),
        sa.Column("decision_id", sa.String(DECISION_ID_LENGTH), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint("approval_id", name="uq_approvals_approval_id"),
        sa.UniqueConstraint("recommendation_id", name="uq_approvals_recommendation_id"),
        sa.ForeignKeyConstraint(
            ["recommendation_id"],
            ["recommendations.recommendation_id"],
            name="fk_approvals_recommendation_id_recommendations",
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.decision_id"],
            name="fk_approvals_decision_id_decisions",
        ),
    )
    op.create_index(
        "ix_approvals_customer_id_decided_at", "approvals", ["customer_id", "decided_at"]
    )


def downgrade() -> None:
    """Drop ``approvals`` and the portfolio columns."""
    op.drop_table("approvals")
    for name in _INDEXED:
        op.drop_index(f"ix_latest_recommendations_{name}", table_name="latest_recommendations")
    with op.batch_alter_table("latest_recommendations") as batch:
        for name in (*PORTFOLIO_PATHS, "expected_value", "account_manager", "region", "action"):
            batch.drop_column(name)
