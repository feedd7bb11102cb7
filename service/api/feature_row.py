"""The request model of one customer's feature row, generated from the feature table schema.

:class:`FeatureRow` is built at import from :func:`features.output_schema.feature_table_schema`
(the pandera schema that the batch path validates with), so the API accepts exactly the columns,
dtypes, nullability and ranges the feature pipeline produces and cannot drift from it:

- ``Int64`` columns -> JSON integers: ``3`` and ``3.0`` (JSON Schema's ``integer`` is any number
  without a fraction) are accepted; ``3.5``, ``"3"`` and ``true`` are refused;
- ``Float64`` columns -> JSON numbers, finite only (NaN and Infinity are refused; strict:
  ``"3"`` and ``true`` are refused, integers are fine);
- ``String`` columns with an ``isin`` check -> enums (``segment``, ``contract_type``, from
  :mod:`features.contract`); other strings (``region``) -> free text;
- ``ge`` / ``in_range`` checks -> ``minimum`` / ``maximum`` (e.g. money that cannot be
  negative); nullable columns must still be sent, as ``null`` when there is nothing to measure.

On top of the schema the API bounds magnitudes so arithmetic cannot overflow: integers at
``MAX_INTEGER`` and numbers at ``MAX_NUMBER`` in absolute value. Unknown fields are refused (a
misspelt feature is an error, never a silent zero). Cross-column rules of the schema (a 3-month
count never exceeds its 12-month count, ...) are checked on the records by
:data:`features.row_rules.FEATURE_TABLE_RULES`, the rules the schema itself checks.

A row may also carry ``account_manager`` (not a feature, as ``keepwise features`` tables hold it):
it is accepted and ignored. Scoped keys score only customers the store attributes to them (see
:mod:`service.api.routes.recommendations`), whatever a row claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pandera.polars as pa
import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from features.output_schema import feature_table_schema
from model.explain import humanise

MAX_INTEGER = 1_000_000_000
MAX_NUMBER = 1e12
ID_MAX_LENGTH = 128
TEXT_MAX_LENGTH = 200

# An id: no control characters (NUL cannot be stored, newlines forge log lines) and not blank.
ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
# Free text: anything but NUL (PostgreSQL text cannot hold it), with one non-space character.
TEXT_PATTERN = r"^[^\x00]*[^\x00\s][^\x00]*$"

CustomerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="The customer's key in the CRM (no control characters).",
        examples=["C0000042"],
    ),
]


class FeatureSchemaError(TypeError):
    """The feature table schema uses a dtype or check the API does not know how to express."""


def _bounds(column: pa.Column) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    """Field constraints and allowed values (``isin``) from a pandera column's checks."""
    constraints: dict[str, Any] = {}
    allowed: tuple[str, ...] | None = None
    for check in column.checks:
        stats = check.statistics
        if check.name == "greater_than_or_equal_to":
            constraints["ge"] = stats["min_value"]
        elif check.name == "in_range":
            key_min = "ge" if stats.get("include_min", True) else "gt"
            key_max = "le" if stats.get("include_max", True) else "lt"
            constraints[key_min], constraints[key_max] = stats["min_value"], stats["max_value"]
        elif check.name == "isin":
            allowed = tuple(stats["allowed_values"])
        else:
            raise FeatureSchemaError(
                f"feature column {column.name!r} has a check {check.name!r} that the API "
                "request model cannot express; extend service/api/feature_row.py"
            )
    return constraints, allowed


def _describe(name: str, dtype: object, nullable: bool, constraints: dict[str, Any]) -> str:
    kind = {"Int64": "whole number", "Float64": "number", "String": "text"}.get(str(dtype), "")
    parts = [f"{humanise(name)} at `as_of` ({kind}"]
    if "ge" in constraints and "le" in constraints:
        parts.append(f", {constraints['ge']} to {constraints['le']}")
    elif "ge" in constraints:
        parts.append(f", at least {constraints['ge']}")
    parts.append(").")
    if nullable:
        parts.append(" Null when there is nothing to measure.")
    return "".join(parts)


def _whole_number(value: Any) -> Any:
    """``3.0`` as ``3`` (an integer to JSON Schema); anything else is left to strict int."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _field(column: pa.Column) -> tuple[Any, Any]:
    """The (annotation, FieldInfo) of one feature column."""
    name, dtype, nullable = str(column.name), column.dtype.type, column.nullable
    constraints, allowed = _bounds(column)
    description = _describe(name, dtype, nullable, constraints)
    annotation: Any
    if dtype == pl.Int64:
        constraints.setdefault("ge", -MAX_INTEGER)
        constraints.setdefault("le", MAX_INTEGER)
        # the validator after the constraints wraps them: it runs first, and the JSON schema
        # keeps minimum and maximum
        annotation = Annotated[
            int, Field(strict=True, **constraints), BeforeValidator(_whole_number)
        ]
    elif dtype == pl.Float64:
        constraints.setdefault("ge", -MAX_NUMBER)
        constraints.setdefault("le", MAX_NUMBER)
        annotation = Annotated[float, Field(strict=True, allow_inf_nan=False, **constraints)]
    elif dtype == pl.String and allowed is not None:
        annotation = Literal[allowed]  # type: ignore[valid-type]
        description += f" One of: {', '.join(allowed)}."
    elif dtype == pl.String:
        annotation = Annotated[str, Field(min_length=1, max_length=TEXT_MAX_LENGTH)]
        description += " Free text."
    else:
        raise FeatureSchemaError(
            f"feature column {name!r} has dtype {dtype} that the API request model cannot express"
        )
    if nullable:
        annotation = annotation | None
    return annotation, Field(..., description=description)


def _feature_fields() -> tuple[dict[str, pl.DataType], dict[str, Any]]:
    schema = feature_table_schema()
    dtypes: dict[str, pl.DataType] = {}
    fields: dict[str, Any] = {}
    for name, column in schema.columns.items():
        dtypes[name] = column.dtype.type
        if name != "customer_id":
            fields[name] = _field(column)
    return dtypes, fields


FEATURE_DTYPES, _FIELDS = _feature_fields()
"""Column -> polars dtype of the feature table, ``customer_id`` first, in schema order."""

FEATURE_COLUMNS: tuple[str, ...] = tuple(name for name in FEATURE_DTYPES if name != "customer_id")


class FeatureRowBase(BaseModel):
    """Common part of a feature row: the customer and their account manager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: CustomerId
    account_manager: Annotated[str, Field(min_length=1, max_length=TEXT_MAX_LENGTH)] | None = Field(
        default=None,
        description="The customer's account manager (not a feature). Accepted and ignored: "
        "a scoped key's customers are the ones the last batch run attributes to it.",
        examples=["AM-007"],
    )

    def feature(self, name: str) -> Any:
        """The value of feature ``name`` (fields are generated, so not known statically)."""
        return getattr(self, name)


FeatureRow: type[FeatureRowBase] = create_model(  # type: ignore[call-overload]
    "FeatureRow",
    __base__=FeatureRowBase,
    __doc__="One customer's features at `as_of`, exactly as `keepwise features` writes them.",
    **_FIELDS,
)


def rows_to_records(rows: Sequence[FeatureRowBase]) -> list[dict[str, Any]]:
    """Validated rows as records: ``customer_id`` and the feature columns, in schema order."""
    columns = list(FEATURE_DTYPES)
    return [{name: getattr(row, name) for name in columns} for row in rows]
