"""The company's retention strategy as an explicit, versioned policy file.

A policy is everything the decision math in :mod:`model.decide` needs besides the model scores:
the horizon and discount rate, the cost rates behind the cost to serve, the **offer catalogue**
(what each remedy costs, how often it is accepted, how much it cuts churn), the **exit costs** of
ending a relationship, the **authority tiers** (who may approve how much) and the
**guard-rails** that keep automatic recommendations inside the strategy (protected segments are
never ended, "end" needs enough history -- unless the loss is certain or the stake pays for the
risk -- and a margin that is negative with high confidence, an offer budget for batch runs). See
DESIGN.md, business cases 1, 2, 8 and 9.

Policy file format (TOML)
-------------------------
Unknown keys are errors that name the key (with a suggestion when it looks like a misspelling),
so a typo can never silently fall back to a default. Every number is range-checked and errors
name the key. Keys marked *optional* have the stated default; all others are required::

    version = "2024.1"              # required: echoed on every recommendation
    description = "..."             # optional free text
    horizon_months = 12             # H: months over which value is counted (1..120)
    monthly_discount_rate = 0.008   # r: delta = 1 / (1 + r) per month, 0 <= r < 1
    segments = ["enterprise", ...]  # optional: the segments customers may have; defaults to
                                    #   features.contract.SEGMENTS. Protected segments and input
                                    #   rows must use these names.

    [costs]                         # cost-to-serve rates (the feature pipelines price
    per_complaint_minute = 1.5      #   complaint handling with the same figures)
    per_escalation = 250.0

    [offers.refund]                 # one table per offer kind: refund, discount, replacement,
    cost_fixed = 0.0                #   training, gift, service (at least one offer).
    cost_revenue_multiple = 0.5     # cost c_o = cost_fixed + cost_revenue_multiple * monthly
                                    #   revenue; give at least one of the two (the other is 0)
    acceptance = 0.45               # prior acceptance probability a_o, in [0, 1]
    churn_reduction = 0.35          # prior effect on churn IF ACCEPTED, in [0, 1]:
    churn_reduction_mode = "relative"   # "relative": p' = p * (1 - churn_reduction);
                                    #   "absolute": p' = max(p - churn_reduction, 0)
    complaint_cost_reduction = 0.0  # optional: share of the monthly complaint cost that goes
                                    #   away if accepted (training: staff stop "breaking" it)
    description = "..."             # optional free text

    [exit]                          # exit_cost = fixed + revenue_months * monthly_revenue
    fixed = 2000.0                  #   + receivables_write_off_share * receivables_open
    revenue_months = 1.0            #   (+ the optional per-customer column exit_cost_extra)
    receivables_write_off_share = 0.5   # optional, in [0, 1], default 0

    [[authority]]                   # ordered from the lowest tier up; max_amount strictly
    role = "front_line"             #   increasing; the last tier has no max_amount (no limit)
    max_amount = 500.0
    [[authority]]
    role = "manager"
    max_amount = 5000.0
    [[authority]]
    role = "director"

    [guardrails]
    end_requires = "director"       # the role that must approve every "end" (a tier role)
    protected_segments = ["public_sector"]  # never ended automatically
    min_history_months_to_end = 12  # "end" needs at least this much history
    end_margin_confidence = 0.95    # "end" needs the one-sided upper confidence bound of the
                                    #   monthly margin, m + z * se with z = Phi^-1(0.95) = 1.645,
                                    #   to be below 0 (normal approximation)
    certain_loss_confidence = 0.99  # optional: the minimum history does not hold back "end"
                                    #   when the loss is certain: the upper bound at this
                                    #   stricter confidence, m + Phi^-1(0.99) * se = m + 2.326
                                    #   * se, is below 0. In [end_margin_confidence, 1); absent
                                    #   = the minimum history always applies
    end_stake_confidence = 0.75     # optional, with end_risk_price: "end" is also allowed when
    end_risk_price = 25000.0        #   the upper bound at this lower confidence is below 0 and
                                    #   ending gains at least end_risk_price * P(margin > 0)
                                    #   over the best alternative (P from the same normal
                                    #   approximation): the stake pays for the risk of ending a
                                    #   profitable customer. In [0.5, end_margin_confidence];
                                    #   absent = only end_margin_confidence counts
    end_stake_overrides_min_history = true  # optional, with end_stake_confidence: a customer
                                    #   the stake rule ends is ended whatever the months of
                                    #   history (the rule already weighs the chance that the
                                    #   margin is positive); default false
    offer_budget = 100000.0         # optional: batch budget in expected offer cost
                                    #   (sum of a_o * c_o); absent = no budget

    [exploration]                   # optional table (model/exploration.py); absent = share 0
    share = 0.05                    # probability, in [0, 0.5], that a customer whose best
                                    #   action is retain or compensate is recommended an allowed
                                    #   alternative drawn at random (a measured experiment)
    max_tier = "front_line"         # optional: the highest approval tier an explored offer may
                                    #   need (an authority role); default: the lowest tier
    max_expected_loss = 250.0       # optional: an alternative is drawn only when the model
                                    #   expects it to give up at most this much against the
                                    #   kernel's action (money over the horizon); absent = no
                                    #   bound

The shipped company policy is ``policies/default.toml`` at the top of the repository.
"""

from __future__ import annotations

import difflib
import logging
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

from features.contract import OFFER_KINDS, SEGMENTS

logger = logging.getLogger(__name__)

ReductionMode = Literal["relative", "absolute"]
REDUCTION_MODES: tuple[str, ...] = ("relative", "absolute")

_TOP_KEYS = (
    "version",
    "description",
    "horizon_months",
    "monthly_discount_rate",
    "segments",
    "costs",
    "offers",
    "exit",
    "authority",
    "guardrails",
    "exploration",
)
_EXPLORATION_KEYS = ("share", "max_tier", "max_expected_loss")
#: The largest exploration share a policy may set: beyond it the "experiment" is most of the
#: decisions, and the greedy action would no longer be the one usually recommended.
MAX_EXPLORATION_SHARE = 0.5
_COST_KEYS = ("per_complaint_minute", "per_escalation")
_OFFER_KEYS = (
    "cost_fixed",
    "cost_revenue_multiple",
    "acceptance",
    "churn_reduction",
    "churn_reduction_mode",
    "complaint_cost_reduction",
    "description",
)
_EXIT_KEYS = ("fixed", "revenue_months", "receivables_write_off_share")
_TIER_KEYS = ("role", "max_amount")
_GUARD_KEYS = (
    "end_requires",
    "protected_segments",
    "min_history_months_to_end",
    "end_margin_confidence",
    "certain_loss_confidence",
    "end_stake_confidence",
    "end_risk_price",
    "end_stake_overrides_min_history",
    "offer_budget",
)


class PolicyError(ValueError):
    """The policy is malformed: unknown key, missing key, wrong type or out-of-range value.

    The message names the key (dotted, e.g. ``offers.refund.acceptance``).
    """


@dataclass(frozen=True)
class Offer:
    """One remedy in the offer catalogue, with its priors.

    Attributes:
        kind: Offer kind (one of ``features.contract.OFFER_KINDS``).
        cost_fixed: Fixed part of the unit cost c_o (paid only if accepted).
        cost_revenue_multiple: Part of c_o proportional to the customer's monthly revenue.
        acceptance: Prior acceptance probability a_o, used when no model estimate is given.
        churn_reduction: Prior effect on the horizon churn probability if accepted.
        churn_reduction_mode: ``"relative"`` (p' = p (1 - r)) or ``"absolute"`` (p' = p - r).
        complaint_cost_reduction: Share of the monthly complaint cost removed if accepted
            (raises the margin: m' = m + share * monthly_complaint_cost).
        description: Free text.
    """

    kind: str
    cost_fixed: float
    cost_revenue_multiple: float
    acceptance: float
    churn_reduction: float
    churn_reduction_mode: ReductionMode
    complaint_cost_reduction: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        where = f"offers.{self.kind}"
        if self.kind not in OFFER_KINDS:
            raise PolicyError(
                f"offers.{self.kind}: unknown offer kind; expected one of {', '.join(OFFER_KINDS)}"
            )
        _check_range(self.cost_fixed, f"{where}.cost_fixed", low=0.0)
        _check_range(self.cost_revenue_multiple, f"{where}.cost_revenue_multiple", low=0.0)
        _check_range(self.acceptance, f"{where}.acceptance", low=0.0, high=1.0)
        _check_range(self.churn_reduction, f"{where}.churn_reduction", low=0.0, high=1.0)
        _check_range(
            self.complaint_cost_reduction, f"{where}.complaint_cost_reduction", low=0.0, high=1.0
        )
        if self.churn_reduction_mode not in REDUCTION_MODES:
            raise PolicyError(
                f"{where}.churn_reduction_mode: {self.churn_reduction_mode!r} is not one of "
                f"{', '.join(REDUCTION_MODES)}"
            )


@dataclass(frozen=True)
class ExitCosts:
    """One-off costs of ending a relationship: V_end = -exit_cost.

    ``exit_cost = fixed + revenue_months * monthly_revenue
    + receivables_write_off_share * receivables_open (+ exit_cost_extra)``; the last two terms
    use optional per-customer input columns (missing or null counts as 0).

    Attributes:
        fixed: Fixed cost per ended relationship (migration, legal, account wind-down).
        revenue_months: Months of revenue lost to notice periods and contract penalties.
        receivables_write_off_share: Share of open receivables written off on exit.
    """

    fixed: float
    revenue_months: float
    receivables_write_off_share: float = 0.0

    def __post_init__(self) -> None:
        _check_range(self.fixed, "exit.fixed", low=0.0)
        _check_range(self.revenue_months, "exit.revenue_months", low=0.0)
        _check_range(
            self.receivables_write_off_share,
            "exit.receivables_write_off_share",
            low=0.0,
            high=1.0,
        )


@dataclass(frozen=True)
class AuthorityTier:
    """One rung of the authority ladder (DESIGN.md, business case 8).

    Attributes:
        role: Who approves at this tier (e.g. ``front_line``).
        max_amount: Largest unit offer cost this role may grant; None means no limit.
    """

    role: str
    max_amount: float | None = None


@dataclass(frozen=True)
class GuardRails:
    """Rules that override the expected-value ranking.

    Attributes:
        end_requires: Role that must approve every "end" recommendation.
        protected_segments: Segments never ended automatically.
        min_history_months_to_end: Months of history a customer needs before "end".
        end_margin_confidence: "End" needs the one-sided upper bound at this confidence,
            ``m + z * se`` with ``z = Phi^-1(confidence)``, to be below 0.
        offer_budget: Batch budget in expected offer cost (sum of a_o * c_o); None = no budget.
        certain_loss_confidence: A loss is *certain* when the upper bound at this stricter
            confidence, ``m + z_c * se``, is below 0; the minimum history then does not block
            "end" (protected segments still do). None: the minimum history always applies.
        end_stake_confidence: With :attr:`end_risk_price`, "end" is also allowed when the
            upper bound at this lower confidence is below 0 and ending gains at least
            ``end_risk_price * P(margin > 0)`` over the best alternative. None: no such rule.
        end_risk_price: What the company counts as the cost of ending one customer whose
            margin is in truth positive (money); None with :attr:`end_stake_confidence`.
        end_stake_overrides_min_history: A customer the stake rule allows to end is not held
            back by the minimum history (needs :attr:`end_stake_confidence`).
    """

    end_requires: str
    protected_segments: tuple[str, ...]
    min_history_months_to_end: int
    end_margin_confidence: float
    offer_budget: float | None = None
    certain_loss_confidence: float | None = None
    end_stake_confidence: float | None = None
    end_risk_price: float | None = None
    end_stake_overrides_min_history: bool = False

    def __post_init__(self) -> None:
        _check_range(self.min_history_months_to_end, "guardrails.min_history_months_to_end", 0)
        confidence = self.end_margin_confidence
        if not (isinstance(confidence, int | float) and 0.5 <= confidence < 1.0):
            raise PolicyError(
                f"guardrails.end_margin_confidence: {confidence!r} is not in [0.5, 1) "
                "(0.95 means the 95% upper bound of the margin must be below 0)"
            )
        if self.offer_budget is not None:
            _check_range(self.offer_budget, "guardrails.offer_budget", low=0.0)
        certain = self.certain_loss_confidence
        if certain is not None and not (
            isinstance(certain, int | float)
            and not isinstance(certain, bool)
            and confidence <= certain < 1.0
        ):
            raise PolicyError(
                f"guardrails.certain_loss_confidence: {certain!r} is not in "
                f"[end_margin_confidence, 1) = [{confidence}, 1): a certain loss needs at least "
                "the confidence that ending needs (0.99 means the 99% upper bound of the margin "
                "is below 0)"
            )
        stake, price = self.end_stake_confidence, self.end_risk_price
        if (stake is None) != (price is None):
            raise PolicyError(
                "guardrails.end_stake_confidence and guardrails.end_risk_price go together: "
                "give both (ending when the stake pays for the risk) or neither"
            )
        if stake is not None and not (
            isinstance(stake, int | float)
            and not isinstance(stake, bool)
            and 0.5 <= stake
            and stake <= confidence
        ):
            raise PolicyError(
                f"guardrails.end_stake_confidence: {stake!r} is not in "
                f"[0.5, end_margin_confidence] = [0.5, {confidence}]: it is the lower confidence "
                "at which a large enough stake may end a relationship"
            )
        if price is not None:
            _check_range(price, "guardrails.end_risk_price", low=0.0)
        overrides = self.end_stake_overrides_min_history
        if not isinstance(overrides, bool):
            raise PolicyError(
                f"guardrails.end_stake_overrides_min_history: expected true or false, got "
                f"{overrides!r}"
            )
        if overrides and stake is None:
            raise PolicyError(
                "guardrails.end_stake_overrides_min_history needs guardrails.end_stake_confidence "
                "and guardrails.end_risk_price: without the stake rule there is nothing to let "
                "through"
            )

    @property
    def end_margin_z(self) -> float:
        """z such that ``m + z * se`` is the one-sided upper confidence bound of the margin."""
        return NormalDist().inv_cdf(self.end_margin_confidence)

    @property
    def certain_loss_z(self) -> float:
        """z of :attr:`certain_loss_confidence` (NaN when the policy has no such rule)."""
        if self.certain_loss_confidence is None:
            return math.nan
        return NormalDist().inv_cdf(self.certain_loss_confidence)

    @property
    def end_stake_z(self) -> float:
        """z of :attr:`end_stake_confidence` (NaN when the policy has no such rule)."""
        if self.end_stake_confidence is None:
            return math.nan
        return NormalDist().inv_cdf(self.end_stake_confidence)


@dataclass(frozen=True)
class Exploration:
    """The share of decisions kept as a randomised experiment (see :mod:`model.exploration`).

    Attributes:
        share: Probability ``epsilon`` that a customer whose best action is retain or
            compensate is recommended an allowed alternative drawn uniformly at random;
            0 disables exploration.
        max_tier: The highest authority role an explored offer's unit cost may need; None:
            the lowest tier (an experiment the front line may grant on the spot).
        max_expected_loss: The most an experiment may give up by the model's own estimate:
            an alternative ``a`` is drawn only when ``V(greedy) - V(a)`` is at most this (money
            over the horizon); None: no bound.
    """

    share: float = 0.0
    max_tier: str | None = None
    max_expected_loss: float | None = None

    def __post_init__(self) -> None:
        _check_range(self.share, "exploration.share", low=0.0, high=MAX_EXPLORATION_SHARE)
        if self.max_tier is not None and (not isinstance(self.max_tier, str) or not self.max_tier):
            raise PolicyError(
                f"exploration.max_tier: expected an authority role, got {self.max_tier!r}"
            )
        if self.max_expected_loss is not None:
            _check_range(self.max_expected_loss, "exploration.max_expected_loss", low=0.0)


@dataclass(frozen=True)
class Policy:
    """A validated, versioned retention policy (see the module docstring for the file format).

    Attributes:
        version: Policy version, echoed on every recommendation.
        horizon_months: Horizon H in months.
        monthly_discount_rate: r; the monthly discount factor is ``delta = 1 / (1 + r)``.
        cost_per_complaint_minute: Cost of one minute of complaint handling.
        cost_per_escalation: Cost of one escalation.
        offers: The offer catalogue, one offer per kind, in file order.
        exit: Exit costs.
        authority: Authority tiers from the lowest up.
        guardrails: Guard-rails.
        segments: Known customer segments.
        description: Free text.
        exploration: The exploration share and the authority explored offers may need.
    """

    version: str
    horizon_months: int
    monthly_discount_rate: float
    cost_per_complaint_minute: float
    cost_per_escalation: float
    offers: tuple[Offer, ...]
    exit: ExitCosts
    authority: tuple[AuthorityTier, ...]
    guardrails: GuardRails
    segments: tuple[str, ...] = SEGMENTS
    description: str = ""
    exploration: Exploration = field(default_factory=Exploration)

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version.strip():
            raise PolicyError(f"version: expected a non-empty string, got {self.version!r}")
        if isinstance(self.horizon_months, bool) or not isinstance(self.horizon_months, int):
            raise PolicyError(f"horizon_months: expected an integer, got {self.horizon_months!r}")
        _check_range(self.horizon_months, "horizon_months", low=1, high=120)
        _check_range(self.monthly_discount_rate, "monthly_discount_rate", low=0.0)
        if self.monthly_discount_rate >= 1.0:
            raise PolicyError(
                f"monthly_discount_rate: {self.monthly_discount_rate} is a monthly rate and "
                "must be below 1 (0.008 is about 10% a year)"
            )
        _check_range(self.cost_per_complaint_minute, "costs.per_complaint_minute", low=0.0)
        _check_range(self.cost_per_escalation, "costs.per_escalation", low=0.0)
        if not self.offers:
            raise PolicyError("offers: the catalogue needs at least one [offers.<kind>] table")
        kinds = [offer.kind for offer in self.offers]
        if len(set(kinds)) != len(kinds):
            raise PolicyError(f"offers: an offer kind appears more than once in {kinds}")
        if not self.segments or len(set(self.segments)) != len(self.segments):
            raise PolicyError(f"segments: expected distinct segment names, got {self.segments}")
        unknown = sorted(set(self.guardrails.protected_segments) - set(self.segments))
        if unknown:
            raise PolicyError(
                f"guardrails.protected_segments: unknown segment(s) {unknown}; known segments: "
                f"{', '.join(self.segments)} (declare others in the top-level 'segments' list)"
            )
        self._check_authority()

    def _check_authority(self) -> None:
        if not self.authority:
            raise PolicyError("authority: at least one [[authority]] tier is needed")
        roles = [tier.role for tier in self.authority]
        for index, tier in enumerate(self.authority):
            where = f"authority[{index}]"
            if not isinstance(tier.role, str) or not tier.role:
                raise PolicyError(f"{where}.role: expected a non-empty string, got {tier.role!r}")
            last = index == len(self.authority) - 1
            if last and tier.max_amount is not None:
                raise PolicyError(
                    f"{where}.max_amount: the last tier ({tier.role}) approves any amount and "
                    "takes no max_amount"
                )
            if not last and tier.max_amount is None:
                raise PolicyError(
                    f"{where}.max_amount: missing for {tier.role!r}; only the last tier may be "
                    "unlimited"
                )
            if tier.max_amount is not None:
                _check_range(tier.max_amount, f"{where}.max_amount", low=0.0)
                if index > 0:
                    previous = self.authority[index - 1].max_amount
                    assert previous is not None
                    if tier.max_amount <= previous:
                        raise PolicyError(
                            f"{where}.max_amount: tiers must increase, but {tier.role} "
                            f"({tier.max_amount}) is not above "
                            f"{self.authority[index - 1].role} ({previous})"
                        )
        if len(set(roles)) != len(roles):
            raise PolicyError(f"authority: a role appears more than once in {roles}")
        if self.guardrails.end_requires not in roles:
            raise PolicyError(
                f"guardrails.end_requires: {self.guardrails.end_requires!r} is not an authority "
                f"role; roles: {', '.join(roles)}"
            )
        if self.exploration.max_tier is not None and self.exploration.max_tier not in roles:
            raise PolicyError(
                f"exploration.max_tier: {self.exploration.max_tier!r} is not an authority role; "
                f"roles: {', '.join(roles)}"
            )

    @property
    def discount_factor(self) -> float:
        """Monthly discount factor ``delta = 1 / (1 + r)``."""
        return 1.0 / (1.0 + self.monthly_discount_rate)

    @property
    def offer_kinds(self) -> tuple[str, ...]:
        """Kinds in the catalogue, in file order."""
        return tuple(offer.kind for offer in self.offers)

    def offer(self, kind: str) -> Offer:
        """The catalogue entry for ``kind``.

        Raises:
            KeyError: When the catalogue has no such offer.
        """
        for offer in self.offers:
            if offer.kind == kind:
                return offer
        raise KeyError(f"policy {self.version!r} has no offer of kind {kind!r}")

    @property
    def exploration_limit(self) -> float:
        """The largest unit offer cost an explored offer may have: the ``max_amount`` of
        ``exploration.max_tier`` (the lowest tier when unset; ``inf`` for the unlimited tier)."""
        role = self.exploration.max_tier or self.authority[0].role
        tier = next(tier for tier in self.authority if tier.role == role)
        return math.inf if tier.max_amount is None else tier.max_amount

    def tier_for(self, amount: float) -> str:
        """The lowest role allowed to grant ``amount`` (a unit offer cost)."""
        for tier in self.authority:
            if tier.max_amount is None or amount <= tier.max_amount:
                return tier.role
        raise AssertionError("unreachable: the last tier is unlimited")


#: Days a model's horizon may differ from the policy's months (a month is 365/12 days).
HORIZON_TOLERANCE_DAYS = 16


def check_horizon(policy: Policy, horizon_days: int) -> None:
    """Insist that the churn model's horizon is the policy's pricing horizon.

    The decision math turns ``p_i``, the probability of churn within the model's horizon, into
    survival over the policy's ``H`` months (``S(k) = (1 − p)^(k/H)``, DESIGN.md). A model of
    churn within 90 days priced over 12 months reads a 3-month probability as a 12-month one
    and undervalues every risk fourfold; so the two must agree, within
    :data:`HORIZON_TOLERANCE_DAYS`.

    Raises:
        PolicyError: They disagree; the message names both and the two ways to fix it.
    """
    months_in_days = policy.horizon_months * 365 / 12
    if abs(horizon_days - months_in_days) <= HORIZON_TOLERANCE_DAYS:
        return
    months = max(1, round(horizon_days / (365 / 12)))
    raise PolicyError(
        f"the churn model's horizon is {horizon_days} days but policy {policy.version} prices "
        f"decisions over {policy.horizon_months} months ({months_in_days:.0f} days): a "
        f"{horizon_days}-day churn probability would be read as a {policy.horizon_months}-month "
        f"one. Train with --horizon-days {round(months_in_days)}, or use a policy with "
        f"horizon_months = {months} (e.g. policies/quarterly.toml for 3 months)"
    )


def load_policy(path: str | Path) -> Policy:
    """Read and validate a TOML policy file.

    Args:
        path: The policy file (e.g. ``policies/default.toml``).

    Returns:
        The validated policy.

    Raises:
        PolicyError: On invalid TOML, unknown or missing keys, wrong types or out-of-range
            values; the message names the file and the key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{path}: not valid TOML: {error}") from error
    try:
        policy = parse_policy(data)
    except PolicyError as error:
        raise PolicyError(f"{path}: {error}") from error
    logger.debug("loaded policy %s from %s", policy.version, path)
    return policy


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """Validate an already-parsed policy document (the TOML file as a dict).

    Args:
        data: The policy document.

    Returns:
        The validated policy.

    Raises:
        PolicyError: On unknown or missing keys, wrong types or out-of-range values.
    """
    _check_keys(data, _TOP_KEYS, "")
    costs = _table(data, "costs", "")
    _check_keys(costs, _COST_KEYS, "costs.")
    offers_table = _table(data, "offers", "")
    offers = tuple(_parse_offer(kind, table) for kind, table in offers_table.items())
    exit_table = _table(data, "exit", "")
    _check_keys(exit_table, _EXIT_KEYS, "exit.")
    guard = _table(data, "guardrails", "")
    _check_keys(guard, _GUARD_KEYS, "guardrails.")
    tiers = data.get("authority")
    if not isinstance(tiers, list) or not all(isinstance(tier, Mapping) for tier in tiers):
        raise PolicyError("authority: expected [[authority]] tables (role, max_amount)")
    authority = []
    for index, tier in enumerate(tiers):
        _check_keys(tier, _TIER_KEYS, f"authority[{index}].")
        authority.append(
            AuthorityTier(
                role=_required_str(tier, "role", f"authority[{index}]."),
                max_amount=_optional_number(tier, "max_amount", f"authority[{index}]."),
            )
        )
    segments = data.get("segments", list(SEGMENTS))
    budget = _optional_number(guard, "offer_budget", "guardrails.")
    exploration = _exploration(data)
    return Policy(
        version=_required_str(data, "version", ""),
        description=_optional_str(data, "description", "") or "",
        horizon_months=_required_int(data, "horizon_months", ""),
        monthly_discount_rate=_required_number(data, "monthly_discount_rate", ""),
        segments=_str_tuple(segments, "segments"),
        cost_per_complaint_minute=_required_number(costs, "per_complaint_minute", "costs."),
        cost_per_escalation=_required_number(costs, "per_escalation", "costs."),
        offers=offers,
        exit=ExitCosts(
            fixed=_required_number(exit_table, "fixed", "exit."),
            revenue_months=_required_number(exit_table, "revenue_months", "exit."),
            receivables_write_off_share=_optional_number(
                exit_table, "receivables_write_off_share", "exit."
            )
            or 0.0,
        ),
        authority=tuple(authority),
        guardrails=GuardRails(
            end_requires=_required_str(guard, "end_requires", "guardrails."),
            protected_segments=_str_tuple(
                _required(guard, "protected_segments", "guardrails."),
                "guardrails.protected_segments",
            ),
            min_history_months_to_end=_required_int(
                guard, "min_history_months_to_end", "guardrails."
            ),
            end_margin_confidence=_required_number(guard, "end_margin_confidence", "guardrails."),
            offer_budget=budget,
            certain_loss_confidence=_optional_number(
                guard, "certain_loss_confidence", "guardrails."
            ),
            end_stake_confidence=_optional_number(guard, "end_stake_confidence", "guardrails."),
            end_risk_price=_optional_number(guard, "end_risk_price", "guardrails."),
            end_stake_overrides_min_history=guard.get("end_stake_overrides_min_history", False),
        ),
        exploration=exploration,
    )


def _exploration(data: Mapping[str, Any]) -> Exploration:
    if "exploration" not in data:
        return Exploration()
    table = _table(data, "exploration", "")
    _check_keys(table, _EXPLORATION_KEYS, "exploration.")
    return Exploration(
        share=_required_number(table, "share", "exploration."),
        max_tier=_optional_str(table, "max_tier", "exploration."),
        max_expected_loss=_optional_number(table, "max_expected_loss", "exploration."),
    )


def _parse_offer(kind: str, table: Any) -> Offer:
    where = f"offers.{kind}."
    if kind not in OFFER_KINDS:
        close = difflib.get_close_matches(kind, OFFER_KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PolicyError(
            f"unknown offer kind offers.{kind}{hint}; offer kinds: {', '.join(OFFER_KINDS)}"
        )
    if not isinstance(table, Mapping):
        raise PolicyError(f"offers.{kind}: expected a table like [offers.{kind}]")
    _check_keys(table, _OFFER_KEYS, where)
    if "cost_fixed" not in table and "cost_revenue_multiple" not in table:
        raise PolicyError(
            f"{where}cost_fixed / {where}cost_revenue_multiple: give at least one of the two"
        )
    mode = _required_str(table, "churn_reduction_mode", where)
    if mode not in REDUCTION_MODES:
        raise PolicyError(
            f"{where}churn_reduction_mode: {mode!r} is not one of {', '.join(REDUCTION_MODES)}"
        )
    return Offer(
        kind=kind,
        cost_fixed=_optional_number(table, "cost_fixed", where) or 0.0,
        cost_revenue_multiple=_optional_number(table, "cost_revenue_multiple", where) or 0.0,
        acceptance=_required_number(table, "acceptance", where),
        churn_reduction=_required_number(table, "churn_reduction", where),
        churn_reduction_mode="relative" if mode == "relative" else "absolute",
        complaint_cost_reduction=_optional_number(table, "complaint_cost_reduction", where) or 0.0,
        description=_optional_str(table, "description", where) or "",
    )


# --- small validation helpers ------------------------------------------------------------------


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {where}{close[0]}?)" if close else ""
    if where and key in _TOP_KEYS:
        hint = f" ({key!r} is a top-level key: put it before the first [table])"
    raise PolicyError(f"unknown key {where}{key}{hint}; allowed keys here: {', '.join(allowed)}")


def _check_range(value: Any, key: str, low: float | None = None, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"{key}: expected a finite number, got {value!r}")
    if low is not None and value < low:
        raise PolicyError(f"{key}: {value} is below the minimum {low}")
    if high is not None and value > high:
        raise PolicyError(f"{key}: {value} is above the maximum {high}")


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = _required(data, key, where)
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}{key}: expected a [{where}{key}] table, got {value!r}")
    return value


def _required(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise PolicyError(f"missing required key {where}{key}")
    return data[key]


def _required_number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = _required(data, key, where)
    _check_range(value, f"{where}{key}")
    return float(value)


def _optional_number(data: Mapping[str, Any], key: str, where: str) -> float | None:
    if key not in data:
        return None
    return _required_number(data, key, where)


def _required_int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = _required(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{where}{key}: expected an integer, got {value!r}")
    return value


def _required_str(data: Mapping[str, Any], key: str, where: str) -> str:
    _required(data, key, where)
    value = _optional_str(data, key, where)
    if value is None:
        raise PolicyError(f"{where}{key}: expected a non-empty string, got nothing")
    return value


def _optional_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise PolicyError(f"{where}{key}: expected a non-empty string, got {value!r}")
    return value


def _str_tuple(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise PolicyError(f"{key}: expected a list of names, got {value!r}")
    return tuple(value)
