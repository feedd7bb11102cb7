"""Engines for the two supported backends, set up so concurrent writers wait instead of failing.

SQLite (a file): write-ahead logging, so readers never block the writer; a busy timeout, so a
second writer waits for the lock instead of failing; foreign keys on; and SQLAlchemy, not the
``sqlite3`` module, emits ``BEGIN`` — ``BEGIN IMMEDIATE`` for write transactions, so a writer
takes the write lock before it reads and can never be refused later with "database is locked"
on lock upgrade (which the busy timeout does not cover). An in-memory SQLite database
(``sqlite://``) is one connection shared by all threads, so the store serialises its use.

PostgreSQL: plain READ COMMITTED transactions through psycopg 3, with pre-ping so a connection
dropped by the server is replaced. ``postgresql://`` URLs are read as ``postgresql+psycopg://``.
Every connection waits at most the busy timeout for a lock (``lock_timeout``) and for the
server to answer a connection attempt, and optionally bounds each statement
(``statement_timeout``): a locked table makes calls fail fast instead of piling up.

Both: a caller waits at most the busy timeout for a pooled connection, so a stuck database
cannot hold every request for the pool's default 30 seconds.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from service.storage.records import StoreError

WRITE_OPTION = "keepwise_write"  # execution option: this transaction will write
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def parse_url(url: str) -> URL:
    """Parse and normalise a database URL.

    Args:
        url: any SQLAlchemy URL for SQLite or PostgreSQL.

    Returns:
        The URL, with ``postgresql://`` pointed at the psycopg 3 driver.

    Raises:
        StoreError: the URL does not parse or names an unsupported backend.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"database url {url!r} is not a valid SQLAlchemy URL", field="url"
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise StoreError(
            f"database url {parsed.render_as_string(hide_password=True)!r}: backend {backend!r} "
            f"is not supported (use one of {', '.join(SUPPORTED_BACKENDS)})",
            field="url",
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_memory_sqlite(url: URL) -> bool:
    """Whether ``url`` is an in-memory SQLite database (one per connection by default)."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return database in ("", ":memory:") or url.query.get("mode") == "memory"


def create_store_engine(
    url: URL, *, busy_timeout_s: float, statement_timeout_s: float | None = None
) -> Engine:
    """Create the engine for ``url`` (already passed through :func:`parse_url`).

    Args:
        url: SQLite or PostgreSQL URL.
        busy_timeout_s: how long a call waits for a lock (SQLite's write lock, PostgreSQL's
            ``lock_timeout``), for a pooled connection, and for PostgreSQL to accept a
            connection.
        statement_timeout_s: PostgreSQL only: the longest any statement may run (None: no
            limit).

    Returns:
        A synchronous engine, safe to share between threads.
    """
    if url.get_backend_name() == "postgresql":
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_timeout=busy_timeout_s,
            connect_args={"connect_timeout": max(1, math.ceil(busy_timeout_s))},
        )
        _configure_postgresql(engine, busy_timeout_s, statement_timeout_s)
        return engine
    memory = is_memory_sqlite(url)
    connect_args: dict[str, Any] = {"timeout": busy_timeout_s, "check_same_thread": False}
    engine = (
        create_engine(url, poolclass=StaticPool, connect_args=connect_args)
        if memory
        else create_engine(url, connect_args=connect_args, pool_timeout=busy_timeout_s)
    )
    _configure_sqlite(engine, busy_timeout_ms=int(busy_timeout_s * 1000), wal=not memory)
    return engine


def _configure_postgresql(
    engine: Engine, lock_timeout_s: float, statement_timeout_s: float | None
) -> None:
    """Set the session's lock (and statement) timeout on every new connection."""
    settings = [f"SET lock_timeout = {max(1, int(lock_timeout_s * 1000))}"]
    if statement_timeout_s is not None:
        settings.append(f"SET statement_timeout = {max(1, int(statement_timeout_s * 1000))}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            for statement in settings:
                cursor.execute(statement)
        dbapi_connection.commit()


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int, wal: bool) -> None:
    """Install the connect/begin hooks described in the module docstring."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN, see _on_begin
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            # only takes effect on a database not yet written (a no-op afterwards)
            cursor.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
            if wal:
                _enable_wal(cursor, timeout_s=busy_timeout_ms / 1000)
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writes = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _enable_wal(cursor: Any, *, timeout_s: float) -> None:
    """Switch to write-ahead logging, waiting up to ``timeout_s`` for the lock it needs.

    SQLite does not apply the busy timeout to a journal-mode change: while another connection
    writes to a new database file (e.g. two processes migrating it at start-up), the pragma
    fails at once with "database is locked". Retrying briefly turns that race into a wait.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)


_WAL_RETRY_S = 0.01
# Page size of a new SQLite database. A stored recommendation is ~2.5 kB of JSON: on 4 kB
# pages only one fits per page (40% of the file was empty space); on 16 kB pages six do, and
# the file of a million-customer night is 30% smaller (measured: docs/benchmarks.md).
SQLITE_PAGE_SIZE = 16_384
