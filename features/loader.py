"""Load the five CRM tables, check them against the contract and split valid rows from rejects.

Reading a folder goes table by table: ``<table>.parquet`` if present, else ``<table>.csv``. CSV
files are read with every column as text and then cast to the contract dtype, so a wrong value
becomes a readable problem (table, column, count, examples with line number and row key) rather
than a polars exception. The cast frame is then validated with the pandera schemas of
:mod:`features.schemas` (``lazy=True``, so every failure is collected) and customer ids are
checked against the ``customers`` table.

Nothing is lost: rows that fail any check go to :attr:`LoadResult.rejects` (their original values
plus a ``reject_reason``), the other rows stay in :attr:`LoadResult.tables`, typed per contract.
Everything is vectorised (polars expressions, joins, group-bys); no Python loop touches rows
except to format the three examples a problem shows.

Conventions:
    * Values are trimmed; a blank value counts as missing.
    * Dates are ISO ``YYYY-MM-DD``; date-times ISO with a space or ``T`` and optional seconds
      (fractions allowed); a bare date is read as midnight. Time zones are not accepted in text.
      A date-time where a date is expected is accepted and read as its day.
    * Enumerated values (segment, contract type, channel, severity, stage, offer kind) and the
      complaint category are compared as identifiers: trimmed, lower case, spaces and hyphens
      as underscores (``"Web"`` is ``web``, ``"Near miss"`` is ``near_miss``). The category is
      an open set.
    * A folder with both ``<table>.csv`` and ``<table>.parquet`` is an error naming both; a
      CSV whose last line is cut in the middle of a row (fewer fields than the header, no line
      end) is an unusable table, as is a table whose every row was rejected
      (:func:`load_tables`).
    * Booleans accept true/false, 1/0 and yes/no in any case.
    * Of several rows sharing a key, the first is kept and the later ones are rejected.
    * Examples name CSV rows by ``line`` (the header is line 1; a quoted value spanning lines
      shifts the count) and Parquet or in-memory rows by ``row`` (1-based).
    * Optional columns that are absent stay absent; unknown extra columns are kept as they are.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandera.polars as pa
import polars as pl
from pandera.config import ValidationDepth, config_context

from features.contract import TABLES, Table
from features.schemas import DATE_ORDER, NORMALISED, ROW_RULES, SCHEMAS

logger = logging.getLogger(__name__)

REJECT_REASON = "reject_reason"

# The `check` of problems the loader finds itself (pandera supplies the others).
NOT_A_NUMBER = "not a number"
NOT_A_WHOLE_NUMBER = "not a whole number"
NOT_A_DATE = "not a date (YYYY-MM-DD)"
NOT_A_DATETIME = "not a date-time (YYYY-MM-DD HH:MM[:SS])"
NOT_A_BOOLEAN = "not a yes/no value (true/false, 1/0, yes/no)"
UNKNOWN_CUSTOMER = "unknown customer"
REJECTED_CUSTOMER = "customer rejected"
NOT_NULLABLE = "not_nullable"  # pandera's names for these two
UNIQUE = "field_uniqueness"

_CAST_CHECKS = (NOT_A_NUMBER, NOT_A_WHOLE_NUMBER, NOT_A_DATE, NOT_A_DATETIME, NOT_A_BOOLEAN)
_CUSTOMER_CHECKS = (UNKNOWN_CUSTOMER, REJECTED_CUSTOMER)

_ROW = "__keepwise_row__"  # position of a row in its input, carried through every check
_FAILURE_SCHEMA = {"row": pl.Int64, "column": pl.String, "check": pl.String, "value": pl.String}
_N_EXAMPLES = 3
_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")


@dataclass(frozen=True)
class Problem:
    """One finding about the input, worded for a CRM admin.

    Attributes:
        table: Contract table name (``"orders"``).
        column: The column at fault, or None for the whole table.
        check: What failed: a pandera check (``"greater_than_or_equal_to(0)"``), a cast
            (``"not a number"``), ``"unknown customer"``, or for fatal problems the finding
            itself (``"orders.csv is empty"``).
        rows: How many rows fail (0 for table-level findings).
        examples: Up to three examples, each naming the row key and line/row number.
        fatal: True when the table cannot be used at all (missing file or column, empty file,
            unreadable bytes); its rows are then neither loaded nor rejected.
    """

    table: str
    column: str | None
    check: str
    rows: int
    examples: tuple[str, ...] = ()
    fatal: bool = False

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        if self.fatal:
            details = "; ".join(self.examples)
            return f"{where}: {self.check}" + (f" — {details}" if details else "")
        n, listed = self.rows, ", ".join(self.examples)
        rows = _count(n, "row")
        if self.check in _CAST_CHECKS:
            return f"{where}: {_count(n, 'value')} {_verb(n, 'is', 'are')} {self.check}: {listed}"
        if self.check in _CUSTOMER_CHECKS:
            whose = (
                "unknown customers"
                if self.check == UNKNOWN_CUSTOMER
                else ("customers whose own row was rejected")
            )
            return f"{where}: {rows} {_verb(n, 'references', 'reference')} {whose}, e.g. {listed}"
        if self.check == NOT_NULLABLE:
            return f"{where}: {rows} {_verb(n, 'has', 'have')} no value — e.g. {listed}"
        if self.check == UNIQUE:
            repeat = _verb(n, "repeats", "repeat")
            return (
                f"{where}: {rows} {repeat} the {self.column} of an earlier row "
                f"(the first is kept) — e.g. {listed}"
            )
        return f"{where}: {rows} {_verb(n, 'fails', 'fail')} '{self.check}' — e.g. {listed}"


class ContractError(Exception):
    """The input breaks the data contract; ``str()`` lists every problem, one per line.

    Attributes:
        problems: Every problem found, in table order.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        lines = [f"{_count(len(self.problems), 'problem')} with the input data:"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


@dataclass
class LoadResult:
    """Outcome of loading and validating the CRM tables.

    Attributes:
        tables: Valid rows per table, typed per contract (tables with a fatal problem are absent).
        rejects: Invalid rows per table, original columns and values plus ``reject_reason``.
        problems: Every problem found; empty when the input meets the contract.
    """

    tables: dict[str, pl.LazyFrame] = field(default_factory=dict)
    rejects: dict[str, pl.DataFrame] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class TablePart:
    """Some rows of one table as read, before casting, and where each row sits in its source.

    The batch command validates a large export customer range by customer range; problems and
    examples still name each row by its line (CSV) or row (Parquet) in the whole file.

    Attributes:
        frame: The rows as read (text columns for CSV).
        unit: ``"line"`` for CSV, ``"row"`` otherwise.
        numbers: Line or row number of each row of ``frame`` in its source (``None``: numbered
            consecutively from ``first``).
        first: Number of the first row when ``numbers`` is ``None``.
    """

    frame: pl.DataFrame
    unit: str
    numbers: pl.Series | None = None
    first: int = 1

    def number(self, row: int) -> int:
        """The source line or row number of the ``row``-th row of ``frame`` (0-based)."""
        return self.first + row if self.numbers is None else int(self.numbers[row])


@dataclass
class _Checked:
    """One usable table after casting and row checks."""

    table: Table
    source: TablePart
    typed: pl.DataFrame  # contract dtypes, plus the _ROW column
    failures: pl.DataFrame  # _FAILURE_SCHEMA: one row per (row, column, check) that failed

    def rejected_rows(self) -> pl.Series:
        return self.failures.get_column("row").unique()


def validate_tables(frames: Mapping[str, pl.DataFrame]) -> LoadResult:
    """Validate in-memory tables against the contract.

    Columns whose dtype differs from the contract are cast first (text is parsed as in a CSV);
    values that cannot be cast are reported and their rows rejected.

    Args:
        frames: Table name -> frame, for the five tables of :data:`features.contract.TABLES`.
            A missing table is a fatal problem; unknown table names are ignored.

    Returns:
        Valid rows, rejected rows with reasons, and the problems found.
    """
    for name in frames.keys() - TABLES.keys():
        logger.warning("ignoring unknown table %r", name)
    inputs: dict[str, TablePart | Problem] = {
        name: TablePart(frames[name], unit="row", first=1)
        if name in frames
        else _fatal(name, "table is missing")
        for name in TABLES
    }
    return _validate(inputs)


def validate_table(name: str, part: TablePart) -> LoadResult:
    """Validate one table on its own (e.g. an imported complaints export), without the others.

    Every check of :func:`load_tables` that needs only this table runs; customer ids are not
    checked against a customers table (there is none).

    Args:
        name: Contract table name.
        part: Its rows, with how they are numbered in their source.

    Returns:
        Valid rows (``tables[name]``), rejected rows with reasons (``rejects[name]``) and the
        problems found.

    Raises:
        KeyError: ``name`` is not a contract table.
    """
    table = TABLES[name]
    outcome = _check_table(table, part)
    result = LoadResult()
    if not isinstance(outcome, _Checked):
        result.problems = list(outcome)
        return result
    rejected = outcome.rejected_rows()
    valid = outcome.typed
    if not rejected.is_empty():
        valid = valid.join(rejected.to_frame(_ROW), on=_ROW, how="anti")
    result.tables[name] = valid.lazy().drop(_ROW)
    result.rejects[name] = _rejects(outcome)
    result.problems = _summarise(outcome)
    return result


def validate_parts(parts: Mapping[str, TablePart | Problem]) -> LoadResult:
    """Validate some rows of each table (e.g. one customer range of a large export).

    Every check of :func:`load_tables` runs on the given rows only: keys are unique and
    customer ids known *within the parts*, so a caller splitting an export must keep each
    customer's rows, and its ``customers`` row, in the same part.

    Args:
        parts: Table name -> the rows read (or the fatal problem met reading them), for the
            five tables of :data:`features.contract.TABLES`.

    Returns:
        Valid rows, rejected rows with reasons, and the problems found, with examples naming
        each row's line or row number in its source.
    """
    missing = [name for name in TABLES if name not in parts]
    inputs = {**parts, **{name: _fatal(name, "table is missing") for name in missing}}
    return _validate(inputs)


def load_tables(data_dir: Path | str) -> LoadResult:
    """Read and validate the five CRM tables from a folder.

    Args:
        data_dir: Folder holding ``<table>.parquet`` or ``<table>.csv`` for each table (Parquet
            wins when both exist).

    Returns:
        Valid rows, rejected rows with reasons, and the problems found.
    """
    folder = Path(data_dir)
    result = _validate({name: _read_table(folder, name) for name in TABLES})
    for name, rejected in result.rejects.items():
        if rejected.height and result.tables[name].select(pl.len()).collect().item() == 0:
            problem = _fatal(
                name,
                f"every one of its {rejected.height:,} rows was rejected (see the problems "
                "above); nothing in it can be used",
            )
            logger.error("%s", problem)
            result.problems.append(problem)
    return result


def load_validated_tables(data_dir: Path | str) -> dict[str, pl.LazyFrame]:
    """Read the five CRM tables and insist that every row meets the contract.

    Args:
        data_dir: Folder holding ``<table>.parquet`` or ``<table>.csv`` for each table.

    Returns:
        Table name -> typed LazyFrame.

    Raises:
        ContractError: If anything at all was found; it lists every problem.
    """
    result = load_tables(data_dir)
    if result.problems:
        raise ContractError(result.problems)
    return result.tables


# --- reading ------------------------------------------------------------------------------------


def ambiguous_table_files(folder: Path, name: str) -> str | None:
    """The finding when ``folder`` holds both ``<name>.csv`` and ``<name>.parquet``, else None.

    keepwise does not guess which of two exports of one table is the right one.
    """
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if parquet.is_file() and csv.is_file():
        return (
            f"both {csv.name} and {parquet.name} are in {folder}; keep the one to use and "
            "move the other away"
        )
    return None


def truncated_csv_row(path: Path, columns: int) -> str | None:
    """The finding when a CSV ends in the middle of a row, else None.

    A file cut off while it was copied or exported ends without a line end, and its last line
    usually has fewer fields than the header (or an unclosed quote). A last line without a line
    end but with every field is a complete row.

    Args:
        path: The CSV file.
        columns: Fields per row (the header's).
    """
    import csv as csv_module

    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - (1 << 16)))
        tail = handle.read()
    if not tail or tail.endswith(b"\n") or tail.endswith(b"\r"):
        return None
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    fields = next(csv_module.reader([last]), [])
    unclosed = last.count('"') % 2 == 1
    if len(fields) >= columns and not unclosed:
        return None
    with path.open("rb") as handle:
        line = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) + 1
    return (
        f"{path.name} ends in the middle of a row: line {line} has {len(fields)} of {columns} "
        f"fields{' and an unclosed quote' if unclosed else ''} and no line end; the file looks "
        "cut off - export it again"
    )


def _read_table(folder: Path, name: str) -> TablePart | Problem:
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if (finding := ambiguous_table_files(folder, name)) is not None:
        return _fatal(name, finding)
    if parquet.is_file():
        return _read_parquet(parquet, name)
    if csv.is_file():
        return _read_csv(csv, name)
    return _fatal(name, f"no {parquet.name} or {csv.name} in {folder}")


def _read_parquet(path: Path, name: str) -> TablePart | Problem:
    try:
        frame = pl.read_parquet(path)
    except pl.exceptions.PolarsError as exc:
        return _fatal(name, f"{path.name} cannot be read as Parquet: {exc}")
    return TablePart(frame, unit="row", first=1)


def _read_csv(path: Path, name: str) -> TablePart | Problem:
    if path.stat().st_size == 0:
        return _fatal(name, f"{path.name} is empty")
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.NoDataError:
        return _fatal(name, f"{path.name} is empty")
    except pl.exceptions.PolarsError as exc:
        bad = _first_invalid_utf8(path)
        if bad is not None:
            offset, line, byte = bad
            return _fatal(
                name,
                f"{path.name} is not UTF-8 text",
                f"first bad byte 0x{byte:02x} on line {line} (byte offset {offset}); "
                "save the export as UTF-8",
            )
        return _fatal(name, f"{path.name} cannot be read as CSV: {exc}")
    if not frame.columns or frame.columns == [""]:
        return _fatal(name, f"{path.name} is empty")
    if (finding := truncated_csv_row(path, frame.width)) is not None:
        return _fatal(name, finding)
    return TablePart(frame, unit="line", first=2)


def _first_invalid_utf8(path: Path, chunk_size: int = 1 << 22) -> tuple[int, int, int] | None:
    """Find the first byte that is not UTF-8: (byte offset, line number, byte value)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # exc.object is the chunk behind the bytes of a sequence held back from before.
                in_chunk = exc.start - (len(exc.object) - len(chunk))
                line += chunk.count(b"\n", 0, max(in_chunk, 0))
                return offset + in_chunk, line, exc.object[exc.start]
            offset += len(chunk)
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:  # the file ends inside a multi-byte sequence
            return offset - len(exc.object) + exc.start, line, exc.object[exc.start]
    return None


def _fatal(table: str, finding: str, *details: str, column: str | None = None) -> Problem:
    return Problem(table, column, finding, rows=0, examples=details, fatal=True)


# --- checking -----------------------------------------------------------------------------------


def _validate(inputs: Mapping[str, TablePart | Problem]) -> LoadResult:
    checked: dict[str, _Checked] = {}
    problems: dict[str, list[Problem]] = {}
    for name, table in TABLES.items():
        item = inputs[name]
        outcome = [item] if isinstance(item, Problem) else _check_table(table, item)
        if isinstance(outcome, _Checked):
            checked[name] = outcome
        else:
            problems[name] = outcome
            for problem in outcome:
                logger.error("%s", problem)

    _check_customer_ids(checked)

    result = LoadResult()
    for name, checked_table in checked.items():
        problems[name] = _summarise(checked_table)
        rejected = checked_table.rejected_rows()
        valid = checked_table.typed
        if not rejected.is_empty():
            valid = valid.join(rejected.to_frame(_ROW), on=_ROW, how="anti")
        result.tables[name] = valid.lazy().drop(_ROW)  # lazy: dropping eagerly copies the rows
        result.rejects[name] = _rejects(checked_table)
        logger.info(
            "%s: %d rows valid, %d rejected, %d problems",
            name,
            checked_table.typed.height - rejected.len(),
            rejected.len(),
            len(problems[name]),
        )
    result.problems = [problem for name in TABLES for problem in problems.get(name, [])]
    return result


def _check_table(table: Table, source: TablePart) -> _Checked | list[Problem]:
    frame = source.frame
    missing = [name for name in table.required_columns if name not in frame.columns]
    if missing:
        return [
            _fatal(
                table.name,
                f"missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                f"columns found: {', '.join(frame.columns) or 'none'}",
            )
        ]
    incompatible = [
        _fatal(
            table.name,
            f"column has type {frame.schema[c.name]}, which cannot hold {c.dtype}",
            column=c.name,
        )
        for c in table.columns
        if c.name in frame.columns and not _castable(frame.schema[c.name], c.dtype)
    ]
    if incompatible:
        return incompatible

    if frame.is_empty():
        logger.warning("%s has no rows", table.name)
    typed, cast_failures = _cast(table, frame)
    schema_failures, dtype_problems = _schema_failures(table, typed)
    if dtype_problems:
        return dtype_problems
    # A value that failed to cast is null now; don't report it a second time as missing.
    schema_failures = schema_failures.join(cast_failures, on=["row", "column"], how="anti")
    failures = pl.concat([cast_failures, schema_failures], how="vertical")
    return _Checked(table, source, typed, failures)


def _castable(source: pl.DataType, target: pl.DataType) -> bool:
    if source == target or source in (pl.String, pl.Null) or target == pl.String:
        return not source.is_nested()
    if target in (pl.Float64, pl.Int64):
        return source.is_numeric()
    if target in (pl.Date, pl.Datetime):
        return source.is_temporal() and source != pl.Time and source != pl.Duration
    if target == pl.Boolean:
        return source.is_integer()
    return False


def _cast(table: Table, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast contract columns to their dtypes; also return the values that would not cast."""
    contract = {c.name: c.dtype for c in table.columns if c.name in frame.columns}
    enumerated = {
        name
        for name, dtype in contract.items()
        if (table.name, name) in NORMALISED and dtype == frame.schema[name] == pl.String
    }
    typed = frame.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias(_ROW),
        *(
            (
                _normalised(_cast_expr(name, frame.schema[name], dtype))
                if (table.name, name) in NORMALISED
                else _cast_expr(name, frame.schema[name], dtype)
            ).alias(name)
            if dtype is not None and name not in enumerated
            else pl.col(name)
            for name, dtype in ((n, contract.get(n)) for n in frame.columns)
        ),
    ).with_columns(_normalised_by_value(frame.get_column(name)) for name in enumerated)

    numbered = frame.with_row_index(_ROW)
    failures = []
    for name, dtype in contract.items():
        if frame.schema[name] == dtype or dtype == pl.String:
            continue
        given = pl.col(name)
        if frame.schema[name] == pl.String:
            given = given.str.strip_chars().replace("", None)
        failed = given.is_not_null() & typed.get_column(name).is_null()
        bad = numbered.filter(failed).select(
            row=pl.col(_ROW),
            column=pl.lit(name),
            check=pl.lit(_cast_check(dtype)),
            value=pl.format("'{}'", pl.col(name).cast(pl.String)),
        )
        failures.append(bad)
    return typed, _failures(failures)


def read_as(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Column ``name`` of dtype ``source`` as the loader reads it into ``target``.

    Text is trimmed and a blank is null; a value that cannot be read is null. A caller that
    must look at raw rows before validation (split an export by ``customer_id``, find its
    newest date) thereby sees the values exactly as the loader will.
    """
    return _cast_expr(name, source, target)


def _cast_check(dtype: pl.DataType) -> str:
    if dtype == pl.Float64:
        return NOT_A_NUMBER
    if dtype == pl.Int64:
        return NOT_A_WHOLE_NUMBER
    if dtype == pl.Date:
        return NOT_A_DATE
    if dtype == pl.Datetime:
        return NOT_A_DATETIME
    return NOT_A_BOOLEAN


def _cast_expr(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Turn column ``name`` of dtype ``source`` into ``target``; invalid values become null."""
    column = pl.col(name)
    if source == pl.String:
        return _parse_text(column, target)
    if source == target:
        return column
    if source == pl.Null or target in (pl.String, pl.Float64, pl.Date):
        return column.cast(target, strict=False)
    if target == pl.Int64:
        if source.is_integer():
            return column.cast(pl.Int64, strict=False)
        number = column.cast(pl.Float64, strict=False)
        return _whole(number)
    if target == pl.Datetime:
        if isinstance(source, pl.Datetime) and source.time_zone is not None:
            column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return column.cast(target, strict=False)
    return pl.when(column == 1).then(True).when(column == 0).then(False)  # integer -> Boolean


def _parse_text(column: pl.Expr, target: pl.DataType) -> pl.Expr:
    text = column.str.strip_chars().replace("", None)
    if target == pl.String:
        return text
    if target == pl.Float64:
        number = text.cast(pl.Float64, strict=False)
        return pl.when(number.is_finite()).then(number)
    if target == pl.Int64:
        return pl.coalesce(
            text.cast(pl.Int64, strict=False), _whole(text.cast(pl.Float64, strict=False))
        )
    if target == pl.Date:
        return pl.coalesce(
            text.str.to_date("%Y-%m-%d", strict=False), _parse_datetime(text, "us").dt.date()
        )
    if isinstance(target, pl.Datetime):
        return _parse_datetime(text, target.time_unit or "us")
    word = text.str.to_lowercase()
    return pl.when(word.is_in(_TRUE)).then(True).when(word.is_in(_FALSE)).then(False)


def _parse_datetime(text: pl.Expr, time_unit: str) -> pl.Expr:
    spaced = text.str.replace("T", " ", literal=True)
    return pl.coalesce(
        spaced.str.to_datetime(fmt, strict=False, time_unit=time_unit)  # type: ignore[arg-type]
        for fmt in _DATETIME_FORMATS
    )


def _normalised(column: pl.Expr) -> pl.Expr:
    """An enumerated value as an identifier: lower case, spaces and hyphens as underscores."""
    return column.str.to_lowercase().str.replace_all(r"[\s\-]+", "_")


def _normalised_by_value(text: pl.Series) -> pl.Series:
    """Text read as an enumerated value (trimmed, blank as missing, :func:`_normalised`), worked
    out once per distinct value: an enumeration has a handful of them in millions of rows, and
    the string work per row was the costliest part of reading the complaints table."""
    distinct = text.drop_nulls().unique()
    read = distinct.to_frame().select(_normalised(_parse_text(pl.col(text.name), pl.String())))
    return text.replace_strict(distinct, read.to_series(), default=None, return_dtype=pl.String)


def _whole(number: pl.Expr) -> pl.Expr:
    is_whole = number.is_finite() & (number == number.round()) & (number.abs() < 2.0**63)
    return pl.when(is_whole).then(number.cast(pl.Int64, strict=False))


def _failures(parts: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [part.select(pl.col(c).cast(t) for c, t in _FAILURE_SCHEMA.items()) for part in parts]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=_FAILURE_SCHEMA)


def _schema_failures(table: Table, typed: pl.DataFrame) -> tuple[pl.DataFrame, list[Problem]]:
    """Run the table's pandera schema; return row failures and whole-column (dtype) problems.

    Uniqueness, declared by the schema, is checked here in polars instead: pandera's polars
    backend flags every copy of a duplicated key (it cannot keep the first) and its
    ``is_duplicated`` pass is the slowest part of validation on tens of millions of rows.
    """
    schema = SCHEMAS[table.name]
    unique = [name for name, column in schema.columns.items() if column.unique]
    schema = schema.update_columns({name: {"unique": False} for name in unique})
    duplicates = _failures([_later_duplicates(typed, name) for name in unique])

    depth = ValidationDepth.SCHEMA_AND_DATA
    with config_context(validation_enabled=True, validation_depth=depth):
        try:
            schema.validate(typed, lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
        else:
            return duplicates, []

    whole_column = cases.filter(pl.col("index").is_null())
    problems = [
        _fatal(table.name, f"column fails '{check}' (found {found})", column=column)
        for column, check, found in whole_column.select("column", "check", "failure_case").rows()
    ]
    rows = cases.filter(pl.col("index").is_not_null()).select(
        row=pl.col("index").cast(pl.Int64),
        column="column",
        check="check",
        value=pl.when(pl.col("check") != NOT_NULLABLE).then("failure_case"),
    )
    return _failures([rows, duplicates]), problems


def _later_duplicates(typed: pl.DataFrame, column: str) -> pl.DataFrame:
    """Rows repeating a non-null value of ``column`` seen in an earlier row."""
    if not _may_repeat(typed.get_column(column)):
        return _failures([])  # fast path: no duplicates (nulls are the nullability check's job)
    key = pl.col(column)
    return (
        typed.select(
            row=pl.col(_ROW),
            column=pl.lit(column),
            check=pl.lit(UNIQUE),
            value=key.cast(pl.String),
            later=key.is_not_null() & ~key.is_first_distinct(),
        )
        .filter("later")
        .drop("later")
    )


def _may_repeat(values: pl.Series) -> bool:
    """False when no non-null value occurs twice; True when one may (then check exactly).

    Keys usually come sorted (ids issued in order), and then a repeat sits next to its first
    occurrence: one pass compares neighbours. Otherwise distinct 64-bit hashes prove distinct
    values; equal hashes only say "look closer".
    """
    present = values.drop_nulls()
    if present.len() < 2:
        return False
    if present.is_sorted():
        return bool((present.slice(1) == present.slice(0, present.len() - 1)).any())
    return present.hash(seed=0).n_unique() < present.len()


def _check_customer_ids(checked: dict[str, _Checked]) -> None:
    """Add a failure for every customer_id that is not a valid row of ``customers``."""
    customers = checked.get("customers")
    if customers is None:
        logger.warning("customers is unusable: customer ids of other tables are not checked")
        return
    rejected = customers.rejected_rows().implode()
    ids = customers.typed.select("customer_id", valid=~pl.col(_ROW).is_in(rejected))
    known = ids.get_column("customer_id").drop_nulls().implode()
    accepted = ids.filter("valid").get_column("customer_id").drop_nulls().implode()
    for name, item in checked.items():
        if name == "customers" or "customer_id" not in item.typed.columns:
            continue
        # a hash-set membership test per row; only the few rows that fail are looked at again
        orphans = (
            item.typed.select(_ROW, "customer_id")
            .filter(pl.col("customer_id").is_not_null() & ~pl.col("customer_id").is_in(accepted))
            .select(
                row=pl.col(_ROW),
                column=pl.lit("customer_id"),
                check=pl.when(pl.col("customer_id").is_in(known))
                .then(pl.lit(REJECTED_CUSTOMER))
                .otherwise(pl.lit(UNKNOWN_CUSTOMER)),
                value="customer_id",
            )
        )
        item.failures = _failures([item.failures, orphans])


# --- reporting ----------------------------------------------------------------------------------


def _summarise(item: _Checked) -> list[Problem]:
    """Group failures by (column, check) into problems with counts and a few examples."""
    if item.failures.is_empty():
        return []
    groups = (
        item.failures.sort("row")
        .group_by("column", "check", maintain_order=True)
        .agg(
            n=pl.len(),
            rows=pl.col("row").head(_N_EXAMPLES),
            values=pl.col("value").head(_N_EXAMPLES),
        )
    )
    problems = [
        Problem(item.table.name, column, check, n, _examples(item, column, check, rows, values))
        for column, check, n, rows, values in groups.rows()  # one per (column, check), not per row
    ]
    position = {name: i for i, name in enumerate(item.typed.columns)}
    return sorted(problems, key=lambda p: position.get(p.column or "", len(position)))


def _examples(
    item: _Checked, column: str | None, check: str, rows: list[int], values: list[str | None]
) -> tuple[str, ...]:
    key = item.table.key
    sample = item.typed[rows]
    others = [
        earlier
        for later, earlier in DATE_ORDER.get(item.table.name, ())
        if later == column and check == f"{later} >= {earlier}"
    ]
    rule = ROW_RULES.get((item.table.name, column or ""))
    if rule is not None and check == rule[0]:
        others += [c for c in rule[1] if c in sample.columns]
    examples = []
    for i, (row, value) in enumerate(zip(rows, values, strict=True)):
        where = f"{item.source.unit} {item.source.number(row)}"
        named = f"{key}={_display(sample[key][i])}"
        if check in _CAST_CHECKS or check in _CUSTOMER_CHECKS:
            examples.append(f"{value} ({where}, {named})")
        elif column is None or column not in sample.columns or check in (NOT_NULLABLE, UNIQUE):
            examples.append(f"{named} ({where})")
        else:
            shown = [named] + [f"{c}={_display(sample[c][i])}" for c in (column, *others)]
            examples.append(f"{' '.join(shown)} ({where})")
    return tuple(examples)


def _rejects(item: _Checked) -> pl.DataFrame:
    """The rejected rows as given (original columns and values) plus why each was rejected."""
    if item.failures.is_empty():  # the empty frame, made from the schema: no copy of the rows
        columns = {n: t for n, t in item.source.frame.schema.items() if n != REJECT_REASON}
        return pl.DataFrame(schema={**columns, REJECT_REASON: pl.String})
    phrase = {check: _reason_phrase(check) for check in item.failures.get_column("check").unique()}
    reasons = (
        item.failures.sort("row", maintain_order=True)
        .with_columns(
            reason=pl.concat_str(
                pl.col("column").fill_null("row"),
                pl.when(pl.col("value").is_not_null())
                .then(pl.lit("=") + pl.col("value"))
                .otherwise(pl.lit("")),
                pl.lit(" "),
                pl.col("check").replace_strict(phrase, return_dtype=pl.String),
            )
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("reason").str.join("; ").alias(REJECT_REASON))
        .rename({"row": _ROW})
    )
    original = item.source.frame.drop(REJECT_REASON, strict=False).with_row_index(_ROW)
    return (
        original.with_columns(pl.col(_ROW).cast(pl.Int64))
        .join(reasons, on=_ROW, how="inner")
        .sort(_ROW)
        .drop(_ROW)
    )


def _reason_phrase(check: str) -> str:
    if check in _CAST_CHECKS:
        return f"is {check}"
    return {
        UNKNOWN_CUSTOMER: "is not in customers",
        REJECTED_CUSTOMER: "belongs to a rejected customers row",
        NOT_NULLABLE: "is missing",
        UNIQUE: "repeats the key of an earlier row",
    }.get(check, f"fails '{check}'")


def _display(value: object) -> str:
    if value is None:
        return "(missing)"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds" if value.microsecond == 0 else "auto")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _verb(n: int, singular: str, plural: str) -> str:
    return singular if n == 1 else plural
