"""Decisions for records (one mapping per customer): the API's online path.

:func:`decide_records` makes the decisions of :func:`model.decide.decide` for a handful of
customers given as records, without building a polars frame (planning a polars query costs
milliseconds; a manager's single-customer request has about one). It checks the records'
structure and value types here (a quick pass with the shared rules' bounds; anything doubtful
goes to the shared, exact check), then shares everything else with the batch path: the value
rules and the conversion to the kernel's inputs (:mod:`model.decision_inputs`), the decision
math (:func:`model.kernel.decide_arrays`, documented there) and the reasons
(:mod:`model.reasons`). The kernel runs on one customer's Python floats (fewer than
:data:`ARRAYS_FROM` records) or on numpy arrays, with the same bits either way, so both paths
give the same output to the bit (tested on random inputs and on the test world).

Portfolio budgets (:func:`model.decide.allocate_budget`) are a batch concern and are not
offered here: every offer counts as funded.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model import reason_text as rt
from model.decide import DECISION_COLUMNS, ev_columns
from model.decision_inputs import (
    NULL_SEGMENT,
    REQUIRED_COLUMNS,
    UNKNOWN_SEGMENT,
    DecisionInputError,
    Inputs,
    Problem,
    inputs_of,
    problem_message,
    rules,
    segment_codes,
    structure_problem,
    to_customers,
    value_problems,
)
from model.kernel import ACTIONS, ARRAYS, NO_TIER, SCALARS, Decisions, decide_arrays, per_policy
from model.policy import Policy
from model.reasons import reason_rows, reason_texts

Record = Mapping[str, Any]

logger = logging.getLogger(__name__)

_TABLE = "scoring records"
# From this many records on, the kernel runs once on numpy arrays; below, once per customer on
# Python floats, which costs less than numpy's per-call overhead on short arrays. Both give the
# same bits (tested), so the choice is only about speed.
ARRAYS_FROM = 8


def decide_records(
    records: Sequence[Record], policy: Policy, *, language: str = "en"
) -> list[dict[str, Any]]:
    """:func:`model.decide.decide` for records: the same decisions, row by row.

    Args:
        records: One mapping per customer with :data:`model.decide.REQUIRED_COLUMNS`,
            optionally :data:`model.decide.OPTIONAL_COLUMNS` and ``accept_<kind>`` /
            ``uplift_<kind>`` / ``complaint_saving_<kind>`` values (None falls back to the
            policy prior). An optional input counts as given when any record has it (as a
            frame column would be); records without it read as null. Not modified.
        policy: The retention policy.
        language: Language of ``reasons`` and ``blocked_reason``.

    Returns:
        Per record, in order, a new dict: the record's keys followed by the decision columns
        of :func:`model.decide.decide` (``reasons`` a list of strings).

    Raises:
        DecisionInputError: On missing keys, nulls in required values, non-numeric, NaN,
            infinite or out-of-range values or unknown segments / offer kinds (the message
            names the key, the rule, the number of records and example customer ids).
    """
    book = rt.phrasebook(language)
    if not records:
        return []
    inputs, rows, segments = _validated(records, policy)
    if len(records) < ARRAYS_FROM:
        decisions = [
            _decide_one(row, segment, inputs, policy, book)
            for row, segment in zip(rows, segments, strict=True)
        ]
    else:
        decisions = _decide_many(rows, segments, inputs, policy, book)
    decided = [{**record, **decision} for record, decision in zip(records, decisions, strict=True)]
    # DEBUG, not INFO as in the batch: this runs once per API request, which has its own
    # access log line; formatting and writing a second line cost a tenth of the request
    if logger.isEnabledFor(logging.DEBUG):
        actions = dict(Counter(row["action"] for row in decided))
        logger.debug(
            "decided %d customers with policy %s: %s", len(decided), policy.version, actions
        )
    return decided


def _decide_one(
    row: list[float], segment: int, inputs: Inputs, policy: Policy, book: rt.Phrasebook
) -> dict[str, Any]:
    """The decision columns for one validated customer (the kernel on Python floats)."""
    customers = to_customers(row.__getitem__, math.nan, inputs, segment, policy)
    d = decide_arrays(customers, policy, xp=SCALARS)
    reasons, blocked_reason = reason_texts(d, customers, policy, book)
    return _columns(d, policy, reasons, blocked_reason)


def _decide_many(
    rows: list[list[float]],
    segments: list[int],
    inputs: Inputs,
    policy: Policy,
    book: rt.Phrasebook,
) -> list[dict[str, Any]]:
    """The decision columns for validated customers (the kernel on numpy arrays)."""
    n = len(rows)
    values = np.array(rows, dtype=np.float64).reshape(n, len(inputs.numeric))
    customers = to_customers(
        lambda j: values[:, j], np.full(n, np.nan), inputs, np.array(segments), policy
    )
    d = decide_arrays(customers, policy, xp=ARRAYS)
    reasons, blocked = reason_rows(d, customers, policy, book, n)
    fields = {
        name: np.broadcast_to(value, n).tolist()
        for name, value in d._asdict().items()
        if name not in ("ev_offers", "reasons", "blocked")
    }
    offers = [np.broadcast_to(values, n).tolist() for values in d.ev_offers]
    return [
        _columns(
            Decisions(
                **{name: column[i] for name, column in fields.items()},
                ev_offers=[column[i] for column in offers],
                reasons={},
                blocked={},
            ),
            policy,
            reasons[i],
            blocked[i],
        )
        for i in range(n)
    ]


def _columns(
    d: Decisions, policy: Policy, reasons: list[str], blocked_reason: str | None
) -> dict[str, Any]:
    """One customer's decision columns, as :func:`model.decide.decide` names and orders them."""
    kinds = policy.offer_kinds
    return {
        "action": ACTIONS[d.action],
        "ev_retain": d.ev_retain,
        "ev_best_offer": d.ev_best_offer,
        **{f"ev_offer_{kind}": value for kind, value in zip(kinds, d.ev_offers, strict=True)},
        "ev_end": d.ev_end,
        "offer_kind": kinds[d.best_offer],
        "offer_cost": d.offer_cost,
        "offer_acceptance": d.offer_acceptance,
        "offer_expected_cost": d.offer_expected_cost,
        "offer_churn_reduction": d.offer_churn_reduction,
        "churn_after_offer": d.churn_after_offer,
        "offer_complaint_saving": d.offer_complaint_saving,
        "exit_cost": d.exit_cost,
        "margin_upper": None if math.isnan(d.margin_upper) else d.margin_upper,
        "end_allowed": d.end_allowed,
        "approval_tier": None if d.tier == NO_TIER else policy.authority[d.tier].role,
        "blocked_reason": blocked_reason,
        "reasons": reasons,
        "policy_version": policy.version,
        "horizon_months": policy.horizon_months,
    }


# --- records to arrays -------------------------------------------------------------------------

_NAN = float("nan")


def _validated(
    records: Sequence[Record], policy: Policy
) -> tuple[Inputs, list[list[float]], list[int]]:
    """The inputs present, each record's numeric inputs (NaN for null) and segment codes.

    Raises:
        DecisionInputError: Naming the key, the rule, the records and example customer ids.
    """
    keys = tuple(dict.fromkeys(key for record in records for key in record))
    missing = [c for c in REQUIRED_COLUMNS if any(c not in record for record in records)]
    if missing:
        raise DecisionInputError(
            f"{_TABLE}: missing required key(s) {missing}; keys present: {sorted(keys)}"
        )
    inputs = per_policy(policy, ("record keys", keys), lambda: _inputs(keys, policy))
    numeric = inputs.numeric
    checks = rules(inputs).checks
    codes = segment_codes(policy.segments)
    rows: list[list[float]] = []
    segments: list[int] = []
    not_numeric: dict[str, list[int]] = {}
    # A quick pass with the rules' bounds; any doubt goes to value_problems, which decides and
    # words the problems exactly as for frames.
    suspect = False
    for i, record in enumerate(records):
        get = record.get
        row: list[float] = []
        append = row.append
        for column, low, high, null_breaks in checks:
            value = get(column)
            kind = type(value)
            if kind is not float:
                if value is None:
                    suspect = suspect or null_breaks
                    append(_NAN)
                    continue
                if kind is bool or not isinstance(value, int | float):
                    not_numeric.setdefault(column, []).append(i)
                    append(_NAN)
                    continue
                try:
                    value = float(value)
                except OverflowError:
                    value = math.inf
            # value - value is NaN (truthy) for NaN and infinities, else 0.0
            if value - value or not low <= value <= high:  # type: ignore[operator]
                suspect = True
            append(value)  # type: ignore[arg-type]  # a float by now (checked above)
        rows.append(row)
        segment = record["segment"]
        code = (
            NULL_SEGMENT
            if segment is None
            else codes.get(segment, UNKNOWN_SEGMENT)
            if isinstance(segment, str)
            else UNKNOWN_SEGMENT
        )
        segments.append(code)
        suspect = suspect or code < 0 or record["customer_id"] is None
    if not_numeric:
        problems = [
            Problem(column, "must be numeric", np.array(bad)) for column, bad in not_numeric.items()
        ]
        _raise(records, problems)
    if suspect:
        values = np.array(rows, dtype=np.float64).reshape(len(records), len(numeric))
        nulls = np.array([[record.get(c) is None for c in numeric] for record in records])
        id_null = np.array([record["customer_id"] is None for record in records])
        nulls = nulls.reshape(values.shape)
        problems = value_problems(values, nulls, inputs, np.array(segments), id_null, policy)
        if problems:
            _raise(records, problems)
    return inputs, rows, segments


def _inputs(keys: tuple[str, ...], policy: Policy) -> Inputs:
    problem = structure_problem(
        sorted(keys), (*DECISION_COLUMNS, *ev_columns(policy)), _TABLE, "key"
    )
    if problem:
        raise DecisionInputError(problem)
    return inputs_of(keys)


def _raise(records: Sequence[Record], problems: Sequence[Problem]) -> None:
    examples = [
        ", ".join(
            f"{records[i]['customer_id']}={records[i].get(p.column)!r}" for i in p.rows[:3].tolist()
        )
        for p in problems
    ]
    raise DecisionInputError(problem_message(_TABLE, problems, examples))
