"""Persistence for keepwise: recommendations in force and the front line's decision log.

Sync SQLAlchemy 2 over SQLite (WAL, busy timeout) or PostgreSQL (psycopg 3); the schema is
managed by the alembic migrations shipped in ``service/storage/migrations``
(:meth:`Store.migrate`).
"""

from service.storage.records import (
    DecisionReport,
    RecordedDecision,
    StoreConflict,
    StoredDecision,
    StoredRecommendation,
    StoreError,
)
from service.storage.store import MAX_PAGE, RECOMMENDATION_FIELDS, Store

__all__ = [
    "MAX_PAGE",
    "RECOMMENDATION_FIELDS",
    "DecisionReport",
    "RecordedDecision",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoredDecision",
    "StoredRecommendation",
]
