"""The decision math, once: retain, compensate (with which offer) or end, over numpy arrays.

For every customer this module prices three kinds of action over the policy horizon H
(DESIGN.md, "Decision math"), picks the best one the policy's guard-rails allow, names who must
approve it, and marks which plain-language reasons apply (their wording is in
:mod:`model.reasons` and :mod:`model.reason_text`). It is the only implementation of this math:
the batch (:mod:`model.decide`, frames) runs it on numpy arrays with one entry per customer, the
API (:mod:`model.decide_rows`, records) on one customer's Python floats or, from a few customers
on, on arrays too (see "One kernel" below). Nothing here knows about frames, records or text.

Notation (one customer; the policy gives H, delta = 1 / (1 + r) and the offer catalogue):

- ``p``  calibrated probability of churn within H with no action (``p_churn``)
- ``m``  expected monthly net margin if the relationship continues (``monthly_margin``),
  already net of the monthly complaint cost ``cc`` (``monthly_complaint_cost``)
- ``se`` the standard error of ``m`` for this customer (``monthly_margin_se``; may be unknown)
- survival ``S_p(k) = (1 - p)^(k/H)`` and the discounted survival annuity
  ``A(p) = sum_{k=1..H} S_p(k) * delta^k``

Actions:

- **retain**: ``V_retain = sum_{k=1..H} m * S_p(k) * delta^k = m * A(p)``.
- **compensate** with offer o (acceptance ``a_o``, unit cost ``c_o`` paid only when accepted,
  churn reduction ``u_o`` *if accepted*, complaint cost saved per month ``s_o`` *if
  accepted*)::

      p'_o = clip(p - u_o, 0, 1)          m'_o = m + s_o
      V_o  = a_o * [ m'_o * A(p'_o) - c_o ] + (1 - a_o) * V_retain
      dV_o = V_o - V_retain = a_o * [ m'_o * A(p'_o) - m * A(p) - c_o ]

  The expected offer cost is ``a_o * c_o`` (the Pentium lesson: unit cost times uptake).
  ``c_o = cost_fixed + cost_revenue_multiple * b`` prices a share of the bill on
  ``b = max(monthly_revenue, m)``: the trailing revenue of a customer in their first weeks is
  often 0 (no order invoiced yet) while the bill a refund or discount is a share of is not, and a
  bill is at least the margin it carries (``m`` is net of every cost). Priced on the trailing
  revenue alone, a refund to such a customer cost nothing and its prior churn reduction made it
  the best action for nearly all of them (138 of 144 on a 20,000-customer world, seed 2718), but
  in truth it lost money in every archetype.
  ``a_o`` and ``u_o`` come from the ``accept_<kind>`` / ``uplift_<kind>`` inputs (the
  offer-response model); a missing input or a null value falls back to the policy prior
  (``u_o = churn_reduction * p`` for a relative prior, ``churn_reduction`` for an absolute one).
  ``s_o`` comes from the ``complaint_saving_<kind>`` input (the offer-response model's
  randomised estimate, :mod:`model.offer_effects`); missing or null falls back to the prior
  ``rho_o * cc`` with the policy's ``complaint_cost_reduction`` share ``rho_o``.
- **end**: ``V_end = -exit_cost`` with ``exit_cost = fixed + revenue_months * monthly_revenue
  + receivables_write_off_share * receivables_open + exit_cost_extra`` (the last two optional
  inputs; missing or null counts as 0).

**The annuity in closed form.** With ``x = delta * (1 - p)^(1/H)`` every term is
``S_p(k) delta^k = x^k``, so ``A(p)`` is a geometric sum::

      A(p) = x (1 - x^H) / (1 - x),   x = exp(L),   L = log1p(-p) / H + log(delta) <= 0
           = exp(L) * expm1(H L) / expm1(L)         (A = H when L = 0: p = 0 and r = 0)

This is DESIGN.md's sum, not an approximation of it; ``log1p`` and ``expm1`` keep it accurate
to a few units in the last place where ``x`` is close to 1 (tiny churn risk, tiny discount
rate), where the textbook quotient would cancel (tested against the term-by-term sum to 1e-13
relative). It costs a handful of array operations whatever H is, against 3H for the sum. (The
earlier polars and plain-Python paths added the H terms; values differ from theirs in the last
bits only.)

**How this relates to DESIGN.md's** ``V_i^o = sum m'_i S'_i(k) delta^k - a_o c_o``: that form
plugs one averaged effect into the survival curve, so it is exact only if ``p'`` and ``m'`` are
already weighted by acceptance (intent-to-treat: ``p' = p - a_o u_o``). We take the expectation
over the two outcomes instead -- accepted (effect, cost) or declined (nothing changes) -- because
(1) the offer-response model and the offer history estimate the effect *among customers who
accept*, so ``u_o`` is conditional on acceptance; (2) acceptance then weights the effect and the
cost alike, which is what makes a remedy the customer keeps refusing (the difficult client,
acceptance about 5%) worth little, whereas an unweighted ``p'`` would credit its full effect;
(3) ``A`` is concave in ``p``, so by Jensen the averaged-effect form slightly overstates the value
of an offer; the mixture is the exact expectation. Both forms charge ``a_o * c_o`` and agree to
first order in ``u_o`` when ``m' = m``.

Choice and guard-rails: the offer with the highest ``V_o`` is the best offer (ties go to the
earlier catalogue offer); "compensate" needs ``V_o > V_retain`` (ties go to retain) and, in a
budgeted batch, that the offer is funded. "End" is recommended only when ``V_end`` beats every
other allowed action *and* it is allowed:

- the segment is not protected (protected segments are never ended automatically, whatever the
  numbers);
- the margin is negative with high confidence, ``m + z * se < 0`` with
  ``z = Phi^-1(end_margin_confidence)``; an unknown ``se`` blocks. **Or the stake pays for the
  risk** (when the policy sets ``end_stake_confidence`` and ``end_risk_price``): the loss is
  likely, ``m + z_s * se < 0`` with ``z_s = Phi^-1(end_stake_confidence)``, and ending gains at
  least the price of ending a customer who is in truth profitable, weighted by how likely that
  is::

      V_end - V_alt >= lambda * P(m > 0),   P(m > 0) = Phi(m / se)

  with ``V_alt`` the best allowed alternative (the funded offer or retain) and ``lambda`` the
  policy's ``end_risk_price``. This is the Lagrangian form of the company's tolerance ("end
  fewer than 1% of the customers whose margin is in truth positive"): among the likely losses,
  the ones ended are those where each expected wrongful end buys the most (Everett 1963,
  *Operations Research* 11(3), generalised Lagrange multipliers). The normal approximation is
  the one the bounds already use. On two 20,000-customer development worlds the rule ends the
  loss-makers whose error band is wide (large accounts whose complaint handling swings) that the
  90% bound alone left to a remedy worth less than ending (policy 2024.5's measured effect is
  stated in ``policies/default.toml``);
- the customer has at least ``min_history_months_to_end`` months of history, **unless the loss
  is certain**: ``m + z_c * se < 0`` with ``z_c = Phi^-1(certain_loss_confidence)``, a stricter
  confidence than the one above (0.95 against 0.90 in the default policy). DESIGN.md asks for
  "minimum history unless the losses are certain"; a statistical bound is the only reading the
  decision inputs allow (they carry the forecast and its per-customer error, not the booked
  history). A customer with a short history should have a wide ``se`` (the value model's
  per-customer uncertainty), so only a loss large against its own error passes. Without
  ``certain_loss_confidence`` in the policy the minimum history always applies. **Or the
  stake rule lets it through** (policy 2024.7, ``end_stake_overrides_min_history``): a customer
  whose stake pays for the risk (above) is ended whatever the months of history. The rule
  already prices the chance ``P(m > 0)`` that ending is wrong, and a short history widens the
  customer's own ``se``, which raises that chance and its price; what the minimum history
  guards against (judging too early) is then part of the price. On three 20,000-customer
  development worlds the policy's share of the simulated oracle's gain rose by 1.2-4.2 points
  (difficult clients of a few months, held back before) and the customers with a positive true
  margin ended stayed at or below 0.53% (tolerance 1%; ``policies/default.toml``). Such an end
  says so in its own reason (``end_short_stake``), not as a certain loss.

When "end" has the highest value but is blocked, the best allowed action is taken and the
``blocked`` masks say why (every rule that applies). Approval: offers by unit cost ``c_o``
through the authority table (the lowest tier whose ``max_amount`` covers it); "end" always
needs ``end_requires``; "retain" needs no approval.

Portfolio budget (batch): a customer is a **candidate** when, with unlimited budget, the best
offer is the chosen action; its ``gain = V_o - V_fallback``, where ``V_fallback`` is the best
non-offer action allowed (``max(V_retain, V_end)``, ``V_end`` only when "end" is allowed), and
its expected cost is ``a_o * c_o``. Candidates are funded first-fit in decreasing
``gain / (a_o c_o)`` (zero-cost offers first, ties by customer id; :func:`fund_first_fit`) in
exact rational arithmetic, so the budget is never exceeded, not even by a rounding error, and
the result is the same whether the candidates come from one frame or from many chunks.
Unfunded customers are decided again with ``funded = False``: they fall back to their best
non-offer action.

**One kernel for one customer and for a million.** :func:`decide_arrays` is written once
against a tiny namespace of primitives (:class:`Backend`): :data:`ARRAYS` evaluates it on numpy
arrays (the batch: a few hundred vectorised operations whatever the number of customers),
:data:`SCALARS` on Python floats (the API: one customer in a few dozen microseconds, where
numpy's per-call overhead on one-element arrays would cost ten times more). The primitives are
correctly rounded IEEE-754 operations in both (``+ - * /``, comparisons, selection, rounding),
and the only transcendental functions, in the annuity, always run in numpy (for one customer on
the array of its 1 + K churn risks), so both give the same bits. Every operation is elementwise
over customers, so a customer's result does not depend on which other customers share the
arrays, and the same inputs give the same bits on every run (tested).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.special import ndtr

from model.policy import Policy

ACTIONS: tuple[str, ...] = ("retain", "compensate", "end")
RETAIN, COMPENSATE, END = 0, 1, 2
NO_TIER = -1

# Below this acceptance an offer is described as taken up by few.
LIKELY_ACCEPTANCE = 0.5
# Complaint cost is a reason of its own when it eats at least this share of revenue.
COMPLAINT_COST_SHARE = 0.1

# A float, int or bool (one customer, SCALARS) or a numpy array (many customers, ARRAYS).
Value = Any


class Backend:
    """The primitives the kernel is written against (see the module docstring).

    Arithmetic and comparisons are Python's operators, which floats and numpy arrays share;
    these are the few operations they spell differently.
    """

    def where(self, condition: Value, a: Value, b: Value) -> Value:
        """``a`` where ``condition`` holds, else ``b``."""
        raise NotImplementedError

    def isnan(self, x: Value) -> Value:
        """True where ``x`` is NaN (a null input)."""
        raise NotImplementedError

    def not_(self, x: Value) -> Value:
        """Logical not."""
        raise NotImplementedError

    def floor(self, x: Value) -> Value:
        """Largest whole number <= x, as a float (NaN stays NaN)."""
        raise NotImplementedError

    def round(self, x: Value) -> Value:
        """Nearest whole number, halves to even, as a float (NaN stays NaN)."""
        raise NotImplementedError

    def lookup(self, table: tuple[Any, ...], index: Value) -> Value:
        """``table[index]``."""
        raise NotImplementedError

    def count_below(self, bounds: tuple[float, ...], x: Value) -> Value:
        """How many of the ascending ``bounds`` are strictly below ``x`` (``x`` not NaN)."""
        raise NotImplementedError

    def count_not_above(self, bounds: tuple[float, ...], x: Value) -> Value:
        """How many of the ascending ``bounds`` are <= ``x`` (``x`` not NaN)."""
        raise NotImplementedError

    def integer(self, x: Value) -> Value:
        """Whole-number floats as integers (int64 arrays, Python ints)."""
        raise NotImplementedError

    def first_max(self, values: Sequence[Value]) -> Value:
        """Index of the first of ``values`` that reaches their maximum."""
        raise NotImplementedError

    def pick(self, values: Sequence[Value], index: Value) -> Value:
        """``values[index]`` (per customer)."""
        raise NotImplementedError

    def annuities(self, risks: Sequence[Value], horizon: int, delta: float) -> list[Value]:
        """:func:`annuity` of each churn risk (always evaluated by numpy)."""
        raise NotImplementedError

    def profit_chance(self, margin: Value, se: Value) -> Value:
        """:func:`profit_chance` (always evaluated by numpy)."""
        raise NotImplementedError


class _Arrays(Backend):
    def where(self, condition, a, b):
        return np.where(condition, a, b)

    def isnan(self, x):
        return np.isnan(x)

    def not_(self, x):
        return np.logical_not(x)

    def floor(self, x):
        return np.floor(x)

    def round(self, x):
        return np.round(x)

    def lookup(self, table, index):
        return np.asarray(table)[index]

    def count_below(self, bounds, x):
        return np.searchsorted(np.asarray(bounds), x, side="left")

    def count_not_above(self, bounds, x):
        return np.searchsorted(np.asarray(bounds), x, side="right")

    def integer(self, x):
        return np.asarray(x).astype(np.int64)

    def first_max(self, values):
        best, top = np.zeros(np.shape(values[0]), dtype=np.int64), values[0]
        for j in range(1, len(values)):
            better = values[j] > top
            best[better] = j
            top = np.where(better, values[j], top)
        return best

    def pick(self, values, index):
        return np.choose(index, values)

    def annuities(self, risks, horizon, delta):
        # one pass over all the risks (elementwise: the bits of one call per risk); a call per
        # risk cost a few microseconds each, most of a one-customer request's pricing
        if len({np.shape(risk) for risk in risks}) == 1:
            return list(annuity(np.stack(risks), horizon, delta))
        return [annuity(risk, horizon, delta) for risk in risks]

    def profit_chance(self, margin, se):
        return profit_chance(np.asarray(margin, dtype=np.float64), np.asarray(se, np.float64))


class _Scalars(Backend):
    def where(self, condition, a, b):
        return a if condition else b

    def isnan(self, x):
        return x != x

    def not_(self, x):
        return not x

    def floor(self, x):
        return x if x != x else float(math.floor(x))

    def round(self, x):
        return x if x != x else float(round(x))

    def lookup(self, table, index):
        return table[index]

    def count_below(self, bounds, x):
        return bisect.bisect_left(bounds, x)

    def count_not_above(self, bounds, x):
        return bisect.bisect_right(bounds, x)

    def integer(self, x):
        return int(x)

    def first_max(self, values):
        return values.index(max(values))

    def pick(self, values, index):
        return values[index]

    def annuities(self, risks, horizon, delta):
        return annuity(np.array(risks, dtype=np.float64), horizon, delta).tolist()

    def profit_chance(self, margin, se):
        # IEEE division and numpy's ndtr, as on arrays: the same bits; a zero or overflowing
        # quotient (Python raises) is left to numpy's rules
        try:
            return float(ndtr(margin / se))
        except (ZeroDivisionError, OverflowError):
            return float(profit_chance(np.array([margin]), np.array([se]))[0])


ARRAYS: Backend = _Arrays()
SCALARS: Backend = _Scalars()


class Customers(NamedTuple):
    """The decision inputs: numpy arrays with one entry per customer (:data:`ARRAYS`) or one
    customer's floats (:data:`SCALARS`). NaN marks a null.

    Attributes:
        p_churn: Probability of churn within H with no action.
        margin: Expected monthly net margin ``m``.
        margin_se: Standard error of ``m``; NaN when unknown (blocks "end").
        revenue: Monthly revenue.
        complaint_cost: Monthly complaint cost ``cc``.
        months_of_history: Months since sign-up.
        segment: Index of the customer's segment in ``policy.segments``.
        receivables_open: Open receivables (NaN counts as 0).
        exit_cost_extra: Customer-specific exit cost (NaN counts as 0).
        receivables_overdue: Overdue or withheld invoices (reasons only; NaN: not known).
        offers_made: Remedies offered in the last 12 months (reasons only; NaN: not known).
        offers_declined: Remedies declined in the last 12 months (reasons only; NaN: not known).
        acceptance: Per catalogue offer, the model's acceptance; NaN falls back to the prior.
        uplift: Per catalogue offer, the model's churn reduction if accepted; NaN: the prior.
        complaint_saving: Per catalogue offer, the model's complaint cost saved per month while
            the customer stays, if accepted; NaN (or no entry): the prior ``rho_o * cc``.
    """

    p_churn: Value
    margin: Value
    margin_se: Value
    revenue: Value
    complaint_cost: Value
    months_of_history: Value
    segment: Value
    receivables_open: Value
    exit_cost_extra: Value
    receivables_overdue: Value
    offers_made: Value
    offers_declined: Value
    acceptance: Sequence[Value]
    uplift: Sequence[Value]
    complaint_saving: Sequence[Value] = ()


class Decisions(NamedTuple):
    """What the kernel decided, in the form of its inputs (arrays or one customer's scalars).

    Attributes:
        action: Index into :data:`ACTIONS`.
        ev_retain: ``V_retain``.
        ev_offers: ``V_o`` per catalogue offer.
        ev_best_offer: The best ``V_o``.
        ev_end: ``V_end``.
        best_offer: Index of the best offer in ``policy.offers``.
        offer_cost: Its unit cost ``c_o``.
        offer_acceptance: Its acceptance ``a_o``.
        offer_expected_cost: ``a_o * c_o``.
        offer_churn_reduction: ``p - p'_o``.
        churn_after_offer: ``p'_o``.
        offer_complaint_saving: ``s_o``, the monthly complaint cost saved if accepted.
        exit_cost: The exit cost.
        margin_upper: ``m + z * se`` (NaN when ``se`` is unknown).
        certain_upper: ``m + z_c * se`` (NaN when ``se`` is unknown or the policy has no
            certain-loss rule).
        profit_chance: ``P(m > 0) = Phi(m / se)`` (NaN when ``se`` is unknown or the policy
            has no stake rule).
        end_allowed: No guard-rail blocks "end".
        tier: Index of the approval tier in ``policy.authority``; :data:`NO_TIER` for retain.
        funded: The offer budget funds this customer's offer (True without a budget).
        best_alternative: The best value among the allowed actions other than "end".
        reasons: Message key -> where the reason applies, in the order reasons are said.
        blocked: Message key -> where it applies, in order: why an offer or "end" was held back.
    """

    action: Value
    ev_retain: Value
    ev_offers: list[Value]
    ev_best_offer: Value
    ev_end: Value
    best_offer: Value
    offer_cost: Value
    offer_acceptance: Value
    offer_expected_cost: Value
    offer_churn_reduction: Value
    churn_after_offer: Value
    offer_complaint_saving: Value
    exit_cost: Value
    margin_upper: Value
    certain_upper: Value
    profit_chance: Value
    end_allowed: Value
    tier: Value
    funded: Value
    best_alternative: Value
    reasons: dict[str, Value]
    blocked: dict[str, Value]


def annuity(p: np.ndarray, horizon: int, delta: float) -> np.ndarray:
    """``A(p) = sum_{k=1..H} (1 - p)^(k/H) delta^k``, in closed form (see the module docstring).

    Args:
        p: Churn probabilities in [0, 1], any shape.
        horizon: H in months.
        delta: Monthly discount factor in (0, 1].

    Returns:
        ``A(p)``, the shape of ``p``.
    """
    # log1p(-1) = -inf is no error here (x = 0, nobody stays), so it is not computed as one
    stay = np.log1p(-p, out=np.full(np.shape(p), -np.inf), where=p < 1.0)
    rate = stay / horizon + math.log(delta)
    flat = rate == 0.0  # p = 0 and r = 0: every term is 1
    value = np.exp(rate) * np.expm1(horizon * rate) / np.where(flat, -1.0, np.expm1(rate))
    return np.where(flat, float(horizon), value)


def profit_chance(margin: np.ndarray, se: np.ndarray) -> np.ndarray:
    """``P(margin > 0) = Phi(m / se)`` under the normal approximation of the bounds.

    Args:
        margin: ``m``, any shape.
        se: ``se``, the shape of ``margin``; NaN (unknown) gives NaN, 0 gives 0 or 1.

    Returns:
        The chance, the shape of ``margin``.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return ndtr(margin / se)


class OfferPrices(NamedTuple):
    """Every catalogue offer priced for the customers, in the form of the inputs (one list entry
    per offer, in catalogue order): the part of :func:`decide_arrays` that does not choose.

    Attributes:
        ev_retain: ``V_retain``.
        ev_offers: ``V_o``.
        acceptance: ``a_o``.
        cost: ``c_o``, the unit cost paid if accepted.
        churn_after: ``p'_o``.
        saving: ``s_o``, the monthly complaint cost saved if accepted.
    """

    ev_retain: Value
    ev_offers: list[Value]
    acceptance: list[Value]
    cost: list[Value]
    churn_after: list[Value]
    saving: list[Value]


def price_offers(customers: Customers, policy: Policy, xp: Backend = ARRAYS) -> OfferPrices:
    """``V_retain`` and, per catalogue offer, ``V_o`` with the terms it is made of (module
    docstring). Each offer is priced elementwise and independently of the others, so an offer's
    figures are the same bits whatever else the catalogue holds; :func:`decide_arrays` chooses
    among them, and exploration (:mod:`model.exploration`) reads them for every offer.
    """
    c, where, isnan = customers, xp.where, xp.isnan
    p, margin = c.p_churn, c.margin

    # a share of the bill is priced on at least the margin the bill must carry (see the
    # docstring: a new customer's trailing revenue can be 0 while the bill is not)
    billed = where(margin > c.revenue, margin, c.revenue)
    acceptance, p_after, cost, saving = [], [], [], []
    for j, offer in enumerate(policy.offers):
        if offer.churn_reduction_mode == "relative":
            prior_uplift = p * offer.churn_reduction
        else:
            prior_uplift = offer.churn_reduction
        given_acceptance, given_uplift = c.acceptance[j], c.uplift[j]
        acceptance.append(where(isnan(given_acceptance), offer.acceptance, given_acceptance))
        after = p - where(isnan(given_uplift), prior_uplift, given_uplift)
        p_after.append(where(after < 0.0, 0.0, where(after > 1.0, 1.0, after)))
        cost.append(offer.cost_fixed + offer.cost_revenue_multiple * billed)
        prior_saving = offer.complaint_cost_reduction * c.complaint_cost
        if c.complaint_saving:
            gain = c.complaint_saving[j]
            saving.append(where(isnan(gain), prior_saving, gain))
        else:
            saving.append(prior_saving)

    annuities = xp.annuities([p, *p_after], policy.horizon_months, policy.discount_factor)
    ev_retain = margin * annuities[0]
    ev_offers = [
        a * ((margin + s) * annuity_after - k) + (1.0 - a) * ev_retain
        for a, s, annuity_after, k in zip(acceptance, saving, annuities[1:], cost, strict=True)
    ]
    return OfferPrices(ev_retain, ev_offers, acceptance, cost, p_after, saving)


def decide_arrays(
    customers: Customers, policy: Policy, funded: Value = True, xp: Backend = ARRAYS
) -> Decisions:
    """Decide (math: see the module docstring).

    Args:
        customers: The validated inputs (:mod:`model.decision_inputs` and the entry points
            build them), arrays for :data:`ARRAYS` or one customer's scalars for
            :data:`SCALARS`.
        policy: The retention policy.
        funded: Whether a wanted offer is funded (per customer, or one value for all).
        xp: :data:`ARRAYS` or :data:`SCALARS`, matching ``customers``.

    Returns:
        The decisions, with the reasons and blocks that apply, in the form of ``customers``.
    """
    c, where, isnan, not_ = customers, xp.where, xp.isnan, xp.not_
    p, margin = c.p_churn, c.margin
    catalogue = _catalogue(policy)
    ev_retain, ev_offers, acceptance, cost, p_after, saving = price_offers(customers, policy, xp)
    # the first catalogue offer reaching the best value
    best = xp.first_max(ev_offers)
    ev_best, best_acceptance, best_cost, best_after, best_saving = (
        xp.pick(values, best) for values in (ev_offers, acceptance, cost, p_after, saving)
    )

    exit_ = policy.exit
    exit_cost = (
        exit_.fixed
        + exit_.revenue_months * c.revenue
        + exit_.receivables_write_off_share
        * where(isnan(c.receivables_open), 0.0, c.receivables_open)
        + where(isnan(c.exit_cost_extra), 0.0, c.exit_cost_extra)
    )
    ev_end = -exit_cost

    guard = policy.guardrails
    margin_upper = margin + catalogue.end_z * c.margin_se
    certain_upper = margin + catalogue.certain_z * c.margin_se  # NaN without the rule
    protected = xp.lookup(catalogue.protected, c.segment)
    margin_unknown = isnan(c.margin_se)
    wants_offer = ev_best > ev_retain
    offer_ok = wants_offer & funded
    best_alternative = where(offer_ok, ev_best, ev_retain)
    end_wins = ev_end > best_alternative
    if catalogue.stake:
        # the stake pays for the risk: a likely loss, and a gain over the best alternative
        # worth at least the price of ending a customer who is in truth profitable
        chance = xp.profit_chance(margin, c.margin_se)
        staked = (margin + catalogue.stake_z * c.margin_se < 0) & (
            ev_end - best_alternative >= catalogue.risk_price * chance
        )
    else:
        chance, staked = math.nan, False
    margin_uncertain = (margin_upper >= 0) & not_(staked)
    short = c.months_of_history < guard.min_history_months_to_end
    certain_loss = certain_upper < 0
    history_blocks = short & not_(certain_loss)
    if catalogue.stake_history:
        history_blocks = history_blocks & not_(staked)
    end_allowed = not_(protected | history_blocks | margin_unknown | margin_uncertain)
    ending = end_allowed & end_wins
    action = where(ending, END, where(offer_ok, COMPENSATE, RETAIN))
    tier = where(
        action == COMPENSATE,
        xp.count_below(catalogue.tier_limits, best_cost),
        where(ending, catalogue.end_tier, NO_TIER),
    )
    facts = _Facts(
        action=action,
        margin=margin,
        margin_upper=margin_upper,
        customers=c,
        offer_acceptance=best_acceptance,
        saving=best_saving,
        wants_offer=wants_offer,
        funded=funded,
        ev_retain=ev_retain,
        end_blocked=not_(end_allowed) & end_wins,
        protected=protected,
        history_blocks=history_blocks,
        margin_unknown=margin_unknown,
        margin_uncertain=margin_uncertain,
        shortened=ending & short & certain_loss,
        shortened_staked=ending & short & not_(certain_loss),
        staked=ending & (margin_upper >= 0),
        certain_rule=guard.certain_loss_confidence is not None,
    )
    return Decisions(
        action=action,
        ev_retain=ev_retain,
        ev_offers=ev_offers,
        ev_best_offer=ev_best,
        ev_end=ev_end,
        best_offer=best,
        offer_cost=best_cost,
        offer_acceptance=best_acceptance,
        offer_expected_cost=best_acceptance * best_cost,
        offer_churn_reduction=p - best_after,
        churn_after_offer=best_after,
        offer_complaint_saving=best_saving,
        exit_cost=exit_cost,
        margin_upper=margin_upper,
        certain_upper=certain_upper,
        profit_chance=chance,
        end_allowed=end_allowed,
        tier=tier,
        funded=funded,
        best_alternative=best_alternative,
        reasons=_reasons(facts, xp),
        blocked=_blocked(facts, xp),
    )


# --- the portfolio budget (batch) --------------------------------------------------------------


def offer_gain(
    ev_retain: np.ndarray, ev_best_offer: np.ndarray, ev_end: np.ndarray, end_allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which customers are budget candidates, and what their offer gains over the fallback.

    Returns:
        ``(candidate, gain)``: candidate where, with unlimited budget, the offer is the chosen
        action; ``gain = V_o - max(V_retain, V_end if end is allowed)``.
    """
    end_value = np.where(end_allowed, ev_end, -np.inf)
    candidate = (ev_best_offer > ev_retain) & ~(end_value > ev_best_offer)
    return candidate, ev_best_offer - np.maximum(ev_retain, end_value)


def fund_first_fit(costs: Sequence[float], budget: float) -> np.ndarray:
    """First-fit funding of costs already in priority order, in exact arithmetic.

    Each cost that still fits in what is left of the budget is funded; one that does not is
    skipped, and later (smaller) ones may still fit. Every float is a fraction with a
    power-of-two denominator, so costs and budget are counted as whole multiples of the
    smallest such fraction among them (Python integers): the funded costs never add up to more
    than the budget, exactly, and no rounding depends on the order of the sums.

    Args:
        costs: Costs in funding order (finite, >= 0).
        budget: The budget (finite, >= 0).

    Returns:
        A bool mask over ``costs``: funded.
    """
    fractions = [float(cost).as_integer_ratio() for cost in costs]
    budget_numerator, budget_denominator = float(budget).as_integer_ratio()
    unit = max((denominator for _, denominator in fractions), default=1)
    unit = max(unit, budget_denominator)
    remaining = budget_numerator * (unit // budget_denominator)
    funded = np.zeros(len(fractions), dtype=bool)
    for index, (numerator, denominator) in enumerate(fractions):
        units = numerator * (unit // denominator)
        if units <= remaining:
            funded[index] = True
            remaining -= units
    return funded


# --- internals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalogue:
    """What the kernel reads from a policy, prepared once per policy."""

    protected: tuple[bool, ...]
    tier_limits: tuple[float, ...]
    end_tier: int
    end_z: float
    certain_z: float
    stake: bool
    stake_z: float
    risk_price: float
    stake_history: bool


_PER_POLICY: dict[tuple[int, Hashable], tuple[Policy, Any]] = {}


def per_policy(policy: Policy, key: Hashable, build: Callable[[], Any]) -> Any:
    """``build()``, computed once per policy object and key (the per-call cost of one customer
    is small enough that preparing the policy each time would dominate it).

    Cached by identity (the entry holds the policy, so its id stays valid); policies are
    frozen.
    """
    cached = _PER_POLICY.get((id(policy), key))
    if cached is not None and cached[0] is policy:
        return cached[1]
    value = build()
    if len(_PER_POLICY) >= 256:
        _PER_POLICY.clear()
    _PER_POLICY[(id(policy), key)] = (policy, value)
    return value


def _catalogue(policy: Policy) -> _Catalogue:
    return per_policy(policy, "catalogue", lambda: _build_catalogue(policy))


def _build_catalogue(policy: Policy) -> _Catalogue:
    guard = policy.guardrails
    return _Catalogue(
        protected=tuple(segment in guard.protected_segments for segment in policy.segments),
        tier_limits=tuple(
            math.inf if tier.max_amount is None else tier.max_amount for tier in policy.authority
        ),
        end_tier=[tier.role for tier in policy.authority].index(guard.end_requires),
        end_z=guard.end_margin_z,
        certain_z=guard.certain_loss_z,
        stake=guard.end_risk_price is not None,
        stake_z=guard.end_stake_z,
        risk_price=math.nan if guard.end_risk_price is None else guard.end_risk_price,
        stake_history=guard.end_stake_overrides_min_history,
    )


class _Facts(NamedTuple):
    """What the reason rules read."""

    action: Value
    margin: Value
    margin_upper: Value
    customers: Customers
    offer_acceptance: Value
    saving: Value
    wants_offer: Value
    funded: Value
    ev_retain: Value
    end_blocked: Value
    protected: Value
    history_blocks: Value
    margin_unknown: Value
    margin_uncertain: Value
    shortened: Value
    shortened_staked: Value
    staked: Value
    certain_rule: bool


def _reasons(f: _Facts, xp: Backend) -> dict[str, Value]:
    """Which reasons apply, in the order they are said (wording: model.reasons)."""
    c, not_ = f.customers, xp.not_
    compensate, retain, end = f.action == COMPENSATE, f.action == RETAIN, f.action == END
    likely = f.offer_acceptance >= LIKELY_ACCEPTANCE
    declined_one = (c.offers_declined == 1) & (c.offers_made <= 1)
    # offers_made may be unknown: "declined d of max(made, d)"
    declined_many = not_(declined_one) & (c.offers_declined >= 1)
    end_blocked_plain = f.end_blocked & not_(f.protected)
    history_plain = end_blocked_plain & f.history_blocks
    return {
        # the customer's situation
        "margin_loss": f.margin < 0,
        "margin_gain": f.margin >= 0,
        "margin_loss_confident": f.margin_upper < 0,
        "complaint_cost": (c.complaint_cost > 0)
        & (c.complaint_cost >= COMPLAINT_COST_SHARE * c.revenue),
        "overdue": c.receivables_overdue > 0,
        "declined_one": declined_one,
        "declined_many": declined_many,
        "churn_risk": f.margin == f.margin,  # always
        # compensate
        "offer_likely": compensate & likely,
        "offer_unlikely": compensate & not_(likely),
        "offer_complaints": compensate & (f.saving > 0),
        "offer_expected_cost": compensate,
        "offer_gain": compensate,
        # retain
        "retain_no_offer": retain & not_(f.wants_offer),
        "budget_spent": retain & not_(f.funded) & f.wants_offer,
        "retain_value": retain & (f.ev_retain >= 0),
        "retain_loss": retain & not_(f.ev_retain >= 0),
        # end
        "end_certain_loss": f.shortened,
        "end_short_stake": f.shortened_staked,
        "end_stake": f.staked,
        "end_value": end,
        "end_remedy_unlikely": end & not_(likely),
        # end blocked, in plain words (the first rule that applies)
        "blocked_protected_plain": f.end_blocked & f.protected,
        "blocked_history_plain": history_plain & (not f.certain_rule),
        "blocked_history_uncertain_plain": history_plain & f.certain_rule,
        "blocked_margin_plain": end_blocked_plain & not_(f.history_blocks),
    }


def _blocked(f: _Facts, xp: Backend) -> dict[str, Value]:
    """Why an offer or "end" was held back: every rule that applies, in this order."""
    history = f.end_blocked & f.history_blocks
    # the certain-loss bound is quoted when the policy has the rule and se is known
    with_bound = xp.not_(f.margin_unknown) & f.certain_rule
    return {
        "blocked_budget": xp.not_(f.funded) & f.wants_offer,
        "blocked_protected": f.end_blocked & f.protected,
        "blocked_history": history & xp.not_(with_bound),
        "blocked_history_uncertain": history & with_bound,
        "blocked_margin_unknown": f.end_blocked & f.margin_unknown,
        "blocked_margin": f.end_blocked & f.margin_uncertain,
    }
