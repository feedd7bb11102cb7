"""The records the store keeps: recommendations and the front line's after-action reports.

DESIGN.md, business case 8: every exercised authority is reported afterwards with six items —
the customer, what they asked for, time and place, the authority used, who helped, and the
outcome. :class:`DecisionReport` is that report plus its links (the recommendation it followed
or overrode, and who recorded it); :class:`StoredDecision` is the report as the decision log
holds it. The log is also the training data for learning which remedies work, so the store
refuses incomplete or ambiguous reports instead of guessing: a report may carry the offer made
as structured fields (:class:`ReportedOffer`, revision 0005), which ``keepwise train`` joins to
the CRM's offers history (:mod:`model.reported_offers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


class StoreError(Exception):
    """The store refused a request or could not complete it.

    Attributes:
        field: the input field at fault (``"customer_id"``, ``"occurred_at"``, ...) when the
            input was bad; ``None`` when the database failed (unreachable, locked too long), so
            an HTTP layer can answer 422 for the first and 503 for the second.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StoreConflict(StoreError):
    """The request is valid but the stored state refuses it (already decided, replaced by a
    newer run, nothing to approve, an idempotency key reused with another report); retrying the
    same request will not help, and an HTTP layer answers 409."""


@dataclass(frozen=True)
class ReportedOffer:
    """The offer an after-action report says was made, in the terms of the CRM's ``offers``.

    Attributes:
        kind: the offer kind, one of :data:`features.contract.OFFER_KINDS`.
        offered_on: the day it was made (or, for a holdout, the day the customer was selected).
        accepted: ``True`` accepted, ``False`` declined, ``None`` no answer yet (always ``None``
            for a holdout).
        cost: what it costs the company if accepted, as ``offers.cost`` (for an accepted offer,
            what it did cost); ``None`` only for a holdout, which costs nothing.
        responded_on: the day of the answer, if known; only with an answer, not before
            ``offered_on``.
        holdout: ``True`` when the customer was selected but held out at random as the control
            group (not contacted: no answer, no cost).
    """

    kind: str
    offered_on: date
    accepted: bool | None = None
    cost: float | None = None
    responded_on: date | None = None
    holdout: bool = False


@dataclass(frozen=True)
class DecisionReport:
    """The front line's after-action report: six items and the links that make it learnable.

    Attributes:
        customer_id: the customer the authority was exercised for.
        requested: what the customer asked for, in the staff member's words.
        occurred_at: when it happened; timezone-aware (stored and returned in UTC).
        place: where it happened (branch, counter, phone, site visit, ...).
        authority_used: the authority exercised, e.g. ``"front_line: refund 120.00"``.
        helped_by: who helped, or ``None`` if nobody did.
        outcome: how it ended.
        recommendation_id: the keepwise recommendation in force, or ``None`` if there was none.
        followed_recommendation: ``True`` if it was followed, ``False`` if overridden; must be
            given exactly when ``recommendation_id`` is.
        recorded_by: the name of the API key that filed the report.
        offer: the offer made (or held out), when the report records one.
    """

    customer_id: str
    requested: str
    occurred_at: datetime
    place: str
    authority_used: str
    helped_by: str | None
    outcome: str
    recommendation_id: str | None
    followed_recommendation: bool | None
    recorded_by: str
    offer: ReportedOffer | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class StoredDecision(DecisionReport):
    """A report as the decision log holds it.

    Attributes:
        decision_id: random id (uuid4 hex) given by the store.
        recorded_at: when the store committed it (UTC).
    """

    decision_id: str
    recorded_at: datetime


@dataclass(frozen=True)
class StoredRecommendation:
    """One customer's recommendation as a batch run saved it.

    Attributes:
        recommendation_id: the caller's id for the recommendation.
        customer_id: the customer it is for.
        account_manager: the customer's owner when it was scored (``None`` if unassigned).
        region: the customer's region when it was scored (``None`` if unknown).
        as_of: the date the features describe.
        run_id: the batch run that saved it.
        payload: the full recommendation, as saved (JSON types).
        created_at: when the store saved it (UTC).
        action: ``retain``, ``compensate`` or ``end`` (as the policy named it).
        model_version: model that scored it.
        policy_version: policy that decided it.
    """

    recommendation_id: str
    customer_id: str
    account_manager: str | None
    region: str | None
    as_of: date
    run_id: str
    payload: dict[str, Any]
    created_at: datetime
    action: str
    model_version: str
    policy_version: str


VERDICTS = ("approved", "rejected")


@dataclass(frozen=True)
class ApprovalRequest:
    """A verdict on a recommendation above the front line's authority, with its report.

    Attributes:
        recommendation_id: the recommendation in force that is approved or rejected.
        verdict: ``approved`` or ``rejected``.
        note: why, in the approver's words.
        authority: the approver's tier (e.g. ``director``); the caller has checked that it
            covers the recommendation's tier.
        report: the after-action report (six items) recorded with it; its
            ``recommendation_id`` must be the same and ``followed_recommendation`` says
            whether the verdict follows the recommendation (approved) or not (rejected).
    """

    recommendation_id: str
    verdict: str
    note: str
    authority: str
    report: DecisionReport


@dataclass(frozen=True)
class StoredApproval:
    """A verdict as the store holds it (one per recommendation).

    Attributes:
        approval_id: random id (uuid4 hex) given by the store.
        recommendation_id: the recommendation decided on.
        customer_id: its customer.
        required_tier: the approval tier the recommendation needed.
        verdict: ``approved`` or ``rejected``.
        note: the approver's note.
        decided_by: the name of the API key that decided.
        authority: the approver's tier.
        decision_id: the after-action report recorded with the verdict.
        decided_at: when the store committed it (UTC).
    """

    approval_id: str
    recommendation_id: str
    customer_id: str
    required_tier: str
    verdict: str
    note: str
    decided_by: str
    authority: str
    decision_id: str
    decided_at: datetime


@dataclass(frozen=True)
class RecordedDecision:
    """What :meth:`service.storage.Store.record_decision_once` did.

    Attributes:
        decision: The stored report.
        replayed: True when the idempotency key had already stored this report (nothing new
            was written); False when this call stored it.
    """

    decision: StoredDecision
    replayed: bool
