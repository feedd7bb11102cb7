"""Score rows of a wide table with the served wide-table model: ``POST /v1/recommendations/table``.

A model trained with ``keepwise train --table`` takes the rows of its own export
(:mod:`service.api.wide_rows` generates their request model when the model is loaded). A request
goes through the batch's code from the rows on, so that a customer's row gets the recommendation
``keepwise score --table`` writes for it:

1. the body is validated against the served model's request model (422 naming the row and the
   column; the value sent is never echoed, as everywhere in the API);
2. the rows become a frame typed as at training (:meth:`features.wide_spec.WideTableSpec.frame`)
   and are imported with the model's own mapping by
   :func:`features.wide_import.import_wide_table`, the batch's importer, which derives the
   decision inputs (segment, months of history, monthly revenue) and states what it assumed;
3. a segment the policy does not know answers 422 naming the row;
4. :func:`model.wide_recommend.recommend_wide` (the batch's function: one decision kernel)
   scores and decides them; every recommendation carries the import's ``assumptions``.

The drivers are explained for every row (``?drivers=N``, as for CRM feature rows); the batch
explains only customers whose action is not retain, and says so.

:func:`install_openapi` makes ``/openapi.json`` (and so ``/docs``) show the served model's
columns: the generated request schema replaces the placeholder of the route's body, and is
rebuilt when a reload swaps in another model.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from features.wide_import import WideImportError, import_wide_table
from model.decision_inputs import DecisionInputError
from model.leaf_contributions import ContributionMethod
from model.wide_recommend import ASSUMPTIONS, recommend_wide
from service.api.schemas import (
    TableRecommendationBatchPublic,
    TableRecommendationPublic,
    recommendation_from_row,
)
from service.api.scoring import (
    DEFAULT_DRIVERS,
    WARM_UP_AS_OF,
    RowsRejected,
    decision_inputs_rejected,
    drivers_method_for,
)
from service.api.serving import ModelLoadError, ServingModel
from service.api.wide_rows import REQUEST_SCHEMA, TableRows

logger = logging.getLogger(__name__)

TABLE_PATH = "/v1/recommendations/table"


class NotATableModel(LookupError):
    """The served model was trained on CRM tables: its rows go to POST /v1/recommendations."""


def table_of(serving: ServingModel) -> TableRows:
    """The served model's table rows.

    Raises:
        NotATableModel: The served model takes the CRM pipeline's feature rows.
    """
    if serving.table is None:
        raise NotATableModel(
            f"the served model {serving.model_name} version {serving.version} was trained on "
            "CRM tables: send its feature rows (as keepwise features writes them) to "
            "POST /v1/recommendations"
        )
    return serving.table


def parse_table_request(body: bytes, table: TableRows) -> BaseModel:
    """The request body validated against the served model's request model.

    Raises:
        RowsRejected: The body is not valid JSON or breaks the model (422 items, ``loc``
            starting with ``body``; no input echoed).
    """
    try:
        return table.request_model.model_validate_json(body)
    except ValidationError as invalid:
        raise RowsRejected(
            [
                {**problem, "loc": ["body", *problem["loc"]]}
                for problem in invalid.errors(include_input=False, include_url=False)
            ]
        ) from None


def customer_ids(request: Any, table: TableRows) -> list[str | None]:
    """The id of each row of a validated request (None for a table without an id column)."""
    column = table.spec.mapping.id
    return [None if column is None else row.record()[column] for row in request.customers]


def score_table_rows(
    request: Any,
    serving: ServingModel,
    drivers: int = DEFAULT_DRIVERS,
    drivers_method: ContributionMethod | None = None,
) -> TableRecommendationBatchPublic:
    """Recommendations for validated table rows, in their order (blocking).

    Args:
        request: A body validated by :func:`parse_table_request` (``as_of``, ``customers``).
        serving: The model (a wide-table model), policy and version to use.
        drivers: Churn drivers to explain per row (0: none).
        drivers_method: How drivers are attributed; None: the model's default.

    Raises:
        NotATableModel: The served model takes CRM feature rows.
        RowsRejected: The rows cannot be read with the model's mapping, name a segment the
            policy does not know, or give figures the policy cannot decide on.
        DriversMethodUnavailable: The model cannot attribute drivers by ``drivers_method``.
    """
    table = table_of(serving)
    method = drivers_method_for(serving, drivers_method)
    frame = table.spec.frame([row.record() for row in request.customers])
    try:
        imported = import_wide_table(frame, table.mapping, labelled=False)
    except WideImportError as error:
        raise RowsRejected(
            [
                {
                    "type": "table_rows",
                    "loc": ["body", "customers"],
                    "msg": f"the rows cannot be read with the model's mapping: {error}",
                }
            ]
        ) from None
    assert imported.decisions is not None
    _check_segments(imported.decisions.get_column("segment").to_list(), table, serving)
    try:
        recommended = recommend_wide(
            imported,
            serving.bundle,
            serving.policy,
            as_of=request.as_of,
            model_version=serving.version,
            drivers=drivers,
            explain="all",
            drivers_method=method,
        )
    except DecisionInputError as error:
        raise decision_inputs_rejected(error) from None
    return TableRecommendationBatchPublic(
        model_version=serving.version,
        policy_version=serving.policy.version,
        recommendations=[
            TableRecommendationPublic.model_validate(
                {**recommendation_from_row(row), ASSUMPTIONS: row[ASSUMPTIONS]}
            )
            for row in recommended.iter_rows(named=True)
        ],
    )


def _check_segments(segments: list[str | None], table: TableRows, serving: ServingModel) -> None:
    """422 items for rows whose segment the policy does not know (none without a segment
    column: an assumed segment was checked when the model was loaded)."""
    column = table.spec.mapping.segment
    if column is None:
        return
    allowed = set(serving.policy.segments)
    problems = [
        {
            "type": "policy_segment",
            "loc": ["body", "customers", index, column],
            "msg": f"{column} is not one of policy {serving.policy.version}'s segments: "
            f"{', '.join(serving.policy.segments)} (compared ignoring case)",
        }
        for index, segment in enumerate(segments)
        if segment not in allowed
    ]
    if problems:
        raise RowsRejected(problems)


def warm_up_table_model(serving: ServingModel) -> None:
    """Score the model's documented example row once before the model is served.

    Raises:
        ModelLoadError: The model cannot score a valid row of its own table.
    """
    table = table_of(serving)
    try:
        request = table.request_model.model_validate(
            {**table.example, "as_of": WARM_UP_AS_OF.isoformat()}
        )
        score_table_rows(request, serving)
    except RowsRejected as rejected:
        logger.info("warm-up row not scored (%s); model accepted", rejected.errors[0]["msg"])
    except Exception as error:  # noqa: BLE001 - any failure means this model cannot serve
        raise ModelLoadError(
            f"model {serving.model_name} version {serving.version} cannot score a valid row "
            f"of its table: {type(error).__name__}: {error}"
        ) from error


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe the served model's table rows (see the module docstring).

    The schema is built again when the served model's table rows change (a reload).
    """
    build = app.openapi
    described: dict[str, TableRows | None | bool] = {"table": False}  # False: nothing yet

    def openapi() -> dict[str, Any]:
        holder = getattr(app.state, "models", None)
        serving: ServingModel | None = holder.current if holder is not None else None
        table = serving.table if serving is not None else None
        if described["table"] is table:
            return build()
        app.openapi_schema = None
        schema = build()
        _document(schema, serving, table)
        described["table"] = table
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(
    schema: dict[str, Any], serving: ServingModel | None, table: TableRows | None
) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    operation = schema.get("paths", {}).get(TABLE_PATH, {}).get("post")
    if table is None or serving is None:
        components[REQUEST_SCHEMA] = {
            "title": REQUEST_SCHEMA,
            "type": "object",
            "description": "The rows of the table a served wide-table model was trained on. "
            "No such model is served now: this route answers 409 (or 503 without a model).",
        }
        return
    body = table.request_model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components[REQUEST_SCHEMA] = body
    if operation is not None:
        operation["description"] = (
            f"{operation.get('description', '')}\n\n**Served now:** model "
            f"`{serving.model_name}` version {serving.version}. {table.columns_text()}"
        )
