"""The offer an after-action report records: kind, dates, answer, cost and holdout.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

``keepwise train`` joins these to the CRM's offers history for the offer-response model
(:mod:`model.reported_offers`). Six nullable columns, ``offer_<field>`` of
:class:`service.storage.records.ReportedOffer`; reports stored before this revision keep nulls
(they recorded no offer in structured form).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.storage.schema import ACTION_LENGTH

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# written out rather than imported: a migration describes the schema as it was at this revision
_COLUMNS: tuple[tuple[str, sa.types.TypeEngine], ...] = (
    ("offer_kind", sa.String(ACTION_LENGTH)),
    ("offer_offered_on", sa.Date()),
    ("offer_accepted", sa.Boolean()),
    ("offer_cost", sa.Float()),
    ("offer_responded_on", sa.Date()),
    ("offer_holdout", sa.Boolean()),
)


def upgrade() -> None:
    """Add the six nullable columns; existing reports keep nulls."""
    with op.batch_alter_table("decisions") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    """Drop the columns."""
    with op.batch_alter_table("decisions") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
