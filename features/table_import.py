"""Import an export that is not in the contract's shape into one contract table, with a mapping.

A complaints export from a ticketing tool (the Comcast set in ``shared/data``), an offers log
from a campaign tool: the right facts under other names, in other spellings, with dates in the
tool's own format. A TOML mapping says how each contract column is read; the result goes
through the same checks as a folder of contract tables (:func:`features.loader.validate_table`),
so bad rows are rejected with their reason and kept aside, never dropped or guessed.

Mapping file (TOML), e.g. ``mappings/comcast_complaints.toml``::

    table = "complaints"                  # the contract table to fill
    description = "..."                   # optional

    [columns]                             # contract column = export column
    complaint_id = "Ticket #"
    opened_at = ["Date_month_year", "Time"]   # several columns: joined with one space
    channel = "Received Via"

    [formats]                             # optional: how a date or date-time column is written
    opened_at = ["%d-%b-%y %I:%M:%S %p"]  #   (strftime codes, tried in order; ISO always works)

    [values.channel]                      # optional: export value = contract value
    "Customer Care Call" = "phone"        #   (keys compared ignoring case and outer spaces;
    Internet = "web"                      #   values not listed pass through unchanged)

    [patterns]                            # optional: a column's values must match (regex)
    complaint_id = '^\\d+$'

    [defaults]                            # contract columns the export lacks: one value for
    severity = "minor"                    #   every row, listed in ImportedTable.assumptions
    handling_minutes = 0

Every required contract column must come from ``columns`` or ``defaults``, except those that may
be empty (e.g. ``resolved_at``): left out, they are empty in every row, and the assumptions say
so. Optional ones may be left out. Unknown keys, a column both mapped and defaulted and export
columns that do not exist are errors naming them. Export columns that are not mapped are kept
in the rejects (with the original values) and left out of the table.

Checks, in order: a value that does not match its pattern rejects its row here; everything
else is the loader's (types, enumerations, ranges, unique keys, date order). A date that
matches none of the formats is passed on as written, so the loader names it.
"""

from __future__ import annotations

import difflib
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from features.contract import TABLES
from features.loader import REJECT_REASON, Problem, TablePart, validate_table

logger = logging.getLogger(__name__)

_TOP_KEYS = ("table", "description", "columns", "formats", "values", "patterns", "defaults")
_EXPORT = "export: "  # prefix of the original export columns carried into the rejects
_LINE = "__keepwise_line__"
_PATTERN_CHECK = "does not match the mapping's pattern"


class TableMappingError(ValueError):
    """The mapping (or the export it is applied to) cannot work; the message names the key."""


@dataclass(frozen=True)
class TableMapping:
    """How an export fills one contract table (see the module docstring).

    Attributes:
        table: Contract table name.
        columns: Contract column -> export column(s) (several are joined with a space).
        formats: Contract date/date-time column -> strftime formats, tried in order.
        values: Contract column -> {export value (lower case, trimmed) -> contract value}.
        patterns: Contract column -> regular expression its text must match.
        defaults: Contract column -> the value every row gets.
        description: Free text.
    """

    table: str
    columns: Mapping[str, tuple[str, ...]]
    formats: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    patterns: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise TableMappingError(
                f"table: {self.table!r} is not a contract table ({', '.join(TABLES)})"
            )
        contract = TABLES[self.table]
        known = set(contract.dtypes)
        for section in ("columns", "formats", "values", "patterns", "defaults"):
            for name in getattr(self, section):
                if name not in known:
                    close = difflib.get_close_matches(name, sorted(known), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise TableMappingError(
                        f"{section}.{name}: {self.table} has no column {name!r}{hint}; its "
                        f"columns: {', '.join(contract.dtypes)}"
                    )
        both = sorted(set(self.columns) & set(self.defaults))
        if both:
            raise TableMappingError(f"column(s) {both} are both mapped and given a default")
        missing = [
            c.name
            for c in contract.columns
            if c.required
            and not c.nullable
            and c.name not in self.columns
            and c.name not in self.defaults
        ]
        if missing:
            raise TableMappingError(
                f"required {self.table} column(s) {missing} are neither mapped in [columns] nor "
                "given a value in [defaults]"
            )
        for name in self.formats:
            if contract.dtypes[name] not in (pl.Date(), pl.Datetime("us")):
                raise TableMappingError(f"formats.{name}: {name} is not a date or date-time")


def load_table_mapping(path: str | Path) -> TableMapping:
    """Read and check a TOML table mapping.

    Raises:
        TableMappingError: Invalid TOML, unknown keys, wrong types or contradictions; the
            message names the file and the key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return parse_table_mapping(data)
    except tomllib.TOMLDecodeError as error:
        raise TableMappingError(f"{path}: not valid TOML: {error}") from error
    except TableMappingError as error:
        raise TableMappingError(f"{path}: {error}") from error


def parse_table_mapping(data: Mapping[str, Any]) -> TableMapping:
    """Check an already-parsed mapping document (see :func:`load_table_mapping`)."""
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise TableMappingError(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(_TOP_KEYS)}")
    table = data.get("table")
    if not isinstance(table, str):
        raise TableMappingError("missing required key table (the contract table to fill)")
    columns = {
        name: _names(value, f"columns.{name}") for name, value in _table(data, "columns").items()
    }
    formats = {
        name: _names(value, f"formats.{name}") for name, value in _table(data, "formats").items()
    }
    values = {}
    for name, table_values in _table(data, "values").items():
        if not isinstance(table_values, Mapping) or not all(
            isinstance(v, str) for v in table_values.values()
        ):
            raise TableMappingError(f'values.{name}: expected export value = "contract value"')
        values[name] = {str(k).strip().lower(): v for k, v in table_values.items()}
    patterns = {}
    for name, pattern in _table(data, "patterns").items():
        if not isinstance(pattern, str):
            raise TableMappingError(f"patterns.{name}: expected a regular expression")
        patterns[name] = pattern
    return TableMapping(
        table=table,
        columns=columns,
        formats=formats,
        values=values,
        patterns=patterns,
        defaults=dict(_table(data, "defaults")),
        description=str(data.get("description", "")),
    )


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise TableMappingError(f"{key}: expected a table [{key}]")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise TableMappingError(f"{where}: expected a column name or a list of them")
    return tuple(names)


@dataclass(frozen=True)
class ImportedTable:
    """The result of :func:`import_table`.

    Attributes:
        name: Contract table name.
        table: The valid rows, typed per contract (contract columns only).
        rejects: The rejected rows: the contract columns as mapped, the export's own columns
            (prefixed ``"export: "``) and ``reject_reason``.
        problems: What failed, per column and check, with example rows.
        assumptions: The defaults applied to every row, in words.
    """

    name: str
    table: pl.DataFrame
    rejects: pl.DataFrame
    problems: list[Problem]
    assumptions: tuple[str, ...] = ()


def read_export(path: str | Path) -> tuple[pl.DataFrame, str, int]:
    """An export file as text columns: (frame, row unit, number of the first row).

    ``.csv``/``.txt`` (lines, the header is line 1), ``.xlsx`` (first sheet, rows) and
    ``.parquet`` (rows).

    Raises:
        TableMappingError: Any other extension, or a file that cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return pl.read_csv(path, infer_schema=False), "line", 2
        if suffix == ".xlsx":
            frame = pl.read_excel(path, sheet_id=1, infer_schema_length=0)
            assert isinstance(frame, pl.DataFrame)
            return frame.with_columns(pl.all().cast(pl.String)), "row", 2
        if suffix == ".parquet":
            return pl.read_parquet(path), "row", 1
    except Exception as error:  # noqa: BLE001 - any reader failure is reported with the file
        raise TableMappingError(f"{path}: cannot be read: {error}") from error
    raise TableMappingError(f"{path}: expected a .csv, .xlsx or .parquet file")


def import_table(
    export: pl.DataFrame, mapping: TableMapping, *, unit: str = "row", first: int = 1
) -> ImportedTable:
    """Map an export to its contract table and validate it; bad rows are kept aside.

    Args:
        export: The export as read (not modified); text columns as in a CSV.
        mapping: The mapping.
        unit: How the export's rows are named in examples (``"line"`` for a CSV).
        first: Number of the export's first row.

    Returns:
        Valid rows, rejects with reasons, problems and assumptions.

    Raises:
        TableMappingError: A mapped export column does not exist.
    """
    used = {name for names in mapping.columns.values() for name in names}
    missing = sorted(used - set(export.columns))
    if missing:
        raise TableMappingError(
            f"export column(s) {missing} named in [columns] are not in the export; columns "
            f"found: {', '.join(export.columns)}"
        )
    contract = TABLES[mapping.table]
    empty = [
        c.name
        for c in contract.columns
        if c.required and c.name not in mapping.columns and c.name not in mapping.defaults
    ]
    mapped = export.select(
        *[_column(name, mapping).alias(name) for name in mapping.columns],
        *[pl.lit(value).alias(name) for name, value in mapping.defaults.items()],
        *[pl.lit(None, dtype=pl.String).alias(name) for name in empty],
        *[pl.col(name).cast(pl.String).alias(_EXPORT + name) for name in export.columns],
    ).with_row_index(_LINE, offset=first)
    mapped = mapped.with_columns(pl.col(_LINE).cast(pl.Int64))

    bad = pl.lit(False)
    reasons = []
    for name, pattern in mapping.patterns.items():
        fails = pl.col(name).is_not_null() & ~pl.col(name).str.contains(pattern)
        bad = bad | fails
        reasons.append(
            pl.when(fails).then(pl.format(f"{name}='{{}}' {_PATTERN_CHECK} {pattern}", name))
        )
    flagged = mapped.with_columns(
        (pl.concat_str(reasons, separator="; ", ignore_nulls=True) if reasons else pl.lit(None))
        .cast(pl.String)
        .alias(REJECT_REASON),
        bad.alias("__bad__"),
    )
    pattern_rejects = flagged.filter("__bad__")
    rest = flagged.filter(~pl.col("__bad__")).drop("__bad__", REJECT_REASON)
    problems = _pattern_problems(pattern_rejects, mapping, unit, contract.key)

    part = TablePart(rest.drop(_LINE), unit=unit, numbers=rest.get_column(_LINE))
    result = validate_table(mapping.table, part)
    problems = [*problems, *result.problems]
    if mapping.table not in result.tables:  # unusable (e.g. a whole column of the wrong kind)
        return ImportedTable(mapping.table, pl.DataFrame(), pl.DataFrame(), problems)
    table = result.tables[mapping.table].collect()
    table = table.select([c for c in contract.dtypes if c in table.columns])
    rejects = pl.concat(
        [pattern_rejects.drop(_LINE, "__bad__"), result.rejects[mapping.table]],
        how="diagonal_relaxed",
    )
    assumptions = tuple(
        f"{name}: not in the export; every row set to {value!r} (mapping [defaults])"
        for name, value in mapping.defaults.items()
    ) + tuple(f"{name}: not in the export; empty in every row" for name in empty)
    for text in assumptions:
        logger.info("%s import: %s", mapping.table, text)
    return ImportedTable(mapping.table, table, rejects, problems, assumptions)


def _column(name: str, mapping: TableMapping) -> pl.Expr:
    """Contract column ``name`` as text: joined, value-mapped and reformatted per the mapping."""
    sources = mapping.columns[name]
    text = pl.concat_str(
        [pl.col(s).cast(pl.String).str.strip_chars() for s in sources], separator=" "
    )
    text = pl.when(text.str.strip_chars() != "").then(text)
    if name in mapping.values:
        table = mapping.values[name]
        key = text.str.strip_chars().str.to_lowercase()
        text = key.replace_strict(table, default=text, return_dtype=pl.String)
    if name in mapping.formats:
        parsed = pl.coalesce(
            text.str.to_datetime(fmt, strict=False, time_unit="us") for fmt in mapping.formats[name]
        )
        text = pl.coalesce(parsed.dt.strftime("%Y-%m-%d %H:%M:%S"), text)
    return text


def _pattern_problems(
    rejects: pl.DataFrame, mapping: TableMapping, unit: str, key: str
) -> list[Problem]:
    problems = []
    for name, pattern in mapping.patterns.items():
        rows = rejects.filter(pl.col(name).is_not_null() & ~pl.col(name).str.contains(pattern))
        if rows.height == 0:
            continue
        examples = tuple(
            f"{key}={row[key]} {name}={row[name]!r} ({unit} {row[_LINE]})"
            if key in rows.columns and key != name
            else f"{name}={row[name]!r} ({unit} {row[_LINE]})"
            for row in rows.head(3).iter_rows(named=True)
        )
        problems.append(
            Problem(mapping.table, name, f"{_PATTERN_CHECK} {pattern}", rows.height, examples)
        )
    return problems
