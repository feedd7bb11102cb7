"""A stuck store answers 503 within the store timeout, and readiness says so (issue 15, defect 6).

Stuck means another process holds the lock a call needs: SQLite's file lock taken in exclusive
locking mode (WAL readers cannot read either), or a PostgreSQL table locked ACCESS EXCLUSIVE.
Before, a read waited SQLite's 30 s busy timeout, PostgreSQL calls waited for the lock and then
for the pool (30 s), and ``/health/ready`` stayed 200 throughout.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.settings import Settings
from service.storage import Store, StoreError
from tests.service.api.support import AppFactory, Customer, Keys, start
from tests.service.api.test_decisions import report

T = TypeVar("T")

TIMEOUT_S = 0.5
# Generous for a noisy machine, yet far below the 30 s the calls used to wait.
BOUND_S = 8.0


@pytest.fixture
def sqlite_client(
    make_app: AppFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    """The API over its own SQLite file (migrated at start-up), with a short store timeout."""
    path = tmp_path_factory.mktemp("stuck") / "keepwise.db"
    app = make_app(database_url=f"sqlite:///{path}", store_timeout_s=TIMEOUT_S)
    with start(app) as client:
        yield client, str(path)


def _hold_sqlite(path: str) -> sqlite3.Connection:
    """Another connection that takes the write lock and keeps it until closed."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_the_default_store_timeout_is_seconds_not_half_a_minute() -> None:
    assert Settings().store_timeout_s <= 5


def test_a_held_sqlite_write_lock_answers_503_in_time_and_readiness_turns_503(
    sqlite_client: tuple[TestClient, str], keys: Keys, own: Customer
) -> None:
    client, path = sqlite_client
    assert client.get("/health/ready").status_code == 200
    holder = _hold_sqlite(path)
    try:
        written, took = _timed(
            lambda: client.post(
                "/v1/decisions", headers=keys.header("agent"), json=report(own.customer_id)
            )
        )
        assert written.status_code == 503, written.text
        assert took < BOUND_S
        ready, took = _timed(lambda: client.get("/health/ready"))
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "not ready",
            "model_version": "1",
            "detail": "the store is not available (see the service log)",
        }
        assert took < BOUND_S
        # reads do not need the write lock (write-ahead log): they still answer
        listed = client.get("/v1/decisions", headers=keys.header("viewer"))
        assert listed.status_code == 200
    finally:
        holder.close()
    assert client.get("/health/ready").status_code == 200
    written = client.post(
        "/v1/decisions", headers=keys.header("agent"), json=report(own.customer_id)
    )
    assert written.status_code == 201, written.text


def test_a_read_waits_for_a_locked_sqlite_file_at_most_the_store_timeout(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A process holding the file in exclusive locking mode blocks even WAL readers."""
    path = tmp_path_factory.mktemp("exclusive") / "keepwise.db"
    with Store(f"sqlite:///{path}") as store:
        store.migrate()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE lock_holder (x INTEGER)")
    holder.execute("COMMIT")  # exclusive mode keeps the lock after the commit
    try:
        with Store(f"sqlite:///{path}", busy_timeout_s=TIMEOUT_S) as store:
            started = time.monotonic()
            with pytest.raises(StoreError, match="database is locked"):
                store.latest_recommendation("C1")
            assert time.monotonic() - started < BOUND_S
    finally:
        holder.close()


@pytest.fixture
def postgres_client(make_app: AppFactory, postgresql_url: str) -> Iterator[TestClient]:
    """The API over an empty PostgreSQL schema, with a short store timeout."""
    with start(make_app(database_url=postgresql_url, store_timeout_s=TIMEOUT_S)) as client:
        yield client


def _conninfo(url: str) -> tuple[str, str]:
    """libpq connection string and schema of a test URL."""
    parsed = make_url(url)
    query = dict(parsed.query)
    schema = str(query["options"]).removeprefix("-csearch_path=")
    conninfo = (
        f"host={query['host']} port={query['port']} user={parsed.username} dbname={parsed.database}"
    )
    return conninfo, schema


def test_locked_postgresql_tables_answer_503_in_time_and_readiness_turns_503(
    postgres_client: TestClient, postgresql_url: str, keys: Keys, own: Customer
) -> None:
    viewer = keys.header("viewer")
    assert postgres_client.get("/health/ready").status_code == 200
    conninfo, schema = _conninfo(postgresql_url)
    with psycopg.connect(conninfo) as holder:
        holder.execute(f'SET search_path TO "{schema}"')
        holder.execute(
            "LOCK TABLE latest_recommendations, recommendations, decisions IN ACCESS EXCLUSIVE MODE"
        )
        # more concurrent calls than the pool holds: none may wait for a connection for long
        calls = [f"/v1/customers/{own.customer_id}/recommendation", "/v1/decisions"] * 8
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            started = time.monotonic()
            answers = list(pool.map(lambda path: postgres_client.get(path, headers=viewer), calls))
            took = time.monotonic() - started
        assert [answer.status_code for answer in answers] == [503] * len(calls)
        assert took < 2 * BOUND_S
        ready, took = _timed(lambda: postgres_client.get("/health/ready"))
        assert ready.status_code == 503
        assert took < BOUND_S
        holder.rollback()
    assert postgres_client.get("/health/ready").status_code == 200
    listed = postgres_client.get("/v1/decisions", headers=viewer)
    assert listed.status_code == 200 and listed.json()["decisions"] == []
