"""``GET /v1/approvals`` (the queue), ``POST /v1/approvals`` (a verdict), ``GET
/v1/approvals/decided`` (verdicts given).

Recommendations above the front line's authority wait here for the tier that must approve them
(:mod:`service.api.authority`). A verdict and its after-action report are written in one
transaction through the same store as ``POST /v1/decisions``; 201 means both are committed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from service.api import authority
from service.api.deps import AgentKey, PolicyDep, StoreDep, ViewerKey
from service.api.feature_row import ID_MAX_LENGTH, ID_PATTERN
from service.api.schemas import (
    ApprovalListPublic,
    ApprovalPublic,
    ApprovalRequestBody,
    PendingApprovalPublic,
    PendingListPublic,
    error_responses,
)
from service.api.storage_errors import store_call
from service.storage import MAX_PAGE, ApprovalRequest, DecisionReport, PortfolioFilter

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


@router.get(
    "",
    response_model=PendingListPublic,
    summary="The approvals queue",
    description=(
        "Recommendations in force whose approval tier is above the front line's and that have "
        "no verdict yet, biggest expected value first. Any role may read it; a scoped key sees "
        "only its own customers. `approvable` says whether this key may decide each one."
    ),
    responses=error_responses(401, 503),
)
async def pending(
    key: ViewerKey,
    store: StoreDep,
    policy: PolicyDep,
    tier: Annotated[
        str | None, Query(max_length=ID_MAX_LENGTH, description="Only this tier.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
) -> PendingListPublic:
    """Read a page of the queue."""
    waiting = authority.queue_tiers(policy)
    where = PortfolioFilter(
        scope_account_manager=key.account_manager,
        scope_region=key.region,
        pending_tiers=tuple(t for t in waiting if tier is None or t == tier),
    )
    page = await store_call(
        store.portfolio_page,
        where,
        where="query",
        sort="expected_value",
        limit=limit,
        offset=offset,
    )
    mine = set(authority.approvable_tiers(key, policy))
    return PendingListPublic(
        items=[
            PendingApprovalPublic(
                **{name: getattr(row, name) for name in PendingApprovalPublic.row_fields()},
                approvable=row.approval_tier in mine,
            )
            for row in page.rows
        ],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "",
    status_code=201,
    response_model=ApprovalPublic,
    summary="Approve or reject a recommendation, with the after-action report",
    description=(
        "Records the verdict (with a note) on the recommendation in force and the after-action "
        "report (what the customer asked for, time and place, the authority used, who helped, "
        "the outcome) in one transaction. Needs role agent and a key whose `authority` covers "
        "the recommendation's tier (ending always needs the policy's `end_requires`, a "
        "director by default): 403 otherwise. 404 for a recommendation unknown or outside the "
        "key's scope; 409 when it already has a verdict, was replaced by a newer run or needs "
        "no approval."
    ),
    responses=error_responses(400, 401, 403, 404, 409, 413, 503),
)
async def decide(
    body: ApprovalRequestBody, key: AgentKey, store: StoreDep, policy: PolicyDep
) -> ApprovalPublic:
    """Store the verdict and its report."""
    return await record_verdict(body, key, store, policy)


async def record_verdict(
    body: ApprovalRequestBody, key: AgentKey, store: StoreDep, policy: PolicyDep
) -> ApprovalPublic:
    """The verdict path shared by the API and the web page (authorise, then one store call).

    Raises:
        HTTPException: 404 unknown or out of scope, 403 not authorised, 409 conflict, 503.
    """
    stored = await store_call(store.recommendation_by_id, body.recommendation_id)
    if stored is None or not key.owns(stored.account_manager, stored.region):
        raise HTTPException(
            404, detail=f"recommendation '{body.recommendation_id}' not found for this key"
        )
    tier = stored.payload.get("approval_tier")
    if not authority.may_approve(key, tier, policy):
        status = 409 if tier not in authority.queue_tiers(policy) else 403
        raise HTTPException(status, detail=authority.refusal(key, tier, policy))
    action = stored.payload.get("action")
    offer = stored.payload.get("offer") or {}
    granted = (
        f" {offer.get('kind')} (unit cost {offer.get('unit_cost'):,.2f})"
        if (action == "compensate" and offer.get("unit_cost") is not None)
        else ""
    )
    report = DecisionReport(
        customer_id=stored.customer_id,
        requested=body.requested,
        occurred_at=body.occurred_at or datetime.now(UTC),
        place=body.place,
        authority_used=f"{key.authority}: {body.verdict} {action}{granted} "
        f"(needs {tier}); note: {body.note}",
        helped_by=body.helped_by,
        outcome=body.outcome,
        recommendation_id=body.recommendation_id,
        followed_recommendation=body.verdict == "approved",
        recorded_by=key.name,
    )
    request = ApprovalRequest(
        recommendation_id=body.recommendation_id,
        verdict=body.verdict,
        note=body.note,
        authority=str(key.authority),
        report=report,
    )
    approval = await store_call(store.record_approval, request)
    return ApprovalPublic.model_validate(approval, from_attributes=True)


@router.get(
    "/decided",
    response_model=ApprovalListPublic,
    summary="Verdicts given",
    description="Approvals and rejections, newest first, optionally for one customer; a scoped "
    "key sees only its own customers'.",
    responses=error_responses(401, 503),
)
async def decided(
    key: ViewerKey,
    store: StoreDep,
    customer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="Only this customer's verdicts.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Verdicts to skip.")] = 0,
) -> ApprovalListPublic:
    """Read a page of verdicts."""
    rows = await store_call(
        store.list_approvals,
        where="query",
        customer_id=customer_id,
        account_manager=key.account_manager,
        region=key.region,
        limit=limit,
        offset=offset,
    )
    return ApprovalListPublic(
        approvals=[ApprovalPublic.model_validate(a, from_attributes=True) for a in rows],
        limit=limit,
        offset=offset,
    )
