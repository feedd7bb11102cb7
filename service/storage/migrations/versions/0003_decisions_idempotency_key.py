"""Idempotency keys on decisions: a retried report is stored once.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-01

``idempotency_key`` is the client's ``Idempotency-Key``, unique per API key (``recorded_by``);
``request_sha256`` fingerprints the report it came with, so a retry with the same key and the
same report gets the first answer and one with another report is refused. Both are null on
reports sent without a key (nulls never collide in a unique index, on either backend).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two nullable columns and the unique index; existing rows keep nulls."""
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))
    op.create_index(
        "ix_decisions_recorded_by_idempotency_key",
        "decisions",
        ["recorded_by", "idempotency_key"],
        unique=True,
    )


def downgrade() -> None:
    """Drop the index and the columns."""
    op.drop_index("ix_decisions_recorded_by_idempotency_key", table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("request_sha256")
        batch.drop_column("idempotency_key")
