"""Write a batch run's recommendations: hundreds of thousands of rows in one transaction.

:meth:`service.storage.Store.save_recommendation_batches` and
:meth:`~service.storage.Store.save_recommendation_frames` check their rows (see
:func:`checked_frame`) and hand them here as polars frames. Per frame:

1. the keys (ids, date, owner, action) go into a temporary staging table;
2. the rows are upserted into ``recommendations`` with the driver's own ``executemany`` (one
   prepared statement, no per-row SQLAlchemy work). An id already saved for *another*
   customer is left as it is (the upsert's ``WHERE``), so that :meth:`BulkWriter.finish` can
   still name its owner and refuse the whole run.

At the end, each customer's pointer in ``latest_recommendations`` moves in one set-based
statement; its portfolio copies are read from the stored payloads with the very expressions
revision 0004 used (:func:`service.storage.store.portfolio_values`), so there is one definition of
which payload field feeds which column.

Why not ``INSERT ... SELECT`` from a staging table holding the payloads (the earlier way): every
payload, ~2.4 kB of JSON, was then written twice (staging, then the table) and a million-row
night spent most of its publishing time doing so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Column, Connection, Date, MetaData, String, Table, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite

from service.storage.records import StoreError
from service.storage.schema import (
    ACTION_LENGTH,
    ID_LENGTH,
    latest_recommendations,
    recommendations,
)

RECOMMENDATION_FIELDS = (
    "recommendation_id",
    "customer_id",
    "account_manager",
    "region",
    "as_of",
    "action",
    "model_version",
    "policy_version",
    "payload",
)
# text fields: (required, longest allowed)
TEXT_FIELDS: dict[str, tuple[bool, int]] = {
    "recommendation_id": (True, ID_LENGTH),
    "customer_id": (True, ID_LENGTH),
    "account_manager": (False, ID_LENGTH),
    "region": (False, ID_LENGTH),
    "action": (True, ACTION_LENGTH),
    "model_version": (True, ID_LENGTH),
    "policy_version": (True, ID_LENGTH),
}
FRAME_SCHEMA = pl.Schema(
    {name: pl.Date if name == "as_of" else pl.String for name in RECOMMENDATION_FIELDS}
)
_KEYS = ("recommendation_id", "customer_id", "account_manager", "region", "as_of", "action")
# Python's str.strip() also strips the separators \x1c-\x1f, which are not Unicode whitespace
_NOT_BLANK = r"[^\s\x1c-\x1f]"

RowChecker = Callable[[Mapping[str, Any], int], dict[str, Any]]


def checked_frame(frame: pl.DataFrame, offset: int, check_row: RowChecker) -> pl.DataFrame:
    """``frame`` if every row obviously meets the row rules, else the rows as ``check_row``
    (the per-row rules of the store) makes them, which raises the precise error on the first
    bad row.

    Args:
        frame: rows with exactly :data:`RECOMMENDATION_FIELDS` as columns, ``payload`` JSON
            text.
        offset: number of the frame's first row in the whole run (for messages).
        check_row: validates one row (a mapping, its number) and returns the values to store,
            with the payload as text under ``payload``.

    Returns:
        A frame of :data:`FRAME_SCHEMA`.

    Raises:
        StoreError: a column is missing or unknown, or a row breaks a rule.
    """
    missing = [name for name in RECOMMENDATION_FIELDS if name not in frame.columns]
    unknown = sorted(name for name in frame.columns if name not in RECOMMENDATION_FIELDS)
    if missing or unknown:
        field = (missing or unknown)[0]
        raise StoreError(
            f"recommendation frame: {'missing' if missing else 'unknown'} column {field!r} "
            f"(expected exactly: {', '.join(RECOMMENDATION_FIELDS)})",
            field=field,
        )
    if frame.is_empty():
        return pl.DataFrame(schema=FRAME_SCHEMA)
    if _plainly_valid(frame):
        return frame.select(RECOMMENDATION_FIELDS)
    return frame_of_rows(frame.to_dicts(), offset, check_row)


def frame_of_rows(
    rows: Sequence[Mapping[str, Any]], offset: int, check_row: RowChecker
) -> pl.DataFrame:
    """Rows checked one by one (``check_row``), as a frame of :data:`FRAME_SCHEMA`."""
    values = [check_row(row, offset + index) for index, row in enumerate(rows)]
    return pl.DataFrame(
        [[v[name] for v in values] for name in RECOMMENDATION_FIELDS],
        schema=FRAME_SCHEMA,
        orient="col",
    )


def _plainly_valid(frame: pl.DataFrame) -> bool:
    """True when every row passes the row rules without needing any conversion (so checking
    row by row would return the rows unchanged). False says "check row by row", not "bad"."""
    schema = frame.schema
    if schema["as_of"] != pl.Date or schema["payload"] != pl.String:
        return False
    if any(schema[name] not in (pl.String, pl.Null) for name in TEXT_FIELDS):
        return False
    good = [pl.col("as_of").is_not_null()]
    for name, (required, longest) in TEXT_FIELDS.items():
        if schema[name] == pl.Null:
            if required:
                return False
            continue
        value = pl.col(name)
        ok = (
            value.str.contains(_NOT_BLANK)
            & ~value.str.contains("\x00", literal=True)
            & (value.str.len_chars() <= longest)
        )
        good.append(ok if required else (value.is_null() | ok))
    payload = pl.col("payload")
    good.append(payload.str.starts_with("{") & payload.str.ends_with("}"))
    return bool(frame.select(pl.all_horizontal(good).fill_null(False).all()).item())


def refuse_repeats(keys: Sequence[str], field: str, seen: dict[str, int], offset: int) -> None:
    """Refuse a ``field`` value already in ``seen`` (value -> row number); add the new ones."""
    for index, key in enumerate(keys, start=offset):
        first = seen.setdefault(key, index)
        if first != index:
            raise StoreError(
                f"recommendation rows {first} and {index} repeat {field} {key!r} "
                "(one recommendation per customer per run)",
                field=field,
            )


class BulkWriter:
    """Writes checked frames of one run inside the caller's transaction (module docstring).

    Args:
        conn: a connection in a write transaction (SQLite or PostgreSQL).
        run_id: the run the rows belong to.
        created_at: when the run is saved (UTC, aware).
        portfolio_copies: ``(conn, payload expression, action expression) -> {column: SQL
            expression}``, the portfolio columns of ``latest_recommendations``.
    """

    def __init__(
        self,
        conn: Connection,
        run_id: str,
        created_at: datetime,
        portfolio_copies: Callable[[Connection, Any, Any], dict[str, Any]],
    ) -> None:
        self._conn = conn
        self._postgresql = conn.dialect.name == "postgresql"
        self._copies = portfolio_copies
        self._staging = _staging_table(conn)
        stamp = recommendations.c.created_at.type.bind_processor(conn.dialect)
        created: Any = stamp(created_at) if stamp else created_at
        if isinstance(created, datetime) and not self._postgresql:
            created = created.isoformat(" ")  # what sqlite3 would make of it, once, not per row
        self._run = (run_id, created)
        mark = "%s" if self._postgresql else "?"
        payload = f"CAST({mark} AS JSONB)" if self._postgresql else mark
        columns = [*RECOMMENDATION_FIELDS, "run_id", "created_at"]
        marks = [payload if name == "payload" else mark for name in columns]
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns[1:])
        self._upsert = (
            f"INSERT INTO recommendations ({', '.join(columns)}) VALUES ({', '.join(marks)}) "
            f"ON CONFLICT (recommendation_id) DO UPDATE SET {updates} "
            "WHERE recommendations.customer_id = excluded.customer_id"
        )
        self._stage = (
            f"INSERT INTO {self._staging.name} ({', '.join(_KEYS)}) "
            f"VALUES ({', '.join([mark] * len(_KEYS))})"
        )
        self.saved = 0

    def write(self, frame: pl.DataFrame) -> None:
        """Stage the keys of ``frame`` (a :func:`checked_frame`) and upsert its rows."""
        if frame.is_empty():
            return
        if not self._postgresql:  # sqlite3 stores a date as its ISO text
            frame = frame.with_columns(pl.col("as_of").dt.strftime("%Y-%m-%d"))
        driver = self._conn.exec_driver_sql
        driver(self._stage, frame.select(_KEYS).rows())
        run = pl.lit(self._run[0]).alias("run_id")
        created = pl.lit(self._run[1]).alias("created_at")
        driver(self._upsert, frame.select(*RECOMMENDATION_FIELDS, run, created).rows())
        self.saved += frame.height

    def finish(self) -> None:
        """Refuse ids saved earlier for another customer; move each customer's pointer."""
        if self.saved:
            _refuse_reassigned_ids(self._conn, self._staging)
            self._move_pointers()
        self._staging.drop(self._conn)

    def _move_pointers(self) -> None:
        staging = self._staging
        upsert_into = postgresql.insert if self._postgresql else sqlite.insert
        copies = self._copies(self._conn, recommendations.c.payload, staging.c.action)
        carried = ["recommendation_id", "as_of", "account_manager", "region", "action"]
        pointer = upsert_into(latest_recommendations).from_select(
            ["customer_id", *carried, *copies],
            select(staging.c.customer_id, *[staging.c[name] for name in carried], *copies.values())
            .join(
                recommendations,
                recommendations.c.recommendation_id == staging.c.recommendation_id,
            )
            .where(true()),  # SQLite needs a WHERE to read ON CONFLICT after INSERT ... SELECT
        )
        self._conn.execute(
            pointer.on_conflict_do_update(
                index_elements=[latest_recommendations.c.customer_id],
                set_={name: pointer.excluded[name] for name in [*carried, *copies]},
                where=or_(
                    pointer.excluded.as_of >= latest_recommendations.c.as_of,
                    pointer.excluded.recommendation_id
                    == latest_recommendations.c.recommendation_id,
                ),
            )
        )


def _staging_table(conn: Connection) -> Table:
    """A temporary table of the run's keys (not its payloads): the reassigned-id check and the
    pointer move are set-based statements over it."""
    staging = Table(
        "keepwise_recommendations_staging",
        MetaData(),
        Column("recommendation_id", String(ID_LENGTH), primary_key=True),
        Column("customer_id", String(ID_LENGTH), nullable=False),
        Column("account_manager", String(ID_LENGTH)),
        Column("region", String(ID_LENGTH)),
        Column("as_of", Date, nullable=False),
        Column("action", String(ACTION_LENGTH), nullable=False),
        prefixes=["TEMPORARY"],
    )
    staging.drop(conn, checkfirst=True)
    staging.create(conn)
    return staging


def _refuse_reassigned_ids(conn: Connection, staging: Table) -> None:
    """A recommendation id, once saved, stays with its customer (the upsert left such rows
    untouched, so the stored owner is still there to name)."""
    found = conn.execute(
        select(
            staging.c.recommendation_id,
            recommendations.c.customer_id.label("owner"),
            staging.c.customer_id,
        )
        .join(
            recommendations,
            recommendations.c.recommendation_id == staging.c.recommendation_id,
        )
        .where(recommendations.c.customer_id != staging.c.customer_id)
        .limit(1)
    ).first()
    if found is not None:
        raise StoreError(
            f"recommendation_id {found.recommendation_id!r} already belongs to customer "
            f"{found.owner!r}, not {found.customer_id!r}",
            field="recommendation_id",
        )
