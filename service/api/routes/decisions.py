"""``POST /v1/decisions`` (after-action reports) and ``GET /v1/decisions`` (the decision log).

Writes are never lost silently: a report is answered 201 only after the store committed it;
when the database fails the answer is 503 and nothing was written, so the client retries.
Retries are safe with an ``Idempotency-Key`` header: the store keeps one report per key and
API key, a retry with the same report gets the first answer (``Idempotent-Replayed: true``) and
one with another report gets 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Response

from service.api.deps import AgentKey, StoreDep, ViewerKey
from service.api.feature_row import ID_MAX_LENGTH, ID_PATTERN
from service.api.schemas import (
    DecisionListPublic,
    DecisionPublic,
    DecisionRequest,
    ErrorPublic,
    error_responses,
)
from service.api.storage_errors import store_call
from service.storage import MAX_PAGE, DecisionReport
from service.storage.schema import IDEMPOTENCY_KEY_LENGTH

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])

REPLAYED_HEADER = "Idempotent-Replayed"
_CREATED: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "The report is committed (or, with an Idempotency-Key already used for "
        "this same report, it was committed by the earlier request: nothing new was stored).",
        "headers": {
            REPLAYED_HEADER: {
                "description": "`true` when an earlier request with this Idempotency-Key "
                "stored the report and this answer repeats it.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    409: {
        "model": ErrorPublic,
        "description": "The Idempotency-Key was already used by this API key for another report.",
    },
}


@router.post(
    "",
    status_code=201,
    response_model=DecisionPublic,
    summary="Record an after-action report",
    description=(
        "Records what the customer asked for, when and where, the authority exercised, who "
        "helped and the outcome, with the recommendation it followed or overrode, and, "
        "optionally, the offer made in structured form (`offer`: kind, day, answer, cost, "
        "holdout), which `keepwise train` learns from. Needs role agent. `recorded_by` is the "
        "key's name. A key limited to an account manager or region "
        "may report only on its own customers (others, and customers the store does not know, "
        "answer 404); an unscoped key may also report on a customer the store does not know yet "
        "(signed up after the last batch run). 201 means the report is committed; 503 means "
        "nothing was written. Send an `Idempotency-Key` to make retries safe: a report is "
        "stored once per key (and API key), and a retry of the same report gets the first "
        "answer, even when the first answer was lost on the way."
    ),
    responses={**error_responses(400, 401, 403, 404, 413, 503), **_CREATED},
)
async def record_decision(
    body: DecisionRequest,
    key: AgentKey,
    store: StoreDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=IDEMPOTENCY_KEY_LENGTH,
            pattern=r"^[\x21-\x7e]+$",
            description="A key you choose for this report (e.g. a UUID): 1 to "
            f"{IDEMPOTENCY_KEY_LENGTH} printable ASCII characters without spaces. The same key "
            "with the same report stores it once and answers the first answer again; the same "
            "key with another report answers 409. Keys are kept with the reports.",
        ),
    ] = None,
) -> DecisionPublic:
    """Store the report (once per idempotency key)."""
    if key.scoped:
        owner = await store_call(store.customer_scope, body.customer_id)
        if owner is None or not key.owns(*owner):
            raise HTTPException(404, detail=f"customer '{body.customer_id}' not found for this key")
    report = DecisionReport(
        **body.model_dump(exclude={"offer"}),
        recorded_by=key.name,
        offer=None if body.offer is None else body.offer.to_record(),
    )
    if idempotency_key is None:
        stored = await store_call(store.record_decision, report)
    else:
        recorded = await store_call(
            store.record_decision_once, report, idempotency_key, where="header"
        )
        stored = recorded.decision
        if recorded.replayed:
            response.headers[REPLAYED_HEADER] = "true"
    return DecisionPublic.model_validate(stored, from_attributes=True)


@router.get(
    "",
    response_model=DecisionListPublic,
    summary="List after-action reports",
    description=(
        "The decision log, newest first, optionally for one customer, each report with the "
        "offer it records (`offer`, null when none). Any role may read it; a "
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
