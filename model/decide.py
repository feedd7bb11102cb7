"""The decision math: retain, compensate (with which offer) or end, per customer, vectorised.

For every customer this module prices three kinds of action over the policy horizon H
(DESIGN.md, "Decision math"), picks the best one the policy's guard-rails allow, names who must
approve it and says why in plain words (phrasing in :mod:`model.reason_text`). Everything is a
polars expression over all customers at once: no Python loop over customers.

Notation (one customer; the policy gives H, delta = 1 / (1 + r) and the offer catalogue):

- ``p``  calibrated probability of churn within H with no action (``p_churn``)
- ``m``  expected monthly net margin if the relationship continues (``monthly_margin``),
  already net of the monthly complaint cost ``cc`` (``monthly_complaint_cost``)
- survival ``S_p(k) = (1 - p)^(k/H)`` and the discounted survival annuity
  ``A(p) = sum_{k=1..H} S_p(k) * delta^k``

Actions:

- **retain**: ``V_retain = sum_{k=1..H} m * S_p(k) * delta^k = m * A(p)``.
- **compensate** with offer o (acceptance ``a_o``, unit cost ``c_o`` paid only when accepted,
  churn reduction ``u_o`` *if accepted*, complaint-cost reduction share ``rho_o``)::

      p'_o = clip(p - u_o, 0, 1)          m'_o = m + rho_o * cc
      V_o  = a_o * [ m'_o * A(p'_o) - c_o ] + (1 - a_o) * V_retain
      dV_o = V_o - V_retain = a_o * [ m'_o * A(p'_o) - m * A(p) - c_o ]

  The expected offer cost is ``a_o * c_o`` (the Pentium lesson: unit cost times uptake).
  ``a_o`` and ``u_o`` come from the ``accept_<kind>`` / ``uplift_<kind>`` input columns
  (the offer-response model); a missing column or a null value falls back to the policy prior
  (``u_o = churn_reduction * p`` for a relative prior, ``churn_reduction`` for an absolute one).
- **end**: ``V_end = -exit_cost`` with ``exit_cost = fixed + revenue_months * monthly_revenue
  + receivables_write_off_share * receivables_open + exit_cost_extra`` (the last two optional
  input columns; missing or null counts as 0).

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

Choice and guard-rails: the offer with the highest ``V_o`` is the best offer; "compensate" needs
``V_o > V_retain`` (ties go to retain). "End" is recommended only when ``V_end`` beats every
other allowed action *and* it is allowed: the segment is not protected, the customer has at
least ``min_history_months_to_end`` months of history, and the margin is negative with high
confidence, ``m + z * se < 0`` (``z = Phi^-1(end_margin_confidence)``; a null ``se`` blocks).
When "end" has the highest value but is blocked, the best allowed action is taken and
``blocked_reason`` says why. Approval: offers by unit cost ``c_o`` through the authority table
(the lowest tier whose ``max_amount`` covers it); "end" always needs ``end_requires``; "retain"
needs no approval (null).

Portfolio budget (batch): :func:`allocate_budget` funds offers in decreasing order of
``(V_o - V_fallback) / (a_o c_o)`` until the budget in expected offer cost is spent; the others
fall back to their best non-offer action.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from features.contract import OFFER_KINDS
from model import reason_text as rt
from model.policy import Offer, Policy

logger = logging.getLogger(__name__)

ACTIONS: tuple[str, ...] = ("retain", "compensate", "end")

REQUIRED_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "segment",
    "months_of_history",
    "p_churn",
    "monthly_margin",
    "monthly_margin_se",
    "monthly_revenue",
    "monthly_complaint_cost",
)
# Optional inputs that sharpen exit costs and reasons (absent or null: not used / 0).
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "receivables_open",  # open receivables; a policy share is written off on exit
    "exit_cost_extra",  # customer-specific exit cost (contract penalties, migration)
    "receivables_overdue",  # overdue or withheld invoices (reasons only)
    "offers_made_12m",  # remedies offered in the last 12 months (reasons only)
    "offers_declined_12m",  # remedies declined in the last 12 months (reasons only)
)
UPLIFT_PREFIX = "uplift_"
ACCEPT_PREFIX = "accept_"

# Columns decide() appends (plus one ev_offer_<kind> per catalogue offer, after ev_best_offer).
DECISION_COLUMNS: tuple[str, ...] = (
    "action",
    "ev_retain",
    "ev_best_offer",
    "ev_end",
    "offer_kind",
    "offer_cost",
    "offer_acceptance",
    "offer_expected_cost",
    "offer_churn_reduction",
    "churn_after_offer",
    "offer_complaint_saving",
    "exit_cost",
    "margin_upper",
    "end_allowed",
    "approval_tier",
    "blocked_reason",
    "reasons",
    "policy_version",
    "horizon_months",
)

# Below this acceptance an offer is described as taken up by few.
_LIKELY_ACCEPTANCE = 0.5
# Complaint cost is a reason of its own when it eats at least this share of revenue.
_COMPLAINT_COST_SHARE = 0.1
# Joins reasons while they are built (ASCII unit separator: never part of a message).
_REASON_SEPARATOR = "\x1f"
# Budget allocation: at most this many first-fit passes (each pass is vectorised).
_MAX_BUDGET_ROUNDS = 1_000


class DecisionInputError(ValueError):
    """The scoring frame cannot be decided on: the message names the column, the rule, the
    number of rows that break it and example customer ids."""


@dataclass(frozen=True)
class _Inputs:
    """Which optional inputs a frame carries."""

    optional: frozenset[str]
    uplift_kinds: frozenset[str]
    accept_kinds: frozenset[str]

    def has(self, column: str) -> bool:
        return column in self.optional


def ev_columns(policy: Policy) -> tuple[str, ...]:
    """Names of the per-offer expected-value columns, ``ev_offer_<kind>``, in catalogue order."""
    return tuple(f"ev_offer_{kind}" for kind in policy.offer_kinds)


def decide(
    customers: pl.DataFrame | pl.LazyFrame, policy: Policy, *, language: str = "en"
) -> pl.DataFrame:
    """Recommend retain / compensate / end for every customer (math: see the module docstring).

    Args:
        customers: One row per customer with :data:`REQUIRED_COLUMNS`, optionally
            :data:`OPTIONAL_COLUMNS` and ``uplift_<kind>`` (absolute reduction of the horizon
            churn probability if the offer is accepted) / ``accept_<kind>`` (acceptance
            probability) per offer kind; nulls there fall back to the policy priors. Not modified.
        policy: The retention policy.
        language: Language of ``reasons`` and ``blocked_reason`` (see :mod:`model.reason_text`).

    Returns:
        The input columns followed by :data:`DECISION_COLUMNS` (with ``ev_offer_<kind>`` per
        catalogue offer after ``ev_best_offer``). The ``offer_*`` columns describe the best
        offer considered for every customer; it is made only when ``action == "compensate"``.
        ``reasons`` is a list of plain-language strings.

    Raises:
        DecisionInputError: On missing columns, non-numeric columns, nulls in required columns,
            out-of-range values or unknown segments / offer kinds.
    """
    book = rt.phrasebook(language)
    frame = customers.collect() if isinstance(customers, pl.LazyFrame) else customers
    inputs = _validate(frame, policy)
    lf = _evaluate(frame.lazy(), policy, inputs).with_columns(_funded=pl.lit(True))
    lf = _explain(_choose(lf, policy, book), policy, book, inputs)
    result = lf.select(*frame.columns, *_output_columns(policy)).collect()
    logger.info(
        "decided %d customers with policy %s: %s",
        result.height,
        policy.version,
        dict(result.group_by("action").len().iter_rows()),
    )
    return result


def allocate_budget(
    decisions: pl.DataFrame, budget: float | None, policy: Policy, *, language: str = "en"
) -> pl.DataFrame:
    """Spend a portfolio offer budget where an offer adds the most value per unit of cost.

    Candidates are the customers whose best action, with unlimited budget, is their best offer.
    For each, ``gain = V_o - V_fallback`` where ``V_fallback`` is the best non-offer action
    allowed (``max(V_retain, V_end)`` with ``V_end`` only when "end" is allowed), and the
    expected cost is ``a_o * c_o``. Offers are funded first-fit in decreasing order of
    ``gain / (a_o c_o)`` (zero-cost offers first; ties by ``customer_id``): each offer that still
    fits in what is left is funded, one that does not is skipped. The sum of funded expected
    costs never exceeds ``budget``. Customers left unfunded get their best non-offer action,
    ``blocked_reason`` says the budget was spent, and approval and reasons are recomputed.

    Args:
        decisions: The output of :func:`decide` (possibly already budgeted). Not modified.
        budget: Total expected offer cost allowed (``policy.guardrails.offer_budget`` in batch
            runs); None means no budget and returns ``decisions`` unchanged.
        policy: The policy ``decisions`` were made with (its version must match).
        language: Language of the recomputed reasons.

    Returns:
        ``decisions`` with ``action``, ``approval_tier``, ``blocked_reason`` and ``reasons``
        recomputed; same rows, same order, same columns.

    Raises:
        ValueError: On a negative or non-finite budget, or a policy version that differs from
            the one in ``decisions``.
        DecisionInputError: When ``decisions`` lacks the decision columns.
    """
    if budget is None:
        return decisions
    if isinstance(budget, bool) or not math.isfinite(budget) or budget < 0:
        raise ValueError(f"offer budget must be a finite number >= 0, got {budget!r}")
    missing = [c for c in (*REQUIRED_COLUMNS, *_output_columns(policy)) if c not in decisions]
    if missing:
        raise DecisionInputError(
            f"allocate_budget needs the output of decide(); missing column(s): {missing}"
        )
    versions = decisions["policy_version"].unique().to_list()
    if decisions.height and versions != [policy.version]:
        raise ValueError(
            f"decisions were made with policy version(s) {versions}, not {policy.version!r}"
        )
    book = rt.phrasebook(language)
    funded = _fund(decisions, float(budget))
    inputs = _inputs_of(decisions.columns)
    lf = decisions.lazy().drop("action", "approval_tier", "blocked_reason", "reasons")
    lf = lf.with_columns(_funded=pl.Series(funded))
    lf = _explain(_choose(lf, policy, book), policy, book, inputs)
    result = lf.select(decisions.columns).collect()
    offered = result.filter(pl.col("action") == "compensate")
    logger.info(
        "offer budget %.2f: %d offers funded (expected cost %.2f), %d not funded",
        budget,
        offered.height,
        offered["offer_expected_cost"].sum(),
        int((~funded).sum()),
    )
    return result


# --- validation --------------------------------------------------------------------------------


def _inputs_of(columns: Sequence[str]) -> _Inputs:
    return _Inputs(
        optional=frozenset(c for c in OPTIONAL_COLUMNS if c in columns),
        uplift_kinds=frozenset(
            c.removeprefix(UPLIFT_PREFIX) for c in columns if c.startswith(UPLIFT_PREFIX)
        ),
        accept_kinds=frozenset(
            c.removeprefix(ACCEPT_PREFIX) for c in columns if c.startswith(ACCEPT_PREFIX)
        ),
    )


def _validate(frame: pl.DataFrame, policy: Policy) -> _Inputs:
    """Check columns, dtypes, nulls and ranges in one pass; raise naming column and rows."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DecisionInputError(
            f"scoring frame: missing required column(s) {missing}; columns present: {frame.columns}"
        )
    inputs = _inputs_of(frame.columns)
    unknown = sorted((inputs.uplift_kinds | inputs.accept_kinds) - set(OFFER_KINDS))
    if unknown:
        names = [
            c
            for c in frame.columns
            if c.removeprefix(UPLIFT_PREFIX) in unknown or c.removeprefix(ACCEPT_PREFIX) in unknown
        ]
        raise DecisionInputError(
            f"scoring frame: column(s) {names} name unknown offer kind(s) {unknown}; "
            f"offer kinds: {', '.join(OFFER_KINDS)}"
        )
    ignored = sorted((inputs.uplift_kinds | inputs.accept_kinds) - set(policy.offer_kinds))
    if ignored:
        logger.debug("offer kinds %s are not in policy %s: ignored", ignored, policy.version)
    clashes = [c for c in (*DECISION_COLUMNS, *ev_columns(policy)) if c in frame.columns]
    clashes += [c for c in frame.columns if c.startswith("_")]
    if clashes:
        raise DecisionInputError(
            f"scoring frame: column(s) {clashes} clash with decision output or private names"
        )
    numeric = [
        *REQUIRED_COLUMNS[2:],
        *sorted(inputs.optional),
        *(f"{UPLIFT_PREFIX}{kind}" for kind in sorted(inputs.uplift_kinds)),
        *(f"{ACCEPT_PREFIX}{kind}" for kind in sorted(inputs.accept_kinds)),
    ]
    # an all-null column has dtype Null; it is numeric enough (nulls are checked below)
    not_numeric = [
        c for c in numeric if not (frame.schema[c].is_numeric() or frame.schema[c] == pl.Null)
    ]
    if not_numeric:
        raise DecisionInputError(
            "scoring frame: column(s) must be numeric: "
            + ", ".join(f"{c} ({frame.schema[c]})" for c in not_numeric)
        )
    segment_dtype = frame.schema["segment"]
    if not (segment_dtype == pl.String or isinstance(segment_dtype, pl.Categorical | pl.Enum)):
        raise DecisionInputError(
            f"scoring frame: column segment must be text, got {frame.schema['segment']}"
        )

    checks: list[tuple[str, str, pl.Expr]] = []
    for column in REQUIRED_COLUMNS:
        if column != "monthly_margin_se":
            checks.append((column, "must not be null", pl.col(column).is_null()))

    def number(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.Float64)

    for column in numeric:
        checks.append((column, "must not be NaN", number(column).is_nan()))
    probability = ["p_churn"] + [f"{ACCEPT_PREFIX}{k}" for k in sorted(inputs.accept_kinds)]
    for column in probability:
        checks.append((column, "must be within [0, 1]", ~number(column).is_between(0, 1)))
    for kind in sorted(inputs.uplift_kinds):
        column = f"{UPLIFT_PREFIX}{kind}"
        checks.append((column, "must be within [-1, 1]", ~number(column).is_between(-1, 1)))
    for column in (
        "months_of_history",
        "monthly_margin_se",
        "monthly_revenue",
        "monthly_complaint_cost",
        *sorted(inputs.optional),
    ):
        checks.append((column, "must be >= 0", number(column) < 0))
    checks.append(
        (
            "segment",
            f"must be one of the policy's segments ({', '.join(policy.segments)})",
            ~pl.col("segment").cast(pl.String).is_in(list(policy.segments)),
        )
    )
    counts = frame.select(
        [expr.fill_null(False).sum().alias(str(i)) for i, (_, _, expr) in enumerate(checks)]
    ).row(0)
    problems = []
    for (column, rule, expr), count in zip(checks, counts, strict=True):
        if count:
            bad = frame.filter(expr.fill_null(False)).head(3)
            examples = ", ".join(
                f"{cid}={value!r}"
                for cid, value in zip(bad["customer_id"], bad[column], strict=True)
            )
            problems.append(f"{column} {rule}: {count} row(s), e.g. customer_id {examples}")
    if problems:
        raise DecisionInputError("scoring frame: " + "; ".join(problems))
    return inputs


# --- expected values ---------------------------------------------------------------------------


def _annuity(p: pl.Expr, horizon: int, delta: float) -> pl.Expr:
    """``A(p) = sum_{k=1..H} (1 - p)^(k/H) * delta^k``: discounted expected months retained.

    The terms are added one after the other, k = 1, 2, ..., H, as an explicit chain: unlike
    ``sum_horizontal``, whose reduction order depends on the thread pool, the result is the
    same to the last bit on every machine and equals the online path's plain Python sum.
    """
    stay = 1.0 - p
    terms = [stay.pow(k / horizon) * delta**k for k in range(1, horizon + 1)]
    return functools.reduce(operator.add, terms)


def _offer_parts(offer: Offer, inputs: _Inputs) -> dict[str, pl.Expr]:
    """Acceptance, churn after acceptance, unit cost and complaint saving of one offer."""
    p = pl.col("p_churn").cast(pl.Float64)
    prior_acceptance = pl.lit(offer.acceptance)
    if offer.churn_reduction_mode == "relative":
        prior_uplift = p * offer.churn_reduction
    else:
        prior_uplift = pl.lit(offer.churn_reduction)
    acceptance = (
        pl.col(f"{ACCEPT_PREFIX}{offer.kind}").cast(pl.Float64).fill_null(prior_acceptance)
        if offer.kind in inputs.accept_kinds
        else prior_acceptance
    )
    uplift = (
        pl.col(f"{UPLIFT_PREFIX}{offer.kind}").cast(pl.Float64).fill_null(prior_uplift)
        if offer.kind in inputs.uplift_kinds
        else prior_uplift
    )
    revenue = pl.col("monthly_revenue").cast(pl.Float64)
    complaint_cost = pl.col("monthly_complaint_cost").cast(pl.Float64)
    return {
        "a": acceptance,
        "p_after": (p - uplift).clip(0.0, 1.0),
        "cost": offer.cost_fixed + offer.cost_revenue_multiple * revenue,
        "saving": offer.complaint_cost_reduction * complaint_cost,
    }


def _evaluate(lf: pl.LazyFrame, policy: Policy, inputs: _Inputs) -> pl.LazyFrame:
    """Add every action's expected value, the best offer and the "end" guard-rail flags."""
    horizon, delta = policy.horizon_months, policy.discount_factor
    p = pl.col("p_churn").cast(pl.Float64)
    margin = pl.col("monthly_margin").cast(pl.Float64)
    revenue = pl.col("monthly_revenue").cast(pl.Float64)
    kinds = policy.offer_kinds

    parts: list[pl.Expr] = [_annuity(p, horizon, delta).alias("_annuity")]
    for offer in policy.offers:
        for name, expr in _offer_parts(offer, inputs).items():
            parts.append(expr.alias(f"_{name}_{offer.kind}"))
    lf = lf.with_columns(parts).with_columns(ev_retain=margin * pl.col("_annuity"))

    offer_evs = []
    for kind in kinds:
        a, p_after = pl.col(f"_a_{kind}"), pl.col(f"_p_after_{kind}")
        accepted = (margin + pl.col(f"_saving_{kind}")) * _annuity(p_after, horizon, delta)
        offer_evs.append(
            (a * (accepted - pl.col(f"_cost_{kind}")) + (1.0 - a) * pl.col("ev_retain")).alias(
                f"ev_offer_{kind}"
            )
        )
    lf = lf.with_columns(offer_evs).with_columns(
        ev_best_offer=pl.max_horizontal([pl.col(f"ev_offer_{k}") for k in kinds])
    )
    # First catalogue offer reaching the best value (ties go to the earlier one).
    best_kind = pl.coalesce(
        [
            pl.when(pl.col(f"ev_offer_{kind}") >= pl.col("ev_best_offer")).then(pl.lit(kind))
            for kind in kinds
        ]
    )
    lf = lf.with_columns(offer_kind=best_kind)

    def pick(name: str) -> pl.Expr:
        return pl.coalesce(
            [
                pl.when(pl.col("offer_kind") == kind).then(pl.col(f"_{name}_{kind}"))
                for kind in kinds
            ]
        )

    exit_ = policy.exit
    exit_cost = exit_.fixed + exit_.revenue_months * revenue
    if inputs.has("receivables_open"):
        exit_cost = exit_cost + exit_.receivables_write_off_share * pl.col("receivables_open").cast(
            pl.Float64
        ).fill_null(0.0)
    if inputs.has("exit_cost_extra"):
        exit_cost = exit_cost + pl.col("exit_cost_extra").cast(pl.Float64).fill_null(0.0)
    guard = policy.guardrails
    margin_upper = margin + guard.end_margin_z * pl.col("monthly_margin_se").cast(pl.Float64)
    lf = lf.with_columns(
        offer_cost=pick("cost"),
        offer_acceptance=pick("a"),
        churn_after_offer=pick("p_after"),
        offer_complaint_saving=pick("saving"),
        exit_cost=exit_cost,
        margin_upper=margin_upper,
    ).with_columns(
        offer_expected_cost=pl.col("offer_acceptance") * pl.col("offer_cost"),
        offer_churn_reduction=p - pl.col("churn_after_offer"),
        ev_end=-pl.col("exit_cost"),
    )
    return lf.with_columns(
        end_allowed=~pl.any_horizontal(_end_guards(policy).values()),
        policy_version=pl.lit(policy.version),
        horizon_months=pl.lit(policy.horizon_months, dtype=pl.Int64),
    )


# --- choice ------------------------------------------------------------------------------------


def _end_guards(policy: Policy) -> dict[str, pl.Expr]:
    """The guard-rails that block "end", each True where it applies (needs ``margin_upper``)."""
    guard = policy.guardrails
    upper = pl.col("margin_upper")
    return {
        "_protected": pl.col("segment").cast(pl.String).is_in(list(guard.protected_segments)),
        "_short": pl.col("months_of_history") < guard.min_history_months_to_end,
        "_margin_unknown": upper.is_null(),
        "_margin_uncertain": (upper >= 0).fill_null(False),
    }


def _tier(policy: Policy, amount: pl.Expr) -> pl.Expr:
    """The lowest authority role whose ``max_amount`` covers ``amount``."""
    return pl.coalesce(
        [
            pl.lit(tier.role)
            if tier.max_amount is None
            else pl.when(amount <= tier.max_amount).then(pl.lit(tier.role))
            for tier in policy.authority
        ]
    )


def _choose(lf: pl.LazyFrame, policy: Policy, book: rt.Phrasebook) -> pl.LazyFrame:
    """Pick the action (needs the ``_funded`` flag), its approval tier and any blocked reason.

    ``_end_wins`` marks customers for whom ending has a higher value than every other
    allowed action, whether or not the guard-rails then allow it.
    """
    guard = policy.guardrails
    offer_ok = pl.col("_funded") & (pl.col("ev_best_offer") > pl.col("ev_retain"))
    wants_offer = pl.col("ev_best_offer") > pl.col("ev_retain")
    best_alternative = (
        pl.when(offer_ok).then(pl.col("ev_best_offer")).otherwise(pl.col("ev_retain"))
    )
    lf = lf.with_columns(
        **_end_guards(policy),
        _offer_ok=offer_ok,
        _end_wins=pl.col("ev_end") > best_alternative,
        _best_alternative=best_alternative,
    )
    action = (
        pl.when(pl.col("end_allowed") & pl.col("_end_wins"))
        .then(pl.lit("end"))
        .when(pl.col("_offer_ok"))
        .then(pl.lit("compensate"))
        .otherwise(pl.lit("retain"))
    )
    months = pl.col("months_of_history").floor().cast(pl.Int64)
    end_blocks = pl.concat_str(
        [
            pl.when(pl.col("_protected")).then(
                rt.render(book, "blocked_protected", segment_code=pl.col("segment").cast(pl.String))
            ),
            pl.when(pl.col("_short")).then(
                rt.render(
                    book,
                    "blocked_history",
                    months=months.cast(pl.String),
                    required=guard.min_history_months_to_end,
                )
            ),
            pl.when(pl.col("_margin_unknown")).then(rt.render(book, "blocked_margin_unknown")),
            pl.when(pl.col("_margin_uncertain")).then(
                rt.render(
                    book,
                    "blocked_margin",
                    confidence=rt.percent(book, pl.lit(guard.end_margin_confidence)),
                    upper=rt.money(book, pl.col("margin_upper")),
                )
            ),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    blocked = pl.concat_str(
        [
            pl.when(~pl.col("_funded") & wants_offer).then(rt.render(book, "blocked_budget")),
            pl.when(~pl.col("end_allowed") & pl.col("_end_wins")).then(end_blocks),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    lf = lf.with_columns(action=action)
    return lf.with_columns(
        approval_tier=pl.when(pl.col("action") == "end")
        .then(pl.lit(guard.end_requires))
        .when(pl.col("action") == "compensate")
        .then(_tier(policy, pl.col("offer_cost")))
        .otherwise(pl.lit(None, dtype=pl.String)),
        blocked_reason=pl.when(blocked != "").then(blocked),
    )


# --- reasons -----------------------------------------------------------------------------------


def _explain(
    lf: pl.LazyFrame, policy: Policy, book: rt.Phrasebook, inputs: _Inputs
) -> pl.LazyFrame:
    """Add ``reasons``: the facts behind the action in plain words (phrasing: reason_text).

    Numbers and names are formatted once per row into private ``_txt_*`` columns, then every
    message that applies to the row is rendered and the messages are joined into a list.
    """
    horizon = policy.horizon_months
    margin = pl.col("monthly_margin").cast(pl.Float64)
    revenue = pl.col("monthly_revenue").cast(pl.Float64)
    complaint_cost = pl.col("monthly_complaint_cost").cast(pl.Float64)
    texts = {
        "margin": rt.money(book, margin),
        "upper": rt.money(book, pl.col("margin_upper")),
        "complaint_cost": rt.money(book, complaint_cost),
        "risk": rt.percent(book, pl.col("p_churn").cast(pl.Float64)),
        "risk_after": rt.percent(book, pl.col("churn_after_offer")),
        "acceptance": rt.percent(book, pl.col("offer_acceptance")),
        "offer": rt.offer_name(book, pl.col("offer_kind")),
        "offer_inline": rt.offer_name(book, pl.col("offer_kind"), inline=True),
        "saving": rt.money(book, pl.col("offer_complaint_saving")),
        "expected": rt.money(book, pl.col("offer_expected_cost")),
        "cost": rt.money(book, pl.col("offer_cost")),
        "gain": rt.money(book, pl.col("ev_best_offer") - pl.col("ev_retain")),
        "retain": rt.money(book, pl.col("ev_retain")),
        "exit": rt.money(book, pl.col("exit_cost")),
        "alternative": rt.money(book, pl.col("_best_alternative")),
        "months": pl.col("months_of_history").floor().cast(pl.Int64).cast(pl.String),
    }
    if inputs.has("receivables_overdue"):
        texts["overdue"] = rt.money(book, pl.col("receivables_overdue").cast(pl.Float64))
    lf = lf.with_columns(**{f"_txt_{name}": expr for name, expr in texts.items()})

    def txt(name: str) -> pl.Expr:
        return pl.col(f"_txt_{name}")

    situation = [
        pl.when(margin < 0)
        .then(rt.render(book, "margin_loss", amount=txt("margin")))
        .otherwise(rt.render(book, "margin_gain", amount=txt("margin"))),
        pl.when(pl.col("margin_upper") < 0).then(
            rt.render(book, "margin_loss_confident", amount=txt("upper"))
        ),
        pl.when((complaint_cost > 0) & (complaint_cost >= _COMPLAINT_COST_SHARE * revenue)).then(
            rt.render(book, "complaint_cost", amount=txt("complaint_cost"))
        ),
    ]
    if inputs.has("receivables_overdue"):
        situation.append(
            pl.when(pl.col("receivables_overdue") > 0).then(
                rt.render(book, "overdue", amount=txt("overdue"))
            )
        )
    if inputs.has("offers_made_12m") and inputs.has("offers_declined_12m"):
        made = pl.col("offers_made_12m").cast(pl.Int64)
        declined = pl.col("offers_declined_12m").cast(pl.Int64)
        situation.append(
            pl.when((declined == 1) & (made <= 1))
            .then(rt.render(book, "declined_one"))
            .when(declined >= 1)
            .then(
                rt.render(
                    book,
                    "declined_many",
                    declined=declined.cast(pl.String),
                    offered=pl.max_horizontal(made, declined).cast(pl.String),
                )
            )
        )
    situation.append(rt.render(book, "churn_risk", risk=txt("risk"), horizon=horizon))

    effect = {
        "offer": txt("offer"),
        "acceptance": txt("acceptance"),
        "risk": txt("risk"),
        "risk_after": txt("risk_after"),
    }
    compensate = [
        pl.when(pl.col("offer_acceptance") >= _LIKELY_ACCEPTANCE)
        .then(rt.render(book, "offer_likely", **effect))
        .otherwise(rt.render(book, "offer_unlikely", **effect)),
        pl.when(pl.col("offer_complaint_saving") > 0).then(
            rt.render(
                book, "offer_complaints", offer_inline=txt("offer_inline"), amount=txt("saving")
            )
        ),
        rt.render(
            book,
            "offer_expected_cost",
            expected=txt("expected"),
            cost=txt("cost"),
            acceptance=txt("acceptance"),
        ),
        rt.render(book, "offer_gain", amount=txt("gain"), horizon=horizon),
    ]
    wants_offer = pl.col("ev_best_offer") > pl.col("ev_retain")
    retain = [
        pl.when(~wants_offer).then(
            rt.render(book, "retain_no_offer", offer_inline=txt("offer_inline"))
        ),
        pl.when(~pl.col("_funded") & wants_offer).then(rt.render(book, "budget_spent")),
        pl.when(pl.col("ev_retain") >= 0)
        .then(rt.render(book, "retain_value", amount=txt("retain"), horizon=horizon))
        .otherwise(rt.render(book, "retain_loss", amount=txt("retain"), horizon=horizon)),
    ]
    end = [
        rt.render(
            book, "end_value", exit_cost=txt("exit"), loss=txt("alternative"), horizon=horizon
        ),
        pl.when(pl.col("offer_acceptance") < _LIKELY_ACCEPTANCE).then(
            rt.render(
                book,
                "end_remedy_unlikely",
                offer_inline=txt("offer_inline"),
                acceptance=txt("acceptance"),
            )
        ),
    ]
    end_blocked = ~pl.col("end_allowed") & pl.col("_end_wins")
    blocked_plain = (
        pl.when(end_blocked & pl.col("_protected"))
        .then(
            rt.render(
                book,
                "blocked_protected_plain",
                segment=rt.segment_name(book, pl.col("segment").cast(pl.String)),
            )
        )
        .when(end_blocked & pl.col("_short"))
        .then(rt.render(book, "blocked_history_plain", months=txt("months")))
        .when(end_blocked)
        .then(rt.render(book, "blocked_margin_plain"))
    )
    action = pl.col("action")
    by_action = (
        [pl.when(action == "compensate").then(expr) for expr in compensate]
        + [pl.when(action == "retain").then(expr) for expr in retain]
        + [pl.when(action == "end").then(expr) for expr in end]
    )
    # concat_str + split is several times faster than concat_list + drop_nulls on millions of
    # rows; the separator cannot occur in a message (templates, numbers and validated names).
    joined = pl.concat_str(
        [*situation, *by_action, blocked_plain], separator=_REASON_SEPARATOR, ignore_nulls=True
    )
    reasons = (
        pl.when(joined == "")
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(joined.str.split(_REASON_SEPARATOR))
    )
    return lf.with_columns(reasons=reasons).drop([f"_txt_{name}" for name in texts])


def _output_columns(policy: Policy) -> list[str]:
    columns = list(DECISION_COLUMNS)
    at = columns.index("ev_best_offer") + 1
    return columns[:at] + list(ev_columns(policy)) + columns[at:]


# --- budget ------------------------------------------------------------------------------------


def _fund(decisions: pl.DataFrame, budget: float) -> np.ndarray:
    """Row mask: False where an offer is wanted but not funded within ``budget`` (first-fit).

    A customer wants the offer exactly when :func:`_choose` with funding would pick it:
    ``V_o > V_retain`` and not (end allowed and ``V_end > V_o``).
    """
    offer, end = pl.col("ev_best_offer"), pl.when(pl.col("end_allowed")).then(pl.col("ev_end"))
    wants = (offer > pl.col("ev_retain")) & ~(end > offer).fill_null(False)
    candidates = (
        decisions.select(
            pl.col("customer_id"),
            wants=wants,
            gain=offer - pl.max_horizontal(pl.col("ev_retain"), end),
            expected=pl.col("offer_expected_cost"),
        )
        .with_row_index("_row")
        .filter(pl.col("wants"))
        .with_columns(
            ratio=pl.when(pl.col("expected") > 0)
            .then(pl.col("gain") / pl.col("expected"))
            .otherwise(pl.lit(math.inf))
        )
        .sort(["ratio", "customer_id"], descending=[True, False])
    )
    rows = candidates["_row"].to_numpy()
    costs = candidates["expected"].to_numpy()
    chosen = np.zeros(rows.size, dtype=bool)
    pending = np.arange(rows.size)
    remaining = budget
    for _ in range(_MAX_BUDGET_ROUNDS):
        pending = pending[costs[pending] <= remaining]
        if pending.size == 0:
            break
        spent = np.cumsum(costs[pending])
        taken = int(np.searchsorted(spent, remaining, side="right"))
        chosen[pending[:taken]] = True
        remaining -= float(spent[taken - 1])
        pending = pending[taken:]
    else:
        if pending.size:
            logger.warning(
                "offer budget: stopped after %d first-fit passes; %d candidates left unfunded",
                _MAX_BUDGET_ROUNDS,
                pending.size,
            )
    funded = np.ones(decisions.height, dtype=bool)
    funded[rows[~chosen]] = False
    return funded
