"""Alembic environment for the keepwise store.

:meth:`service.storage.Store.migrate` runs alembic programmatically and hands over its own
connection (already inside a write transaction) as ``config.attributes["connection"]``.

To write a new revision, run the alembic command line from the repository root with a scratch
ini file holding ``[alembic]``, ``script_location = service/storage/migrations``,
``prepend_sys_path = .`` and ``path_separator = os``; pass the database as ``-x url=...``::

    alembic -c scratch.ini -x url=sqlite:///dev.db upgrade head
    alembic -c scratch.ini -x url=sqlite:///dev.db revision --autogenerate -m "what" --rev-id 0003

then ``ruff check --fix`` and ``ruff format`` the new file. Logging is left to the caller.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from service.storage.engine import create_store_engine, parse_url
from service.storage.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: run through Store.migrate, or pass -x url=<database url>")
    engine = create_store_engine(parse_url(url), busy_timeout_s=30.0)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; migrate a live database")
_run_online()
