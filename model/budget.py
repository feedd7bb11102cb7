"""The portfolio offer budget, in steps a chunked batch can call (math: :mod:`model.kernel`).

A nightly batch decides customers in chunks, but a budget is spent across all of them, so the
allocation is split into three steps; :func:`model.decide.allocate_budget` composes them for one
frame:

1. :func:`budget_candidates` -- per decided chunk, the customers whose best action with
   unlimited budget is their offer: ``customer_id``, ``gain`` (``V_o`` minus the best non-offer
   action allowed) and ``expected_cost`` (``a_o * c_o``). Small: keep them from every chunk.
2. :func:`fund_offers` -- a pure function of all candidates and the budget: which are funded,
   first-fit in decreasing gain per unit of expected cost (ties by ``customer_id``), never
   exceeding the budget. It depends only on the set of candidates, not on how they were
   chunked or ordered.
3. :func:`model.decide.withhold_offers` -- per decided chunk, decide the unfunded customers
   again: they fall back to their best non-offer action and say that the budget was spent.

Example (``chunks`` decided by :func:`model.decide.decide` or :func:`model.recommend.recommend`)::

    candidates = pl.concat([budget_candidates(chunk) for chunk in chunks])
    funding = fund_offers(candidates, budget)
    unfunded = funding.filter(~pl.col("funded"))["customer_id"]
    final = [withhold_offers(chunk, unfunded, policy) for chunk in chunks]
"""

from __future__ import annotations

import logging
import math

import numpy as np
import polars as pl

from model import kernel
from model.decision_inputs import DecisionInputError

logger = logging.getLogger(__name__)

CANDIDATE_COLUMNS: tuple[str, ...] = ("customer_id", "gain", "expected_cost")
_DECISION_NEEDS = (
    "customer_id",
    "ev_retain",
    "ev_best_offer",
    "ev_end",
    "end_allowed",
    "offer_expected_cost",
)


def candidate_mask(decisions: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(candidate, gain)`` per row of decided customers (see :func:`budget_candidates`).

    Raises:
        DecisionInputError: When ``decisions`` lacks a decision column.
    """
    missing = [c for c in _DECISION_NEEDS if c not in decisions.columns]
    if missing:
        raise DecisionInputError(
            f"budget: needs decided customers (the output of decide()); missing column(s): "
            f"{missing}"
        )
    return kernel.offer_gain(
        decisions["ev_retain"].cast(pl.Float64).to_numpy(),
        decisions["ev_best_offer"].cast(pl.Float64).to_numpy(),
        decisions["ev_end"].cast(pl.Float64).to_numpy(),
        decisions["end_allowed"].cast(pl.Boolean).to_numpy(),
    )


def budget_candidates(decisions: pl.DataFrame) -> pl.DataFrame:
    """The customers of a decided chunk who would take an offer if the budget allowed it.

    Args:
        decisions: Output of :func:`model.decide.decide` (or of
            :func:`model.recommend.recommend`), possibly already budgeted. Not modified.

    Returns:
        One row per candidate, in the chunk's order: ``customer_id``, ``gain`` (``V_o`` minus
        the best non-offer action allowed, > 0) and ``expected_cost`` (``a_o * c_o``).

    Raises:
        DecisionInputError: When ``decisions`` lacks a decision column.
    """
    candidate, gain = candidate_mask(decisions)
    return pl.DataFrame(
        {
            "customer_id": decisions["customer_id"].filter(pl.Series(candidate)),
            "gain": gain[candidate],
            "expected_cost": decisions["offer_expected_cost"]
            .cast(pl.Float64)
            .to_numpy()[candidate],
        }
    )


def fund_offers(candidates: pl.DataFrame, budget: float) -> pl.DataFrame:
    """Fund offers first-fit where they add the most value per unit of expected cost.

    Candidates are ranked by ``gain / expected_cost`` (zero-cost offers first), ties by
    ``customer_id``; each offer that still fits in what is left of the budget is funded, one
    that does not is skipped. The sums are exact (:func:`model.kernel.fund_first_fit`), so the
    funded expected costs never add up to more than ``budget``, and the result depends only on
    the set of candidates.

    Args:
        candidates: :func:`budget_candidates` of every chunk, concatenated (any order).
        budget: Total expected offer cost allowed.

    Returns:
        The candidates in funding order with ``ratio`` (gain per unit of expected cost) and
        ``funded`` (bool).

    Raises:
        ValueError: On a negative or non-finite budget, a duplicated ``customer_id``, or a
            gain or expected cost that is not a finite number (expected cost >= 0).
    """
    if isinstance(budget, bool) or not math.isfinite(budget) or budget < 0:
        raise ValueError(f"offer budget must be a finite number >= 0, got {budget!r}")
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise ValueError(f"budget candidates: missing column(s) {missing}")
    ids = candidates["customer_id"]
    if ids.is_duplicated().any():
        examples = ids.filter(ids.is_duplicated()).unique(maintain_order=True).head(3).to_list()
        raise ValueError(f"budget candidates: customer_id appears more than once, e.g. {examples}")
    gain = candidates["gain"].cast(pl.Float64).to_numpy()
    cost = candidates["expected_cost"].cast(pl.Float64).to_numpy()
    if not (np.isfinite(gain).all() and np.isfinite(cost).all() and (cost >= 0).all()):
        raise ValueError(
            "budget candidates: gain and expected_cost must be finite numbers, expected_cost >= 0"
        )
    with np.errstate(divide="ignore", over="ignore"):
        ratio = np.where(cost > 0, gain / cost, np.inf)
    ranked = (
        candidates.select(CANDIDATE_COLUMNS)
        .with_columns(ratio=pl.Series(ratio, dtype=pl.Float64))
        .sort(["ratio", "customer_id"], descending=[True, False])
    )
    funded = kernel.fund_first_fit(ranked["expected_cost"].to_list(), budget)
    result = ranked.with_columns(funded=pl.Series(funded, dtype=pl.Boolean))
    logger.info(
        "offer budget %.2f: %d of %d offers funded (expected cost %.2f)",
        budget,
        int(funded.sum()),
        funded.size,
        math.fsum(ranked["expected_cost"].filter(pl.Series(funded)).to_list()),
    )
    return result
