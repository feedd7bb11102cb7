"""The portfolio, customer and model pages, and the CSV export of the current list.

Every figure comes from elsewhere: recommendations and their summed expected values from the
store (:mod:`service.storage.portfolio`), what-ifs from :func:`service.api.whatif.what_if`,
the approval rule from :mod:`service.api.authority`, events from the CRM export
(:mod:`service.web.history`). The key's scope is part of every store query (see
:func:`portfolio_filter`), so no filter, search or export reaches another scope's customers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from model.registry import (
    CHALLENGER,
    CHAMPION,
    PROMOTION_METRIC,
    MlflowSettings,
    RegistryError,
    version_for_alias,
    version_metrics,
)
from service.api import authority
from service.api.deps import get_policy
from service.api.routes.model import model_public
from service.api.schemas import DecisionRequest, ReportedOfferRequest
from service.api.whatif import WhatIfError, what_if
from service.storage import SORT_COLUMNS, DecisionReport, PortfolioFilter
from service.web import charts
from service.web.app import (
    PREFIX,
    PageError,
    UserDep,
    WebUser,
    call_store,
    check_csrf,
    form_data,
    render,
)
from service.web.history import first_and_last, read_history, severity_channel_counts

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZES = (25, 50, 100, 200)
HEADLINE_METRICS = (
    ("empc", "Expected maximum profit per customer (promotion metric)"),
    ("roc_auc", "Churn ROC AUC"),
    ("true_hazard_roc_auc", "Churn ROC AUC of the true hazard (the ceiling)"),
    ("pr_auc", "Churn PR AUC"),
    ("brier", "Brier score"),
    ("log_loss", "Log loss"),
    ("calibration_error", "Calibration error"),
    ("value_mae", "Value forecast MAE per month"),
    ("value_baseline_mae", "MAE of the trailing-12-month baseline"),
    ("policy_share_of_oracle_gain", "Policy's share of the oracle's gain (judged with the truth)"),
    ("test_rows", "Customers in the test snapshot"),
)
FILTER_FIELDS = ("segment", "region", "account_manager", "action", "approval_tier")
MAX_TEXT = 128
EXPORT_COLUMNS = (
    "customer_id",
    "segment",
    "region",
    "account_manager",
    "action",
    "approval_tier",
    "expected_value",
    "ev_retain",
    "offer_kind",
    "offer_cost",
    "p_churn",
    "monthly_margin",
    "net_margin",
    "as_of",
    "recommendation_id",
)


def money(value: Any) -> str:
    """1234.5 -> '1,235'; None -> '—'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:,.0f}"


def percent(value: Any) -> str:
    """0.123 -> '12.3%'; None -> '—'."""
    return "—" if value is None else f"{100 * value:.1f}%"


def words(value: Any) -> str:
    """'near_miss' -> 'near miss'."""
    return "—" if value is None else str(value).replace("_", " ")


FILTERS = {"money": money, "percent": percent, "words": words}


def _text(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > MAX_TEXT:
        raise PageError(422, f"a filter value is longer than {MAX_TEXT} characters")
    return value.strip()


def portfolio_filter(user: WebUser, params: dict[str, str]) -> PortfolioFilter:
    """The user's filters ANDed with the key's scope (the scope always applies)."""
    return PortfolioFilter(
        scope_account_manager=user.key.account_manager,
        scope_region=user.key.region,
        customer_prefix=_text(params.get("q")),
        segment=_text(params.get("segment")),
        region=_text(params.get("region")),
        account_manager=_text(params.get("account_manager")),
        action=_text(params.get("action")),
        approval_tier=_text(params.get("approval_tier")),
    )


def _sort(params: dict[str, str]) -> tuple[str, bool]:
    sort = params.get("sort") or "expected_value"
    if sort not in SORT_COLUMNS:
        sort = "expected_value"
    return sort, params.get("order", "desc") != "asc"


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        return default
    return min(max(number, low), high)


def _query(params: dict[str, str], **changes: Any) -> str:
    from urllib.parse import urlencode

    merged = {**params, **{k: str(v) for k, v in changes.items() if v is not None}}
    return urlencode({k: v for k, v in merged.items() if v not in ("", None)})


@router.get("/", response_class=HTMLResponse)
async def portfolio(request: Request, user: UserDep) -> HTMLResponse:
    """Customers by recommended action, the money, the whale curve, and the paged list."""
    params = dict(request.query_params)
    where = portfolio_filter(user, params)
    sort, descending = _sort(params)
    per_page = _int(params.get("per_page"), 50, PAGE_SIZES[0], PAGE_SIZES[-1])
    store = request.app.state.store
    total_rows = await call_store(
        store.portfolio_page, where, sort=sort, descending=descending, limit=1
    )
    pages = max(1, math.ceil(total_rows.total / per_page))
    page_number = _int(params.get("page"), 1, 1, pages)
    page = await call_store(
        store.portfolio_page,
        where,
        sort=sort,
        descending=descending,
        limit=per_page,
        offset=(page_number - 1) * per_page,
    )
    tallies = await call_store(store.portfolio_tallies, where)
    margins = await call_store(store.portfolio_net_margins, where)
    loss_makers = await call_store(
        store.portfolio_page, where, sort="net_margin", descending=False, limit=10
    )
    to_end = await call_store(
        store.portfolio_page, dataclasses.replace(where, action="end"), limit=10
    )
    to_compensate = await call_store(
        store.portfolio_page, dataclasses.replace(where, action="compensate"), limit=10
    )
    options = await call_store(store.portfolio_options, where)
    by_action: dict[str, dict[str, float]] = {}
    for tally in tallies:
        slot = by_action.setdefault(tally.action, {"customers": 0, "expected_value": 0.0})
        slot["customers"] += tally.customers
        slot["expected_value"] += tally.expected_value
    return render(
        request,
        "portfolio.html",
        {
            "user": user,
            "params": params,
            "where": where,
            "rows": page.rows,
            "total": page.total,
            "page": page_number,
            "pages": pages,
            "per_page": per_page,
            "page_sizes": PAGE_SIZES,
            "sort": sort,
            "descending": descending,
            "query": lambda **changes: _query(params, **changes),
            "tallies": tallies,
            "by_action": by_action,
            "expected_total": sum(t.expected_value for t in tallies),
            "retain_total": sum(t.ev_retain for t in tallies),
            "whale": charts.whale(margins),
            "loss_makers": loss_makers.rows,
            "to_end": to_end,
            "to_compensate": to_compensate,
            "options": options,
            "filter_fields": FILTER_FIELDS,
        },
    )


def _csv_cell(value: Any) -> Any:
    """A cell safe to open in a spreadsheet: text that starts like a formula is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@router.get("/portfolio.csv")
async def export_csv(request: Request, user: UserDep) -> Response:
    """The current list (filters and sort of the page, every page), as CSV."""
    params = dict(request.query_params)
    where = portfolio_filter(user, params)
    sort, descending = _sort(params)
    store = request.app.state.store
    rows = await call_store(store.portfolio_rows, where, sort=sort, descending=descending)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            writer.writerow([_csv_cell(getattr(row, name)) for name in EXPORT_COLUMNS])
            if buffer.tell() > 64_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="keepwise-portfolio-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


async def _customer(request: Request, user: WebUser, customer_id: str) -> Any:
    if not customer_id or len(customer_id) > MAX_TEXT:
        raise PageError(404, "no such customer")
    stored = await call_store(request.app.state.store.latest_recommendation, customer_id)
    if stored is None or not user.key.owns(stored.account_manager, stored.region):
        raise PageError(
            404,
            f"no recommendation for customer '{customer_id}': the id is unknown, was not in the "
            "last batch run, or is outside your scope",
        )
    return stored


def _number(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        number = float(value.replace(",", ""))
    except ValueError:
        raise WhatIfError("the offer cost must be a number, e.g. 450") from None
    return number


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer(request: Request, customer_id: str, user: UserDep) -> HTMLResponse:
    """One customer: the recommendation, the money, the history, what-if and the forms."""
    stored = await _customer(request, user, customer_id)
    payload = stored.payload
    policy = await get_policy(request, request.app.state.models)
    store = request.app.state.store
    params = dict(request.query_params)
    scenario, scenario_error = None, None
    if params.get("offer"):
        try:
            scenario = what_if(payload, policy, params["offer"], _number(params.get("cost")))
        except WhatIfError as error:
            scenario_error = str(error)
    settings = request.app.state.settings
    history = await run_in_threadpool(read_history, settings.data_dir, stored.customer_id)
    decisions = await call_store(store.list_decisions, customer_id=stored.customer_id, limit=100)
    approvals = await call_store(store.list_approvals, customer_id=stored.customer_id, limit=100)
    verdict = next((a for a in approvals if a.recommendation_id == stored.recommendation_id), None)
    tier = payload.get("approval_tier")
    waiting = tier in authority.queue_tiers(policy) and verdict is None
    events = sorted(
        [("decision", d.recorded_at, d) for d in decisions]
        + [("approval", a.decided_at, a) for a in approvals],
        key=lambda item: item[1],
        reverse=True,
    )
    offers = payload.get("expected_values", {}).get("offers", {})
    return render(
        request,
        "customer.html",
        {
            "user": user,
            "stored": stored,
            "rec": payload,
            "offers": offers,
            "bars": charts.waterfall(payload.get("value_waterfall") or {}),
            "history": history,
            "counts": severity_channel_counts(history.complaints),
            "dots": charts.timeline(history.complaints),
            "dots_span": _span(history.complaints),
            "zero_y": charts.waterfall_zero(payload.get("value_waterfall") or {}),
            "events": events,
            "waiting": waiting,
            "verdict": verdict,
            "may_approve": waiting and authority.may_approve(user.key, tier, policy),
            "refusal": authority.refusal(user.key, tier, policy),
            "policy": policy,
            "scenario": scenario,
            "scenario_error": scenario_error,
            "params": params,
            "today": datetime.now(UTC).date().isoformat(),
            "done": params.get("done"),
        },
    )


def _span(complaints: list[dict[str, Any]]) -> tuple[str, str]:
    found = first_and_last(complaints)
    return ("", "") if found is None else (f"{found[0]:%Y-%m-%d}", f"{found[1]:%Y-%m-%d}")


@router.post("/customers/{customer_id}/decisions")
async def record_decision(request: Request, customer_id: str, user: UserDep) -> Response:
    """Record an after-action report (role agent), as ``POST /v1/decisions`` does."""
    form = await form_data(request)
    check_csrf(user, form)
    if not user.can_record:
        raise PageError(403, f"a {user.key.role} key cannot record decisions; this needs agent")
    stored = await _customer(request, user, customer_id)
    followed = {"followed": True, "overridden": False}.get(form.get("followed", ""))
    offer = _reported_offer(form)
    try:
        body = DecisionRequest(
            customer_id=stored.customer_id,
            requested=form.get("requested", ""),
            occurred_at=datetime.now(UTC),
            place=form.get("place", ""),
            authority_used=form.get("authority_used", ""),
            helped_by=form.get("helped_by") or None,
            outcome=form.get("outcome", ""),
            recommendation_id=stored.recommendation_id if followed is not None else None,
            followed_recommendation=followed,
        )
    except ValidationError as error:
        fields = sorted({str(e["loc"][-1]) for e in error.errors() if e["loc"]})
        raise PageError(422, f"please fill in: {', '.join(fields) or 'the form'}") from None
    report = DecisionReport(
        **body.model_dump(exclude={"offer"}),
        recorded_by=user.key.name,
        offer=None if offer is None else offer.to_record(),
    )
    await call_store(request.app.state.store.record_decision, report)
    return RedirectResponse(
        f"{PREFIX}/customers/{stored.customer_id}?done=decision#history", status_code=303
    )


# the form's answer field: (accepted, holdout) of the report's offer block
OFFER_ANSWERS = {
    "accepted": (True, False),
    "declined": (False, False),
    "pending": (None, False),
    "holdout": (None, True),
}


def _reported_offer(form: dict[str, str]) -> ReportedOfferRequest | None:
    """The form's offer block (``POST /v1/decisions``' ``offer``), or None without a kind.

    Raises:
        PageError: 422 naming the offer field that is wrong and why.
    """
    kind = form.get("offer_kind", "").strip()
    if not kind:
        return None
    answer = form.get("offer_answer", "")
    if answer not in OFFER_ANSWERS:
        raise PageError(
            422, "offer: choose what happened (accepted, declined, no answer yet, held out)"
        )
    accepted, holdout = OFFER_ANSWERS[answer]
    cost = form.get("offer_cost", "").strip()
    try:
        return ReportedOfferRequest(
            kind=kind,  # type: ignore[arg-type]
            offered_on=form.get("offer_on", ""),  # type: ignore[arg-type]
            accepted=accepted,
            cost=None if holdout or not cost else cost,  # type: ignore[arg-type]
            responded_on=form.get("offer_responded_on") or None,  # type: ignore[arg-type]
            holdout=holdout,
        )
    except ValidationError as error:
        problems = [
            (f"{problem['loc'][-1]}: " if problem["loc"] else "")
            + str(problem["msg"]).removeprefix("Value error, ")
            for problem in error.errors()
        ]
        raise PageError(422, f"offer: {'; '.join(problems)}") from None


@router.get("/model", response_class=HTMLResponse)
async def model_page(request: Request, user: UserDep) -> HTMLResponse:
    """Champion and challenger: versions, metrics, training date, the promotion rule."""
    serving = request.app.state.models.current
    served = model_public(serving) if serving is not None else None
    settings = request.app.state.settings
    registry, registry_error = {}, None
    if serving is None or serving.source == "registry":
        mlflow = MlflowSettings(
            tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name
        )
        try:
            registry = await run_in_threadpool(_registry_versions, mlflow)
        except RegistryError as error:  # worded for users: says which store and why
            registry_error = f"the model registry cannot be read: {error}"
        except Exception as error:  # noqa: BLE001 - a registry failure is shown, not raised
            registry_error = f"the model registry cannot be read: {type(error).__name__}"
    names = sorted({name for info in registry.values() for name in info["metrics"]})
    return render(
        request,
        "model.html",
        {
            "user": user,
            "served": served,
            "summary": serving.bundle.summary if serving is not None else {},
            "registry": registry,
            "registry_error": registry_error,
            "from_registry": serving is None or serving.source == "registry",
            "metric_names": names,
            "promotion_metric": PROMOTION_METRIC,
            "headline": HEADLINE_METRICS,
        },
    )


def _registry_versions(mlflow: MlflowSettings) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for alias in (CHAMPION, CHALLENGER):
        version = version_for_alias(mlflow, alias)
        if version is not None:
            found[alias] = {"version": version, "metrics": version_metrics(mlflow, version)}
    return found
