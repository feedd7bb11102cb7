"""Alembic migrations for the keepwise store (run them with ``Store.migrate``)."""
