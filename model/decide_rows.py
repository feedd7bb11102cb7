"""The decision math for a handful of customers, in plain Python: the API's online path.

:func:`model.decide.decide` builds one polars expression graph for all customers at once. That
is the right tool for a nightly batch of a million customers, but planning the graph costs
about 30 ms whatever the number of rows, far more than a manager's single-customer request may
take. :func:`decide_records` makes the same decision (same math, same guard-rails, same
approval tier, same reasons, same validation rules) for records (one mapping per customer)
with plain arithmetic on Python floats: a few tens of microseconds per customer.

The math is documented once, in :mod:`model.decide`; this module follows it expression for
expression, and the tests check on random inputs and on the synthetic world that both give
the same output. Change one, change the other.

Portfolio budgets (:func:`model.decide.allocate_budget`) are a batch concern and are not
offered here: every offer counts as funded.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from features.contract import OFFER_KINDS
from model import reason_text as rt
from model.decide import (
    _COMPLAINT_COST_SHARE,
    _LIKELY_ACCEPTANCE,
    ACCEPT_PREFIX,
    DECISION_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    UPLIFT_PREFIX,
    DecisionInputError,
    ev_columns,
)
from model.policy import Offer, Policy

Record = Mapping[str, Any]

logger = logging.getLogger(__name__)


def decide_records(
    records: Sequence[Record], policy: Policy, *, language: str = "en"
) -> list[dict[str, Any]]:
    """:func:`model.decide.decide` for records: the same decisions, row by row.

    Args:
        records: One mapping per customer with :data:`model.decide.REQUIRED_COLUMNS`,
            optionally :data:`model.decide.OPTIONAL_COLUMNS` and ``accept_<kind>`` /
            ``uplift_<kind>`` values (None falls back to the policy prior). Not modified.
        policy: The retention policy.
        language: Language of ``reasons`` and ``blocked_reason``.

    Returns:
        Per record, in order, a new dict: the record's keys followed by the decision columns
        of :func:`model.decide.decide` (``reasons`` a list of strings).

    Raises:
        DecisionInputError: On missing keys, nulls in required values, NaN, out-of-range values
            or unknown segments / offer kinds (the message names the key, the rule, the number
            of records and example customer ids).
    """
    book = rt.phrasebook(language)
    _validate(records, policy)
    annuity_weights = _annuity_weights(policy)
    # an optional input counts as given when any record has it, as a frame column would be;
    # records without it then read as null
    given = frozenset(c for c in OPTIONAL_COLUMNS if any(c in record for record in records))
    decided = [_decide_one(record, policy, book, annuity_weights, given) for record in records]
    # DEBUG, not INFO as in the batch: this runs once per API request, which has its own
    # access log line; formatting and writing a second line cost a tenth of the request
    if logger.isEnabledFor(logging.DEBUG):
        actions = dict(Counter(row["action"] for row in decided))
        logger.debug(
            "decided %d customers with policy %s: %s", len(decided), policy.version, actions
        )
    return decided


# --- validation --------------------------------------------------------------------------------


def _validate(records: Sequence[Record], policy: Policy) -> None:
    """The rules of :func:`model.decide._validate`, checked record by record."""
    if not records:
        return
    keys = set().union(*(record.keys() for record in records))
    missing = [c for c in REQUIRED_COLUMNS if any(c not in record for record in records)]
    if missing:
        raise DecisionInputError(
            f"scoring records: missing required key(s) {missing}; keys present: {sorted(keys)}"
        )
    prefixed = {
        key: key.removeprefix(ACCEPT_PREFIX).removeprefix(UPLIFT_PREFIX)
        for key in keys
        if key.startswith((ACCEPT_PREFIX, UPLIFT_PREFIX))
    }
    unknown = sorted(key for key, kind in prefixed.items() if kind not in OFFER_KINDS)
    if unknown:
        raise DecisionInputError(
            f"scoring records: key(s) {unknown} name unknown offer kind(s); "
            f"offer kinds: {', '.join(OFFER_KINDS)}"
        )
    reserved = {*DECISION_COLUMNS, *ev_columns(policy)}
    clashes = sorted(key for key in keys if key in reserved or key.startswith("_"))
    if clashes:
        raise DecisionInputError(
            f"scoring records: key(s) {clashes} clash with decision output or private names"
        )
    optional = [c for c in OPTIONAL_COLUMNS if c in keys]
    numeric = [*REQUIRED_COLUMNS[2:], *optional, *sorted(prefixed)]
    probabilities = ["p_churn", *sorted(k for k in prefixed if k.startswith(ACCEPT_PREFIX))]
    effects = sorted(k for k in prefixed if k.startswith(UPLIFT_PREFIX))
    non_negative = [
        "months_of_history",
        "monthly_margin_se",
        "monthly_revenue",
        "monthly_complaint_cost",
        *sorted(optional),
    ]
    segment_rule = f"must be one of the policy's segments ({', '.join(policy.segments)})"
    segments = set(policy.segments)
    # (column, rule) -> offending records, in the order decide() reports them
    broken: dict[tuple[str, str], list[Record]] = {}

    def flag(column: str, rule: str, record: Record) -> None:
        broken.setdefault((column, rule), []).append(record)

    for record in records:
        for column in REQUIRED_COLUMNS:
            if column != "monthly_margin_se" and record.get(column) is None:
                flag(column, "must not be null", record)
        for column in numeric:
            value = record.get(column)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, _NUMBER):
                flag(column, "must be numeric", record)
            elif value != value:
                flag(column, "must not be NaN", record)
        for column in probabilities:
            value = record.get(column)
            if isinstance(value, _NUMBER) and not 0.0 <= value <= 1.0:
                flag(column, "must be within [0, 1]", record)
        for column in effects:
            value = record.get(column)
            if isinstance(value, _NUMBER) and not -1.0 <= value <= 1.0:
                flag(column, "must be within [-1, 1]", record)
        for column in non_negative:
            value = record.get(column)
            if isinstance(value, _NUMBER) and value < 0:
                flag(column, "must be >= 0", record)
        segment = record.get("segment")
        if segment is not None and segment not in segments:
            flag("segment", segment_rule, record)
    if broken:
        problems = []
        for (column, rule), bad in broken.items():
            examples = ", ".join(f"{r['customer_id']}={r.get(column)!r}" for r in bad[:3])
            problems.append(f"{column} {rule}: {len(bad)} row(s), e.g. customer_id {examples}")
        raise DecisionInputError("scoring records: " + "; ".join(problems))


_NUMBER = (int, float)


# --- one customer ------------------------------------------------------------------------------


def _annuity_weights(policy: Policy) -> list[tuple[float, float]]:
    """``(k / H, delta^k)`` for k = 1..H, as :func:`model.decide._annuity` computes them."""
    horizon, delta = policy.horizon_months, policy.discount_factor
    return [(k / horizon, delta**k) for k in range(1, horizon + 1)]


def _annuity(p: float, weights: list[tuple[float, float]]) -> float:
    stay = 1.0 - p
    return sum(_power(stay, exponent) * discount for exponent, discount in weights)


def _power(base: float, exponent: float) -> float:
    # polars evaluates pow(0.5) as sqrt, which can differ from pow in the last bit
    return math.sqrt(base) if exponent == 0.5 else base**exponent


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _offer_parts(offer: Offer, record: Record, p: float) -> dict[str, float]:
    """Acceptance, churn after acceptance, unit cost and complaint saving of one offer."""
    if offer.churn_reduction_mode == "relative":
        prior_uplift = p * offer.churn_reduction
    else:
        prior_uplift = offer.churn_reduction
    acceptance = _number(record.get(f"{ACCEPT_PREFIX}{offer.kind}"))
    uplift = _number(record.get(f"{UPLIFT_PREFIX}{offer.kind}"))
    a = offer.acceptance if acceptance is None else acceptance
    u = prior_uplift if uplift is None else uplift
    return {
        "a": a,
        "p_after": min(max(p - u, 0.0), 1.0),
        "cost": offer.cost_fixed + offer.cost_revenue_multiple * float(record["monthly_revenue"]),
        "saving": offer.complaint_cost_reduction * float(record["monthly_complaint_cost"]),
    }


def _tier(policy: Policy, amount: float) -> str | None:
    for tier in policy.authority:
        if tier.max_amount is None or amount <= tier.max_amount:
            return tier.role
    return None


def _decide_one(
    record: Record,
    policy: Policy,
    book: rt.Phrasebook,
    weights: list[tuple[float, float]],
    given: frozenset[str],
) -> dict[str, Any]:
    p = float(record["p_churn"])
    margin = float(record["monthly_margin"])
    revenue = float(record["monthly_revenue"])
    se = _number(record.get("monthly_margin_se"))
    ev_retain = margin * _annuity(p, weights)

    parts = {offer.kind: _offer_parts(offer, record, p) for offer in policy.offers}
    ev_offers = {}
    for kind, part in parts.items():
        a = part["a"]
        accepted = (margin + part["saving"]) * _annuity(part["p_after"], weights)
        ev_offers[kind] = a * (accepted - part["cost"]) + (1.0 - a) * ev_retain
    ev_best = max(ev_offers.values())
    kind = next(k for k, value in ev_offers.items() if value >= ev_best)
    best = parts[kind]

    exit_ = policy.exit
    exit_cost = exit_.fixed + exit_.revenue_months * revenue
    if "receivables_open" in given:
        exit_cost = exit_cost + exit_.receivables_write_off_share * (
            _number(record.get("receivables_open")) or 0.0
        )
    if "exit_cost_extra" in given:
        exit_cost = exit_cost + (_number(record.get("exit_cost_extra")) or 0.0)
    guard = policy.guardrails
    margin_upper = None if se is None else margin + guard.end_margin_z * se
    ev_end = -exit_cost

    segment = str(record["segment"])
    months = float(record["months_of_history"])
    protected = segment in guard.protected_segments
    short = months < guard.min_history_months_to_end
    margin_unknown = margin_upper is None
    margin_uncertain = margin_upper is not None and margin_upper >= 0
    end_allowed = not (protected or short or margin_unknown or margin_uncertain)

    wants_offer = ev_best > ev_retain
    best_alternative = ev_best if wants_offer else ev_retain
    end_wins = ev_end > best_alternative
    if end_allowed and end_wins:
        action = "end"
    elif wants_offer:
        action = "compensate"
    else:
        action = "retain"

    whole_months = str(math.floor(months))
    blocked_reason = None
    if not end_allowed and end_wins:
        blocks = [
            rt.render_text(book, "blocked_protected", segment_code=segment) if protected else None,
            rt.render_text(
                book,
                "blocked_history",
                months=whole_months,
                required=guard.min_history_months_to_end,
            )
            if short
            else None,
            rt.render_text(book, "blocked_margin_unknown") if margin_unknown else None,
            rt.render_text(
                book,
                "blocked_margin",
                confidence=rt.percent_text(book, guard.end_margin_confidence),
                upper=rt.money_text(book, margin_upper),
            )
            if margin_uncertain
            else None,
        ]
        blocked_reason = "; ".join(text for text in blocks if text is not None) or None

    if action == "end":
        approval_tier = guard.end_requires
    elif action == "compensate":
        approval_tier = _tier(policy, best["cost"])
    else:
        approval_tier = None

    decision = {
        "action": action,
        "ev_retain": ev_retain,
        "ev_best_offer": ev_best,
        **{f"ev_offer_{k}": value for k, value in ev_offers.items()},
        "ev_end": ev_end,
        "offer_kind": kind,
        "offer_cost": best["cost"],
        "offer_acceptance": best["a"],
        "offer_expected_cost": best["a"] * best["cost"],
        "offer_churn_reduction": p - best["p_after"],
        "churn_after_offer": best["p_after"],
        "offer_complaint_saving": best["saving"],
        "exit_cost": exit_cost,
        "margin_upper": margin_upper,
        "end_allowed": end_allowed,
        "approval_tier": approval_tier,
        "blocked_reason": blocked_reason,
        "reasons": [],
        "policy_version": policy.version,
        "horizon_months": policy.horizon_months,
    }
    facts = _Facts(
        record=record,
        decision=decision,
        best_alternative=best_alternative,
        end_blocked=not end_allowed and end_wins,
        protected=protected,
        short=short,
    )
    decision["reasons"] = _reasons(facts, policy, book, given)
    return {**record, **decision}


class _Facts:
    """What :func:`_reasons` reads about one customer's decision."""

    __slots__ = ("record", "decision", "best_alternative", "end_blocked", "protected", "short")

    def __init__(
        self,
        *,
        record: Record,
        decision: dict[str, Any],
        best_alternative: float,
        end_blocked: bool,
        protected: bool,
        short: bool,
    ) -> None:
        self.record = record
        self.decision = decision
        self.best_alternative = best_alternative
        self.end_blocked = end_blocked
        self.protected = protected
        self.short = short


def _reasons(
    facts: _Facts, policy: Policy, book: rt.Phrasebook, given: frozenset[str]
) -> list[str]:
    """The plain-language reasons of :func:`model.decide._explain`, for one customer."""
    record, d = facts.record, facts.decision
    horizon = policy.horizon_months
    margin = float(record["monthly_margin"])
    revenue = float(record["monthly_revenue"])
    complaint_cost = float(record["monthly_complaint_cost"])
    money, percent = rt.money_text, rt.percent_text
    offer = rt.offer_name_text(book, d["offer_kind"])
    offer_inline = rt.offer_name_text(book, d["offer_kind"], inline=True)
    acceptance = percent(book, d["offer_acceptance"])
    risk = percent(book, float(record["p_churn"]))

    def say(key: str, **parts: object) -> str | None:
        return rt.render_text(book, key, **parts)

    upper = d["margin_upper"]
    messages = [
        say("margin_loss" if margin < 0 else "margin_gain", amount=money(book, margin)),
        say("margin_loss_confident", amount=money(book, upper))
        if upper is not None and upper < 0
        else None,
        say("complaint_cost", amount=money(book, complaint_cost))
        if complaint_cost > 0 and complaint_cost >= _COMPLAINT_COST_SHARE * revenue
        else None,
    ]
    if "receivables_overdue" in given:
        overdue = _number(record.get("receivables_overdue"))
        if overdue is not None and overdue > 0:
            messages.append(say("overdue", amount=money(book, overdue)))
    if "offers_made_12m" in given and "offers_declined_12m" in given:
        made_value, declined_value = (
            record.get("offers_made_12m"),
            record.get("offers_declined_12m"),
        )
        made = None if made_value is None else int(made_value)
        declined = None if declined_value is None else int(declined_value)
        if declined == 1 and made is not None and made <= 1:
            messages.append(say("declined_one"))
        elif declined is not None and declined >= 1:
            offered = declined if made is None else max(made, declined)
            messages.append(say("declined_many", declined=declined, offered=offered))
    messages.append(say("churn_risk", risk=risk, horizon=horizon))

    action = d["action"]
    wants_offer = d["ev_best_offer"] > d["ev_retain"]
    if action == "compensate":
        effect = {
            "offer": offer,
            "acceptance": acceptance,
            "risk": risk,
            "risk_after": percent(book, d["churn_after_offer"]),
        }
        likely = d["offer_acceptance"] >= _LIKELY_ACCEPTANCE
        messages += [
            say("offer_likely" if likely else "offer_unlikely", **effect),
            say(
                "offer_complaints",
                offer_inline=offer_inline,
                amount=money(book, d["offer_complaint_saving"]),
            )
            if d["offer_complaint_saving"] > 0
            else None,
            say(
                "offer_expected_cost",
                expected=money(book, d["offer_expected_cost"]),
                cost=money(book, d["offer_cost"]),
                acceptance=acceptance,
            ),
            say(
                "offer_gain",
                amount=money(book, d["ev_best_offer"] - d["ev_retain"]),
                horizon=horizon,
            ),
        ]
    elif action == "retain":
        retained = money(book, d["ev_retain"])
        messages += [
            None if wants_offer else say("retain_no_offer", offer_inline=offer_inline),
            say(
                "retain_value" if d["ev_retain"] >= 0 else "retain_loss",
                amount=retained,
                horizon=horizon,
            ),
        ]
    else:
        messages += [
            say(
                "end_value",
                exit_cost=money(book, d["exit_cost"]),
                loss=money(book, facts.best_alternative),
                horizon=horizon,
            ),
            say("end_remedy_unlikely", offer_inline=offer_inline, acceptance=acceptance)
            if d["offer_acceptance"] < _LIKELY_ACCEPTANCE
            else None,
        ]
    if facts.end_blocked:
        if facts.protected:
            segment = rt.segment_name_text(book, str(record["segment"]))
            messages.append(say("blocked_protected_plain", segment=segment))
        elif facts.short:
            months = str(math.floor(float(record["months_of_history"])))
            messages.append(say("blocked_history_plain", months=months))
        else:
            messages.append(say("blocked_margin_plain"))
    return [message for message in messages if message is not None]
