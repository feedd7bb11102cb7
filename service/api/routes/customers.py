"""``GET /v1/customers/{customer_id}/recommendation``: the latest stored batch recommendation."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.api.deps import PolicyDep, StoreDep, ViewerKey
from service.api.feature_row import ID_MAX_LENGTH, ID_PATTERN
from service.api.schemas import (
    StoredRecommendationPublic,
    WhatIfPublic,
    WhatIfRequest,
    error_responses,
    recommendation_from_row,
)
from service.api.storage_errors import store_call
from service.api.whatif import WhatIfError, what_if

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/customers", tags=["recommendations"])


def no_recommendation(customer_id: str) -> HTTPException:
    """The one 404 for a customer that is unknown or outside the key's scope (same text)."""
    return HTTPException(
        404,
        detail=f"no stored recommendation for customer '{customer_id}': the id is unknown, "
        "was not in the last batch run, or is outside this key's scope",
    )


@router.get(
    "/{customer_id}/recommendation",
    response_model=StoredRecommendationPublic,
    summary="The latest stored recommendation for a customer",
    description=(
        "The recommendation the last batch run (`keepwise` batch command) stored for the "
        "customer, with its `recommendation_id` to cite in a decision report, and the replay "
        "fields (`inputs_sha256`, `propensity`, `explored`, `greedy_action`, "
        "`decision_inputs`) that let a candidate policy be judged on the log. Any role may "
        "call it; a key limited to an account manager or region sees only its own customers "
        "and gets 404 for every other, exactly as for an unknown id."
    ),
    responses=error_responses(401, 404, 503),
)
async def latest_recommendation(
    customer_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="The customer's key in the CRM (no control characters).",
            examples=["C0000870"],
        ),
    ],
    key: ViewerKey,
    store: StoreDep,
) -> StoredRecommendationPublic:
    """Look the customer's latest recommendation up."""
    stored = await store_call(store.latest_recommendation, customer_id, where="path")
    if stored is None or not key.owns(stored.account_manager, stored.region):
        raise no_recommendation(customer_id)
    try:
        return StoredRecommendationPublic.model_validate(
            {
                **recommendation_from_row(stored.payload),
                "customer_id": stored.customer_id,
                "recommendation_id": str(stored.recommendation_id),
                "run_id": str(stored.run_id),
                "stored_at": stored.created_at,
            }
        )
    except ValidationError as error:
        logger.error(
            "stored recommendation %s of customer %s does not fit the API model: %s",
            stored.recommendation_id,
            customer_id,
            error,
        )
        raise HTTPException(
            500, detail="the stored recommendation cannot be read; re-run the batch command"
        ) from None


@router.post(
    "/{customer_id}/what-if",
    response_model=WhatIfPublic,
    summary="Re-decide a customer's stored recommendation with another offer or cost",
    description=(
        "The decision kernel re-decides the customer's recommendation in force from the inputs "
        "the batch used, with only the given offer in the catalogue and, if given, that unit "
        "cost. With the recommended offer and no cost the expected values are the stored ones. "
        "Nothing is stored. Any role may call it; a scoped key gets 404 for other customers. "
        "422 when the recommendation was stored without its decision inputs (re-run the batch)."
    ),
    responses=error_responses(400, 401, 404, 413, 503),
)
async def what_if_for_customer(
    customer_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="The customer's key in the CRM.",
            examples=["C0000870"],
        ),
    ],
    body: WhatIfRequest,
    key: ViewerKey,
    store: StoreDep,
    policy: PolicyDep,
) -> WhatIfPublic:
    """Run the what-if."""
    stored = await store_call(store.latest_recommendation, customer_id)
    if stored is None or not key.owns(stored.account_manager, stored.region):
        raise no_recommendation(customer_id)
    try:
        answer = what_if(stored.payload, policy, body.offer_kind, body.unit_cost)
    except WhatIfError as error:
        raise RequestValidationError(
            [{"type": "what_if", "loc": ["body", "offer_kind"], "msg": str(error)}]
        ) from None
    return WhatIfPublic(
        customer_id=stored.customer_id,
        recommendation_id=stored.recommendation_id,
        **vars(answer),
    )
