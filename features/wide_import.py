"""Import one wide table per customer (how public churn data sets arrive) with a TOML mapping.

Most public churn data is a single table with one row per customer: an id, a churn label, a
monthly charge and a few dozen descriptive columns. This module turns such a table into
keepwise's feature frame: ``customer_id``, a 0/1 ``churned`` label, ``monthly_revenue``, an
optional ``monthly_margin`` and optional ``complaint_count``, followed by every other column as
a feature. Strings become categoricals (``pl.Enum`` over the sorted observed values), numbers stay
numbers. Every data problem found on the way (blank values, the rule applied to them, identifier
-like text columns, constant columns) is reported in :attr:`WideImport.problems`; problems that
would make the result wrong (unknown label values, duplicate ids, a missing mapped column, text
in a declared numeric column, negative revenue) raise :class:`WideImportError` instead.

Mapping file format (TOML)
--------------------------
Unknown keys are errors that name the key (with a suggestion when it looks like a misspelling),
so a typo can never silently fall back to a default::

    description = "IBM Telco customer churn"  # optional, free text
    id = "customerID"          # unique customer key (becomes customer_id, a string); without
    #                          #   it customer_id is the data row number, said loudly
    revenue = "MonthlyCharges" # monthly revenue per customer, >= 0 (monthly_revenue), or:
    # assumed_monthly_revenue = 50.0  # the same assumed value for every customer (no revenue
    #                          #   column); recorded in WideImport.assumptions
    margin_rate = 0.30         # optional: assumed margin share of revenue, 0 < rate <= 1
    # cost = "MonthlyCost"     # optional: monthly cost column (margin = revenue - cost);
    #                          #   give cost OR margin_rate; with neither, no monthly_margin
    # complaints = "Tickets"   # optional: complaint-count column (complaint_count, int >= 0)
    tenure = "tenure"          # optional: tenure column (stays a feature under its own name;
    #                          #   used to explain blank values and as months of history)
    tenure_unit = "months"     # optional: days, months (default) or years
    # horizon_days = 30        # optional: the window the label covers ("churned within N
    #                          #   days"); without it 365 is assumed, and said (see below)
    # segment = "Segment"      # optional: segment column (values: the policy's segments,
    #                          #   compared ignoring case); stays a feature
    # assumed_segment = "small_business"  # or one segment for every customer (the default,
    #                          #   stated as an assumption)
    drop = ["Notes"]           # optional: columns to leave out altogether

    [label]                    # required
    column = "Churn"           # the churn label column
    positive = "Yes"           # value(s) meaning "churned": a string, integer, boolean or a list
    negative = "No"            # value(s) meaning "stayed"; "" stands for a blank cell.
    #                          #   Any other value is an error that names the rows.

    [columns.TotalCharges]     # optional per-column rules, one table per column
    dtype = "float64"          # one of categorical, float64, int64, boolean
    blank = "null"             # numeric columns only: "null" (default) or "zero"

Columns without a ``[columns.<name>]`` rule are typed from their values: a text column whose
non-blank values all parse as integers becomes Int64, else as numbers Float64, else a
categorical. Label values are compared as trimmed text, ignoring case (TOML ``true`` matches a
file's ``True``, ``TRUE`` or ``true``); declared boolean columns accept true/false, t/f, yes/no,
y/n and 1/0 in any case. Files: ``.csv`` (and ``.txt``), ``.parquet`` and ``.xlsx`` (the first
sheet, read with polars' calamine engine, package ``fastexcel``; every cell as text, as a CSV).

Assumptions are not facts: an assumed monthly revenue, an assumed margin rate, an assumed
label window (``horizon_days``; the model's churn horizon, which the policy's must match) and
a generated row id are listed in :attr:`WideImport.assumptions`, which every output built on
the import repeats.
Every mapped column, ``drop`` entry and ``[columns.<name>]`` table must name a column that
exists in the data; otherwise the import fails naming the column and listing those found.
"""

from __future__ import annotations

import difflib
import logging
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import polars as pl

logger = logging.getLogger(__name__)

BlankRule = Literal["null", "zero"]
Dtype = Literal["categorical", "float64", "int64", "boolean"]

DTYPES: tuple[str, ...] = ("categorical", "float64", "int64", "boolean")
BLANK_RULES: tuple[str, ...] = ("null", "zero")

# Names of the columns this module creates; a feature column may not use them.
ID = "customer_id"
LABEL = "churned"
REVENUE = "monthly_revenue"
MARGIN = "monthly_margin"
COMPLAINTS = "complaint_count"
_RESERVED = (ID, LABEL, REVENUE, MARGIN, COMPLAINTS)
#: What decisions read besides the model's scores (:attr:`WideImport.decisions`).
DECISION_COLUMNS = (ID, "segment", "months_of_history", "monthly_revenue", "monthly_complaint_cost")
TENURE_UNITS: dict[str, float] = {"days": 12 / 365, "months": 1.0, "years": 12.0}
DEFAULT_SEGMENT = "small_business"

ASSUMED_HORIZON_DAYS = 365  # the label window when the mapping does not say

_TOP_KEYS = (
    "description",
    "id",
    "revenue",
    "assumed_monthly_revenue",
    "segment",
    "assumed_segment",
    "tenure_unit",
    "cost",
    "margin_rate",
    "complaints",
    "tenure",
    "horizon_days",
    "drop",
    "label",
    "columns",
)
_LABEL_KEYS = ("column", "positive", "negative")
_COLUMN_KEYS = ("dtype", "blank")
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_ROW = "__keepwise_row"  # 1-based data row number, used in error messages
_EXAMPLES = 5


class MappingError(ValueError):
    """The mapping file is malformed: unknown key, wrong type or contradictory settings."""


class WideImportError(ValueError):
    """The data cannot be imported as mapped; the message names the column, rows and values."""


@dataclass(frozen=True)
class ColumnRule:
    """An explicit rule for one column of the wide table.

    Attributes:
        column: Column name in the wide table.
        dtype: Forced type, or None to type the column from its values.
        blank: What blank cells of a numeric column become: null (default) or zero.
    """

    column: str
    dtype: Dtype | None = None
    blank: BlankRule | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise MappingError(
                f"columns.{self.column}.dtype: {self.dtype!r} is not one of {', '.join(DTYPES)}"
            )
        if self.blank is not None and self.blank not in BLANK_RULES:
            raise MappingError(
                f"columns.{self.column}.blank: {self.blank!r} is not one of "
                f"{', '.join(BLANK_RULES)}"
            )
        if self.blank is not None and self.dtype in ("categorical", "boolean"):
            raise MappingError(
                f"columns.{self.column}: blank = {self.blank!r} applies to numeric columns only, "
                f"but dtype is {self.dtype!r}"
            )


@dataclass(frozen=True)
class WideMapping:
    """Which columns of a wide per-customer table mean what (see the module docstring).

    Attributes:
        id: Customer id column; None numbers the data rows instead (an assumption, reported).
        label: Churn label column.
        positive: Label values (trimmed, lower case) meaning churned.
        negative: Label values (trimmed, lower case) meaning stayed; "" means a blank cell.
        revenue: Monthly revenue column; None with ``assumed_monthly_revenue``.
        assumed_monthly_revenue: The monthly revenue assumed for every customer when the data
            has none (exclusive with ``revenue``).
        cost: Optional monthly cost column; exclusive with ``margin_rate``.
        margin_rate: Optional assumed margin share of revenue, in (0, 1].
        complaints: Optional complaint-count column.
        tenure: Optional tenure column, used to explain blank values and as history.
        tenure_unit: Unit of the tenure column: days, months or years.
        horizon_days: The window the label covers (churned within so many days); None
            assumes 365 (an assumption, reported). It becomes the model's churn horizon, which
            the decision policy's horizon must match.
        segment: Optional segment column (decisions; stays a feature).
        assumed_segment: The segment of every customer when there is no segment column.
        drop: Columns left out of the import.
        rules: Per-column dtype and blank rules.
        description: Free text.
    """

    id: str | None
    label: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    revenue: str | None
    assumed_monthly_revenue: float | None = None
    cost: str | None = None
    margin_rate: float | None = None
    complaints: str | None = None
    tenure: str | None = None
    tenure_unit: str = "months"
    horizon_days: int | None = None
    segment: str | None = None
    assumed_segment: str | None = None
    drop: tuple[str, ...] = ()
    rules: tuple[ColumnRule, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "positive", tuple(v.lower() for v in self.positive))
        object.__setattr__(self, "negative", tuple(v.lower() for v in self.negative))
        if (self.revenue is None) == (self.assumed_monthly_revenue is None):
            raise MappingError(
                "give revenue (the monthly revenue column) or assumed_monthly_revenue (one "
                "assumed value for every customer, when the data has no revenue), exactly one"
            )
        if self.assumed_monthly_revenue is not None and not self.assumed_monthly_revenue > 0:
            raise MappingError(
                f"assumed_monthly_revenue: {self.assumed_monthly_revenue} is not a number > 0"
            )
        if self.cost is not None and self.revenue is None:
            raise MappingError("cost needs a revenue column (margin = revenue - cost)")
        if not self.positive or not self.negative:
            raise MappingError("label: positive and negative must each name at least one value")
        if self.tenure_unit not in TENURE_UNITS:
            raise MappingError(
                f"tenure_unit: {self.tenure_unit!r} is not one of {', '.join(TENURE_UNITS)}"
            )
        if self.horizon_days is not None and (
            isinstance(self.horizon_days, bool)
            or not isinstance(self.horizon_days, int)
            or self.horizon_days <= 0
        ):
            raise MappingError(
                f"horizon_days: {self.horizon_days!r} is not a whole number of days > 0"
            )
        if self.segment is not None and self.assumed_segment is not None:
            raise MappingError("give segment (a column) or assumed_segment (a value), not both")
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise MappingError(
                f"label: value(s) {both} are both positive and negative (values are compared "
                "ignoring case)"
            )
        if self.cost is not None and self.margin_rate is not None:
            raise MappingError(
                "give either cost (a column) or margin_rate (an assumption), not both"
            )
        if self.margin_rate is not None and not 0.0 < self.margin_rate <= 1.0:
            raise MappingError(f"margin_rate: {self.margin_rate} is not in (0, 1]")
        roles = self.roles
        names = [name for _, name in roles]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise MappingError(f"column(s) {repeated} are mapped to more than one role")
        dropped = sorted(set(self.drop) & set(names))
        if dropped:
            raise MappingError(f"drop: {dropped} are mapped columns and cannot be dropped")
        ruled = [rule.column for rule in self.rules]
        if len(set(ruled)) != len(ruled):
            raise MappingError("columns: a column has more than one rule")
        for rule in self.rules:
            if rule.column in (self.id, self.label) and (rule.dtype or rule.blank):
                raise MappingError(
                    f"columns.{rule.column}: the id and label columns take no dtype or blank rule"
                )
            if rule.column in self.drop:
                raise MappingError(f"columns.{rule.column}: the column is also listed in drop")

    @property
    def roles(self) -> tuple[tuple[str, str], ...]:
        """(role, column) pairs for every mapped column, in a fixed order."""
        pairs = [
            ("id", self.id),
            ("label.column", self.label),
            ("revenue", self.revenue),
            ("cost", self.cost),
            ("complaints", self.complaints),
            ("tenure", self.tenure),
            ("segment", self.segment),
        ]
        return tuple((role, name) for role, name in pairs if name is not None)

    def rule(self, column: str) -> ColumnRule:
        """The rule for ``column`` (an empty rule when the mapping gives none)."""
        for rule in self.rules:
            if rule.column == column:
                return rule
        return ColumnRule(column)


@dataclass(frozen=True)
class WideImport:
    """The result of :func:`import_wide_table`.

    Attributes:
        features: One row per customer: customer_id (String), churned (Int8, 0/1),
            monthly_revenue (Float64), monthly_margin (Float64, when cost or margin_rate is
            mapped), complaint_count (Int64, when mapped), then the feature columns.
        feature_columns: Model inputs: monthly_revenue, complaint_count (when mapped) and every
            remaining wide-table column under its own name. Excludes id, label and margin.
        categorical_columns: The feature columns of Enum dtype.
        problems: Human-readable reports of what was found and which rule was applied.
        assumptions: What was assumed rather than read (an assumed revenue or margin rate, a
            generated id, segment, history, complaint cost), in words; every output built on
            the import repeats them.
        decisions: What decisions read besides the scores, one row per customer in the order
            of ``features``: :data:`DECISION_COLUMNS` (segment as written or assumed, months of
            history from the tenure column, monthly revenue, monthly complaint cost 0).
    """

    features: pl.DataFrame
    feature_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    problems: list[str] = field(default_factory=list)
    assumptions: tuple[str, ...] = ()
    decisions: pl.DataFrame | None = None


def load_mapping(path: str | Path) -> WideMapping:
    """Read and validate a TOML mapping file.

    Args:
        path: The TOML file.

    Returns:
        The validated mapping.

    Raises:
        MappingError: On invalid TOML, unknown keys, wrong value types or contradictions;
            the message names the file and the key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise MappingError(f"{path}: not valid TOML: {error}") from error
    try:
        return parse_mapping(data)
    except MappingError as error:
        raise MappingError(f"{path}: {error}") from error


def parse_mapping(data: Mapping[str, Any]) -> WideMapping:
    """Validate an already-parsed mapping (the TOML document as a dict).

    Args:
        data: The mapping document.

    Returns:
        The validated mapping.

    Raises:
        MappingError: On unknown keys, wrong value types or contradictions.
    """
    _check_keys(data, _TOP_KEYS, "")
    label = data.get("label")
    if not isinstance(label, Mapping):
        raise MappingError("missing [label] table (column, positive, negative)")
    _check_keys(label, _LABEL_KEYS, "label.")
    columns = data.get("columns", {})
    if not isinstance(columns, Mapping):
        raise MappingError("columns: expected tables like [columns.<name>]")
    rules = []
    for name, table in columns.items():
        if not isinstance(table, Mapping):
            raise MappingError(f"columns.{name}: expected a table with keys dtype, blank")
        _check_keys(table, _COLUMN_KEYS, f"columns.{name}.")
        rules.append(
            ColumnRule(
                name,
                dtype=cast(Dtype | None, _optional_str(table, "dtype", f"columns.{name}.")),
                blank=cast(BlankRule | None, _optional_str(table, "blank", f"columns.{name}.")),
            )
        )
    margin_rate = _optional_number(data, "margin_rate")
    assumed_revenue = _optional_number(data, "assumed_monthly_revenue")
    drop = data.get("drop", [])
    if not isinstance(drop, list) or not all(isinstance(item, str) for item in drop):
        raise MappingError(f"drop: expected a list of column names, got {drop!r}")
    return WideMapping(
        id=_optional_str(data, "id", ""),
        label=_required_str(label, "column", "label."),
        positive=_label_values(label, "positive"),
        negative=_label_values(label, "negative"),
        revenue=_optional_str(data, "revenue", ""),
        assumed_monthly_revenue=assumed_revenue,
        cost=_optional_str(data, "cost", ""),
        margin_rate=margin_rate,
        complaints=_optional_str(data, "complaints", ""),
        tenure=_optional_str(data, "tenure", ""),
        tenure_unit=_optional_str(data, "tenure_unit", "") or "months",
        horizon_days=data.get("horizon_days"),
        segment=_optional_str(data, "segment", ""),
        assumed_segment=_optional_str(data, "assumed_segment", ""),
        drop=tuple(drop),
        rules=tuple(rules),
        description=_optional_str(data, "description", "") or "",
    )


def import_wide_table(
    source: str | Path | pl.DataFrame, mapping: WideMapping, *, labelled: bool = True
) -> WideImport:
    """Turn a wide per-customer table into keepwise's feature frame.

    CSV files are read with every column as text so that typing (and the treatment of blank
    cells) is decided here, explicitly, and reported; Parquet files and data frames keep their
    numeric and boolean dtypes.

    Args:
        source: A CSV or Parquet file, or an already-loaded data frame (not modified).
        mapping: The column mapping.
        labelled: False for scoring: the label column may then be absent (no ``churned``
            column), as in a table of customers whose outcome is not known yet.

    Returns:
        The feature frame, its feature and categorical column names and the problem reports.

    Raises:
        WideImportError: When a mapped column is missing, ids are blank or duplicated, a label
            value is neither positive nor negative, a declared type does not fit the values,
            revenue is blank or negative, or a feature column collides with a created name.
    """
    frame = _read(source)
    has_label = labelled or mapping.label in frame.columns
    _check_columns(frame, mapping, label=has_label)
    frame = frame.with_row_index(_ROW, offset=1)
    problems: list[str] = []
    assumptions: list[str] = []
    if mapping.id is None:
        ids = frame[_ROW].cast(pl.String)
        id_name = "row"
        assumptions.append(
            f"no id column in the mapping: customer_id is the data row number (1..{frame.height})"
            "; ids change when rows are added, removed or reordered - map an id column to "
            "follow customers from one export to the next"
        )
        logger.warning("wide import: %s", assumptions[-1])
    else:
        ids, id_name = _customer_ids(frame, mapping.id), mapping.id
    context = _Context(ids=ids, id_name=id_name, tenure=None, tenure_name=mapping.tenure)
    if mapping.tenure is not None:
        tenure = _convert(frame[mapping.tenure], mapping.rule(mapping.tenure), context)
        if tenure.kind not in ("int64", "float64"):
            raise WideImportError(
                f"tenure column {mapping.tenure!r} is not numeric (found {tenure.kind} values)"
            )
        context = _Context(ids, id_name, tenure.values, mapping.tenure)

    out: dict[str, pl.Series] = {ID: ids.alias(ID)}
    if has_label:
        out[LABEL] = _labels(frame, mapping, ids)
    feature_columns = []
    if mapping.revenue is not None:
        revenue = _amount(frame, mapping.revenue, "revenue", mapping, context, problems)
        feature_columns.append(REVENUE)
    else:
        assumed = float(mapping.assumed_monthly_revenue or 0.0)
        revenue = pl.Series(REVENUE, [assumed] * frame.height, dtype=pl.Float64)
        assumptions.append(
            f"no revenue column: every customer is assumed to bring {assumed:,.2f} a month "
            "(assumed_monthly_revenue); decisions rank customers by churn risk, and their "
            "money figures rest on this assumption"
        )
    out[REVENUE] = revenue.alias(REVENUE)
    if mapping.cost is not None:
        cost = _amount(frame, mapping.cost, "cost", mapping, context, problems)
        out[MARGIN] = (revenue - cost).alias(MARGIN)
    elif mapping.margin_rate is not None:
        out[MARGIN] = (revenue * mapping.margin_rate).alias(MARGIN)
        assumptions.append(
            f"no cost column: the margin is assumed to be {mapping.margin_rate:.0%} of revenue "
            "(margin_rate)"
        )
    if mapping.complaints is not None:
        out[COMPLAINTS] = _complaint_counts(frame, mapping.complaints, mapping, context, problems)
        feature_columns.append(COMPLAINTS)

    if mapping.horizon_days is None:
        assumptions.append(
            f"no horizon_days in the mapping: the churn label is taken to cover "
            f"{ASSUMED_HORIZON_DAYS} days (the model's horizon, which the policy's must match); "
            "set horizon_days to the window the label really covers"
        )
    decisions = _decisions(frame, mapping, ids, revenue, context, assumptions)
    skip = {_ROW, mapping.id, mapping.label, mapping.revenue, mapping.cost, mapping.complaints}
    categorical: list[str] = []
    for name in frame.columns:
        if name in skip or name in mapping.drop:
            continue
        if name in _RESERVED:
            raise WideImportError(
                f"feature column {name!r} collides with a column keepwise creates "
                f"({', '.join(_RESERVED)}); add it to drop or rename it"
            )
        converted = _convert(frame[name], mapping.rule(name), context)
        problems.extend(converted.problems)
        if converted.values is None:
            continue
        if converted.values.drop_nulls().n_unique() == 1:
            problems.append(f"{name}: a single value in every row; carries no information")
        out[name] = converted.values.alias(name)
        feature_columns.append(name)
        if converted.kind == "categorical":
            categorical.append(name)
    return WideImport(
        features=pl.DataFrame(list(out.values())),
        feature_columns=tuple(feature_columns),
        categorical_columns=tuple(categorical),
        problems=problems,
        assumptions=tuple(assumptions),
        decisions=decisions,
    )


def _decisions(
    frame: pl.DataFrame,
    mapping: WideMapping,
    ids: pl.Series,
    revenue: pl.Series,
    context: _Context,
    assumptions: list[str],
) -> pl.DataFrame:
    """The decision inputs of :attr:`WideImport.decisions`; every assumption is recorded."""
    n = frame.height
    if mapping.segment is not None:
        segment = _text(frame[mapping.segment]).str.to_lowercase().str.replace_all(r"[\s\-]+", "_")
    else:
        chosen = mapping.assumed_segment or DEFAULT_SEGMENT
        segment = pl.Series([chosen] * n, dtype=pl.String)
        how = "assumed_segment" if mapping.assumed_segment else "the default"
        assumptions.append(
            f"no segment column: every customer is taken as segment {chosen!r} ({how}); the "
            "policy's protected segments cannot be recognised"
        )
    if mapping.tenure is not None:
        tenure = _convert(frame[mapping.tenure], mapping.rule(mapping.tenure), context).values
        assert tenure is not None
        months = tenure.cast(pl.Float64).fill_null(0.0) * TENURE_UNITS[mapping.tenure_unit]
    else:
        months = pl.Series([0.0] * n)
        assumptions.append(
            "no tenure column: every customer counts as new (0 months of history), so the "
            "policy's minimum history blocks 'end' unless the loss is certain"
        )
    assumptions.append(
        "no complaint cost in the data: the cost to serve is taken as 0 (margins come from "
        "revenue and the cost or margin rate alone)"
    )
    return pl.DataFrame(
        {
            ID: ids,
            "segment": segment,
            "months_of_history": months,
            "monthly_revenue": revenue,
            "monthly_complaint_cost": pl.Series([0.0] * n),
        }
    )


# ---------------------------------------------------------------------------------------------
# mapping helpers


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {where}{close[0]!r}?)" if close else ""
    if where and key in _TOP_KEYS:
        hint = f" ({key!r} is a top-level key: put it before the first [table])"
    raise MappingError(f"unknown key {where}{key!r}{hint}; allowed keys here: {', '.join(allowed)}")


def _optional_number(table: Mapping[str, Any], key: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MappingError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _required_str(table: Mapping[str, Any], key: str, where: str) -> str:
    if key not in table:
        raise MappingError(f"missing required key {where}{key}")
    value = _optional_str(table, key, where)
    if value is None:
        raise MappingError(f"{where}{key}: expected a non-empty string, got nothing")
    return value


def _optional_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise MappingError(f"{where}{key}: expected a non-empty string, got {value!r}")
    return value


def _label_values(label: Mapping[str, Any], key: str) -> tuple[str, ...]:
    if key not in label:
        raise MappingError(f"missing required key label.{key}")
    raw = label[key]
    values = raw if isinstance(raw, list) else [raw]
    texts = []
    for value in values:
        if isinstance(value, bool):
            texts.append("true" if value else "false")
        elif isinstance(value, str | int):
            texts.append(str(value).strip())
        else:
            raise MappingError(
                f"label.{key}: expected strings, integers or booleans, got {value!r}"
            )
    return tuple(texts)


# ---------------------------------------------------------------------------------------------
# data helpers


@dataclass(frozen=True)
class _Context:
    """What the reports need to name rows: ids and, optionally, tenure."""

    ids: pl.Series
    id_name: str
    tenure: pl.Series | None
    tenure_name: str | None


@dataclass(frozen=True)
class _Converted:
    values: pl.Series | None  # None: the column is left out (reported)
    kind: str  # categorical, float64, int64, boolean
    problems: tuple[str, ...] = ()


def _read(source: str | Path | pl.DataFrame) -> pl.DataFrame:
    if isinstance(source, pl.DataFrame):
        return source
    path = Path(source)
    if path.suffix.lower() == ".parquet":
        return pl.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pl.read_csv(path, infer_schema=False)
    if path.suffix.lower() == ".xlsx":
        return _read_xlsx(path)
    raise WideImportError(f"{path}: expected a .csv, .parquet or .xlsx file")


def _read_xlsx(path: Path) -> pl.DataFrame:
    """The first sheet of an Excel workbook, every cell as text (typed here, as for a CSV)."""
    try:
        frame = pl.read_excel(path, sheet_id=1, infer_schema_length=0)
    except ModuleNotFoundError as error:
        raise WideImportError(
            f"{path}: reading .xlsx needs the package fastexcel (pip install fastexcel)"
        ) from error
    except Exception as error:  # noqa: BLE001 - any reader failure is reported with the file
        raise WideImportError(f"{path}: not a readable .xlsx workbook: {error}") from error
    assert isinstance(frame, pl.DataFrame)  # one sheet asked for
    return frame.with_columns(pl.all().cast(pl.String))


def _check_columns(frame: pl.DataFrame, mapping: WideMapping, *, label: bool = True) -> None:
    wanted = [role for role in mapping.roles if label or role[0] != "label.column"]
    wanted += [("drop", name) for name in mapping.drop]
    wanted += [(f"columns.{rule.column}", rule.column) for rule in mapping.rules]
    missing = [(role, name) for role, name in wanted if name not in frame.columns]
    if missing:
        named = "; ".join(f"{name!r} ({role})" for role, name in missing)
        raise WideImportError(
            f"mapped column(s) not found: {named}; columns found: {', '.join(frame.columns)}"
        )


def _text(values: pl.Series) -> pl.Series:
    """Values as trimmed text, blank cells as null."""
    text = values.cast(pl.String).str.strip_chars()
    return pl.select(pl.when(text != "").then(text).alias(values.name)).to_series()


def _is_blank(values: pl.Series) -> pl.Series:
    if values.dtype == pl.String:
        return values.str.strip_chars().fill_null("") == ""
    if values.dtype.is_float():
        return values.is_null() | values.is_nan().fill_null(False)
    return values.is_null()


def _examples(context: _Context, mask: pl.Series) -> str:
    chosen = context.ids.filter(mask)
    shown = ", ".join(chosen.head(_EXAMPLES).to_list())
    more = ", ..." if chosen.len() > _EXAMPLES else ""
    return f"{context.id_name} {shown}{more}"


def _row_examples(frame: pl.DataFrame, ids: pl.Series, mask: pl.Series, column: str) -> str:
    chosen = pl.DataFrame({"row": frame[_ROW], "id": ids, "value": _text(frame[column])})
    shown = (
        chosen.filter(mask)
        .head(_EXAMPLES)
        .select(
            pl.format("row {} ({}): '{}'", "row", "id", pl.col("value")).fill_null(
                pl.format("row {} ({}): blank", "row", "id")
            )
        )
    )
    more = ", ..." if mask.sum() > _EXAMPLES else ""
    return ", ".join(shown.to_series().to_list()) + more


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _tenure_note(context: _Context, mask: pl.Series) -> str:
    if context.tenure is None or context.tenure_name is None:
        return ""
    values = context.tenure.filter(mask).drop_nulls()
    if values.len() == 0:
        return f"; {context.tenure_name} is blank for all of them"
    low, high = values.min(), values.max()
    if low == high:
        return f"; all have {context.tenure_name} {_number(low)}"  # type: ignore[arg-type]
    return f"; {context.tenure_name} {_number(low)}..{_number(high)}"  # type: ignore[arg-type]


def _customer_ids(frame: pl.DataFrame, column: str) -> pl.Series:
    ids = _text(frame[column])
    blank = ids.is_null()
    if blank.any():
        rows = frame[_ROW].filter(blank).head(_EXAMPLES).to_list()
        raise WideImportError(
            f"id column {column!r}: {blank.sum()} blank id(s), e.g. at data row(s) {rows}"
        )
    duplicated = ids.is_duplicated()
    if duplicated.any():
        repeated = ids.filter(duplicated).unique(maintain_order=True)
        raise WideImportError(
            f"id column {column!r}: {repeated.len()} id(s) occur more than once, e.g. "
            f"{', '.join(repeated.head(_EXAMPLES).to_list())}"
        )
    return ids


def _labels(frame: pl.DataFrame, mapping: WideMapping, ids: pl.Series) -> pl.Series:
    text = _text(frame[mapping.label]).fill_null("").str.to_lowercase()
    positive = text.is_in(list(mapping.positive))
    unknown = ~positive & ~text.is_in(list(mapping.negative))
    if unknown.any():
        raise WideImportError(
            f"label column {mapping.label!r}: {unknown.sum()} row(s) have values that are "
            f"neither positive {list(mapping.positive)} nor negative {list(mapping.negative)}: "
            f"{_row_examples(frame, ids, unknown, mapping.label)}"
        )
    return positive.cast(pl.Int8).alias(LABEL)


def _amount(
    frame: pl.DataFrame,
    column: str,
    role: str,
    mapping: WideMapping,
    context: _Context,
    problems: list[str],
) -> pl.Series:
    """A mapped money column (revenue or cost) as Float64: numeric, never blank, >= 0."""
    converted = _convert(frame[column], mapping.rule(column), context)
    if converted.kind not in ("int64", "float64") or converted.values is None:
        raise WideImportError(f"{role} column {column!r} is not numeric")
    problems.extend(converted.problems)
    values = converted.values.cast(pl.Float64)
    blank = values.is_null()
    if blank.any():
        raise WideImportError(
            f"{role} column {column!r}: {blank.sum()} blank value(s) ({_examples(context, blank)})"
            f'; {role} is required - set blank = "zero" under [columns.{column}] if a blank '
            "means none"
        )
    negative = values < 0
    if negative.any():
        raise WideImportError(
            f"{role} column {column!r}: {negative.sum()} negative value(s): "
            f"{_row_examples(frame, context.ids, negative, column)}"
        )
    return values


def _complaint_counts(
    frame: pl.DataFrame, column: str, mapping: WideMapping, context: _Context, problems: list[str]
) -> pl.Series:
    converted = _convert(frame[column], mapping.rule(column), context)
    if converted.kind not in ("int64", "float64") or converted.values is None:
        raise WideImportError(f"complaints column {column!r} is not numeric")
    problems.extend(converted.problems)
    values = converted.values
    bad = values < 0
    if values.dtype.is_float():
        bad = bad | (values != values.floor())
    bad = bad.fill_null(False)
    if bad.any():
        raise WideImportError(
            f"complaints column {column!r}: {bad.sum()} value(s) are not whole numbers >= 0: "
            f"{_row_examples(frame, context.ids, bad, column)}"
        )
    return values.cast(pl.Int64).alias(COMPLAINTS)


def _convert(values: pl.Series, rule: ColumnRule, context: _Context) -> _Converted:
    """Type one column following its rule (or its values) and report blank cells."""
    name = values.name
    blank = _is_blank(values)
    if blank.all() and rule.dtype is None:
        return _Converted(
            None, "categorical", (f"{name}: all {values.len()} values are blank; column left out",)
        )
    # A declared type keeps an all-blank column (all null): a model trained on it, scoring a
    # few rows whose cells are all blank, still finds it (features.wide_spec pins the types).
    kind = rule.dtype or _infer_kind(values, blank)
    if kind == "categorical":
        text = _text(values)
        converted = text.cast(pl.Enum(text.drop_nulls().unique().sort().to_list()))
        return _Converted(converted, kind, _categorical_reports(converted, blank, context))
    if kind == "boolean":
        converted = _to_boolean(values, blank, context)
        return _Converted(converted, kind, _blank_reports(name, blank, "null", None, context))
    target = pl.Int64 if kind == "int64" else pl.Float64
    if values.dtype == pl.String:
        parsed = values.str.strip_chars().cast(target, strict=False)
    elif values.dtype.is_numeric():
        parsed = values.cast(target, strict=False)
        if kind == "int64" and values.dtype.is_float():
            parsed = pl.select(
                pl.when(values == values.floor()).then(parsed).alias(name)
            ).to_series()
    else:
        raise WideImportError(
            f"column {name!r}: dtype {values.dtype} cannot be read as {kind}; "
            "add it to drop or convert it first"
        )
    unparsed = ~blank & parsed.is_null()
    if unparsed.any():
        shown = values.filter(unparsed).cast(pl.String).head(_EXAMPLES).to_list()
        raise WideImportError(
            f"column {name!r}: {unparsed.sum()} value(s) are not {kind} "
            f"({_examples(context, unparsed)}): {shown}"
        )
    rule_used: BlankRule = rule.blank or "null"
    if rule_used == "zero":
        parsed = parsed.fill_null(0).fill_nan(0) if kind == "float64" else parsed.fill_null(0)
    elif values.dtype.is_float():
        parsed = parsed.fill_nan(None)  # NaN counted as blank above
    return _Converted(
        parsed.alias(name), kind, _blank_reports(name, blank, rule_used, rule.blank, context)
    )


def _infer_kind(values: pl.Series, blank: pl.Series) -> str:
    dtype = values.dtype
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_integer():
        return "int64"
    if dtype.is_float():
        return "float64"
    if dtype in (pl.Categorical, pl.Enum):
        return "categorical"
    if dtype != pl.String:
        raise WideImportError(
            f"column {values.name!r}: dtype {dtype} is not a supported feature type "
            "(numbers, booleans, text); add it to drop or convert it first"
        )
    text = values.filter(~blank).str.strip_chars()
    if text.cast(pl.Int64, strict=False).null_count() == 0:
        return "int64"
    if text.cast(pl.Float64, strict=False).null_count() == 0:
        return "float64"
    return "categorical"


def _to_boolean(values: pl.Series, blank: pl.Series, context: _Context) -> pl.Series:
    if values.dtype == pl.Boolean:
        return values
    text = _text(values).str.to_lowercase()
    converted = pl.select(
        pl.when(text.is_in(_TRUE))
        .then(True)
        .when(text.is_in(_FALSE))
        .then(False)
        .otherwise(None)
        .alias(values.name)
    ).to_series()
    unparsed = ~blank & converted.is_null()
    if unparsed.any():
        shown = values.filter(unparsed).cast(pl.String).head(_EXAMPLES).to_list()
        raise WideImportError(
            f"column {values.name!r}: {unparsed.sum()} value(s) are not boolean "
            f"({_examples(context, unparsed)}): {shown}; accepted: "
            f"{', '.join(_TRUE)} / {', '.join(_FALSE)}"
        )
    return converted


def _blank_reports(
    name: str, blank: pl.Series, rule_used: str, declared: str | None, context: _Context
) -> tuple[str, ...]:
    count = int(blank.sum())
    if count == 0:
        return ()
    source = "from the mapping" if declared is not None else "the default"
    result = "0" if rule_used == "zero" else "null"
    return (
        f"{name}: {count} blank value{'s' if count > 1 else ''} ({_examples(context, blank)})"
        f'{_tenure_note(context, blank)}; set to {result} (blank = "{rule_used}", {source})',
    )


def _categorical_reports(
    converted: pl.Series, blank: pl.Series, context: _Context
) -> tuple[str, ...]:
    name = converted.name
    reports = []
    count = int(blank.sum())
    if count:
        reports.append(
            f"{name}: {count} blank value{'s' if count > 1 else ''} "
            f"({_examples(context, blank)}){_tenure_note(context, blank)}; kept as null"
        )
    distinct = converted.drop_nulls().n_unique()
    rows = converted.len() - count
    if rows >= 20 and distinct > rows // 2:
        reports.append(
            f"{name}: {distinct} distinct values in {rows} rows; looks like an identifier or "
            "free text rather than a category - consider listing it in drop"
        )
    return tuple(reports)
