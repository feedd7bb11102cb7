"""``POST /v1/decisions`` (after-action reports) and ``GET /v1/decisions`` (the decision log).

Writes are never lost silently: a report is answered 201 only after the store committed it;
when the database fails the answer is 503 and nothing was written, so the client retries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from service.api.deps import AgentKey, StoreDep, ViewerKey
from service.api.feature_row import ID_MAX_LENGTH, ID_PATTERN
from service.api.schemas import (
    DecisionListPublic,
    DecisionPublic,
    DecisionRequest,
    error_responses,
)
from service.api.storage_errors import store_call
from service.storage import MAX_PAGE, DecisionReport

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])


@router.post(
    "",
    status_code=201,
    response_model=DecisionPublic,
    summary="Record an after-action report",
    description=(
        "Records what the customer asked for, when and where, the authority exercised, who "
        "helped and the outcome, with the recommendation it followed or overrode. Needs role "
        "agent. `recorded_by` is the key's name. A key limited to an account manager or region "
        "may report only on its own customers (others, and customers the store does not know, "
        "answer 404); an unscoped key may also report on a customer the store does not know yet "
        "(signed up after the last batch run). 201 means the report is committed; 503 means "
        "nothing was written."
    ),
    responses=error_responses(400, 401, 403, 404, 413, 503),
)
async def record_decision(body: DecisionRequest, key: AgentKey, store: StoreDep) -> DecisionPublic:
    """Store the report."""
    if key.scoped:
        owner = await store_call(store.customer_scope, body.customer_id)
        if owner is None or not key.owns(*owner):
            raise HTTPException(404, detail=f"customer '{body.customer_id}' not found for this key")
    report = DecisionReport(**body.model_dump(), recorded_by=key.name)
    stored = await store_call(store.record_decision, report)
    return DecisionPublic.model_validate(stored, from_attributes=True)


@router.get(
    "",
    response_model=DecisionListPublic,
    summary="List after-action reports",
    description=(
        "The decision log, newest first, optionally for one customer. Any role may read it; a "
        "key limited to an account manager or region sees only reports on its own customers "
        "(a customer outside the scope gives an empty list, as an unknown one does)."
    ),
    responses=error_responses(401, 503),
)
async def list_decisions(
    key: ViewerKey,
    store: StoreDep,
    customer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="Only this customer's reports.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Reports to skip.")] = 0,
) -> DecisionListPublic:
    """Read a page of the decision log."""
    stored = await store_call(
        store.list_decisions,
        where="query",
        customer_id=customer_id,
        account_manager=key.account_manager,
        region=key.region,
        limit=limit,
        offset=offset,
    )
    return DecisionListPublic(
        decisions=[DecisionPublic.model_validate(d, from_attributes=True) for d in stored],
        limit=limit,
        offset=offset,
    )
