"""Index decisions by (customer_id, recorded_at): a customer's history, newest first.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the index; existing rows are untouched."""
    op.create_index(
        "ix_decisions_customer_id_recorded_at", "decisions", ["customer_id", "recorded_at"]
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_decisions_customer_id_recorded_at", table_name="decisions")
