"""Persistence for keepwise: recommendations in force and the front line's decision log.

Sync SQLAlchemy 2 over SQLite (WAL, busy timeout) or PostgreSQL (psycopg 3); the schema is
managed by the alembic migrations shipped in ``service/storage/migrations``
(:meth:`Store.migrate`).
"""

from service.storage.portfolio import (
    SORT_COLUMNS,
    ActionTally,
    PortfolioFilter,
    PortfolioPage,
    PortfolioRow,
)
from service.storage.records import (
    VERDICTS,
    ApprovalRequest,
    DecisionReport,
    RecordedDecision,
    ReportedOffer,
    StoreConflict,
    StoredApproval,
    StoredDecision,
    StoredRecommendation,
    StoreError,
)
from service.storage.store import MAX_PAGE, RECOMMENDATION_FIELDS, Store

__all__ = [
    "SORT_COLUMNS",
    "VERDICTS",
    "ActionTally",
    "ApprovalRequest",
    "PortfolioFilter",
    "PortfolioPage",
    "PortfolioRow",
    "StoredApproval",
    "MAX_PAGE",
    "RECOMMENDATION_FIELDS",
    "DecisionReport",
    "RecordedDecision",
    "ReportedOffer",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoredDecision",
    "StoredRecommendation",
]
