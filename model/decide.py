"""Decisions for frames: retain, compensate (with which offer) or end, for every customer.

The batch entry point. :func:`decide` checks a scoring frame, hands its columns to the one
decision kernel, :func:`model.kernel.decide_arrays` (numpy; the math, its notation and where it
departs from DESIGN.md are documented there), and returns the frame with the decision columns
and plain-language reasons (:mod:`model.reasons`). The API's online path,
:func:`model.decide_rows.decide_records`, calls the same kernel for records, so both give the
same decisions to the bit.

Portfolio budget: :func:`allocate_budget` funds offers for one decided frame; a chunked batch
calls its steps itself -- :func:`model.budget.budget_candidates` per chunk,
:func:`model.budget.fund_offers` once, then :func:`withhold_offers` per chunk (see
:mod:`model.budget`).

Summary of the math (details and sources in :mod:`model.kernel`), over horizon H with monthly
discount ``delta``, churn risk ``p``, monthly margin ``m`` and annuity
``A(p) = sum_{k=1..H} (1 - p)^(k/H) delta^k``: ``V_retain = m A(p)``;
``V_o = a_o [ (m + rho_o cc) A(p'_o) - c_o ] + (1 - a_o) V_retain`` with ``p'_o = clip(p - u_o)``
(the expectation over acceptance, not DESIGN.md's averaged effect); ``V_end = -exit_cost``.
Guard-rails: protected segments are never ended; "end" needs ``m + z se < 0`` at
``end_margin_confidence`` -- or a likely loss (``m + z_s se < 0`` at ``end_stake_confidence``)
where ending gains at least ``end_risk_price * P(m > 0)`` over the best alternative -- and
``min_history_months_to_end`` months of history unless the loss is certain (``m + z_c se < 0``
at ``certain_loss_confidence``) or, with ``end_stake_overrides_min_history`` (policy 2024.7),
the stake pays for the risk.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection

import numpy as np
import polars as pl

from model import reason_text as rt
from model.budget import budget_candidates, candidate_mask, fund_offers
from model.decision_inputs import (
    ACCEPT_PREFIX,
    NULL_SEGMENT,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SAVING_PREFIX,
    UNKNOWN_SEGMENT,
    UPLIFT_PREFIX,
    DecisionInputError,
    Inputs,
    inputs_of,
    problem_message,
    segment_codes,
    structure_problem,
    to_customers,
    value_problems,
)
from model.kernel import ACTIONS, COMPENSATE, NO_TIER, decide_arrays
from model.policy import Policy
from model.reasons import reason_series

__all__ = [
    "ACCEPT_PREFIX",
    "ACTIONS",
    "DECISION_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SAVING_PREFIX",
    "UPLIFT_PREFIX",
    "DecisionInputError",
    "allocate_budget",
    "budget_candidates",
    "decide",
    "ev_columns",
    "fund_offers",
    "withhold_offers",
]

logger = logging.getLogger(__name__)

# The chosen offer's terms, as decide() writes them (after offer_kind).
OFFER_TERM_COLUMNS: tuple[str, ...] = (
    "offer_cost",
    "offer_acceptance",
    "offer_expected_cost",
    "offer_churn_reduction",
    "churn_after_offer",
    "offer_complaint_saving",
)
# Columns decide() appends (plus one ev_offer_<kind> per catalogue offer, after ev_best_offer).
DECISION_COLUMNS: tuple[str, ...] = (
    "action",
    "ev_retain",
    "ev_best_offer",
    "ev_end",
    "offer_kind",
    *OFFER_TERM_COLUMNS,
    "exit_cost",
    "margin_upper",
    "end_allowed",
    "approval_tier",
    "blocked_reason",
    "reasons",
    "policy_version",
    "horizon_months",
)
# The columns a budget decision changes (values and offers do not depend on funding).
BUDGET_COLUMNS: tuple[str, ...] = ("action", "approval_tier", "blocked_reason", "reasons")


def ev_columns(policy: Policy) -> tuple[str, ...]:
    """Names of the per-offer expected-value columns, ``ev_offer_<kind>``, in catalogue order."""
    return tuple(f"ev_offer_{kind}" for kind in policy.offer_kinds)


def output_columns(policy: Policy) -> list[str]:
    """:data:`DECISION_COLUMNS` with the ``ev_offer_<kind>`` columns after ``ev_best_offer``."""
    columns = list(DECISION_COLUMNS)
    at = columns.index("ev_best_offer") + 1
    return columns[:at] + list(ev_columns(policy)) + columns[at:]


def decide(
    customers: pl.DataFrame | pl.LazyFrame, policy: Policy, *, language: str = "en"
) -> pl.DataFrame:
    """Recommend retain / compensate / end for every customer (math: :mod:`model.kernel`).

    Args:
        customers: One row per customer with :data:`REQUIRED_COLUMNS`, optionally
            :data:`OPTIONAL_COLUMNS` and ``uplift_<kind>`` (absolute reduction of the horizon
            churn probability if the offer is accepted) / ``accept_<kind>`` (acceptance
            probability) / ``complaint_saving_<kind>`` (complaint cost saved per month if
            accepted) per offer kind; nulls there fall back to the policy priors. Other
            columns are passed through. Not modified.
        policy: The retention policy.
        language: Language of ``reasons`` and ``blocked_reason`` (see :mod:`model.reason_text`).

    Returns:
        The input columns followed by :data:`DECISION_COLUMNS` (with ``ev_offer_<kind>`` per
        catalogue offer after ``ev_best_offer``). The ``offer_*`` columns describe the best
        offer considered for every customer; it is made only when ``action == "compensate"``.
        ``reasons`` is a list of plain-language strings.

    Raises:
        DecisionInputError: On missing columns, non-numeric columns, nulls in required columns,
            NaN or infinite values, out-of-range values or unknown segments / offer kinds.
    """
    book = rt.phrasebook(language)
    frame = customers.collect() if isinstance(customers, pl.LazyFrame) else customers
    result = _decide_frame(frame, policy, book, funded=None)
    if logger.isEnabledFor(logging.INFO):
        counts = np.bincount(_action_codes(result), minlength=len(ACTIONS))
        logger.info(
            "decided %d customers with policy %s: %s",
            result.height,
            policy.version,
            {action: int(count) for action, count in zip(ACTIONS, counts, strict=True) if count},
        )
    return result


def withhold_offers(
    decisions: pl.DataFrame,
    unfunded: Collection[object] | pl.Series,
    policy: Policy,
    *,
    language: str = "en",
) -> pl.DataFrame:
    """Decide a decided chunk again with the given customers' offers left unfunded.

    Budget step 3 (:mod:`model.budget`). A budget candidate (see
    :func:`model.budget.budget_candidates`) whose id is in ``unfunded`` falls back to its best
    non-offer action (retain, or end where end is allowed and beats retain);
    ``blocked_reason`` and ``reasons`` say the budget was spent and the approval tier is
    recomputed. A candidate not in ``unfunded`` that an earlier budget held back gets its offer
    again. Other rows and the value columns are unchanged: funding changes no expected value.

    Args:
        decisions: Output of :func:`decide` or :func:`model.recommend.recommend` for the
            chunk. Not modified.
        unfunded: Customer ids whose offers are not funded (ids of other chunks are ignored).
        policy: The policy ``decisions`` were made with (its version must match).
        language: Language of the recomputed reasons.

    Returns:
        ``decisions`` with :data:`BUDGET_COLUMNS` recomputed where funding changed; same rows,
        same order, same columns (``decisions`` itself when nothing changes).

    Raises:
        ValueError: On a policy version that differs from the one in ``decisions``.
        DecisionInputError: When ``decisions`` lacks the input or decision columns.
    """
    book = rt.phrasebook(language)
    _check_decided(decisions, policy)
    candidate, _ = candidate_mask(decisions)
    ids = unfunded if isinstance(unfunded, pl.Series) else pl.Series(list(unfunded))
    if ids.dtype == pl.Null or ids.len() == 0:
        withheld = np.zeros(decisions.height, dtype=bool)
    else:
        in_set = decisions["customer_id"].is_in(
            ids.cast(decisions.schema["customer_id"], strict=False).implode()
        )
        withheld = candidate & in_set.fill_null(False).to_numpy()
    offered = _action_codes(decisions) == COMPENSATE
    # withheld now but offered so far, or a candidate held back so far that is funded now
    changed = (withheld & offered) | (candidate & ~withheld & ~offered)
    if not changed.any():
        return decisions
    rows = np.flatnonzero(changed)
    outputs = set(output_columns(policy))
    inputs = [c for c in decisions.columns if c not in outputs]
    redecided = _decide_frame(decisions[rows].select(inputs), policy, book, funded=~withheld[rows])
    return replace_at_rows(decisions, rows, redecided.select(BUDGET_COLUMNS))


def replace_at_rows(frame: pl.DataFrame, rows: np.ndarray, patch: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``patch``'s columns replaced at positions ``rows`` (in that order).

    The other rows and columns, the column order and the row order stay as they were.
    """
    changes = patch.rename({c: f"{c}_new" for c in patch.columns}).with_columns(
        _row=pl.Series(rows, dtype=pl.Int64), _patched=pl.lit(True)
    )
    merged = frame.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    merged = merged.join(changes, on="_row", how="left", maintain_order="left")
    return merged.select(
        pl.when(pl.col("_patched")).then(pl.col(f"{c}_new")).otherwise(pl.col(c)).alias(c)
        if c in patch.columns
        else pl.col(c)
        for c in frame.columns
    )


def allocate_budget(
    decisions: pl.DataFrame, budget: float | None, policy: Policy, *, language: str = "en"
) -> pl.DataFrame:
    """Spend a portfolio offer budget where an offer adds the most value per unit of cost.

    The three budget steps of :mod:`model.budget` for one frame:
    ``withhold_offers(decisions, unfunded ids of fund_offers(budget_candidates(decisions),
    budget), policy)``. Candidates are the customers whose best action, with unlimited budget,
    is their best offer; offers are funded first-fit in decreasing ``gain / (a_o c_o)``
    (zero-cost offers first; ties by ``customer_id``) and the sum of funded expected costs
    never exceeds ``budget``. Customers left unfunded get their best non-offer action,
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
        ValueError: On a negative or non-finite budget, a policy version that differs from the
            one in ``decisions``, or a customer id that appears twice among the candidates.
        DecisionInputError: When ``decisions`` lacks the decision columns.
    """
    if budget is None:
        return decisions
    if isinstance(budget, bool) or not math.isfinite(budget) or budget < 0:
        raise ValueError(f"offer budget must be a finite number >= 0, got {budget!r}")
    _check_decided(decisions, policy)
    funding = fund_offers(budget_candidates(decisions), float(budget))
    unfunded = funding.filter(~pl.col("funded"))["customer_id"]
    return withhold_offers(decisions, unfunded, policy, language=language)


# --- frames to arrays and back -----------------------------------------------------------------


def _check_decided(decisions: pl.DataFrame, policy: Policy) -> None:
    missing = [c for c in (*REQUIRED_COLUMNS, *output_columns(policy)) if c not in decisions]
    if missing:
        raise DecisionInputError(
            f"allocate_budget needs the output of decide(); missing column(s): {missing}"
        )
    if "explored" in decisions.columns and decisions["explored"].any():
        raise ValueError(
            "these recommendations already include the policy's experiments (explored): fund "
            "offers before exploring -- recommend(..., explore=False), then the budget, then "
            "model.exploration.explore with the allowance the budget leaves"
        )
    versions = decisions["policy_version"].unique().to_list()
    if decisions.height and versions != [policy.version]:
        raise ValueError(
            f"decisions were made with policy version(s) {versions}, not {policy.version!r}"
        )


def _action_codes(decisions: pl.DataFrame) -> np.ndarray:
    codes = {action: code for code, action in enumerate(ACTIONS)}
    return (
        decisions["action"]
        .replace_strict(codes, default=-1, return_dtype=pl.Int8)
        .fill_null(-1)
        .to_numpy()
        .clip(0)
    )


def _validate(frame: pl.DataFrame, policy: Policy) -> Inputs:
    """Structure and dtypes of the frame (the value rules are checked on the arrays)."""
    problem = structure_problem(
        frame.columns, (*DECISION_COLUMNS, *ev_columns(policy)), "scoring frame", "column"
    )
    if problem:
        raise DecisionInputError(problem)
    inputs = inputs_of(frame.columns)
    given = {*inputs.uplift_kinds, *inputs.accept_kinds, *inputs.saving_kinds}
    ignored = sorted(given - set(policy.offer_kinds))
    if ignored:
        logger.debug("offer kinds %s are not in policy %s: ignored", ignored, policy.version)
    # an all-null column has dtype Null; it is numeric enough (nulls are checked later)
    schema = frame.schema
    not_numeric = [
        c for c in inputs.numeric if not (schema[c].is_numeric() or schema[c] == pl.Null)
    ]
    if not_numeric:
        raise DecisionInputError(
            "scoring frame: column(s) must be numeric: "
            + ", ".join(f"{c} ({schema[c]})" for c in not_numeric)
        )
    segment = schema["segment"]
    if not (segment in (pl.String, pl.Null) or isinstance(segment, pl.Categorical | pl.Enum)):
        raise DecisionInputError(f"scoring frame: column segment must be text, got {segment}")
    return inputs


def _decide_frame(
    frame: pl.DataFrame, policy: Policy, book: rt.Phrasebook, funded: np.ndarray | None
) -> pl.DataFrame:
    inputs = _validate(frame, policy)
    numeric = inputs.numeric
    values = np.asarray(
        frame.select(pl.col(c).cast(pl.Float64) for c in numeric).to_numpy(), dtype=np.float64
    ).reshape(frame.height, len(numeric))
    nulls = np.asarray(
        frame.select(pl.col(c).is_null() for c in numeric).to_numpy(), dtype=bool
    ).reshape(frame.height, len(numeric))
    segment_text = pl.col("segment").cast(pl.String)
    segment = (
        frame.select(
            pl.when(segment_text.is_null())
            .then(pl.lit(NULL_SEGMENT, dtype=pl.Int32))
            .otherwise(
                segment_text.replace_strict(
                    segment_codes(policy.segments), default=UNKNOWN_SEGMENT, return_dtype=pl.Int32
                )
            )
        )
        .to_series()
        .to_numpy()
    )
    id_null = frame["customer_id"].is_null().to_numpy()
    problems = value_problems(values, nulls, inputs, segment, id_null, policy)
    if problems:
        examples = []
        for problem in problems:
            bad = frame[problem.rows[:3]]
            examples.append(
                ", ".join(
                    f"{cid}={value!r}"
                    for cid, value in zip(bad["customer_id"], bad[problem.column], strict=True)
                )
            )
        raise DecisionInputError(problem_message("scoring frame", problems, examples))

    customers = to_customers(
        lambda j: values[:, j], np.full(frame.height, np.nan), inputs, segment, policy
    )
    d = decide_arrays(customers, policy, True if funded is None else funded)
    reasons, blocked = reason_series(d, customers, policy, book, frame.height)
    roles = [tier.role for tier in policy.authority]
    offers = {f"ev_offer_{kind}": d.ev_offers[j] for j, kind in enumerate(policy.offer_kinds)}
    columns = {
        "action": _label(ACTIONS, d.action),
        "ev_retain": d.ev_retain,
        "ev_best_offer": d.ev_best_offer,
        **offers,
        "ev_end": d.ev_end,
        "offer_kind": _label(policy.offer_kinds, d.best_offer),
        "offer_cost": d.offer_cost,
        "offer_acceptance": d.offer_acceptance,
        "offer_expected_cost": d.offer_expected_cost,
        "offer_churn_reduction": d.offer_churn_reduction,
        "churn_after_offer": d.churn_after_offer,
        "offer_complaint_saving": d.offer_complaint_saving,
        "exit_cost": d.exit_cost,
        "margin_upper": pl.Series(d.margin_upper, dtype=pl.Float64, nan_to_null=True),
        "end_allowed": d.end_allowed,
        "approval_tier": _label((*roles, None), np.where(d.tier == NO_TIER, len(roles), d.tier)),
        "blocked_reason": blocked,
        "reasons": reasons,
    }
    series = [
        value.alias(name)
        if isinstance(value, pl.Series)
        else pl.Series(name, np.broadcast_to(value, frame.height))
        for name, value in columns.items()
    ]
    return frame.with_columns(
        *series,
        policy_version=pl.lit(policy.version, dtype=pl.String),
        horizon_months=pl.lit(policy.horizon_months, dtype=pl.Int64),
    )


def _label(names: tuple[str | None, ...], index: np.ndarray) -> pl.Series:
    return pl.Series(list(names), dtype=pl.String).gather(np.asarray(index, dtype=np.int64))
