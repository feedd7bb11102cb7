"""Liveness and readiness probes; the only routes that need no API key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import ModelHolderDep
from service.api.schemas import HealthPublic

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
    description="200 once a model is loaded; 503 (with the reason) before that (no key needed).",
    responses={503: {"model": HealthPublic, "description": "No model is loaded yet."}},
)
async def ready(holder: ModelHolderDep) -> HealthPublic | JSONResponse:
    """Readiness: a model and its policy are loaded."""
    serving = holder.current
    if serving is None:
        body = HealthPublic(
            status="not ready", detail=holder.last_error or "no model is loaded yet"
        )
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthPublic(status="ready", model_version=serving.version)
