"""Initial schema: recommendations, the pointer to each customer's one in force, decisions.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out in full rather than imported from ``service.storage.schema``: a revision is a
snapshot, and must keep meaning the same thing when the schema module moves on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = 128


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create the three tables and their indexes."""
    op.create_table(
        "recommendations",
        sa.Column("recommendation_id", sa.String(ID), nullable=False),
        sa.Column("customer_id", sa.String(ID), nullable=False),
        sa.Column("account_manager", sa.String(ID), nullable=True),
        sa.Column("region", sa.String(ID), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(ID), nullable=False),
        sa.Column("policy_version", sa.String(ID), nullable=False),
        sa.Column("run_id", sa.String(ID), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("recommendation_id", name="pk_recommendations"),
    )
    op.create_index("ix_recommendations_customer_id", "recommendations", ["customer_id"])
    op.create_index("ix_recommendations_run_id", "recommendations", ["run_id"])
    op.create_index("ix_recommendations_account_manager", "recommendations", ["account_manager"])
    op.create_index("ix_recommendations_region", "recommendations", ["region"])

    op.create_table(
        "latest_recommendations",
        sa.Column("customer_id", sa.String(ID), nullable=False),
        sa.Column("recommendation_id", sa.String(ID), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_latest_recommendations"),
        sa.ForeignKeyConstraint(
            ["recommendation_id"],
            ["recommendations.recommendation_id"],
            name="fk_latest_recommendations_recommendation_id_recommendations",
        ),
    )
    op.create_index(
        "ix_latest_recommendations_recommendation_id",
        "latest_recommendations",
        ["recommendation_id"],
    )

    op.create_table(
        "decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("decision_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(ID), nullable=False),
        sa.Column("requested", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.Text(), nullable=False),
        sa.Column("authority_used", sa.Text(), nullable=False),
        sa.Column("helped_by", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("recommendation_id", sa.String(ID), nullable=True),
        sa.Column("followed_recommendation", sa.Boolean(), nullable=True),
        sa.Column("recorded_by", sa.String(ID), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.UniqueConstraint("decision_id", name="uq_decisions_decision_id"),
        sa.ForeignKeyConstraint(
            ["recommendation_id"],
            ["recommendations.recommendation_id"],
            name="fk_decisions_recommendation_id_recommendations",
        ),
    )
    op.create_index("ix_decisions_recommendation_id", "decisions", ["recommendation_id"])
    op.create_index("ix_decisions_recorded_at", "decisions", ["recorded_at"])


def downgrade() -> None:
    """Drop everything 0001 created."""
    op.drop_table("decisions")
    op.drop_table("latest_recommendations")
    op.drop_table("recommendations")
