"""What the decision kernel reads, the rules its inputs must keep, and the arrays it gets.

Both entry points -- :func:`model.decide.decide` for frames and
:func:`model.decide_rows.decide_records` for records -- check their table's structure in their
own idiom (column dtypes, record value types), turn the numeric inputs into one float matrix
(NaN for null) and then share everything else here: the value rules (:func:`value_problems`)
and the conversion into :class:`model.kernel.Customers` (:func:`to_customers`), so a rule or a
default can only be written once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from features.contract import OFFER_KINDS
from model.kernel import Customers, Value, per_policy
from model.policy import Policy

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
SAVING_PREFIX = "complaint_saving_"
OFFER_PREFIXES: tuple[str, ...] = (ACCEPT_PREFIX, UPLIFT_PREFIX, SAVING_PREFIX)
# Required inputs that may be null: an unknown margin uncertainty blocks "end".
NULLABLE_REQUIRED = frozenset({"monthly_margin_se"})
NON_NEGATIVE: tuple[str, ...] = (
    "months_of_history",
    "monthly_margin_se",
    "monthly_revenue",
    "monthly_complaint_cost",
)
# Segment codes for values outside the policy's segments.
UNKNOWN_SEGMENT, NULL_SEGMENT = -1, -2


def months_in_window(tenure_days: np.ndarray) -> np.ndarray:
    """The months of the trailing 12-month window a customer existed: tenure in months, 1 to 12.

    Trailing 12-month sums divided by this are per-month figures (monthly revenue, monthly
    complaint cost). Computed in numpy, elementwise: see
    :func:`model.recommend._with_months`.
    """
    months = np.asarray(tenure_days, dtype=np.float64) * 12 / 365
    return np.clip(months, 1.0, 12.0)


def monthly_complaint_cost(tenure_days: np.ndarray, cost_to_serve_12m: np.ndarray) -> np.ndarray:
    """``monthly_complaint_cost`` of the decision inputs: trailing 12-month cost to serve per
    month the customer existed in that window."""
    return np.asarray(cost_to_serve_12m, dtype=np.float64) / months_in_window(tenure_days)


class DecisionInputError(ValueError):
    """The scoring inputs cannot be decided on: the message names the column, the rule, the
    number of rows that break it and example customer ids."""


@dataclass(frozen=True)
class Inputs:
    """Which inputs a table carries (columns of a frame, keys of records).

    Attributes:
        optional: The optional inputs present, in :data:`OPTIONAL_COLUMNS` order.
        accept_kinds: Offer kinds with an ``accept_<kind>`` input, sorted.
        uplift_kinds: Offer kinds with an ``uplift_<kind>`` input, sorted.
        saving_kinds: Offer kinds with a ``complaint_saving_<kind>`` input, sorted.
    """

    optional: tuple[str, ...]
    accept_kinds: tuple[str, ...]
    uplift_kinds: tuple[str, ...]
    saving_kinds: tuple[str, ...] = ()

    @functools.cached_property
    def numeric(self) -> tuple[str, ...]:
        """Every numeric input, in the order the rules report them."""
        return (
            *REQUIRED_COLUMNS[2:],
            *sorted(self.optional),
            *(f"{UPLIFT_PREFIX}{kind}" for kind in self.uplift_kinds),
            *(f"{ACCEPT_PREFIX}{kind}" for kind in self.accept_kinds),
            *(f"{SAVING_PREFIX}{kind}" for kind in self.saving_kinds),
        )


def inputs_of(names: Iterable[str]) -> Inputs:
    """The inputs named by a frame's columns or the union of records' keys."""
    return _inputs_of(frozenset(names))


@functools.lru_cache(maxsize=64)
def _inputs_of(names: frozenset[str]) -> Inputs:
    # cached: the API asks this for the same keys on every request (decision and exploration)

    def kinds(prefix: str) -> tuple[str, ...]:
        return tuple(sorted(c.removeprefix(prefix) for c in names if c.startswith(prefix)))

    return Inputs(
        optional=tuple(c for c in OPTIONAL_COLUMNS if c in names),
        accept_kinds=kinds(ACCEPT_PREFIX),
        uplift_kinds=kinds(UPLIFT_PREFIX),
        saving_kinds=kinds(SAVING_PREFIX),
    )


def structure_problem(
    names: Sequence[str], reserved: Iterable[str], table: str, noun: str
) -> str | None:
    """The first structural problem of a table's inputs, as a message, or None.

    Args:
        names: Column names (frames) or the union of keys (records), in order.
        reserved: Output names an input must not use.
        table: ``"scoring frame"`` or ``"scoring records"``.
        noun: ``"column"`` or ``"key"``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        return f"{table}: missing required {noun}(s) {missing}; {noun}s present: {list(names)}"
    prefixed = [c for c in names if c.startswith(OFFER_PREFIXES)]
    kinds = {c: _kind_of(c) for c in prefixed}
    unknown = [c for c in prefixed if kinds[c] not in OFFER_KINDS]
    if unknown:
        return (
            f"{table}: {noun}(s) {unknown} name unknown offer kind(s) "
            f"{sorted({kinds[c] for c in unknown})}; offer kinds: {', '.join(OFFER_KINDS)}"
        )
    reserved = set(reserved)
    clashes = [c for c in names if c in reserved or c.startswith("_")]
    if clashes:
        return f"{table}: {noun}(s) {clashes} clash with decision output or private names"
    return None


def _kind_of(column: str) -> str:
    """The offer kind an ``accept_`` / ``uplift_`` / ``complaint_saving_`` input names."""
    for prefix in OFFER_PREFIXES:
        if column.startswith(prefix):
            return column.removeprefix(prefix)
    raise ValueError(f"{column!r} is not an offer input")


def segment_codes(segments: Sequence[str]) -> dict[str, int]:
    """Segment name -> code: its index in the policy's ``segments``."""
    return {segment: index for index, segment in enumerate(segments)}


@dataclass(frozen=True)
class Problem:
    """One broken rule: the column, the rule in words, and the rows that break it."""

    column: str
    rule: str
    rows: np.ndarray


def value_problems(
    values: np.ndarray,
    nulls: np.ndarray,
    inputs: Inputs,
    segment: np.ndarray,
    id_null: np.ndarray,
    policy: Policy,
) -> list[Problem]:
    """Every value rule the inputs break, in a fixed order.

    Args:
        values: ``(n, len(inputs.numeric))`` float matrix of the numeric inputs (NaN for null).
        nulls: The same shape: True where the input was null (not NaN).
        inputs: Which inputs the table carries.
        segment: Segment codes (:func:`segment_codes`; :data:`UNKNOWN_SEGMENT`,
            :data:`NULL_SEGMENT`).
        id_null: True where ``customer_id`` is null.
        policy: The policy (its segments).

    Returns:
        The problems, empty when every rule holds.
    """
    columns = inputs.numeric
    rule = rules(inputs)
    low, high = np.array(rule.low), np.array(rule.high)
    required = np.array(rule.null_breaks, dtype=bool)
    with np.errstate(invalid="ignore"):
        nan = np.isnan(values) & ~nulls
        infinite = np.isinf(values)
        out_of_range = (values < low) | (values > high)
    null_required = nulls & required
    segment_bad = segment < 0
    if not (
        nan.any()
        or infinite.any()
        or out_of_range.any()
        or null_required.any()
        or segment_bad.any()
        or id_null.any()
    ):
        return []
    problems: list[Problem] = []

    def add(column: str, rule: str, bad: np.ndarray) -> None:
        if bad.any():
            problems.append(Problem(column, rule, np.flatnonzero(bad)))

    add("customer_id", "must not be null", id_null)
    add("segment", "must not be null", segment == NULL_SEGMENT)
    index = {column: j for j, column in enumerate(columns)}
    for column in REQUIRED_COLUMNS[2:]:
        if column not in NULLABLE_REQUIRED:
            add(column, "must not be null", null_required[:, index[column]])
    for j, column in enumerate(columns):
        add(column, "must not be NaN", nan[:, j])
    for j, column in enumerate(columns):
        add(column, "must be finite", infinite[:, j])
    for j, column in enumerate(columns):
        kind = _range_kind(column)
        text = _RANGE_RULES.get(kind) if kind is not None else None
        if text is not None:
            add(column, text, out_of_range[:, j])
    add(
        "segment",
        f"must be one of the policy's segments ({', '.join(policy.segments)})",
        segment == UNKNOWN_SEGMENT,
    )
    return problems


def to_customers(
    column: Callable[[int], Value], unknown: Value, inputs: Inputs, segment: Value, policy: Policy
) -> Customers:
    """The kernel's inputs, for many customers (arrays) or one (floats).

    Optional inputs a table does not carry read as null; so do ``offers_made_12m`` and
    ``offers_declined_12m`` unless the table carries both (the "declined d of m" reason needs
    the pair).

    Args:
        column: The validated value of ``inputs.numeric[j]`` (NaN for null): a matrix column
            (frames) or one record's float (records).
        unknown: The value of an input the table does not carry (NaN, in the same form).
        inputs: Which inputs the table carries.
        segment: Segment codes (:func:`segment_codes`).
        policy: The policy (its offer catalogue).
    """
    scalars, acceptance, uplift, gain = per_policy(
        policy, ("columns", inputs), lambda: _customer_columns(inputs, policy)
    )
    (p, margin, se, revenue, cost, months, receivables, extra, overdue, made, declined) = [
        unknown if j is None else column(j) for j in scalars
    ]
    return Customers(
        p_churn=p,
        margin=margin,
        margin_se=se,
        revenue=revenue,
        complaint_cost=cost,
        months_of_history=months,
        segment=segment,
        receivables_open=receivables,
        exit_cost_extra=extra,
        receivables_overdue=overdue,
        offers_made=made,
        offers_declined=declined,
        acceptance=[unknown if j is None else column(j) for j in acceptance],
        uplift=[unknown if j is None else column(j) for j in uplift],
        complaint_saving=[unknown if j is None else column(j) for j in gain],
    )


def _customer_columns(inputs: Inputs, policy: Policy) -> tuple[tuple[int | None, ...], ...]:
    """Where each kernel input is in ``inputs.numeric`` (None: not carried)."""
    index = {column: j for j, column in enumerate(inputs.numeric)}
    pair = "offers_made_12m" in index and "offers_declined_12m" in index
    names = (
        "p_churn",
        "monthly_margin",
        "monthly_margin_se",
        "monthly_revenue",
        "monthly_complaint_cost",
        "months_of_history",
        "receivables_open",
        "exit_cost_extra",
        "receivables_overdue",
    )
    scalars = tuple(index.get(name) for name in names) + (
        (index["offers_made_12m"], index["offers_declined_12m"]) if pair else (None, None)
    )
    return (
        scalars,
        tuple(index.get(f"{ACCEPT_PREFIX}{kind}") for kind in policy.offer_kinds),
        tuple(index.get(f"{UPLIFT_PREFIX}{kind}") for kind in policy.offer_kinds),
        tuple(index.get(f"{SAVING_PREFIX}{kind}") for kind in policy.offer_kinds),
    )


@dataclass(frozen=True)
class Rules:
    """The value rules of each numeric input, in ``inputs.numeric`` order.

    Attributes:
        columns: The numeric inputs.
        low: Smallest allowed value.
        high: Largest allowed value.
        null_breaks: Whether a null breaks a rule (required inputs, but for the margin's se).
    """

    columns: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    null_breaks: tuple[bool, ...]

    @functools.cached_property
    def checks(self) -> tuple[tuple[str, float, float, bool], ...]:
        """Per numeric input: (column, low, high, null_breaks)."""
        return tuple(zip(self.columns, self.low, self.high, self.null_breaks, strict=True))


@functools.cache
def rules(inputs: Inputs) -> Rules:
    """The value rules for the inputs a table carries (see :func:`value_problems`)."""
    limits = [_LIMITS[_range_kind(column)] for column in inputs.numeric]
    return Rules(
        columns=inputs.numeric,
        low=tuple(low for low, _ in limits),
        high=tuple(high for _, high in limits),
        null_breaks=tuple(
            c in REQUIRED_COLUMNS and c not in NULLABLE_REQUIRED for c in inputs.numeric
        ),
    )


def problem_message(table: str, problems: Sequence[Problem], examples: Sequence[str]) -> str:
    """One message for all problems: ``examples[i]`` lists problem i's example rows."""
    return f"{table}: " + "; ".join(
        f"{p.column} {p.rule}: {p.rows.size} row(s), e.g. customer_id {example}"
        for p, example in zip(problems, examples, strict=True)
    )


_RANGE_RULES = {
    "probability": "must be within [0, 1]",
    "effect": "must be within [-1, 1]",
    "non_negative": "must be >= 0",
}


def _range_kind(column: str) -> str | None:
    if column == "p_churn" or column.startswith(ACCEPT_PREFIX):
        return "probability"
    if column.startswith(UPLIFT_PREFIX):
        return "effect"
    if column in NON_NEGATIVE or column in OPTIONAL_COLUMNS:
        return "non_negative"
    return None


_LIMITS = {
    "probability": (0.0, 1.0),
    "effect": (-1.0, 1.0),
    "non_negative": (0.0, np.inf),
    None: (-np.inf, np.inf),
}
