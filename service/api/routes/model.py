"""``GET /v1/model``: which model and policy are served, when they were trained, how they did."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from service.api.deps import ServingModelDep, ViewerKey
from service.api.schemas import ModelPublic, error_responses
from service.api.serving import ServingModel

router = APIRouter(prefix="/v1/model", tags=["model"])


def api_version() -> str:
    """The installed keepwise version (``0+unknown`` when run from a source tree)."""
    try:
        return version("keepwise")
    except PackageNotFoundError:
        return "0+unknown"


def model_public(serving: ServingModel) -> ModelPublic:
    """The public description of a served model."""
    trained_at = serving.bundle.summary.get("trained_at")
    return ModelPublic(
        model_name=serving.model_name,
        model_version=serving.version,
        alias=serving.alias,
        source=serving.source,
        loaded_at=serving.loaded_at,
        trained_at=None if trained_at is None else str(trained_at),
        horizon_days=serving.bundle.horizon_days,
        feature_count=len(serving.bundle.feature_columns),
        metrics=dict(serving.metrics),
        policy_version=serving.policy.version,
        api_version=api_version(),
    )


@router.get(
    "",
    response_model=ModelPublic,
    summary="The served model: versions, training date and metrics",
    description="Model name, registry version and alias, when it was trained and loaded, its "
    "holdout metrics and the policy version. Any role may call it.",
    responses=error_responses(401, 503),
)
async def served_model(key: ViewerKey, serving: ServingModelDep) -> ModelPublic:
    """Describe the served model."""
    return model_public(serving)
