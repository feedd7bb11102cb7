"""Liveness and readiness probes; the only routes that need no API key.

Ready means a model is loaded and the store answers: :meth:`service.storage.Store.ping` reads
every table and takes the lock a decision's insert needs, within the store timeout. Probes that
arrive while one check runs share its answer, so a stuck store never piles up checks.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import ModelHolderDep, SettingsDep, StoreDep, StoreProtocol
from service.api.schemas import HealthPublic
from service.storage import StoreError

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/health", tags=["health"])


@router.get(
    "/live",
    response_model=HealthPublic,
    summary="Is the process up?",
    description="Always 200 while the process serves HTTP (no key needed).",
)
async def live() -> HealthPublic:
    """Liveness: the event loop answers."""
    return HealthPublic(status="alive")


@router.get(
    "/ready",
    response_model=HealthPublic,
    summary="Can it score?",
    description="200 when a model is loaded and the store can be read and written within the "
    "store timeout; 503 with the reason otherwise (no key needed).",
    responses={
        503: {
            "model": HealthPublic,
            "description": "No model is loaded yet, or the store does not answer in time.",
        }
    },
)
async def ready(
    request: Request, holder: ModelHolderDep, store: StoreDep, settings: SettingsDep
) -> HealthPublic | JSONResponse:
    """Readiness: a model and its policy are loaded, and the store answers."""
    serving = holder.current
    if serving is None:
        body = HealthPublic(
            status="not ready", detail=holder.last_error or "no model is loaded yet"
        )
        return JSONResponse(body.model_dump(), status_code=503)
    problem = await _store_problem(request, store, settings.store_timeout_s)
    if problem is not None:
        body = HealthPublic(status="not ready", model_version=serving.version, detail=problem)
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthPublic(status="ready", model_version=serving.version)


async def _store_problem(request: Request, store: StoreProtocol, timeout_s: float) -> str | None:
    """Why the store is not usable now, or None; one check at a time per app."""
    check: asyncio.Future[None] | None = getattr(request.app.state, "store_check", None)
    if check is None or check.done():
        check = asyncio.ensure_future(run_in_threadpool(store.ping))
        request.app.state.store_check = check
    try:
        await asyncio.wait_for(asyncio.shield(check), timeout=timeout_s + 1)
    except TimeoutError:
        return f"the store did not answer within {timeout_s:g} s"
    except StoreError as error:
        logger.warning("readiness: the store is not available: %s", error)
        return "the store is not available (see the service log)"
    return None
