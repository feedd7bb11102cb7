"""A real throwaway PostgreSQL server per session, for the store and the API tests.

The server (see :mod:`tests.service.storage.postgres`) is started once per session; each test
gets its own schema in its one database, as the connection's search path — CREATE DATABASE
copies a template and can take most of a second on a busy machine, CREATE SCHEMA takes
milliseconds and isolates just as well. PostgreSQL tests skip, saying why, only when the
machine has no server binaries (or, under root, no ``postgres`` user); a server that is present
but fails to start fails them with its log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.service.storage.postgres import (
    PostgresFailed,
    PostgresServer,
    PostgresUnavailable,
    throwaway_postgres,
)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session."""
    try:
        with throwaway_postgres(tmp_path_factory.mktemp("pg")) as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.skip(f"{exc}; PostgreSQL tests skipped")
    except PostgresFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture
def postgresql_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty schema on the session's server (dropped afterwards)."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield postgres_server.url(schema)
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
