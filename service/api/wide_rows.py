"""The request model of a wide-table model's rows, generated when the model is loaded.

A model trained with ``keepwise train --table`` reads an export's own columns (one row per
customer), as its mapping names them. The API takes those rows as they are in the export: a
user with a one-row-per-customer file sends each row as a JSON object keyed by the file's
column names. What the model reads was recorded with it at training
(:class:`features.wide_spec.WideTableSpec`); :func:`table_rows_for` turns that record into
pydantic models (``create_model``) so that ``/docs`` and ``/openapi.json`` list the served
model's columns and requests are checked against them:

- the id column (when the mapping names one): text, required, no control characters;
- every column the model or its decisions read (features, revenue, cost, complaints, tenure,
  segment): required, typed as at training. Numbers are finite JSON numbers (``3.0`` counts as
  the whole number ``3``); categoricals are JSON strings (any text: a level the model never
  saw is scored as missing, as in ``keepwise score --table``); booleans are ``true``/``false``.
  ``null`` stands for a blank cell where the export may have one (as the batch accepts
  blanks); revenue and cost may not be blank or negative, complaints and tenure not negative;
- columns the model does not read (the churn label, columns the mapping drops or the leak
  guard left out): optional and ignored, so a whole export row can be sent unchanged;
- any other key is refused (a misspelt column is an error, never a silent blank).

Magnitudes are bounded as for the CRM feature rows (:mod:`service.api.feature_row`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    model_validator,
)

from features.wide_import import DEFAULT_SEGMENT, WideMapping
from features.wide_spec import SPEC_KEY, SpecError, WideColumn, WideTableSpec
from model.bundle import ModelBundle
from model.policy import Policy
from service.api.feature_row import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    MAX_INTEGER,
    MAX_NUMBER,
    TEXT_MAX_LENGTH,
)
from service.api.schemas import MAX_BATCH, IsoDate

ROW_SCHEMA = "TableRow"
REQUEST_SCHEMA = "TableRecommendationRequest"
EXAMPLE_AS_OF = "2025-01-01"
_MAX_LEVELS_SHOWN = 30


class TableModelError(ValueError):
    """The served bundle is a wide-table model that cannot take rows (the message says why)."""


def _text(value: Any) -> Any:
    """A JSON integer as its decimal text (``0`` as ``"0"``); text is left as it is; anything
    else is refused. A column of codes read as numbers by whoever built the JSON (``0``/``1``
    flags, numeric ids) then matches the text the export holds, as the batch reads it."""
    if type(value) is int:
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueError("expected text (a JSON string, or a whole number standing for its digits)")


def _text_type(**constraints: Any) -> Any:
    """Text that may also come as a JSON integer (see :func:`_text`), with ``constraints``."""
    schema = {"type": "string", **_json_constraints(constraints)}
    return Annotated[
        str,
        Field(strict=True, **constraints),
        BeforeValidator(_text),
        WithJsonSchema({"anyOf": [schema, {"type": "integer"}]}),
    ]


def _json_constraints(constraints: dict[str, Any]) -> dict[str, Any]:
    names = {"min_length": "minLength", "max_length": "maxLength", "pattern": "pattern"}
    return {names[key]: value for key, value in constraints.items()}


def _whole_number(value: Any) -> Any:
    """``3.0`` as ``3`` (an integer to JSON Schema); anything else is left to strict int."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


class TableRowBase(BaseModel):
    """One customer's row of the export; fields are generated per served model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def record(self) -> dict[str, Any]:
        """The row keyed by export column (what :meth:`WideTableSpec.frame` reads)."""
        return self.model_dump(by_alias=True)


@dataclass(frozen=True)
class TableRows:
    """What the API needs to take a wide-table model's rows.

    Attributes:
        spec: What the model reads (recorded at training).
        mapping: The training mapping for the rows' frame (:meth:`WideTableSpec.serving_mapping`).
        row_model: The generated model of one row (schema ``TableRow``).
        request_model: The generated request body (schema ``TableRecommendationRequest``).
        example: A documented, valid request body (typical values, no customer's data).
    """

    spec: WideTableSpec
    mapping: WideMapping
    row_model: type[TableRowBase]
    request_model: type[BaseModel]
    example: dict[str, Any]

    def columns_text(self) -> str:
        """The columns the rows take, for the route's description."""
        read = [f"`{c.name}`" for c in self.spec.read_columns]
        ignored = [f"`{c.name}`" for c in self.spec.columns if not c.read]
        text = f"Each row takes {', '.join(read)}"
        if ignored:
            text += f"; it may also hold {', '.join(ignored)}, which the model does not read"
        return text + "."


def table_rows_for(bundle: ModelBundle, policy: Policy) -> TableRows | None:
    """The request models of a wide-table bundle; None for a model of the CRM pipeline.

    Raises:
        TableModelError: The bundle is a wide-table model trained before keepwise recorded
            its columns, its record is damaged, or its mapping assumes a segment the policy
            does not know.
    """
    recorded = bundle.summary.get(SPEC_KEY)
    if recorded is None:
        if bundle.value is None:  # the margin comes with the rows: a wide-table model
            raise TableModelError(
                "this model was trained on a wide table (keepwise train --table) before "
                "keepwise recorded the table's columns with the model, so the API cannot tell "
                "which columns its rows take; train it again with the same command (or score "
                "it with keepwise score --table)"
            )
        return None
    try:
        spec = WideTableSpec.from_dict(recorded)
    except SpecError as error:
        raise TableModelError(str(error)) from error
    mapping = spec.mapping
    if mapping.segment is None:
        assumed = mapping.assumed_segment or DEFAULT_SEGMENT
        if assumed not in policy.segments:
            raise TableModelError(
                f"the model's mapping takes every customer as segment {assumed!r}, which policy "
                f"{policy.version} does not know ({', '.join(policy.segments)}); serve it with "
                "a policy that has that segment"
            )
    fields = {
        f"c{index}": _field(column, policy, mapping.tenure_unit)
        for index, column in enumerate(spec.columns)
    }
    row_model: type[TableRowBase] = create_model(  # type: ignore[call-overload]
        ROW_SCHEMA,
        __base__=TableRowBase,
        __doc__=_row_doc(spec),
        **fields,
    )
    example_row = {
        column.name: column.example
        for column in spec.read_columns
        if column.example is not None or column.nullable
    }
    example = {"as_of": EXAMPLE_AS_OF, "customers": [example_row]}
    return TableRows(
        spec, spec.serving_mapping(), row_model, _request_model(spec, row_model, example), example
    )


def _request_model(
    spec: WideTableSpec, row_model: type[TableRowBase], example: dict[str, Any]
) -> type[BaseModel]:
    """The request body: ``as_of`` and 1 to MAX_BATCH rows, ids unique when there are ids."""
    id_column = spec.mapping.id
    validators: dict[str, Any] = {}
    if id_column is not None:

        def unique_customers(self: Any) -> Any:
            first: dict[str, int] = {}
            repeated = [
                i
                for i, row in enumerate(self.customers)
                if first.setdefault(row.record()[id_column], i) != i
            ]
            if repeated:
                raise ValueError(
                    f"{id_column} must be unique in a request; rows {repeated[:10]} repeat an "
                    f"earlier row's {id_column}"
                )
            return self

        validators["unique_customers"] = model_validator(mode="after")(unique_customers)
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        REQUEST_SCHEMA,
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [example]}),
        __doc__="Rows of one or more customers of the served model's table, described at one date.",
        __validators__=validators,
        as_of=(
            IsoDate,
            Field(
                description="The day the rows describe (a wide table has no dates of its own), "
                "as YYYY-MM-DD; echoed on every recommendation."
            ),
        ),
        customers=(
            list[row_model],  # type: ignore[valid-type]
            Field(
                min_length=1,
                max_length=MAX_BATCH,
                description=_customers_doc(spec),
                json_schema_extra={"x-unique-by": id_column} if id_column else None,
            ),
        ),
    )
    return model


def _row_doc(spec: WideTableSpec) -> str:
    described = f" ({spec.mapping.description})" if spec.mapping.description else ""
    return (
        f"One customer's row of the table the served model was trained on{described}, keyed "
        "by the table's own column names."
    )


def _customers_doc(spec: WideTableSpec) -> str:
    id_column = spec.mapping.id
    unique = (
        f" `{id_column}` may appear only once in a request (a repeated one answers 422 naming "
        "the rows)."
        if id_column
        else " The table has no id column: customers are numbered 1, 2, ... in request order."
    )
    return f"1 to {MAX_BATCH:,} rows, one per customer, as the export holds them." + unique


def _field(column: WideColumn, policy: Policy, tenure_unit: str) -> tuple[Any, Any]:
    """The (annotation, FieldInfo) of one export column."""
    if column.role == "id":
        annotation: Any = _text_type(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
        return annotation, Field(
            ...,
            alias=column.name,
            title=column.name,
            description="The customer's id: text (a whole number is read as its digits), no "
            "control characters.",
            examples=["C-1042"],
        )
    if not column.read:
        return str | int | float | bool | None, Field(
            default=None,
            alias=column.name,
            title=column.name,
            description=f"Ignored: {column.note}.",
        )
    lower = 0 if column.role in ("revenue", "cost", "complaints", "tenure") else None
    description = _describe(column, policy, tenure_unit)
    if column.kind == "float64":
        low = -MAX_NUMBER if lower is None else lower
        annotation = Annotated[
            float, Field(strict=True, allow_inf_nan=False, ge=low, le=MAX_NUMBER)
        ]
    elif column.kind == "int64":
        low = -MAX_INTEGER if lower is None else lower
        annotation = Annotated[
            int, Field(strict=True, ge=low, le=MAX_INTEGER), BeforeValidator(_whole_number)
        ]
    elif column.kind == "boolean":
        annotation = Annotated[bool, Field(strict=True)]
    elif column.role == "segment":
        annotation = _text_type(max_length=TEXT_MAX_LENGTH, pattern=segment_pattern(policy))
    else:
        annotation = _text_type(max_length=TEXT_MAX_LENGTH)
    if column.nullable:
        annotation = annotation | None
    examples = [column.example] if column.example is not None else None
    return annotation, Field(
        ..., alias=column.name, title=column.name, description=description, examples=examples
    )


def segment_pattern(policy: Policy) -> str:
    """A pattern matching the policy's segments as the import reads them: any case, spaces
    or hyphens for the underscore, blanks around (``Small Business``, ``mid-market``)."""

    def letters(word: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)

    alternatives = [
        r"(?:[\s-]+|_)".join(letters(part) for part in segment.split("_"))
        for segment in policy.segments
    ]
    return rf"^\s*(?:{'|'.join(alternatives)})\s*$"


def _describe(column: WideColumn, policy: Policy, tenure_unit: str) -> str:
    role = {
        "revenue": "Monthly revenue (the mapping's `revenue`), at least 0.",
        "cost": "Monthly cost (the mapping's `cost`), at least 0.",
        "complaints": "Complaint count (the mapping's `complaints`), at least 0.",
        "tenure": f"Tenure in {tenure_unit} (the mapping's `tenure`), at least 0.",
        "segment": "Segment (the mapping's `segment`): one of policy "
        f"{policy.version}'s segments {', '.join(policy.segments)}, compared ignoring case.",
        "feature": "A feature of the model.",
    }[column.role]
    kind = {
        "float64": " A number.",
        "int64": " A whole number.",
        "boolean": " true or false.",
        "categorical": " Text (a whole number is read as its digits).",
    }[column.kind or "categorical"]
    text = role + kind
    if column.kind == "categorical" and column.levels and column.role != "segment":
        shown = ", ".join(f"`{level}`" for level in column.levels[:_MAX_LEVELS_SHOWN])
        more = (
            f" (and {column.n_levels - _MAX_LEVELS_SHOWN:,} more)"
            if column.n_levels > _MAX_LEVELS_SHOWN
            else ""
        )
        text += f" Seen in training: {shown}{more}; other text is scored as an unseen value."
    if column.nullable:
        text += " null for a blank cell."
    return text
