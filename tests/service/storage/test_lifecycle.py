"""Opening, closing and reopening a store; URLs; what a failing database looks like."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from service.storage import Store, StoreError
from tests.service.storage.factories import recommendation_row, report
from tests.service.storage.postgres import PostgresServer


def test_data_survives_close_and_reopen(db_url: str) -> None:
    with Store(db_url) as store:
        store.migrate()
        store.save_recommendations([recommendation_row("C001")], run_id="r1")
        stored = store.record_decision(report("C001"))

    with Store(db_url) as reopened:
        reopened.migrate()
        assert reopened.list_decisions() == [stored]
        assert reopened.customer_scope("C001") == ("alice", "north")


def test_a_closed_store_refuses_work(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    store.migrate()
    store.close()
    with pytest.raises(StoreError, match="closed") as error:
        store.list_decisions()
    assert error.value.field is None


def test_in_memory_sqlite_is_shared_by_threads() -> None:
    with Store("sqlite://") as store:
        store.migrate()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda i: store.record_decision(report(f"C{i}")), range(40)))
        assert len(store.list_decisions(limit=100)) == 40


@pytest.mark.parametrize("url", ["not a url", "mysql://u@localhost/db"])
def test_bad_or_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError) as error:
        Store(url)
    assert error.value.field == "url"


def test_a_database_failure_is_a_store_error_without_a_field(tmp_path: Path) -> None:
    missing_folder = tmp_path / "no" / "such" / "folder" / "keepwise.db"
    store = Store(f"sqlite:///{missing_folder}")
    with pytest.raises(StoreError, match="could not migrate") as error:
        store.migrate()
    assert error.value.field is None
    store.close()


def test_an_unmigrated_database_fails_clearly(sqlite_url: str) -> None:
    with Store(sqlite_url) as store, pytest.raises(StoreError, match="no such table") as error:
        store.record_decision(report())
    assert error.value.field is None


def _lose_connection(statement: str) -> OperationalError:
    return OperationalError(
        statement, None, Exception("server closed the connection"), connection_invalidated=True
    )


def test_a_decision_whose_connection_drops_before_commit_is_retried(sqlite_store: Store) -> None:
    dropped: list[str] = []

    @event.listens_for(sqlite_store._engine, "before_cursor_execute")
    def _drop_first_insert(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("INSERT INTO decisions") and not dropped:
            dropped.append(statement)
            raise _lose_connection(statement)

    stored = sqlite_store.record_decision(report())

    assert len(dropped) == 1
    assert sqlite_store.list_decisions() == [stored]


def test_a_decision_whose_commit_was_not_acknowledged_is_stored_once(sqlite_store: Store) -> None:
    lost: list[str] = []

    @event.listens_for(sqlite_store._engine, "commit")
    def _commit_then_lose_the_answer(conn) -> None:
        if not lost:
            conn.connection.dbapi_connection.commit()  # the commit reaches the database ...
            lost.append("commit")
            raise _lose_connection("COMMIT")  # ... but the caller hears it failed

    stored = sqlite_store.record_decision(report())

    assert lost == ["commit"]
    assert sqlite_store.list_decisions() == [stored]


def test_a_decision_that_keeps_failing_raises_and_stores_nothing(sqlite_store: Store) -> None:
    @event.listens_for(sqlite_store._engine, "before_cursor_execute")
    def _always_drop(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("INSERT INTO decisions"):
            raise _lose_connection(statement)

    with pytest.raises(StoreError, match="could not record a decision") as error:
        sqlite_store.record_decision(report())
    assert error.value.field is None
    event.remove(sqlite_store._engine, "before_cursor_execute", _always_drop)
    assert sqlite_store.list_decisions() == []


def test_postgresql_connections_killed_by_the_server_are_replaced(
    postgresql_url: str, postgres_server: PostgresServer
) -> None:
    with Store(postgresql_url) as store:
        store.migrate()
        first = store.record_decision(report("C001"))
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        second = store.record_decision(report("C002"))
        assert store.list_decisions() == [second, first]
