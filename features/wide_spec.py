"""What a model trained on a wide table reads, recorded with the model so it can score alone.

A model trained with ``keepwise train --table`` reads an export's own columns through a mapping
(:mod:`features.wide_import`). To score customers later without the training file (one row sent
to the API, or a scoring table much smaller than the training one) keepwise must know which
columns the export has, what each is for, and how each feature column was typed at training.
Typing a few rows from their values alone would go wrong: prices that happen to be whole
numbers would come out as integers, and a categorical column whose values look numeric
(``"01"``, ``"1"``) as numbers that no longer match the levels the model learned.

:class:`WideTableSpec` is that record. Built at training by :func:`spec_from_import` and stored
in the bundle's summary under :data:`SPEC_KEY`, it gives back:

- :attr:`WideTableSpec.columns`: every export column with its role (the id, revenue, cost,
  complaints, tenure, segment, a model feature, or ``ignored``: the label, a dropped column, a
  column the leak guard left out), its type at training, whether it may be blank, the levels
  seen for a categorical and an example value (a median or the most frequent level, never a
  customer's row);
- :meth:`WideTableSpec.serving_mapping` and :meth:`WideTableSpec.frame`: records keyed by
  export column turned into the typed frame that :func:`features.wide_import.import_wide_table`
  reads with the training mapping, every type pinned, so one customer's row is imported exactly
  as the same row of a whole table;
- :meth:`WideTableSpec.retype`: a table imported from its values alone, re-imported with the
  training types pinned where its values suggested others (``keepwise score --table``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import polars as pl

from features.wide_import import (
    COMPLAINTS,
    MARGIN,
    REVENUE,
    ColumnRule,
    Dtype,
    WideImport,
    WideMapping,
    import_wide_table,
)

logger = logging.getLogger(__name__)

#: Key of the spec in a bundle's summary (``bundle.json``).
SPEC_KEY = "wide_table"
SPEC_VERSION = 1
#: Most levels of a categorical column recorded (for the API's documentation only: a level
#: not recorded is still scored as the model learned it).
MAX_LEVELS = 100

Role = Literal["id", "revenue", "cost", "complaints", "tenure", "segment", "feature", "ignored"]
Scalar = str | int | float | bool | None
_POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "categorical": pl.String,
    "float64": pl.Float64,
    "int64": pl.Int64,
    "boolean": pl.Boolean,
}


class SpecError(ValueError):
    """A recorded spec cannot be read (another version, or damaged)."""


@dataclass(frozen=True)
class WideColumn:
    """One column of the export, as the model reads it.

    Attributes:
        name: The column's name in the export.
        role: What it is for (see the module docstring).
        kind: Its type at training (categorical, float64, int64, boolean); None for the id
            (text) and ignored columns (anything).
        feature: The model feature it feeds (its own name, ``monthly_revenue`` for revenue,
            ``complaint_count`` for complaints); None when the model does not read it.
        nullable: Whether a blank (null) value is accepted (scoring does as training did:
            blanks become nulls, which the model reads as missing).
        levels: Categorical: the first :data:`MAX_LEVELS` levels seen at training, sorted.
        n_levels: Categorical: how many levels training saw.
        example: A typical value: the median of a number, the most frequent level.
        note: Why an ignored column is not read.
    """

    name: str
    role: Role
    kind: Dtype | None
    feature: str | None = None
    nullable: bool = True
    levels: tuple[str, ...] = ()
    n_levels: int = 0
    example: Scalar = None
    note: str = ""

    @property
    def read(self) -> bool:
        """Whether scoring reads the column (every role but ``ignored``)."""
        return self.role != "ignored"


@dataclass(frozen=True)
class WideTableSpec:
    """The export's columns and the mapping a wide model was trained with.

    Attributes:
        mapping: The training mapping.
        columns: Every column of the export the mapping names or the import kept, id first,
            then the order of the export.
        assumptions: What the training import assumed rather than read.
    """

    mapping: WideMapping
    columns: tuple[WideColumn, ...]
    assumptions: tuple[str, ...] = field(default=())

    @property
    def read_columns(self) -> tuple[WideColumn, ...]:
        """The columns scoring reads, in order."""
        return tuple(column for column in self.columns if column.read)

    def column(self, name: str) -> WideColumn:
        """The column called ``name``.

        Raises:
            KeyError: No such column.
        """
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def serving_mapping(self) -> WideMapping:
        """The training mapping for a frame of :meth:`frame`: types pinned, nothing dropped."""
        read = {column.name: column for column in self.read_columns}
        rules = []
        for name, column in read.items():
            if column.role in ("id", "revenue", "cost"):
                if any(rule.column == name for rule in self.mapping.rules):
                    rules.append(self.mapping.rule(name))
                continue
            rules.append(ColumnRule(name, dtype=column.kind, blank=self.mapping.rule(name).blank))
        return dataclasses.replace(self.mapping, drop=(), rules=tuple(rules))

    def frame(self, records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
        """Records keyed by export column as the typed frame :meth:`serving_mapping` reads.

        Args:
            records: One mapping per customer holding every column scoring reads, values of
                the column's type (validated before: see :mod:`service.api.wide_rows`);
                other keys are left out.

        Returns:
            One row per record, the read columns in spec order.
        """
        series = []
        for column in self.read_columns:
            values = [record[column.name] for record in records]
            if column.role == "id":
                series.append(pl.Series(column.name, [str(v) for v in values], dtype=pl.String))
            else:
                dtype = _POLARS_TYPES[column.kind or "categorical"]
                series.append(pl.Series(column.name, values, dtype=dtype, strict=False))
        return pl.DataFrame(series)

    def retype(
        self, imported: WideImport, source: str | Path | pl.DataFrame, mapping: WideMapping
    ) -> WideImport:
        """``imported`` again with the training types pinned, if its values suggested others.

        Args:
            imported: ``source`` imported with ``mapping`` (types read from its values).
            source: The table (file path or frame) it was imported from.
            mapping: The mapping used.

        Returns:
            ``imported`` itself when every model feature has its training type; else ``source``
            re-imported with those features' types pinned (a value that does not fit then
            raises :class:`features.wide_import.WideImportError` naming the column).
        """
        changed = [
            column
            for column in self.read_columns
            if column.feature is not None
            and column.feature == column.name
            and column.name in imported.features.columns
            and _kind_of(imported.features.schema[column.name]) != column.kind
        ]
        if not changed:
            return imported
        logger.info(
            "re-importing with the training types of %s",
            ", ".join(f"{c.name} ({c.kind})" for c in changed),
        )
        pinned = {c.name: c for c in changed}
        rules = [rule for rule in mapping.rules if rule.column not in pinned]
        rules += [
            ColumnRule(c.name, dtype=c.kind, blank=mapping.rule(c.name).blank)
            for c in pinned.values()
        ]
        return import_wide_table(
            source, dataclasses.replace(mapping, rules=tuple(rules)), labelled=False
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (:meth:`from_dict` reads it back)."""
        return {
            "version": SPEC_VERSION,
            "mapping": dataclasses.asdict(self.mapping),
            "columns": [dataclasses.asdict(column) for column in self.columns],
            "assumptions": list(self.assumptions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WideTableSpec:
        """Read :meth:`to_dict`'s form back.

        Raises:
            SpecError: Another version, or a damaged record.
        """
        if not isinstance(data, Mapping) or data.get("version") != SPEC_VERSION:
            found = data.get("version") if isinstance(data, Mapping) else None
            raise SpecError(
                f"the wide-table record is version {found!r}; this keepwise reads "
                f"version {SPEC_VERSION}"
            )
        try:
            raw = dict(data["mapping"])
            raw["rules"] = tuple(ColumnRule(**rule) for rule in raw["rules"])
            for key in ("positive", "negative", "drop"):
                raw[key] = tuple(raw[key])
            mapping = WideMapping(**raw)
            columns = tuple(
                WideColumn(**{**column, "levels": tuple(column["levels"])})
                for column in data["columns"]
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SpecError(f"the wide-table record is damaged: {error}") from error
        return cls(mapping, columns, tuple(data.get("assumptions", ())))


def spec_of(summary: Mapping[str, Any]) -> WideTableSpec | None:
    """The spec recorded in a bundle's summary; None when there is none (a CRM model, or a
    wide model trained before specs were recorded).

    Raises:
        SpecError: The record is of another version or damaged.
    """
    recorded = summary.get(SPEC_KEY)
    return None if recorded is None else WideTableSpec.from_dict(recorded)


def spec_from_import(
    mapping: WideMapping, imported: WideImport, model_features: Sequence[str]
) -> WideTableSpec:
    """What a model trained on ``imported`` reads (see the module docstring).

    Args:
        mapping: The mapping the table was imported with.
        imported: The training import.
        model_features: The features the model uses (after the leak guard), in any order.

    Returns:
        The spec: the id, the mapped roles, every feature and every column the model ignores.
    """
    frame = imported.features
    used = set(model_features)
    columns: list[WideColumn] = []
    if mapping.id is not None:
        columns.append(WideColumn(mapping.id, "id", None, nullable=False, example="example-1"))
    roles: dict[str, Role] = {}
    for mapped, name in mapping.roles:
        if mapped in ("revenue", "cost", "complaints", "tenure", "segment"):
            roles[name] = cast(Role, mapped)
    if mapping.revenue is not None:
        columns.append(_numeric(mapping.revenue, "revenue", frame, REVENUE, used, nullable=False))
    if mapping.cost is not None:
        cost = frame.get_column(REVENUE) - frame.get_column(MARGIN)
        columns.append(
            WideColumn(
                mapping.cost, "cost", "float64", nullable=False, example=_median(cost, "float64")
            )
        )
    if mapping.complaints is not None:
        columns.append(_numeric(mapping.complaints, "complaints", frame, COMPLAINTS, used))
    skip = {REVENUE, COMPLAINTS}
    for name in imported.feature_columns:
        if name in skip:
            continue
        role: Role = roles.get(name, "feature")
        if role == "feature" and name not in used:
            columns.append(
                WideColumn(name, "ignored", None, note="left out by the leak guard at training")
            )
            continue
        columns.append(_typed(name, role, frame, used))
    for name in mapping.drop:
        columns.append(WideColumn(name, "ignored", None, note="dropped by the mapping"))
    columns.append(
        WideColumn(mapping.label, "ignored", None, note="the churn label: what the model predicts")
    )
    return WideTableSpec(mapping, tuple(columns), tuple(imported.assumptions))


def _numeric(
    name: str,
    role: Role,
    frame: pl.DataFrame,
    feature: str,
    used: set[str],
    *,
    nullable: bool = True,
) -> WideColumn:
    values = frame.get_column(feature)
    kind = cast(Dtype, _kind_of(values.dtype))
    return WideColumn(
        name,
        role,
        kind,
        feature=feature if feature in used else None,
        nullable=nullable,
        example=_median(values, kind),
    )


def _typed(name: str, role: Role, frame: pl.DataFrame, used: set[str]) -> WideColumn:
    values = frame.get_column(name)
    kind = cast(Dtype, _kind_of(values.dtype))
    levels: tuple[str, ...] = ()
    example: Scalar
    if kind == "categorical":
        observed = values.cast(pl.String).drop_nulls()
        distinct = observed.unique().sort()
        levels = tuple(distinct.head(MAX_LEVELS).to_list())
        example = _most_frequent(observed)
    elif kind == "boolean":
        example = _most_frequent(values.drop_nulls())
    else:
        example = _median(values, kind)
    return WideColumn(
        name,
        role,
        kind,
        feature=name if name in used else None,
        nullable=role != "segment",
        levels=levels,
        n_levels=values.cast(pl.String).drop_nulls().n_unique() if kind == "categorical" else 0,
        example=example,
    )


def _kind_of(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Enum | pl.Categorical) or dtype == pl.String:
        return "categorical"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_integer():
        return "int64"
    return "float64"


def _median(values: pl.Series, kind: str) -> Scalar:
    median = values.cast(pl.Float64).median()
    if median is None:
        return None
    number = float(cast(float, median))
    return int(round(number)) if kind == "int64" else round(number, 2)


def _most_frequent(values: pl.Series) -> Scalar:
    if values.len() == 0:
        return None
    counts = values.value_counts(name="n").sort(["n", values.name], descending=[True, False])
    value: Scalar = counts.get_column(values.name)[0]
    return value
