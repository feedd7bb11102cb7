"""The store: recommendations in force and the decision log, on SQLite or PostgreSQL.

One :class:`Store` per process, shared by the API's worker threads (the engine pools
connections). Every public method is one transaction. Writes either commit completely and
return, or raise :class:`StoreError` having written nothing; a decision whose connection was lost
is retried with the same id, and an ambiguous commit is settled by looking the id up, so a
report is never lost and never stored twice. A client that retries after a dropped connection
sends an idempotency key (:meth:`Store.record_decision_once`): the report is stored once per
key, and the retry gets the first answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import (
    Connection,
    Float,
    Row,
    String,
    Text,
    case,
    cast,
    delete,
    func,
    literal,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from service.storage.bulk import (
    RECOMMENDATION_FIELDS,
    BulkWriter,
    checked_frame,
    frame_of_rows,
    refuse_repeats,
)
from service.storage.engine import (
    WRITE_OPTION,
    create_store_engine,
    is_memory_sqlite,
    parse_url,
)
from service.storage.offer_columns import (
    checked_offer,
    offer_fingerprint,
    offer_from_row,
    offer_values,
    read_offer_reports,
)
from service.storage.portfolio import (
    ActionTally,
    PortfolioFilter,
    PortfolioPage,
    PortfolioRow,
    portfolio_net_margins,
    portfolio_options,
    portfolio_page,
    portfolio_rows,
    portfolio_tallies,
)
from service.storage.records import (
    VERDICTS,
    ApprovalRequest,
    DecisionReport,
    RecordedDecision,
    StoreConflict,
    StoredApproval,
    StoredDecision,
    StoredRecommendation,
    StoreError,
)
from service.storage.schema import (
    ACTION_LENGTH,
    CHOSEN_VALUE_PATHS,
    ID_LENGTH,
    IDEMPOTENCY_KEY_LENGTH,
    PORTFOLIO_PATHS,
    RECOMMENDED_VALUE_PATH,
    TEXT_PORTFOLIO_COLUMNS,
    approvals,
    decisions,
    latest_recommendations,
    recommendations,
)

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MAX_PAGE = 1000  # largest ``limit`` list_decisions accepts
RECOMMENDATION_VERDICTS: dict[str, pl.DataType] = {
    "recommendation_id": pl.String(),
    "followed_recommendation": pl.Boolean(),
    "recorded_at": pl.Datetime("us", "UTC"),
}
"""The frame :meth:`Store.recommendation_verdicts` returns."""
DEFAULT_BUSY_TIMEOUT_S = 30.0
_WRITE_ATTEMPTS = 3  # for a decision whose connection was lost mid-write
_MIGRATION_LOCK_KEY = 0x6B77_6D69  # "kwmi": PostgreSQL advisory lock held while migrating


class Store:
    """Recommendations and the decision log behind one SQLAlchemy URL.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///keepwise.db`` (file), ``sqlite://`` (memory, for
            tests), or ``postgresql://user:pw@host/db`` (psycopg 3 is used).
        busy_timeout_s: how long a call waits for a lock (SQLite's write lock, PostgreSQL's
            ``lock_timeout``) or a pooled connection before it fails with
            :class:`StoreError`.
        statement_timeout_s: PostgreSQL only: the longest a statement may run (None: no
            limit; migrations are never limited).

    Raises:
        StoreError: the URL is invalid or names an unsupported backend. Nothing connects
            until the first call.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        statement_timeout_s: float | None = None,
    ) -> None:
        parsed = parse_url(url)
        self._url = parsed
        self._engine = create_store_engine(
            parsed, busy_timeout_s=busy_timeout_s, statement_timeout_s=statement_timeout_s
        )
        self._write_engine = self._engine.execution_options(**{WRITE_OPTION: True})
        # one shared in-memory connection: serialise its use across threads
        self._lock: threading.RLock | None = threading.RLock() if is_memory_sqlite(parsed) else None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema (alembic, programmatically) to ``revision``.

        Safe to call from several processes at once: on PostgreSQL an advisory lock, on SQLite
        the write lock, lets one migrate while the others wait and then find nothing to do.

        Only upgrades: a target older than the database is a no-op.

        Args:
            revision: target revision; ``"head"`` (the default) is what applications want.

        Raises:
            StoreError: ``revision`` is unknown (``field`` is ``"revision"``), or the database
                could not be migrated.
        """
        from alembic import command  # imported here: only migrations need alembic
        from alembic.config import Config
        from alembic.util import CommandError

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("path_separator", "os")
        with self._database_errors("migrate the database"), self._transaction(write=True) as conn:
            if conn.dialect.name == "postgresql":
                # a migration may wait for another process's and take its time
                conn.execute(text("SET LOCAL lock_timeout = 0"))
                conn.execute(text("SET LOCAL statement_timeout = 0"))
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = conn
            try:
                command.upgrade(config, revision)
            except CommandError as exc:
                message = f"cannot migrate to {revision!r}: {exc}"
                raise StoreError(message, field="revision") from exc
        logger.info("database %s migrated to %s", self._safe_url, revision)

    def ping(self) -> None:
        """Check that the store can be read and written now, writing nothing.

        Reads each table and takes the lock a decision's insert needs (SQLite's write lock;
        on PostgreSQL the ``decisions`` table's ROW EXCLUSIVE lock, which a table lock held by
        another session blocks), then commits an empty transaction. Bounded by the store's
        timeouts.

        Raises:
            StoreError: The database cannot be reached, or a lock was not granted in time.
        """
        with self._database_errors("check the database"), self._transaction(write=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("LOCK TABLE decisions IN ROW EXCLUSIVE MODE"))
            for table in (recommendations, latest_recommendations, decisions):
                conn.execute(select(true()).select_from(table).limit(1)).all()

    def close(self) -> None:
        """Release every pooled connection; the store cannot be used afterwards."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- recommendations -------------------------------------------------------------------

    def save_recommendations(self, rows: Sequence[Mapping[str, Any]], *, run_id: str) -> int:
        """Save one batch run's recommendations, one row per customer, in one transaction.

        Each customer's recommendation in force becomes the one with the newest ``as_of``; among
        equal ``as_of`` the one saved last wins (a re-run replaces the earlier run). Saving a
        recommendation id again (a re-run with deterministic ids) updates that recommendation.

        Args:
            rows: mappings with exactly the keys ``recommendation_id``, ``customer_id``,
                ``account_manager`` (or None), ``region`` (or None), ``as_of`` (a date or ISO
                date string), ``action``, ``model_version``, ``policy_version`` and
                ``payload`` (the full recommendation: JSON types, no NaN or infinity; dates
                and datetimes are accepted and stored as ISO 8601 strings).
            run_id: the batch run that produced them.

        Returns:
            The number of recommendations saved.

        Raises:
            StoreError: a row is invalid (``field`` names the key; the message names the row),
                a customer or recommendation id repeats, an id already belongs to another
                customer, or the database failed. Nothing of the batch is saved then.
        """
        return self.save_recommendation_batches([rows], run_id=run_id)

    def save_recommendation_batches(
        self, batches: Iterable[Sequence[Mapping[str, Any]]], *, run_id: str
    ) -> int:
        """:meth:`save_recommendations` for a run too large to hold at once: the rows come in
        batches (validated and written one batch at a time) and are saved in ONE transaction,
        so either the whole run is saved or none of it.

        Raises:
            StoreError: as :meth:`save_recommendations`; rows are numbered across batches.
        """
        return self._save(((rows, False) for rows in batches), run_id)

    def save_recommendation_frames(self, frames: Iterable[pl.DataFrame], *, run_id: str) -> int:
        """:meth:`save_recommendation_batches` for batches given as polars frames, as a nightly
        run of hundreds of thousands of rows has them: the columns are exactly the row keys of
        :meth:`save_recommendations`, with ``payload`` as JSON text and ``as_of`` a date.
        Rows are checked column by column (row by row, with the same messages, only when
        something looks wrong) and written with the driver's ``executemany``.

        Raises:
            StoreError: as :meth:`save_recommendations`; a missing or unknown column too.
        """
        return self._save(((frame, True) for frame in frames), run_id)

    def _save(self, batches: Iterable[tuple[Any, bool]], run_id: str) -> int:
        run = _text(run_id, "run_id", max_length=ID_LENGTH)
        created_at = datetime.now(UTC)
        seen: dict[str, dict[str, int]] = {"customer_id": {}, "recommendation_id": {}}
        with self._database_errors("save recommendations"), self._bulk_transaction() as conn:
            writer = BulkWriter(conn, run, created_at, portfolio_values)
            for batch, is_frame in batches:
                check = checked_frame if is_frame else frame_of_rows
                frame = check(batch, writer.saved, _recommendation_values)
                for field_name, first in seen.items():
                    keys = frame.get_column(field_name).to_list()
                    refuse_repeats(keys, field_name, first, writer.saved)
                writer.write(frame)
            writer.finish()
        logger.info("saved %d recommendations of run %s", writer.saved, run)
        return writer.saved

    def prune_runs(self, keep: int) -> int:
        """Delete the recommendations of all but the ``keep`` newest batch runs, except those
        still needed: the one in force for each customer, and any that a decision or an
        approval cites. Each nightly run adds its full payloads (about 1.6 GB of SQLite per
        million customers); history older than the runs kept is then only in the runs'
        Parquet outputs.

        Args:
            keep: Runs to keep whole (at least 1), newest first by when they were saved.

        Returns:
            Recommendations deleted.

        Raises:
            StoreError: ``keep`` is below 1, or the database failed.
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise StoreError(
                f"keep must be a whole number of runs >= 1, got {keep!r}", field="keep"
            )
        runs = (
            select(recommendations.c.run_id)
            .group_by(recommendations.c.run_id)
            .order_by(
                func.max(recommendations.c.created_at).desc(), recommendations.c.run_id.desc()
            )
        )
        cited = [
            select(latest_recommendations.c.recommendation_id),
            select(decisions.c.recommendation_id).where(decisions.c.recommendation_id.is_not(None)),
            select(approvals.c.recommendation_id),
        ]
        with self._database_errors("prune old runs"), self._transaction(write=True) as conn:
            old = [row.run_id for row in conn.execute(runs.offset(keep))]
            if not old:
                return 0
            deleted = conn.execute(
                delete(recommendations).where(
                    recommendations.c.run_id.in_(old),
                    *[recommendations.c.recommendation_id.not_in(query) for query in cited],
                )
            ).rowcount
        logger.info(
            "pruned %d recommendations of %d runs older than the newest %d", deleted, len(old), keep
        )
        return int(deleted)

    def latest_recommendation(self, customer_id: str) -> StoredRecommendation | None:
        """The recommendation in force for a customer.

        Args:
            customer_id: the customer.

        Returns:
            The recommendation, or ``None`` if the customer has none.

        Raises:
            StoreError: ``customer_id`` is empty, or the database failed.
        """
        customer = _text(customer_id, "customer_id", max_length=ID_LENGTH)
        query = (
            select(recommendations)
            .join(
                latest_recommendations,
                latest_recommendations.c.recommendation_id == recommendations.c.recommendation_id,
            )
            .where(latest_recommendations.c.customer_id == customer)
        )
        with self._database_errors("read a recommendation"), self._transaction(write=False) as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _stored_recommendation(row)

    def recommendation_by_id(self, recommendation_id: str) -> StoredRecommendation | None:
        """A stored recommendation by its id (in force or not), or ``None``.

        Raises:
            StoreError: ``recommendation_id`` is empty, or the database failed.
        """
        wanted = _text(recommendation_id, "recommendation_id", max_length=ID_LENGTH)
        query = select(recommendations).where(recommendations.c.recommendation_id == wanted)
        with self._database_errors("read a recommendation"), self._transaction(write=False) as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _stored_recommendation(row)

    def customer_scope(self, customer_id: str) -> tuple[str | None, str | None] | None:
        """Who owns a customer now: from the recommendation in force.

        Args:
            customer_id: the customer.

        Returns:
            ``(account_manager, region)`` (either may be None), or ``None`` if the customer has
            no recommendation.

        Raises:
            StoreError: ``customer_id`` is empty, or the database failed.
        """
        customer = _text(customer_id, "customer_id", max_length=ID_LENGTH)
        query = (
            select(recommendations.c.account_manager, recommendations.c.region)
            .join(
                latest_recommendations,
                latest_recommendations.c.recommendation_id == recommendations.c.recommendation_id,
            )
            .where(latest_recommendations.c.customer_id == customer)
        )
        with (
            self._database_errors("read a customer's scope"),
            self._transaction(write=False) as conn,
        ):
            row = conn.execute(query).one_or_none()
        return None if row is None else (row.account_manager, row.region)

    # -- decision log ----------------------------------------------------------------------

    def record_decision(self, report: DecisionReport) -> StoredDecision:
        """Append an after-action report to the decision log (one transaction).

        Args:
            report: the report; every text item non-empty (``helped_by`` may be None),
                ``occurred_at`` timezone-aware, ``followed_recommendation`` given exactly when
                ``recommendation_id`` is, and that recommendation stored for the same customer.

        Returns:
            The stored decision: the report with ``occurred_at`` in UTC, a new ``decision_id``
            and ``recorded_at``.

        Raises:
            StoreError: the report is invalid (``field`` names the item; nothing was stored),
                or the database failed (``field`` is None). A connection lost mid-write is
                settled first — the store looks the decision id up and returns the decision if
                the commit went through, else retries (3 attempts) — so after this error the
                report was not stored, unless the database was unreachable even for that check.
        """
        return self._record(report, None).decision

    def record_decision_once(
        self, report: DecisionReport, idempotency_key: str
    ) -> RecordedDecision:
        """:meth:`record_decision`, at most once per ``idempotency_key`` and ``recorded_by``.

        The first call with a key stores the report; a later call with the same key (and the
        same ``recorded_by``) and the same report stores nothing and returns the first call's
        decision, even when the first call's client never saw its answer (a dropped
        connection); the same key with another report is refused. Concurrent calls with one
        key store one report: the database's unique index settles the race.

        Args:
            report: the report, as for :meth:`record_decision`.
            idempotency_key: the client's key for this report: 1 to 128 printable ASCII
                characters (no spaces).

        Returns:
            The decision and whether it was replayed (stored by an earlier call).

        Raises:
            StoreConflict: the key already stored a different report.
            StoreError: as :meth:`record_decision`; ``field`` is ``"idempotency_key"`` for a
                malformed key.
        """
        key = _idempotency_key(idempotency_key)
        return self._record(report, key)

    def _record(self, report: DecisionReport, key: str | None) -> RecordedDecision:
        stored = _stored_decision(
            report, decision_id=uuid.uuid4().hex, recorded_at=datetime.now(UTC)
        )
        values = {name: getattr(stored, name) for name in _DECISION_COLUMNS}
        values.update(offer_values(stored.offer))
        fingerprint = _report_fingerprint(stored)
        if key is not None:
            values.update(idempotency_key=key, request_sha256=fingerprint)
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                with self._transaction(write=True) as conn:
                    if key is not None and (earlier := _by_key(conn, stored.recorded_by, key)):
                        return _replay(earlier, fingerprint, key)
                    _check_recommendation_link(conn, stored)
                    conn.execute(decisions.insert(), values)
                return RecordedDecision(stored, replayed=False)
            except IntegrityError as exc:
                # a concurrent call with the same key committed first (PostgreSQL; SQLite
                # serialises writers, so the lookup above already saw it)
                if key is not None and (earlier := self._find_by_key(stored.recorded_by, key)):
                    return _replay(earlier, fingerprint, key)
                raise _database_error("record a decision", exc) from exc
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise _database_error("record a decision", exc) from exc
                if self._decision_exists(stored.decision_id):  # the commit went through
                    return RecordedDecision(stored, replayed=False)
                if attempt == _WRITE_ATTEMPTS:
                    raise _database_error("record a decision", exc) from exc
                logger.warning(
                    "connection lost recording decision %s (attempt %d), retrying",
                    stored.decision_id,
                    attempt,
                )
            except SQLAlchemyError as exc:
                raise _database_error("record a decision", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def list_decisions(
        self,
        *,
        customer_id: str | None = None,
        account_manager: str | None = None,
        region: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[StoredDecision]:
        """Decisions, newest recorded first, optionally narrowed (filters combine with AND).

        ``account_manager`` and ``region`` are the customer's *current* owner, read from the
        recommendation in force — so when a customer changes hands, the history moves with it.
        Decisions for customers without any recommendation match no scope filter.

        Args:
            customer_id: only this customer's decisions.
            account_manager: only customers this account manager owns now.
            region: only customers in this region now.
            limit: page size, 1 to 1000.
            offset: decisions to skip (for paging).

        Returns:
            Up to ``limit`` decisions, ordered by ``recorded_at`` (then insertion), newest first.

        Raises:
            StoreError: ``limit`` or ``offset`` out of range, or the database failed.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise StoreError(
                f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}", field="limit"
            )
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise StoreError(
                f"offset must be a non-negative integer, got {offset!r}", field="offset"
            )
        query = select(decisions)
        if customer_id is not None:
            customer_id = _text(customer_id, "customer_id", max_length=ID_LENGTH)
            query = query.where(decisions.c.customer_id == customer_id)
        if account_manager is not None or region is not None:
            query = query.join(
                latest_recommendations,
                latest_recommendations.c.customer_id == decisions.c.customer_id,
            ).join(
                recommendations,
                recommendations.c.recommendation_id == latest_recommendations.c.recommendation_id,
            )
            if account_manager is not None:
                query = query.where(recommendations.c.account_manager == account_manager)
            if region is not None:
                query = query.where(recommendations.c.region == region)
        query = (
            query.order_by(decisions.c.recorded_at.desc(), decisions.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._database_errors("list decisions"), self._transaction(write=False) as conn:
            rows = conn.execute(query).all()
        return [_decision_from_row(row) for row in rows]

    def recommendation_verdicts(self) -> pl.DataFrame:
        """Every report citing a recommendation: whether it was followed, and when recorded.

        Reads only columns every revision has, so a store not yet migrated to the head is read
        too (``keepwise monitor`` reads stores that ``serve`` has not upgraded). Nothing is
        migrated or written.

        Returns:
            ``recommendation_id``, ``followed_recommendation`` (null when the report does not
            say) and ``recorded_at`` (UTC), oldest recorded first.

        Raises:
            StoreError: the database failed.
        """
        query = (
            select(
                decisions.c.recommendation_id,
                decisions.c.followed_recommendation,
                decisions.c.recorded_at,
            )
            .where(decisions.c.recommendation_id.is_not(None))
            .order_by(decisions.c.recorded_at, decisions.c.id)
        )
        with self._database_errors("read the decision log"), self._transaction(write=False) as conn:
            rows = conn.execute(query).all()
        return pl.DataFrame(
            [tuple(row) for row in rows], schema=RECOMMENDATION_VERDICTS, orient="row"
        )

    def offer_reports(self) -> pl.DataFrame:
        """Every report that records an offer, for training (oldest recorded first).

        Returns:
            One row per report (:data:`service.storage.offer_columns.REPORT_COLUMNS`: the
            decision and customer ids, the offer under the CRM ``offers`` table's column names,
            and ``recorded_at``); empty for a store before revision 0005 or without reports.
            Nothing is migrated or written.

        Raises:
            StoreError: the database failed.
        """
        with self._database_errors("read the decision log"), self._transaction(write=False) as conn:
            return read_offer_reports(conn)

    # -- portfolio -------------------------------------------------------------------------

    def portfolio_page(
        self,
        where: PortfolioFilter,
        *,
        sort: str = "expected_value",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> PortfolioPage:
        """A page of the recommendations in force (see :mod:`service.storage.portfolio`).

        Raises:
            StoreError: ``sort``, ``limit`` or ``offset`` is invalid (``field`` names it), or
                the database failed.
        """
        with self._database_errors("read the portfolio"), self._transaction(write=False) as conn:
            return portfolio_page(
                conn, where, sort=sort, descending=descending, limit=limit, offset=offset
            )

    def portfolio_rows(
        self, where: PortfolioFilter, *, sort: str = "expected_value", descending: bool = True
    ) -> list[PortfolioRow]:
        """Every row of the filtered portfolio in page order (the CSV export)."""
        with self._database_errors("read the portfolio"), self._transaction(write=False) as conn:
            return portfolio_rows(conn, where, sort=sort, descending=descending)

    def portfolio_tallies(self, where: PortfolioFilter) -> list[ActionTally]:
        """Customers and summed expected values by action and approval tier."""
        with self._database_errors("read the portfolio"), self._transaction(write=False) as conn:
            return portfolio_tallies(conn, where)

    def portfolio_net_margins(self, where: PortfolioFilter) -> list[float]:
        """Trailing monthly net margin of every matching customer (for the whale curve)."""
        with self._database_errors("read the portfolio"), self._transaction(write=False) as conn:
            return portfolio_net_margins(conn, where)

    def portfolio_options(self, where: PortfolioFilter) -> dict[str, list[str]]:
        """Distinct filter values within the filter's scope (its other fields are ignored)."""
        with self._database_errors("read the portfolio"), self._transaction(write=False) as conn:
            return portfolio_options(conn, where)

    # -- approvals -------------------------------------------------------------------------

    def record_approval(self, request: ApprovalRequest) -> StoredApproval:
        """Record a verdict on the recommendation in force and its after-action report, in one
        transaction (both or neither).

        Raises:
            StoreError: the verdict or note is invalid, the recommendation is unknown, not the
                one in force for its customer, needs no approval, or already has a verdict
                (``field`` names the item), or the database failed (``field`` None).
        """
        if request.verdict not in VERDICTS:
            raise StoreError(
                f"verdict must be one of {', '.join(VERDICTS)}, got {request.verdict!r}",
                field="verdict",
            )
        note = _text(request.note, "note")
        authority = _text(request.authority, "authority", max_length=ID_LENGTH)
        report = request.report
        if report.recommendation_id != request.recommendation_id:
            raise StoreError(
                "the report must cite the recommendation it approves or rejects",
                field="recommendation_id",
            )
        if report.followed_recommendation is not (request.verdict == "approved"):
            raise StoreError(
                "followed_recommendation must be true for an approval and false for a rejection",
                field="followed_recommendation",
            )
        decided_at = datetime.now(UTC)
        decision = _stored_decision(report, decision_id=uuid.uuid4().hex, recorded_at=decided_at)
        try:
            return self._record_approval(request, decision, note, authority)
        except IntegrityError as exc:  # a second approver committed first (PostgreSQL)
            raise StoreConflict(
                f"recommendation {request.recommendation_id!r} already has a verdict",
                field="recommendation_id",
            ) from exc

    def _record_approval(
        self, request: ApprovalRequest, decision: StoredDecision, note: str, authority: str
    ) -> StoredApproval:
        decided_at = decision.recorded_at
        with (
            self._database_errors("record an approval", passing=(IntegrityError,)),
            self._transaction(write=True) as conn,
        ):
            found = conn.execute(
                select(
                    latest_recommendations.c.customer_id, latest_recommendations.c.approval_tier
                ).where(latest_recommendations.c.recommendation_id == request.recommendation_id)
            ).one_or_none()
            if found is None:
                owner = conn.execute(
                    select(recommendations.c.customer_id).where(
                        recommendations.c.recommendation_id == request.recommendation_id
                    )
                ).scalar_one_or_none()
                if owner is None:
                    raise StoreError(
                        f"recommendation_id {request.recommendation_id!r} is not a stored "
                        "recommendation",
                        field="recommendation_id",
                    )
                raise StoreConflict(
                    f"recommendation {request.recommendation_id!r} is no longer in force for "
                    f"customer {owner!r} (a newer run replaced it)",
                    field="recommendation_id",
                )
            if found.approval_tier is None:
                raise StoreConflict(
                    f"recommendation {request.recommendation_id!r} needs no approval",
                    field="recommendation_id",
                )
            if conn.execute(
                select(approvals.c.id).where(
                    approvals.c.recommendation_id == request.recommendation_id
                )
            ).first():
                raise StoreConflict(
                    f"recommendation {request.recommendation_id!r} already has a verdict",
                    field="recommendation_id",
                )
            _check_recommendation_link(conn, decision)
            conn.execute(
                decisions.insert(),
                {name: getattr(decision, name) for name in _DECISION_COLUMNS}
                | offer_values(decision.offer),
            )
            stored = StoredApproval(
                approval_id=uuid.uuid4().hex,
                recommendation_id=request.recommendation_id,
                customer_id=found.customer_id,
                required_tier=found.approval_tier,
                verdict=request.verdict,
                note=note,
                decided_by=decision.recorded_by,
                authority=authority,
                decision_id=decision.decision_id,
                decided_at=decided_at,
            )
            conn.execute(approvals.insert(), vars(stored))
        return stored

    def list_approvals(
        self,
        *,
        customer_id: str | None = None,
        account_manager: str | None = None,
        region: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[StoredApproval]:
        """Verdicts, newest first, narrowed like :meth:`list_decisions` (current owner).

        Raises:
            StoreError: ``limit`` or ``offset`` out of range, or the database failed.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise StoreError(
                f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}", field="limit"
            )
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise StoreError(
                f"offset must be a non-negative integer, got {offset!r}", field="offset"
            )
        query = select(*[approvals.c[name] for name in _APPROVAL_COLUMNS])
        if customer_id is not None:
            query = query.where(approvals.c.customer_id == customer_id)
        if account_manager is not None or region is not None:
            query = query.join(
                latest_recommendations,
                latest_recommendations.c.customer_id == approvals.c.customer_id,
            ).join(
                recommendations,
                recommendations.c.recommendation_id == latest_recommendations.c.recommendation_id,
            )
            if account_manager is not None:
                query = query.where(recommendations.c.account_manager == account_manager)
            if region is not None:
                query = query.where(recommendations.c.region == region)
        query = query.order_by(approvals.c.decided_at.desc(), approvals.c.id.desc())
        with self._database_errors("list approvals"), self._transaction(write=False) as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        return [StoredApproval(**row._asdict()) for row in rows]

    # -- plumbing --------------------------------------------------------------------------

    @property
    def _safe_url(self) -> str:
        return self._url.render_as_string(hide_password=True)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        """A connection in a transaction that commits on success and rolls back on error."""
        if self._closed:
            raise StoreError(f"the store for {self._safe_url} is closed")
        serial: AbstractContextManager[Any] = (
            self._lock if self._lock is not None else nullcontext()
        )
        with serial, (self._write_engine if write else self._engine).begin() as conn:
            yield conn

    @contextmanager
    def _bulk_transaction(self) -> Iterator[Connection]:
        """:meth:`_transaction` for a batch run's bulk write.

        On SQLite the connection commits it with ``synchronous = NORMAL`` and a 64 MiB page
        cache, then goes back to its settings. In WAL mode NORMAL cannot corrupt the database;
        a power cut right after the commit may lose this one transaction (the run is then
        simply not published and can be published again), and it halved the time to publish a
        million-customer run here (the default, FULL, syncs the multi-gigabyte log at commit).
        Neither can change inside a transaction, hence outside it, on the raw connection.
        """
        if self._closed:
            raise StoreError(f"the store for {self._safe_url} is closed")
        serial: AbstractContextManager[Any] = (
            self._lock if self._lock is not None else nullcontext()
        )
        with serial, self._write_engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            on_sqlite = conn.dialect.name == "sqlite"
            earlier = {n: _sqlite_setting(raw, n) for n in _BULK_SQLITE} if on_sqlite else {}
            try:
                for name in earlier:
                    raw.execute(f"PRAGMA {name} = {_BULK_SQLITE[name]}")
                with conn.begin():
                    yield conn
            finally:
                for name, value in earlier.items():
                    raw.execute(f"PRAGMA {name} = {value}")

    @contextmanager
    def _database_errors(
        self, action: str, *, passing: tuple[type[Exception], ...] = ()
    ) -> Iterator[None]:
        """Turn driver and SQLAlchemy errors into :class:`StoreError` (``field`` None), except
        those of the ``passing`` types."""
        try:
            yield
        except passing:
            raise
        except SQLAlchemyError as exc:
            raise _database_error(action, exc) from exc

    def _find_by_key(self, recorded_by: str, key: str) -> Row[Any] | None:
        with (
            self._database_errors("look up an idempotency key"),
            self._transaction(write=False) as conn,
        ):
            return _by_key(conn, recorded_by, key)

    def _decision_exists(self, decision_id: str) -> bool:
        with self._database_errors("look up a decision"), self._transaction(write=False) as conn:
            found = conn.execute(
                select(decisions.c.id).where(decisions.c.decision_id == decision_id)
            ).first()
        return found is not None


_DECISION_COLUMNS = (
    "decision_id",
    "customer_id",
    "requested",
    "occurred_at",
    "place",
    "authority_used",
    "helped_by",
    "outcome",
    "recommendation_id",
    "followed_recommendation",
    "recorded_by",
    "recorded_at",
)


_APPROVAL_COLUMNS = tuple(StoredApproval.__dataclass_fields__)
_IDEMPOTENCY_KEY = re.compile(rf"^[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_LENGTH}}}$")


def _idempotency_key(value: object) -> str:
    if not isinstance(value, str) or not _IDEMPOTENCY_KEY.match(value):
        raise StoreError(
            f"idempotency_key must be 1 to {IDEMPOTENCY_KEY_LENGTH} printable ASCII characters "
            "without spaces",
            field="idempotency_key",
        )
    return value


def _report_fingerprint(decision: StoredDecision) -> str:
    """SHA-256 of the report as stored (``occurred_at`` in UTC), without the store's own ids."""
    fields = {name: getattr(decision, name) for name in _DECISION_COLUMNS}
    for own in ("decision_id", "recorded_at"):
        del fields[own]
    fields["occurred_at"] = decision.occurred_at.isoformat()
    fields.update(offer_fingerprint(decision.offer))
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _by_key(conn: Connection, recorded_by: str, key: str) -> Row[Any] | None:
    return conn.execute(
        select(decisions).where(
            decisions.c.recorded_by == recorded_by, decisions.c.idempotency_key == key
        )
    ).one_or_none()


def _replay(earlier: Row[Any], fingerprint: str, key: str) -> RecordedDecision:
    if earlier.request_sha256 != fingerprint:
        raise StoreConflict(
            f"Idempotency-Key {key!r} was already used for another report (decision "
            f"{earlier.decision_id}); send a new key for a new report",
            field="idempotency_key",
        )
    return RecordedDecision(_decision_from_row(earlier), replayed=True)


# SQLite settings while a batch run is written (see Store._bulk_transaction)
_BULK_SQLITE = {"synchronous": "NORMAL", "cache_size": -65_536}


def _sqlite_setting(raw: Any, name: str) -> Any:
    return raw.execute(f"PRAGMA {name}").fetchone()[0]


def _database_error(action: str, exc: SQLAlchemyError) -> StoreError:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return StoreError(f"could not {action}: {type(cause).__name__}: {cause}".rstrip())


def _text(value: object, field: str, *, max_length: int | None = None, where: str = "") -> str:
    """``value`` if it is a non-blank string no longer than ``max_length``, else StoreError."""
    prefix = f"{where}: " if where else ""
    if not isinstance(value, str):
        raise StoreError(f"{prefix}{field} must be a string, got {value!r}", field=field)
    if not value.strip():
        raise StoreError(f"{prefix}{field} must not be empty", field=field)
    if "\x00" in value:  # PostgreSQL text cannot hold it; refused on every backend alike
        raise StoreError(f"{prefix}{field} must not contain a NUL character", field=field)
    if max_length is not None and len(value) > max_length:
        raise StoreError(
            f"{prefix}{field} is {len(value)} characters long, at most {max_length} allowed",
            field=field,
        )
    return value


def _optional_text(
    value: object, field: str, *, max_length: int | None = None, where: str = ""
) -> str | None:
    return None if value is None else _text(value, field, max_length=max_length, where=where)


def _as_of(value: object, where: str) -> date:
    if isinstance(value, datetime):
        raise StoreError(
            f"{where}: as_of must be a date, not a datetime ({value!r})", field="as_of"
        )
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise StoreError(
        f"{where}: as_of must be a date or an ISO date string, got {value!r}", field="as_of"
    )


def _payload(value: object, where: str) -> str:
    """The payload as JSON text: a mapping is encoded; text is taken as already encoded.

    Text is accepted so that a batch can encode a million payloads column-wise (see
    :func:`service.api.schemas.recommendation_payloads_json`); it must be one JSON object.
    """
    if isinstance(value, str):
        encoded = value.strip()
        if not (encoded.startswith("{") and encoded.endswith("}")):
            raise StoreError(f"{where}: payload text is not a JSON object", field="payload")
        return encoded
    if not isinstance(value, Mapping):
        raise StoreError(
            f"{where}: payload must be a mapping or JSON text, got {type(value).__name__}",
            field="payload",
        )
    try:
        return json.dumps(dict(value), allow_nan=False, default=_iso_date)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: payload is not valid JSON ({exc})", field="payload") from exc


def _iso_date(value: object) -> str:
    """JSON encoding for dates and datetimes (ISO 8601); anything else is not JSON."""
    if isinstance(value, date):  # datetime is a date too
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _recommendation_values(row: object, index: int) -> dict[str, Any]:
    """Validate one recommendation row and return the column values to store."""
    where = f"recommendation row {index}"
    if not isinstance(row, Mapping):
        raise StoreError(f"{where}: expected a mapping, got {type(row).__name__}", field="rows")
    for name in RECOMMENDATION_FIELDS:
        if name not in row:
            raise StoreError(f"{where}: missing field {name!r}", field=name)
    unknown = sorted(str(key) for key in row if key not in RECOMMENDATION_FIELDS)
    if unknown:
        raise StoreError(
            f"{where}: unknown field {unknown[0]!r} (expected exactly: "
            f"{', '.join(RECOMMENDATION_FIELDS)})",
            field=unknown[0],
        )
    customer = _text(row["customer_id"], "customer_id", max_length=ID_LENGTH, where=where)
    where = f"{where} (customer {customer!r})"
    return {
        "recommendation_id": _text(
            row["recommendation_id"], "recommendation_id", max_length=ID_LENGTH, where=where
        ),
        "customer_id": customer,
        "account_manager": _optional_text(
            row["account_manager"], "account_manager", max_length=ID_LENGTH, where=where
        ),
        "region": _optional_text(row["region"], "region", max_length=ID_LENGTH, where=where),
        "as_of": _as_of(row["as_of"], where),
        "action": _text(row["action"], "action", max_length=ACTION_LENGTH, where=where),
        "model_version": _text(
            row["model_version"], "model_version", max_length=ID_LENGTH, where=where
        ),
        "policy_version": _text(
            row["policy_version"], "policy_version", max_length=ID_LENGTH, where=where
        ),
        "payload": _payload(row["payload"], where),
    }


def _payload_field(conn: Connection, payload_text: Any, path: tuple[str, ...], text_: bool) -> Any:
    """One field of a JSON payload given as text, in SQL (NULL when absent or JSON null)."""
    if conn.dialect.name == "postgresql":
        pointer = cast(literal("{" + ",".join(path) + "}", Text), postgresql.ARRAY(Text))
        found = cast(payload_text, JSONB).op("#>>")(pointer)
        return found if text_ else cast(found, Float)
    extracted = func.json_extract(payload_text, "$." + ".".join(path))
    return cast(extracted, String) if text_ else cast(extracted, Float)


def portfolio_values(conn: Connection, payload_text: Any, action: Any) -> dict[str, Any]:
    """The portfolio columns of ``recommendations`` as SQL expressions over the payload text
    (the same paths revision 0003 fills existing rows from)."""
    values = {
        name: _payload_field(conn, payload_text, path, name in TEXT_PORTFOLIO_COLUMNS)
        for name, path in PORTFOLIO_PATHS.items()
    }
    # a payload that names the recommended action's value (since exploration: an explored
    # offer is not the best one) is read first; older payloads by action
    values["expected_value"] = func.coalesce(
        _payload_field(conn, payload_text, RECOMMENDED_VALUE_PATH, False),
        case(
            *[
                (action == chosen, _payload_field(conn, payload_text, path, False))
                for chosen, path in CHOSEN_VALUE_PATHS.items()
            ],
            else_=None,
        ),
    )
    return values


def _stored_recommendation(row: Row[Any]) -> StoredRecommendation:
    return StoredRecommendation(
        recommendation_id=row.recommendation_id,
        customer_id=row.customer_id,
        account_manager=row.account_manager,
        region=row.region,
        as_of=row.as_of,
        run_id=row.run_id,
        payload=row.payload,
        created_at=row.created_at,
        action=row.action,
        model_version=row.model_version,
        policy_version=row.policy_version,
    )


def _stored_decision(
    report: DecisionReport, *, decision_id: str, recorded_at: datetime
) -> StoredDecision:
    """Validate a report and return it as it will be stored."""
    if not isinstance(report, DecisionReport):
        raise StoreError(f"expected a DecisionReport, got {type(report).__name__}", field="report")
    occurred = report.occurred_at
    if not isinstance(occurred, datetime):
        raise StoreError(f"occurred_at must be a datetime, got {occurred!r}", field="occurred_at")
    if occurred.tzinfo is None or occurred.utcoffset() is None:
        raise StoreError(
            f"occurred_at must be timezone-aware (e.g. 2025-03-01T09:30:00+00:00), got naive "
            f"{occurred.isoformat()}",
            field="occurred_at",
        )
    followed = report.followed_recommendation
    if followed is not None and not isinstance(followed, bool):
        raise StoreError(
            f"followed_recommendation must be true, false or null, got {followed!r}",
            field="followed_recommendation",
        )
    recommendation_id = _optional_text(
        report.recommendation_id, "recommendation_id", max_length=ID_LENGTH
    )
    if recommendation_id is not None and followed is None:
        raise StoreError(
            "followed_recommendation is required when recommendation_id is given "
            "(was the recommendation followed or overridden?)",
            field="followed_recommendation",
        )
    if recommendation_id is None and followed is not None:
        raise StoreError(
            "followed_recommendation needs a recommendation_id "
            "(which recommendation was followed or overridden?)",
            field="recommendation_id",
        )
    try:
        occurred_utc = occurred.astimezone(UTC)
    except OverflowError:
        raise StoreError(
            f"occurred_at {occurred.isoformat()} is out of range once converted to UTC",
            field="occurred_at",
        ) from None
    return StoredDecision(
        customer_id=_text(report.customer_id, "customer_id", max_length=ID_LENGTH),
        requested=_text(report.requested, "requested"),
        occurred_at=occurred_utc,
        place=_text(report.place, "place"),
        authority_used=_text(report.authority_used, "authority_used"),
        helped_by=_optional_text(report.helped_by, "helped_by"),
        outcome=_text(report.outcome, "outcome"),
        recommendation_id=recommendation_id,
        followed_recommendation=followed,
        recorded_by=_text(report.recorded_by, "recorded_by", max_length=ID_LENGTH),
        offer=checked_offer(report.offer, recorded_at),
        decision_id=decision_id,
        recorded_at=recorded_at,
    )


def _check_recommendation_link(conn: Connection, decision: StoredDecision) -> None:
    """The linked recommendation exists and is for the same customer."""
    if decision.recommendation_id is None:
        return
    owner = conn.execute(
        select(recommendations.c.customer_id).where(
            recommendations.c.recommendation_id == decision.recommendation_id
        )
    ).scalar_one_or_none()
    if owner is None:
        raise StoreError(
            f"recommendation_id {decision.recommendation_id!r} is not a stored recommendation",
            field="recommendation_id",
        )
    if owner != decision.customer_id:
        raise StoreError(
            f"recommendation_id {decision.recommendation_id!r} is for customer {owner!r}, "
            f"not {decision.customer_id!r}",
            field="recommendation_id",
        )


def _decision_from_row(row: Row[Any]) -> StoredDecision:
    return StoredDecision(
        **{name: getattr(row, name) for name in _DECISION_COLUMNS}, offer=offer_from_row(row)
    )
