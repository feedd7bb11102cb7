"""``POST /v1/recommendations`` (feature rows of the CRM pipeline) and
``POST /v1/recommendations/table`` (rows of the table a wide-table model was trained on): score
the rows sent in the request. Each answers 409 naming the other when the served model takes the
other kind of row.

Scope rule for keys limited to an account manager and/or a region (see
:mod:`service.api.keys`): a row's owner is the store's (the last batch run: authoritative).
Every row must be a customer the store attributes to the key's scope; if any is not, the whole
request answers 404 naming those customer ids. A customer the store does not know answers the
same 404 as another scope's customer, whatever the row claims: otherwise a scoped key could
tell which ids exist in other scopes (200 for an unknown id, 404 for a known one). Keys without
a scope score any row, known or not. Nothing is stored: scores made here are not "the latest
stored recommendation" (that is the batch run's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from model.leaf_contributions import ContributionMethod
from service.api.deps import ExplainerDep, ServingModelDep, StoreDep, StoreProtocol, ViewerKey
from service.api.feature_row import FeatureRowBase
from service.api.keys import ApiKeyEntry
from service.api.schemas import (
    MAX_BATCH,
    RecommendationBatchPublic,
    RecommendationRequest,
    TableRecommendationBatchPublic,
    error_responses,
)
from service.api.scoring import (
    DEFAULT_DRIVERS,
    MAX_DRIVERS,
    DriversMethodUnavailable,
    RowsRejected,
    score_rows,
    score_rows_async,
)
from service.api.storage_errors import store_call
from service.api.wide_rows import REQUEST_SCHEMA
from service.api.wide_scoring import (
    TABLE_PATH,
    NotATableModel,
    customer_ids,
    parse_table_request,
    score_table_rows,
    table_of,
)

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])

# Requests of up to this many customers are scored on the event loop (exact TreeSHAP, when
# asked for, on the explainer thread; see score_rows_async): well under a millisecond of
# Python per customer.
# Larger batches go to the thread pool so they never hold up other requests.
INLINE_ROWS = 4


def _outside_scope(
    rows: Sequence[FeatureRowBase], key: ApiKeyEntry, store: StoreProtocol
) -> list[str]:
    """Customer ids of the rows the key may not score (blocking: one store read per row)."""
    outside = []
    for row in rows:
        stored = store.customer_scope(row.customer_id)
        if stored is None or not key.owns(*stored):
            outside.append(row.customer_id)
    return outside


@router.post(
    "",
    response_model=RecommendationBatchPublic,
    summary="Recommend retain, compensate or end for customers' feature rows",
    description=(
        f"Scores 1 to {MAX_BATCH:,} customers' feature rows (as `keepwise features` writes "
        "them) with the served model and policy: the action, the expected value of every "
        "action, the best offer and its cost, the approval tier, the value waterfall, the churn "
        "drivers and plain-language reasons, and what makes it replayable: the model's "
        "registry version, the policy version, `inputs_sha256` (hash of the decision inputs), "
        "`propensity` (probability of the recommended action) and `explored` (when the policy "
        "explores, a share of customers is recommended an allowed alternative drawn at random "
        "as a measured experiment, never end; the same draw as the batch for the same "
        "customer, date and policy). Nothing is stored. Any role may call it. Keys "
        "limited to an account manager or region may score only the customers the last batch "
        "run attributes to them; any other id, known or not, answers 404. For a model trained "
        "on CRM tables (`keepwise train --data` or `--transactions`); a model trained on a "
        "wide table takes its table's rows at `POST /v1/recommendations/table` (409 here)."
    ),
    responses=error_responses(400, 401, 404, 409, 413, 503),
)
async def recommend_for_rows(
    body: RecommendationRequest,
    key: ViewerKey,
    store: StoreDep,
    serving: ServingModelDep,
    explainer: ExplainerDep,
    drivers: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_DRIVERS,
            description="Churn drivers to explain per customer, strongest first. 0 returns "
            "none and skips the explanation: for CRM jobs that need only the decision.",
        ),
    ] = DEFAULT_DRIVERS,
    drivers_method: Annotated[
        ContributionMethod | None,
        Query(
            description="How the drivers are attributed (see the API guide): leaf_shap "
            "(TreeSHAP averaged per tree leaf at training; the default of models that have "
            "it), saabas (path contributions; the default otherwise) or treeshap (exact, "
            "about 0.5 ms more per customer). Omitted: the served model's default.",
        ),
    ] = None,
) -> Response:
    """Score the rows in the body."""
    if serving.table is not None:
        raise HTTPException(
            409,
            detail=f"the served model {serving.model_name} version {serving.version} was "
            "trained on a wide table: send rows of that table to POST /v1/recommendations/table "
            "(their columns are in /docs)",
        )
    if key.scoped and (outside := await store_call(_outside_scope, body.customers, key, store)):
        shown = ", ".join(f"'{c}'" for c in outside[:20])
        raise HTTPException(404, detail=f"customer(s) {shown} not found for this key")
    try:
        if len(body.customers) <= INLINE_ROWS:
            result = await score_rows_async(
                body.customers, body.as_of, serving, explainer, drivers, drivers_method
            )
        else:
            result = await run_in_threadpool(
                score_rows, body.customers, body.as_of, serving, drivers, drivers_method
            )
    except (RowsRejected, DriversMethodUnavailable) as error:
        raise _unprocessable(error) from None
    # serialised once here; returned as a model, FastAPI would validate it a second time
    return Response(result.model_dump_json(), media_type="application/json")


@router.post(
    TABLE_PATH.removeprefix(router.prefix),
    response_model=TableRecommendationBatchPublic,
    summary="Recommend retain, compensate or end for rows of the served model's own table",
    description=(
        f"For a model trained on a wide table (`keepwise train --table FILE --mapping M.toml`): "
        f"scores 1 to {MAX_BATCH:,} rows of that table, sent as the export holds them, one JSON "
        "object per customer keyed by the table's column names (the body's schema below lists "
        "the served model's columns and types; columns the model does not read, such as the "
        "churn label, may be sent and are ignored). The answer is what `keepwise score --table` "
        "writes for the same rows: the action, the expected value of every action, the best "
        "offer, the approval tier, the value waterfall, the churn drivers, the reasons, the "
        "replay fields (`inputs_sha256`, `propensity`, `explored`, as for "
        "POST /v1/recommendations), and "
        "`assumptions`: what the model's mapping assumed rather than read (an assumed revenue "
        "or margin rate, the segment, ...). Nothing is stored. Keys limited to an account "
        "manager or region may score only customers the last batch run attributes to them "
        "(404 otherwise). A model trained on CRM tables answers 409 here."
    ),
    responses=error_responses(400, 401, 404, 409, 413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{REQUEST_SCHEMA}"}}
            },
        }
    },
)
async def recommend_for_table_rows(
    request: Request,
    key: ViewerKey,
    store: StoreDep,
    serving: ServingModelDep,
    drivers: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_DRIVERS,
            description="Churn drivers to explain per row, strongest first; 0 returns none.",
        ),
    ] = DEFAULT_DRIVERS,
    drivers_method: Annotated[
        ContributionMethod | None,
        Query(description="How the drivers are attributed (as for POST /v1/recommendations)."),
    ] = None,
) -> Response:
    """Score the table rows in the body."""
    try:
        table = table_of(serving)
    except NotATableModel as error:
        raise HTTPException(409, detail=str(error)) from None
    body = await request.body()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:  # as FastAPI answers for its own bodies
        raise HTTPException(400, detail="There was an error parsing the body") from None
    try:
        parsed = await run_in_threadpool(parse_table_request, body, table)
        if key.scoped:
            ids = customer_ids(parsed, table)
            if outside := await store_call(_ids_outside_scope, ids, key, store):
                shown = ", ".join(f"'{c}'" for c in outside[:20])
                raise HTTPException(404, detail=f"customer(s) {shown} not found for this key")
        result = await run_in_threadpool(score_table_rows, parsed, serving, drivers, drivers_method)
    except (RowsRejected, DriversMethodUnavailable) as error:
        raise _unprocessable(error) from None
    return Response(result.model_dump_json(), media_type="application/json")


def _unprocessable(error: RowsRejected | DriversMethodUnavailable) -> RequestValidationError:
    """The 422 for rows that break a table rule, or a drivers method the model cannot give."""
    if isinstance(error, RowsRejected):
        return RequestValidationError(error.errors)
    return RequestValidationError(
        [{"type": "drivers_method", "loc": ["query", "drivers_method"], "msg": str(error)}]
    )


def _ids_outside_scope(
    ids: Sequence[str | None], key: ApiKeyEntry, store: StoreProtocol
) -> list[str]:
    """The ids the key may not score (a row without an id is nobody's; blocking)."""
    outside = []
    for index, customer_id in enumerate(ids):
        stored = store.customer_scope(customer_id) if customer_id is not None else None
        if stored is None or not key.owns(*stored):
            outside.append(customer_id if customer_id is not None else f"row {index + 1}")
    return outside
