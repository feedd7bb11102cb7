"""Exploration: a small share of decisions kept as a randomised, logged experiment.

A policy that always recommends its best action never learns what the other actions would have
done for customers like these: the decision log holds only one arm per kind of customer, and no
candidate policy can be judged on it. With ``[exploration] share = epsilon`` in the policy, a
customer whose best action is retain or compensate is, with probability ``epsilon``,
recommended an **allowed alternative** drawn uniformly at random instead -- clearly marked
(``explored``, a reason sentence saying it is a measured experiment), with the probability of
the recommended action logged (``propensity``), so that inverse-propensity and doubly robust
estimators can use every logged decision.

It runs after the one decision kernel (:func:`model.kernel.decide_arrays`), on its output, for
the batch (:func:`explore`, frames) and the API (:func:`explore_records`, records) alike: both
reduce to :func:`choose` on numpy arrays, so a customer gets the same draw, action and
propensity from either.

Notation, for customer i with the kernel's (greedy) action ``g_i`` (after the offer budget in a
budgeted batch) and the policy's catalogue of K offers:

- ``epsilon = exploration.share`` (0 disables exploration; at most 0.5);
- the exploration authority ``L`` = the ``max_amount`` of ``exploration.max_tier`` (by default
  the lowest tier: an experiment the front line may grant on the spot);
- the **allowed set** ``A_i = {retain if V(g_i) - V_retain(i) <= D} ∪ {offer o : c_o(i) <= L
  and V_o(i) is finite and V(g_i) - V_o(i) <= D [and a_o(i) c_o(i) <= b_i in a budgeted
  batch]}``, with ``c_o(i)`` the unit cost, ``a_o(i)`` the acceptance and ``V_o(i)`` the
  expected value the kernel gives that offer for this customer, ``V(g_i)`` the kernel's value
  of its own action, ``D = exploration.max_expected_loss`` (no bound when unset) and ``b_i`` the
  per-experiment allowance below. "End" is never in it;
- the **alternatives** ``E_i = A_i \\ {g_i}``, in the order retain, then catalogue order;
- customer i is **explorable** when ``g_i`` is retain or compensate, ``epsilon > 0`` and
  ``E_i`` is not empty (a customer whose best action is "end" is never explored);
- two uniforms ``(u_i, v_i)`` in [0, 1), 53 bits each, from the SHA-256 of
  ``"keepwise-exploration|<policy version>|<as_of>|<customer_id>"`` (:func:`draws`): the same
  customer, date and policy always draw the same numbers, whatever else is scored with them;
- **explored** = explorable and ``u_i < epsilon``; the recommendation is then
  ``E_i[floor(v_i |E_i|)]``, otherwise ``g_i``;
- **propensities**: ``pi(g_i) = 1 - epsilon`` and ``pi(a) = epsilon / |E_i|`` for each
  ``a in E_i`` (they sum to one over ``A_i ∪ {g_i}``); ``pi(g_i) = 1`` when i is not
  explorable. ``propensity`` is ``pi`` of the recommended action.

Retain is an alternative to a greedy offer: an offer's effect is measured against making no
offer, so the control arm must be logged too, and withholding an offer costs no budget.

**What an experiment may give up** (``max_expected_loss = D``, policy 2024.7). Exploration is a
loss by design, and without a bound its cost falls where offers are worth least: drawn
uniformly, an explored training (unit cost 900) for a loyal or small account gives up hundreds
in truth for a figure that was already known to be poor. With ``D`` only alternatives the model
expects to give up at most ``D`` against its own action are drawn. The draw stays uniform over
the allowed set and the propensities stay exact (they are computed from the same set), so
inverse-propensity estimators remain unbiased for every candidate policy whose actions lie in
the support; a candidate that recommends an alternative the model prices more than ``D``
below its best has no support on that customer (``choose``'s ``distribution`` gives it
probability 0; the log's single propensity does not show it). Measured on three
20,000-customer development worlds (README "Exploration"): with ``D = 250`` the experiments
still cover every offer kind, training far less often (the kind the model prices furthest
below the best), and the policy's share of the simulated oracle's gain rises by about half a
point.

An explored recommendation's money figures are the model's for the action taken: its
``offer_*`` columns are the explored offer's (as the kernel prices it,
:func:`model.kernel.price_offers`: the bits the decision itself used), the ``ev_*`` columns
are unchanged (the model's expected value of every action), and the expected value given up,
``V(g_i) - V(a)``, is the model's estimate of the experiment's cost (the batch summary adds it
up: :func:`exploration_summary`).

**Budget** (batch ``--budget`` / ``offer_budget``): experiments are funded only with what the
greedy allocation leaves. The greedy allocation (:mod:`model.budget`) runs first, as without
exploration; what is left, ``R = budget - sum of funded expected costs`` (exact arithmetic), is
shared equally among the ``M`` customers drawn for an experiment (``u_i < epsilon``, greedy
retain or compensate): each may be recommended an offer of expected cost at most
``b = R / M`` (rounded down to a float), so the experiments spend at most ``M b <= R`` and the
run never spends more than the budget. Seen from customer i, the others' draws are fixed: had
it not been drawn, ``M + 1`` customers would share ``R``, so the propensities of a customer
that was not drawn use ``b = R / (M + 1)``. A greedy offer withdrawn by an experiment frees its
funds but they are not lent to others (spend only falls). With a budget that the greedy
allocation spends to the last unit, the experiments shrink to "retain" instead of a greedy
offer and to offers that cost nothing; leave headroom for them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

import numpy as np
import polars as pl

from model import reason_text as rt
from model.decide import OFFER_TERM_COLUMNS, replace_at_rows
from model.decision_inputs import inputs_of, segment_codes, to_customers
from model.kernel import ACTIONS, COMPENSATE, END, RETAIN, price_offers
from model.policy import Policy

EXPLORED, PROPENSITY, GREEDY_ACTION = "explored", "propensity", "greedy_action"
#: The columns every recommendation gets from this module.
REPLAY_COLUMNS: tuple[str, ...] = (GREEDY_ACTION, PROPENSITY, EXPLORED)
#: The columns :func:`explore` changes for an explored customer (the rest stay the kernel's).
CHANGED_COLUMNS: tuple[str, ...] = (
    "action",
    "offer_kind",
    *OFFER_TERM_COLUMNS,
    "approval_tier",
    "reasons",
)
_SALT = "keepwise-exploration"
_UNIT = 2.0**-53

# The sentences of an explored recommendation (English: the only phrasebook so far).
_EXPERIMENT = (
    "A measured experiment: {chosen} was drawn at random ({chance} chance) instead of "
    "{greedy}, so that the effect of every offer stays measurable"
)
_EXPERIMENT_COST = (
    "The model expects the experiment to give up about {given_up} over the next {horizon} months "
    "against {greedy}"
)
_EXPERIMENT_GAIN = (
    "The model expects the experiment to be worth about {given_up} more over the next "
    "{horizon} months than {greedy}"
)
_NO_OFFER = "making no offer"


@dataclass(frozen=True)
class Choice:
    """What :func:`choose` decided, one entry per customer.

    Attributes:
        slot: The recommended action: 0 retain, ``1 + o`` offer ``o`` of the catalogue, -1
            "end" (never chosen by exploration: only kept from the kernel).
        propensity: Probability of the recommended action under the policy.
        explored: The action was drawn by exploration.
        alternatives: ``|E_i|`` (0 when the customer is not explorable).
        greedy_slot: The kernel's action, as a slot.
        distribution: (n, 1 + K): the probability of each slot (retain, then the catalogue
            offers) under the policy; a row sums to one, or to zero when the kernel's action
            is "end" (which then has probability one).
    """

    slot: np.ndarray
    propensity: np.ndarray
    explored: np.ndarray
    alternatives: np.ndarray
    greedy_slot: np.ndarray
    distribution: np.ndarray


def draws(customer_ids: Sequence[Any], as_of: date, policy_version: str) -> tuple[np.ndarray, ...]:
    """The two uniforms ``(u, v)`` of each customer (see the module docstring).

    Returns:
        ``(u, v)``: float64 arrays in [0, 1), multiples of 2**-53.
    """
    prefix = f"{_SALT}|{policy_version}|{as_of.isoformat()}|".encode()
    digests = b"".join(
        hashlib.sha256(prefix + str(customer_id).encode()).digest()[:16]
        for customer_id in customer_ids
    )
    words = np.frombuffer(digests, dtype=">u8").reshape(-1, 2) >> np.uint64(11)
    uniforms = words.astype(np.float64) * _UNIT
    return uniforms[:, 0].copy(), uniforms[:, 1].copy()


def choose(
    greedy_action: np.ndarray,
    greedy_offer: np.ndarray,
    allowed_offers: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    share: float,
    allowed_retain: np.ndarray | None = None,
) -> Choice:
    """Epsilon-greedy over the allowed alternatives (math: the module docstring).

    Args:
        greedy_action: The kernel's action codes (:data:`model.kernel.ACTIONS`), shape (n,).
        greedy_offer: Catalogue index of the kernel's best offer, shape (n,).
        allowed_offers: Bool (n, K): offer ``o`` is allowed for exploration for customer i.
        u: Exploration draws, shape (n,).
        v: Pick draws, shape (n,).
        share: ``epsilon``.
        allowed_retain: Bool (n,): retain is allowed for exploration (None: for everyone).

    Returns:
        The recommended slots, their propensities and what was explored.
    """
    n = greedy_action.shape[0]
    retain = np.ones(n, dtype=bool) if allowed_retain is None else allowed_retain
    allowed = np.concatenate([retain[:, None], allowed_offers], axis=1)
    greedy_slot = np.where(
        greedy_action == COMPENSATE, greedy_offer + 1, np.where(greedy_action == END, -1, 0)
    )
    rows = np.arange(n)
    alternatives_mask = allowed.copy()
    keep = greedy_slot >= 0
    alternatives_mask[rows[keep], greedy_slot[keep]] = False
    count = alternatives_mask.sum(axis=1)
    explorable = (greedy_action != END) & (count > 0) & (share > 0)
    explored = explorable & (u < share)
    # the floor(v |E|)-th alternative (0-based) in slot order
    rank = np.minimum(np.floor(v * count).astype(np.int64), np.maximum(count - 1, 0))
    position = np.cumsum(alternatives_mask, axis=1) - 1
    hit = alternatives_mask & (position == rank[:, None])
    picked = np.argmax(hit, axis=1)
    slot = np.where(explored, picked, greedy_slot)
    with np.errstate(divide="ignore", invalid="ignore"):
        propensity = np.where(
            explored, share / np.maximum(count, 1), np.where(explorable, 1.0 - share, 1.0)
        )
    epsilon = np.where(explorable, share, 0.0)
    distribution = alternatives_mask * (epsilon / np.maximum(count, 1))[:, None]
    distribution[rows[keep], greedy_slot[keep]] = 1.0 - epsilon[keep]
    return Choice(
        slot=slot,
        propensity=propensity,
        explored=explored,
        alternatives=np.where(explorable, count, 0),
        greedy_slot=greedy_slot,
        distribution=distribution,
    )


# --- the offers' terms, from the kernel ---------------------------------------------------------


@dataclass(frozen=True)
class OfferTerms:
    """Per catalogue offer (columns, K) and customer (rows, n), the kernel's figures.

    Attributes:
        ev: ``V_o``.
        terms: ``offer_cost``, ``offer_acceptance``, ... (:data:`OFFER_TERM_COLUMNS`) -> (n, K).
    """

    ev: np.ndarray
    terms: Mapping[str, np.ndarray]


def offer_terms(
    column: Callable[[str], np.ndarray],
    names: Sequence[str],
    segments: Sequence[Any],
    policy: Policy,
) -> OfferTerms:
    """Every catalogue offer's figures for every customer, as the kernel prices them.

    One pricing pass over the whole catalogue (:func:`model.kernel.price_offers`, the part of
    the kernel that prices each offer elementwise and independently of the others), so the
    values are the bits the decision itself used (``V_o`` equals the row's
    ``ev_offer_<kind>``; tested).

    Args:
        column: The validated values of a decision input by name (float64, NaN for null).
        names: The columns or keys the rows carry.
        segments: Each customer's segment (text).
        policy: The policy the rows were decided with.
    """
    inputs = inputs_of(names)
    codes = segment_codes(policy.segments)
    segment = np.array([codes.get(s, 0) if isinstance(s, str) else 0 for s in segments])
    n = len(segments)
    unknown = np.full(n, np.nan)
    values = {name: column(name) for name in inputs.numeric}
    customers = to_customers(lambda k: values[inputs.numeric[k]], unknown, inputs, segment, policy)
    priced = price_offers(customers, policy)
    p = customers.p_churn

    def stacked(per_offer: Sequence[Any]) -> np.ndarray:
        # not np.broadcast_to: its microseconds a call made a one-customer request 0.2 ms slower
        if not per_offer:
            return np.empty((n, 0))
        return np.column_stack([v if np.shape(v) == (n,) else np.full(n, v) for v in per_offer])

    acceptance, cost = stacked(priced.acceptance), stacked(priced.cost)
    after = stacked(priced.churn_after)
    terms = {
        "offer_cost": cost,
        "offer_acceptance": acceptance,
        "offer_expected_cost": acceptance * cost,
        "offer_churn_reduction": (p if np.shape(p) == (n,) else np.full(n, p))[:, None] - after,
        "churn_after_offer": after,
        "offer_complaint_saving": stacked(priced.saving),
    }
    return OfferTerms(ev=stacked(priced.ev_offers), terms={k: terms[k] for k in OFFER_TERM_COLUMNS})


def allowed_offers(
    terms: OfferTerms, policy: Policy, allowance: np.ndarray | None = None
) -> np.ndarray:
    """Bool (n, K): the offers exploration may recommend to each customer (module docstring)."""
    cost = terms.terms["offer_cost"]
    allowed = (cost <= policy.exploration_limit) & np.isfinite(terms.ev) & np.isfinite(cost)
    if allowance is not None:
        allowed &= terms.terms["offer_expected_cost"] <= allowance[:, None]
    return allowed


def within_loss_bound(
    terms: OfferTerms,
    ev_retain: np.ndarray,
    greedy_action: np.ndarray,
    greedy_offer: np.ndarray,
    policy: Policy,
) -> tuple[np.ndarray, np.ndarray]:
    """Which alternatives the model expects to give up at most ``max_expected_loss``.

    ``V(g_i) - V(a) <= L`` with ``V`` the kernel's expected values (``V_retain`` for retain,
    ``V_o`` for offer ``o``) and ``g_i`` the kernel's action (module docstring).

    Args:
        terms: Every offer's figures (:func:`offer_terms`).
        ev_retain: ``V_retain`` per customer, shape (n,).
        greedy_action: The kernel's action codes, shape (n,).
        greedy_offer: Catalogue index of the kernel's best offer, shape (n,).
        policy: Its ``exploration.max_expected_loss`` is ``L`` (None: everything is within).

    Returns:
        ``(retain (n,), offers (n, K))`` bool masks.
    """
    n, k = terms.ev.shape
    limit = policy.exploration.max_expected_loss
    if limit is None:
        return np.ones(n, dtype=bool), np.ones((n, k), dtype=bool)
    rows = np.arange(n)
    offered = terms.ev[rows, np.clip(greedy_offer, 0, max(k - 1, 0))] if k else ev_retain
    greedy_value = np.where(greedy_action == COMPENSATE, offered, ev_retain)
    with np.errstate(invalid="ignore"):
        retain = greedy_value - ev_retain <= limit
        offers = greedy_value[:, None] - terms.ev <= limit
    return retain, offers


def exploration_support(
    terms: OfferTerms,
    ev_retain: np.ndarray,
    greedy_action: np.ndarray,
    greedy_offer: np.ndarray,
    policy: Policy,
    allowance: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The allowed set ``A_i`` (module docstring): ``(retain (n,), offers (n, K))`` bool masks,
    for :func:`choose`: :func:`allowed_offers` within :func:`within_loss_bound`."""
    retain, within = within_loss_bound(terms, ev_retain, greedy_action, greedy_offer, policy)
    return retain, allowed_offers(terms, policy, allowance) & within


def per_experiment_allowance(left: Fraction, drawn: int) -> tuple[float, float]:
    """``(b for a drawn customer, b for one not drawn)``: ``left / drawn`` and
    ``left / (drawn + 1)``, each rounded down to a float (so ``drawn * b <= left`` exactly)."""
    return _floor_float(left / drawn) if drawn else math.inf, _floor_float(left / (drawn + 1))


def _floor_float(value: Fraction) -> float:
    result = float(value)
    if Fraction(result) > value:
        result = math.nextafter(result, -math.inf)
    return result


def budget_left(budget: float, funded_costs: Sequence[float]) -> Fraction:
    """``budget - sum(funded_costs)``, exactly (never below 0)."""
    left = Fraction(budget) - sum((Fraction(c) for c in funded_costs), Fraction(0))
    return max(left, Fraction(0))


def drawn(decided: pl.DataFrame, policy: Policy, as_of: date) -> np.ndarray:
    """Bool per row: the customer is drawn for an experiment, ``u < epsilon`` and a greedy
    action of retain or compensate (whether an alternative is then allowed is not checked)."""
    share = policy.exploration.share
    if share == 0 or decided.is_empty():
        return np.zeros(decided.height, dtype=bool)
    u, _ = draws(decided.get_column("customer_id").to_list(), as_of, policy.version)
    greedy = decided.get_column("action").to_numpy()
    return (u < share) & (greedy != "end")


def drawn_count(decided: pl.DataFrame, policy: Policy, as_of: date) -> int:
    """How many customers of a decided chunk are drawn for an experiment (:func:`drawn`;
    ``M`` of the module docstring, per chunk)."""
    return int(drawn(decided, policy, as_of).sum())


def logging_distribution(decisions: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """``pi_0(a | x)`` of every arm under the policy's exploration (no budget).

    :func:`choose`'s ``distribution`` over retain and the catalogue's offers, built from the
    same allowed set the batch uses (:func:`exploration_support`); "end" gets 1 where the kernel
    ended the customer (never explored). It does not depend on the draws. With a portfolio
    budget the batch's allowed set is narrower (each experiment's cost is capped by what the
    budget leaves), so this is then an upper bound of the support.

    Args:
        decisions: The kernel's decisions before exploration (:func:`model.decide.decide`):
            the decision inputs, ``segment``, ``action``, ``offer_kind`` and ``ev_retain``.
        policy: The policy whose exploration drew the log.

    Returns:
        ``customer_id`` and one probability column per arm (``retain``, ``offer_<kind>``,
        ``end``); each row sums to one.
    """
    n = decisions.height
    inputs = inputs_of(decisions.columns)
    matrix = decisions.select(pl.col(c).cast(pl.Float64) for c in inputs.numeric).to_numpy()
    index = {name: k for k, name in enumerate(inputs.numeric)}
    terms = offer_terms(
        lambda name: np.ascontiguousarray(matrix[:, index[name]], dtype=np.float64),
        decisions.columns,
        decisions.get_column("segment").cast(pl.String).to_list(),
        policy,
    )
    greedy = np.array([ACTIONS.index(a) for a in decisions.get_column("action").to_list()])
    kinds = {offer.kind: j for j, offer in enumerate(policy.offers)}
    greedy_offer = np.array([kinds.get(k, 0) for k in decisions.get_column("offer_kind").to_list()])
    zeros = np.zeros(n)
    ev_retain = decisions.get_column("ev_retain").cast(pl.Float64).to_numpy()
    retain, offers = exploration_support(terms, ev_retain, greedy, greedy_offer, policy)
    choice = choose(greedy, greedy_offer, offers, zeros, zeros, policy.exploration.share, retain)
    arms = ["retain", *(f"offer_{offer.kind}" for offer in policy.offers)]
    return pl.DataFrame(
        {
            "customer_id": decisions.get_column("customer_id"),
            **{arm: choice.distribution[:, j] for j, arm in enumerate(arms)},
            "end": (choice.greedy_slot < 0).astype(np.float64),
        }
    )


# --- frames (the batch) -------------------------------------------------------------------------


def explore(
    decided: pl.DataFrame,
    policy: Policy,
    *,
    as_of: date,
    allowance: tuple[float, float] | None = None,
    language: str = "en",
) -> pl.DataFrame:
    """Apply the policy's exploration to decided customers (math: the module docstring).

    Args:
        decided: Output of :func:`model.decide.decide` (greedy; after the budget in a budgeted
            batch), possibly with more columns. Not modified.
        policy: The policy it was decided with.
        as_of: The date the decisions describe (part of the draw).
        allowance: In a budgeted batch, ``(b drawn, b not drawn)`` from
            :func:`per_experiment_allowance`; None: no budget.
        language: Language of the experiment's reasons.

    Returns:
        ``decided`` with ``propensity`` and ``explored`` set (added at the end when absent)
        and :data:`CHANGED_COLUMNS` replaced for explored customers.
    """
    n = decided.height
    share = policy.exploration.share
    if share == 0 or n == 0:
        return not_explored(decided)
    ids = decided.get_column("customer_id").to_list()
    u, v = draws(ids, as_of, policy.version)
    greedy = _action_codes(decided.get_column("action").to_list())
    greedy_offer = _offer_index(decided.get_column("offer_kind").to_list(), policy)
    inputs = inputs_of(decided.columns)
    matrix = (
        decided.select(pl.col(c).cast(pl.Float64) for c in inputs.numeric)
        .to_numpy()
        .astype(np.float64)
        .reshape(n, len(inputs.numeric))
    )
    index = {name: k for k, name in enumerate(inputs.numeric)}
    terms = offer_terms(
        lambda name: matrix[:, index[name]],
        decided.columns,
        decided.get_column("segment").cast(pl.String).to_list(),
        policy,
    )
    row_allowance = None
    if allowance is not None:
        row_allowance = np.where(u < share, allowance[0], allowance[1])
    ev_retain = decided.get_column("ev_retain").cast(pl.Float64).to_numpy()
    retain_ok, offers_ok = exploration_support(
        terms, ev_retain, greedy, greedy_offer, policy, row_allowance
    )
    choice = choose(greedy, greedy_offer, offers_ok, u, v, share, retain_ok)
    result = decided.with_columns(
        pl.col("action").alias(GREEDY_ACTION),
        pl.Series(PROPENSITY, choice.propensity, dtype=pl.Float64),
        pl.Series(EXPLORED, choice.explored, dtype=pl.Boolean),
    )
    rows = np.flatnonzero(choice.explored)
    if rows.size == 0:
        return result
    greedy_ev = _greedy_values(decided, rows, terms, choice)
    patch = [
        _explored_row(
            slot=int(choice.slot[i]),
            greedy_slot=int(choice.greedy_slot[i]),
            propensity=float(choice.propensity[i]),
            greedy_value=greedy_ev[k],
            ev_retain=float(decided["ev_retain"][int(i)]),
            terms=terms,
            row=int(i),
            policy=policy,
            language=language,
        )
        for k, i in enumerate(rows)
    ]
    return _patched(result, rows, patch)


def not_explored(decided: pl.DataFrame) -> pl.DataFrame:
    """``decided`` with the columns of :func:`explore` for a policy that does not explore:
    ``greedy_action`` the action, ``propensity`` 1, ``explored`` false."""
    return decided.with_columns(
        pl.col("action").alias(GREEDY_ACTION),
        pl.lit(1.0, dtype=pl.Float64).alias(PROPENSITY),
        pl.lit(False, dtype=pl.Boolean).alias(EXPLORED),
    )


def _greedy_values(
    decided: pl.DataFrame, rows: np.ndarray, terms: OfferTerms, choice: Choice
) -> list[float]:
    retain = decided.get_column("ev_retain").to_numpy()[rows]
    slots = choice.greedy_slot[rows]
    offered = terms.ev[rows, np.maximum(slots - 1, 0)]
    return np.where(slots > 0, offered, retain).tolist()


def _patched(frame: pl.DataFrame, rows: np.ndarray, patch: list[dict[str, Any]]) -> pl.DataFrame:
    """``frame`` with :data:`CHANGED_COLUMNS` replaced at ``rows`` by ``patch``."""
    columns = {
        name: pl.Series([p[name] for p in patch], dtype=frame.schema[name])
        for name in CHANGED_COLUMNS
    }
    return replace_at_rows(frame, rows, pl.DataFrame(columns))


# --- records (the API) --------------------------------------------------------------------------


def explore_records(
    decided: Sequence[Mapping[str, Any]], policy: Policy, *, as_of: date, language: str = "en"
) -> list[dict[str, Any]]:
    """:func:`explore` for records (the API's online path; no budget): the same draws,
    actions and propensities, record by record.

    Args:
        decided: Records from :func:`model.decide_rows.decide_records` (or
            :func:`model.recommend.decide_records_for`). Not modified.
        policy: The policy they were decided with.
        as_of: The date the decisions describe.
        language: Language of the experiment's reasons.

    Returns:
        New dicts: each record with ``propensity`` and ``explored`` and, when explored, the
        explored action's :data:`CHANGED_COLUMNS`.
    """
    n = len(decided)
    share = policy.exploration.share
    if share == 0 or n == 0:
        return [
            {**row, GREEDY_ACTION: row["action"], PROPENSITY: 1.0, EXPLORED: False}
            for row in decided
        ]
    u, v = draws([row["customer_id"] for row in decided], as_of, policy.version)
    greedy = _action_codes([row["action"] for row in decided])
    greedy_offer = _offer_index([row["offer_kind"] for row in decided], policy)
    names = list(dict.fromkeys(key for row in decided for key in row))
    inputs = inputs_of(names)
    matrix = np.array(
        [[_float(row.get(name)) for name in inputs.numeric] for row in decided], dtype=np.float64
    ).reshape(n, len(inputs.numeric))
    index = {name: k for k, name in enumerate(inputs.numeric)}
    terms = offer_terms(
        lambda name: matrix[:, index[name]], names, [row["segment"] for row in decided], policy
    )
    ev_retain = np.array([_float(row["ev_retain"]) for row in decided], dtype=np.float64)
    retain_ok, offers_ok = exploration_support(terms, ev_retain, greedy, greedy_offer, policy)
    choice = choose(greedy, greedy_offer, offers_ok, u, v, share, retain_ok)
    result = []
    for i, row in enumerate(decided):
        out = {
            **row,
            GREEDY_ACTION: row["action"],
            PROPENSITY: float(choice.propensity[i]),
            EXPLORED: bool(choice.explored[i]),
        }
        if choice.explored[i]:
            greedy_slot = int(choice.greedy_slot[i])
            greedy_value = (
                float(terms.ev[i, greedy_slot - 1]) if greedy_slot > 0 else row["ev_retain"]
            )
            out.update(
                _explored_row(
                    slot=int(choice.slot[i]),
                    greedy_slot=greedy_slot,
                    propensity=float(choice.propensity[i]),
                    greedy_value=greedy_value,
                    ev_retain=row["ev_retain"],
                    terms=terms,
                    row=i,
                    policy=policy,
                    language=language,
                )
            )
        result.append(out)
    return result


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


# --- shared -------------------------------------------------------------------------------------


def _action_codes(actions: Sequence[str]) -> np.ndarray:
    codes = {action: code for code, action in enumerate(ACTIONS)}
    return np.array([codes[a] for a in actions], dtype=np.int64)


def _offer_index(kinds: Sequence[str], policy: Policy) -> np.ndarray:
    index = {kind: j for j, kind in enumerate(policy.offer_kinds)}
    return np.array([index.get(kind, 0) for kind in kinds], dtype=np.int64)


def _explored_row(
    *,
    slot: int,
    greedy_slot: int,
    propensity: float,
    greedy_value: float,
    ev_retain: float,
    terms: OfferTerms,
    row: int,
    policy: Policy,
    language: str,
) -> dict[str, Any]:
    """The :data:`CHANGED_COLUMNS` of one explored customer."""
    book = rt.phrasebook(language)
    kinds = policy.offer_kinds
    if slot == 0:  # retain: the offer columns keep describing the best offer considered
        best = greedy_slot - 1
        offer = {name: float(terms.terms[name][row, best]) for name in OFFER_TERM_COLUMNS}
        values: dict[str, Any] = {
            "action": ACTIONS[RETAIN],
            "offer_kind": kinds[best],
            **offer,
            "approval_tier": None,
        }
        value = ev_retain
        chosen = _NO_OFFER
    else:
        j = slot - 1
        offer = {name: float(terms.terms[name][row, j]) for name in OFFER_TERM_COLUMNS}
        values = {
            "action": ACTIONS[COMPENSATE],
            "offer_kind": kinds[j],
            **offer,
            "approval_tier": policy.tier_for(offer["offer_cost"]),
        }
        value = float(terms.ev[row, j])
        chosen = rt.offer_name_text(book, kinds[j], inline=True)
    greedy = (
        _NO_OFFER
        if greedy_slot == 0
        else rt.offer_name_text(book, kinds[greedy_slot - 1], inline=True)
    )
    given_up = greedy_value - value
    parts = {
        "chosen": chosen,
        "greedy": greedy,
        "chance": rt.percent_text(book, propensity),
        "given_up": rt.money_text(book, given_up),
        "horizon": str(policy.horizon_months),
    }
    template = _EXPERIMENT_COST if given_up >= 0 else _EXPERIMENT_GAIN
    values["reasons"] = [_EXPERIMENT.format(**parts), template.format(**parts)]
    return values
