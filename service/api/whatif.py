"""What-if: a stored recommendation re-decided with another offer or another offer cost.

A manager asks "and if we offered training at 400 instead?". The answer comes from the one
decision kernel (:func:`model.decide_rows.decide_records`, which runs
:func:`model.kernel.decide_arrays`), fed with exactly the inputs the batch decided on (the
payload's ``decision_inputs``) under the served policy changed in one place: the catalogue is
narrowed to the offer asked about and, when a cost is given, that offer's unit cost is fixed
at it (``cost_fixed = cost``, ``cost_revenue_multiple = 0``). Everything else -- acceptance,
churn cut, horizon, discounting, exit cost, guard-rails and the authority ladder -- is the
policy's and the model's, so with the recommended offer and no cost change the answer equals
the stored expected values to the bit (tested).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model.decide_rows import decide_records
from model.decision_inputs import DecisionInputError
from model.policy import Policy, PolicyError

MAX_UNIT_COST = 1e9


class WhatIfError(ValueError):
    """The what-if cannot be computed; the message says why in words for the page."""


@dataclass(frozen=True)
class WhatIf:
    """The kernel's answer for one customer under the changed offer.

    Attributes:
        offer_kind: The offer examined.
        unit_cost: Its unit cost (paid if accepted).
        acceptance: Probability the customer accepts it.
        expected_cost: unit_cost x acceptance.
        ev_retain: Expected value of retaining as they are.
        ev_offer: Expected value of making this offer.
        ev_end: Expected value of ending (minus the exit cost).
        action: What the kernel recommends with only this offer available.
        approval_tier: Who must approve that action (None for retain).
        reasons: The kernel's plain-language reasons.
        policy_version: The policy it was decided under.
    """

    offer_kind: str
    unit_cost: float
    acceptance: float
    expected_cost: float
    ev_retain: float
    ev_offer: float
    ev_end: float
    action: str
    approval_tier: str | None
    reasons: list[str]
    policy_version: str


def what_if(
    payload: Mapping[str, Any], policy: Policy, offer_kind: str, unit_cost: float | None = None
) -> WhatIf:
    """Re-decide a stored recommendation with one offer (and optionally its unit cost).

    Args:
        payload: The stored recommendation (public JSON shape, with ``decision_inputs``).
        policy: The policy to decide under (the served one).
        offer_kind: The offer to examine; one of the policy's catalogue.
        unit_cost: The offer's unit cost; None keeps the policy's cost rule.

    Raises:
        WhatIfError: The payload has no decision inputs (stored before they were kept), the
            offer is not in the catalogue, or the cost is not a finite amount >= 0.
    """
    inputs = payload.get("decision_inputs")
    if not inputs:
        raise WhatIfError(
            "this recommendation was stored without its decision inputs; re-run the batch "
            "(keepwise score) to enable what-if"
        )
    try:
        offer = policy.offer(offer_kind)
    except KeyError:
        raise WhatIfError(
            f"offer {offer_kind!r} is not in policy {policy.version}'s catalogue: "
            f"{', '.join(policy.offer_kinds)}"
        ) from None
    if unit_cost is not None:
        if not (math.isfinite(unit_cost) and 0 <= unit_cost <= MAX_UNIT_COST):
            raise WhatIfError(f"the offer cost must be an amount from 0 to {MAX_UNIT_COST:,.0f}")
        offer = dataclasses.replace(offer, cost_fixed=float(unit_cost), cost_revenue_multiple=0.0)
    try:
        changed = dataclasses.replace(policy, offers=(offer,))
    except PolicyError as error:  # pragma: no cover - a single valid offer keeps the policy valid
        raise WhatIfError(str(error)) from None
    record = {"customer_id": payload["customer_id"], "segment": payload["segment"], **inputs}
    try:
        decided = decide_records([record], changed)[0]
    except DecisionInputError as error:
        raise WhatIfError(f"the stored inputs cannot be decided on: {error}") from None
    return WhatIf(
        offer_kind=offer.kind,
        unit_cost=decided["offer_cost"],
        acceptance=decided["offer_acceptance"],
        expected_cost=decided["offer_expected_cost"],
        ev_retain=decided["ev_retain"],
        ev_offer=decided["ev_best_offer"],
        ev_end=decided["ev_end"],
        action=decided["action"],
        approval_tier=decided["approval_tier"],
        reasons=list(decided["reasons"]),
        policy_version=policy.version,
    )
