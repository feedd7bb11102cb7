"""The approvals queue page and the verdict form, on the API's own approval path.

A verdict goes through :func:`service.api.routes.approvals.record_verdict`, the function behind
``POST /v1/approvals``: the same authorisation (:mod:`service.api.authority`), the same store
transaction (verdict and after-action report together) and the same audit trail.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from service.api import authority
from service.api.deps import get_policy
from service.api.routes.approvals import record_verdict
from service.api.schemas import ApprovalRequestBody
from service.storage import PortfolioFilter
from service.web.app import PREFIX, PageError, UserDep, call_store, check_csrf, form_data, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PER_PAGE = 25


@router.get("/approvals", response_class=HTMLResponse)
async def queue(request: Request, user: UserDep) -> HTMLResponse:
    """Recommendations waiting for a tier above the front line, biggest value first."""
    policy = await get_policy(request, request.app.state.models)
    waiting = authority.queue_tiers(policy)
    tier = request.query_params.get("tier") or None
    if tier is not None and tier not in waiting:
        tier = None
    where = PortfolioFilter(
        scope_account_manager=user.key.account_manager,
        scope_region=user.key.region,
        pending_tiers=(tier,) if tier else waiting,
    )
    store = request.app.state.store
    try:
        page_number = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page_number = 1
    page = await call_store(
        store.portfolio_page, where, limit=PER_PAGE, offset=(page_number - 1) * PER_PAGE
    )
    counts = {}
    for each in waiting:
        counted = await call_store(
            store.portfolio_page,
            PortfolioFilter(
                scope_account_manager=user.key.account_manager,
                scope_region=user.key.region,
                pending_tiers=(each,),
            ),
            limit=1,
        )
        counts[each] = counted.total
    recent = await call_store(
        store.list_approvals,
        account_manager=user.key.account_manager,
        region=user.key.region,
        limit=20,
    )
    return render(
        request,
        "approvals.html",
        {
            "user": user,
            "rows": page.rows,
            "total": page.total,
            "page": page_number,
            "pages": max(1, math.ceil(page.total / PER_PAGE)),
            "tier": tier,
            "waiting": waiting,
            "counts": counts,
            "mine": authority.approvable_tiers(user.key, policy),
            "recent": recent,
            "done": request.query_params.get("done")
            if request.query_params.get("done")
            in (
                "approved",
                "rejected",
            )
            else None,
            "refusal": lambda t: authority.refusal(user.key, t, policy),
        },
    )


@router.post("/approvals/{recommendation_id}")
async def decide(request: Request, recommendation_id: str, user: UserDep) -> Response:
    """Approve or reject with a note and the after-action report."""
    form = await form_data(request)
    check_csrf(user, form)
    if not user.can_record:
        raise PageError(403, f"a {user.key.role} key cannot approve")
    try:
        body = ApprovalRequestBody(
            recommendation_id=recommendation_id,
            verdict=form.get("verdict", ""),  # type: ignore[arg-type]
            note=form.get("note", ""),
            requested=form.get("requested", ""),
            place=form.get("place", ""),
            helped_by=form.get("helped_by") or None,
            outcome=form.get("outcome", ""),
        )
    except ValidationError as error:
        fields = sorted({str(e["loc"][-1]) for e in error.errors() if e["loc"]})
        raise PageError(422, f"please fill in: {', '.join(fields) or 'the form'}") from None
    policy = await get_policy(request, request.app.state.models)
    try:
        approval = await record_verdict(body, user.key, request.app.state.store, policy)
    except HTTPException as error:
        raise PageError(error.status_code, str(error.detail)) from None
    except RequestValidationError:
        raise PageError(422, "the store refused the verdict; check the form") from None
    back = form.get("back", "")
    if back == "customer":
        target = f"{PREFIX}/customers/{approval.customer_id}?done={approval.verdict}#history"
    else:
        target = f"{PREFIX}/approvals?done={approval.verdict}"
    return RedirectResponse(target, status_code=303)
