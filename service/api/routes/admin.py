"""Admin routes (role admin on the whole router): ``POST /v1/model/reload``.

A reload loads the version the configured alias (``champion``) points at now, with the policy
file, into a new immutable :class:`service.api.serving.ServingModel` and swaps the reference.
Requests already running finish on the model they started with; a failed reload leaves the
served model untouched. Reloads run one at a time.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException
from starlette.concurrency import run_in_threadpool

from service.api.deps import ModelHolderDep, ModelLoaderDep, SettingsDep, require_admin
from service.api.routes.model import model_public
from service.api.schemas import ReloadPublic, error_responses
from service.api.scoring import prepare_model
from service.api.serving import ModelLoadError, settle_heap

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/model", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post(
    "/reload",
    response_model=ReloadPublic,
    summary="Serve the current champion (admin)",
    description=(
        "Loads the model version the configured registry alias (default `champion`) points at "
        "and the policy file, then swaps them in atomically: requests in flight finish on the "
        "old model, later ones use the new. Needs role admin. If loading fails, the old model "
        "stays in service and the answer is 503 with the reason."
    ),
    responses=error_responses(401, 403, 503),
)
async def reload_model(
    holder: ModelHolderDep, loader: ModelLoaderDep, settings: SettingsDep
) -> ReloadPublic:
    """Load and swap in the current champion."""
    async with holder.reload_lock:
        previous = holder.current
        try:
            fresh = await run_in_threadpool(prepare_model, loader, settings)
        except ModelLoadError as error:
            logger.error("reload failed: %s", error)
            still = f"; still serving version {previous.version}" if previous else ""
            if previous is None:
                holder.last_error = str(error)
            raise HTTPException(503, detail=f"reload failed: {error}{still}") from None
        holder.swap(fresh)
        previous_versions = (previous.version, previous.policy.version) if previous else None
        del previous  # the replaced model is freed by the collection below, not kept by us
        settle_heap(collect=True)
    changed = previous_versions != (fresh.version, fresh.policy.version)
    return ReloadPublic(
        previous_version=previous_versions[0] if previous_versions else None,
        changed=changed,
        model=model_public(fresh),
    )
