"""Store fixtures: a SQLite file per test, or a fresh schema on the session's PostgreSQL server
(``postgresql_url``, from ``tests/service/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.storage import Store

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file database in the test's temporary directory (not yet created)."""
    return f"sqlite:///{tmp_path / 'keepwise.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store on each backend in turn."""
    with Store(db_url) as opened:
        opened.migrate()
        yield opened


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """A migrated SQLite store, for checks that happen before the database is touched."""
    with Store(sqlite_url) as opened:
        opened.migrate()
        yield opened
