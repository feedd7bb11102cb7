"""Read a CRM export folder customer range by customer range, so memory stays flat.

The batch command cannot hold a large export in memory (a million customers come with over a
hundred million events). It splits the customers into ranges of their id, sorted as text, and
reads, for one range at a time, the customers in it and every event row that names one of them.
Each range is then validated, featurised and scored on its own; because all rows of a customer
land in the same range, every per-customer result is what a single pass would give.

How a table is read for one range:

- **Parquet**: only the row groups whose ``customer_id`` statistics can hold an id of the range
  are read, then the rows are filtered exactly. An export sorted (or clustered) by customer, as
  CRM dumps and the synthetic world are, is thereby read about once in all; an unsorted one is
  read once per range (the log says so, with the remedy).
- **CSV**: the file is scanned once per range (every column as text, as the loader reads it).

Rows are split on the customer id *as the loader will read it* (trimmed, blank as missing; see
:func:`features.loader.read_as`); rows with no customer id go to the first range, where
validation rejects them. Every row keeps its line (CSV) or row (Parquet) number in its file, so
problems and examples still point into the file.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from features.contract import TABLES
from features.loader import Problem, TablePart, read_as

logger = logging.getLogger(__name__)

CUSTOMER_ID = "customer_id"
_NUMBER = "__keepwise_source_number__"
# Target number of rows (all tables) held at once; a range never splits a customer.
DEFAULT_ROWS_PER_PART = 6_000_000
# The columns whose newest value dates an export (see ExportFolder.export_date).
EVENT_DATES: dict[str, tuple[str, ...]] = {
    "customers": ("signup_date",),
    "orders": ("order_date",),
    "payments": ("invoice_date", "paid_date"),
    "complaints": ("opened_at", "resolved_at"),
    "offers": ("offered_at", "responded_at"),
}
# CSV row count estimate when planning (bytes per row of a typical CRM export).
_CSV_BYTES_PER_ROW = 90


class ExportError(Exception):
    """The export cannot be split: a table is missing or unreadable (``problems`` says which)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class CustomerRange:
    """Customer ids ``low <= id < high`` (``None``: unbounded; the first range also takes rows
    without a customer id)."""

    low: str | None
    high: str | None

    def mask(self, key: pl.Expr) -> pl.Expr:
        """The rows of this range, as plain comparisons (a filter drops nulls by itself): the
        Parquet reader answers them from row-group statistics, which any wrapping (a literal
        ``True``, ``fill_null``) would prevent, reading every group instead."""
        bounds = []
        if self.low is not None:
            bounds.append(key >= self.low)
        if self.high is not None:
            bounds.append(key < self.high)
        if self.low is not None:
            return functools.reduce(operator.and_, bounds)
        return key.is_null() | bounds[0] if bounds else pl.lit(True)


@dataclass(frozen=True)
class _Source:
    table: str
    path: Path
    kind: str  # "parquet" or "csv"
    schema: pl.Schema
    rows: int  # exact for Parquet, estimated for CSV

    @property
    def unit(self) -> str:
        return "row" if self.kind == "parquet" else "line"


@dataclass(frozen=True)
class ExportFolder:
    """A CRM export folder, opened for reading in customer ranges.

    Attributes:
        folder: Where the ``<table>.parquet`` / ``<table>.csv`` files are.
        sources: Table name -> the file read for it.
        customer_ids: Every distinct customer id of the customers table (as read), sorted.
    """

    folder: Path
    sources: dict[str, _Source]
    customer_ids: pl.Series

    @classmethod
    def open(cls, folder: Path | str) -> ExportFolder:
        """Find the five tables, read their schemas and the customer ids.

        Raises:
            ExportError: A table file is missing, empty, unreadable or lacks ``customer_id``.
        """
        folder = Path(folder)
        sources: dict[str, _Source] = {}
        problems: list[Problem] = []
        for name in TABLES:
            found = _source(folder, name)
            if isinstance(found, Problem):
                problems.append(found)
            else:
                sources[name] = found
        if problems:
            raise ExportError(problems)
        ids = _read_column(sources["customers"], CUSTOMER_ID)
        return cls(folder, sources, ids.drop_nulls().unique().sort())

    @property
    def total_rows(self) -> int:
        return sum(source.rows for source in self.sources.values())

    def plan(
        self, rows_per_part: int = DEFAULT_ROWS_PER_PART, customers_per_part: int | None = None
    ) -> list[CustomerRange]:
        """Split the customers into consecutive id ranges of about equal size.

        Args:
            rows_per_part: Aim for at most this many rows (all tables) per range, judging by the
                average rows per customer.
            customers_per_part: Customers per range instead (overrides ``rows_per_part``).
        """
        n = self.customer_ids.len()
        if customers_per_part is None:
            per_customer = self.total_rows / max(n, 1)
            customers_per_part = max(1, int(rows_per_part / max(per_customer, 1.0)))
        parts = max(1, math.ceil(n / customers_per_part))
        if parts == 1:
            return [CustomerRange(None, None)]
        step = n / parts
        bounds = [str(self.customer_ids[int(round(i * step))]) for i in range(1, parts)]
        edges: list[str | None] = [None, *bounds, None]
        return [CustomerRange(edges[i], edges[i + 1]) for i in range(parts)]

    def export_date(self) -> date | None:
        """The day after the newest event in the export (None when it has no dated event).

        Events are sign-ups, orders, invoices and payments, complaints opened and resolved,
        offers made and answered; due dates and contract end dates may lie in the future and
        do not count. Values are read as the loader reads them (unreadable ones are ignored).
        """
        newest: list[date] = []
        for table, columns in EVENT_DATES.items():
            source = self.sources[table]
            scan = _scan(source)
            present = [c for c in columns if c in source.schema]
            if not present:
                continue
            row = scan.select(
                read_as(c, source.schema[c], pl.Datetime("us")).max() for c in present
            ).collect()
            newest.extend(v.date() for v in row.row(0) if v is not None)
        return max(newest) + timedelta(days=1) if newest else None

    def read(self, part: CustomerRange) -> dict[str, TablePart | Problem]:
        """The rows of every table that belong to ``part``, numbered as in their files."""
        return {name: _read_part(source, part) for name, source in self.sources.items()}

    def unclustered_tables(self, ranges: Sequence[CustomerRange]) -> list[str]:
        """Parquet tables that every range must read whole (not sorted by customer)."""
        if len(ranges) < 2:
            return []
        slow = []
        for name, source in self.sources.items():
            if source.kind != "parquet":
                continue
            groups = _row_groups(source.path)
            wanted = [len(_groups_for(groups, r)) for r in ranges]
            if sum(wanted) > 2 * len(groups) + len(ranges):
                slow.append(name)
        return slow


def _source(folder: Path, name: str) -> _Source | Problem:
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    try:
        if parquet.is_file():
            metadata = pq.read_metadata(parquet)
            schema = pl.read_parquet_schema(parquet)
            found = _Source(name, parquet, "parquet", pl.Schema(schema), metadata.num_rows)
        elif csv.is_file():
            if csv.stat().st_size == 0:
                return _fatal(name, f"{csv.name} is empty")
            schema = pl.scan_csv(csv, infer_schema=False).collect_schema()
            rows = max(1, csv.stat().st_size // _CSV_BYTES_PER_ROW)
            found = _Source(name, csv, "csv", schema, rows)
        else:
            return _fatal(name, f"no {parquet.name} or {csv.name} in {folder}")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        return _fatal(name, f"cannot be read: {exc}")
    if CUSTOMER_ID not in found.schema:
        return _fatal(
            name,
            f"missing required column: {CUSTOMER_ID}",
            f"columns found: {', '.join(found.schema.names()) or 'none'}",
        )
    return found


def _fatal(table: str, finding: str, *details: str) -> Problem:
    return Problem(table, None, finding, rows=0, examples=details, fatal=True)


def _key(source: _Source) -> pl.Expr:
    return read_as(CUSTOMER_ID, source.schema[CUSTOMER_ID], pl.String)


def _scan(source: _Source) -> pl.LazyFrame:
    if source.kind == "parquet":
        return pl.scan_parquet(source.path)
    return pl.scan_csv(source.path, infer_schema=False)


def _read_column(source: _Source, column: str) -> pl.Series:
    return _scan(source).select(_key(source).alias(column)).collect().get_column(column)


@dataclass(frozen=True)
class _RowGroup:
    index: int
    first_row: int  # 0-based position of its first row in the file
    rows: int
    low: str | None  # None: statistics missing or not usable for pruning
    high: str | None
    has_nulls: bool  # True also when unknown


def _row_groups(path: Path) -> list[_RowGroup]:
    metadata = pq.read_metadata(path)
    column = metadata.schema.names.index(CUSTOMER_ID)
    groups, first = [], 0
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        stats = group.column(column).statistics
        low = high = None
        has_nulls = stats is None or not stats.has_null_count or stats.null_count > 0
        if stats is not None and stats.has_min_max and isinstance(stats.min, str):
            low, high = stats.min, stats.max
            # a trimmed id may sort outside [min, max] when an end has blanks or control bytes
            if not (_clean_end(low) and _clean_end(high)):
                low = high = None
        groups.append(_RowGroup(i, first, group.num_rows, low, high, has_nulls))
        first += group.num_rows
    return groups


def _clean_end(text: str) -> bool:
    return bool(text) and text[0] > " " and text[-1] > " " and text == text.strip()


def _groups_for(groups: Sequence[_RowGroup], part: CustomerRange) -> list[_RowGroup]:
    def may_hold(group: _RowGroup) -> bool:
        if group.low is None or group.high is None:
            return True
        if part.low is None and group.has_nulls:  # rows without an id go to the first part
            return True
        return (part.low is None or group.high >= part.low) and (
            part.high is None or group.low < part.high
        )

    return [g for g in groups if g.rows and may_hold(g)]


def _read_part(source: _Source, part: CustomerRange) -> TablePart | Problem:
    scan = _scan(source).with_row_index(_NUMBER, offset=1 if source.kind == "parquet" else 2)
    if _raw_ids_sort_as_read(source, part):
        # the raw ids order as the loader will read them: a plain range filter, which the
        # Parquet reader answers from row-group statistics without reading the other groups
        wanted = part.mask(pl.col(CUSTOMER_ID))
    else:
        wanted = part.mask(_key(source))
    try:
        frame = scan.filter(wanted).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        return _fatal(source.table, f"{source.path.name} cannot be read: {exc}")
    numbers = frame.drop_in_place(_NUMBER).cast(pl.Int64)  # in place: drop() copies the rows
    return TablePart(frame, unit=source.unit, numbers=numbers)


def _raw_ids_sort_as_read(source: _Source, part: CustomerRange) -> bool:
    """Whether comparing raw ids with the range gives what comparing them as read would.

    True for a Parquet text column whose every row group starts and ends with an id free of
    blanks and control characters (a blank-padded id would be a group's minimum), when the
    range bounds contain no control character either.
    """
    if source.kind != "parquet" or source.schema[CUSTOMER_ID] != pl.String:
        return False
    if any(bound is not None and not _clean(bound) for bound in (part.low, part.high)):
        return False
    return all(g.low is not None for g in _row_groups(source.path) if g.rows)


def _clean(text: str) -> bool:
    return all(ch >= " " for ch in text)
