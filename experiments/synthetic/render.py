"""Turn each simulated month into CRM event rows: orders, invoices, complaints and offers.

The dynamics (:mod:`experiments.synthetic.dynamics`) decide what happens and what it costs in
expectation; this module draws the details that never feed back into the dynamics (how many
orders and of what value, handling minutes and escalations, invoice disputes and payment dates,
complaint categories, channels and texts) from a separate random stream. Realised money in the
tables therefore matches the dynamics' expected money on average: order revenue has mean
``order_value`` (log-normal noise with mean 1), cost of goods mean ``cogs_ratio``, handling
minutes mean ``minutes * handling * e^(1/8)``, escalations mean ``esc * e_s``, and an invoice
is withheld with ``withhold_prob + 0.3 [disputed]``.
"""

from __future__ import annotations

import numpy as np

from experiments.synthetic.config import BASE_HANDLING_MINUTES
from experiments.synthetic.dynamics import (
    DISPUTE_WITHHELD,
    SEVERITY_ESCALATION,
    SLA_HOURS,
    MonthOutcome,
    Selection,
    fade_factor,
)
from experiments.synthetic.population import Population
from features.contract import CHANNELS, COMPLAINT_CATEGORIES

_CATEGORY = {name: c for c, name in enumerate(COMPLAINT_CATEGORIES)}
COMPANY_FAULT_CATEGORIES = np.array(
    [
        _CATEGORY[c]
        for c in ("billing_error", "product_defect", "outage", "delivery", "staff_conduct")
    ]
)
_MISUSE = np.array(
    [_CATEGORY[c] for c in ("usage_question", "custom_request", "product_defect", "price")]
)
_MISUSE_WEIGHTS = np.array([0.45, 0.35, 0.1, 0.1])
_CHANNEL_WEIGHTS = np.array([0.10, 0.05, 0.30, 0.20, 0.10, 0.15, 0.10])  # CHANNELS order
MAX_LATE_DAYS = 240  # an invoice unpaid this long after its due date is never paid


class Collector:
    """Accumulates per-month numpy arrays for one table, concatenated at the end."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.parts.setdefault(name, []).append(values)

    def get(self, name: str, dtype: type | np.dtype) -> np.ndarray:
        parts = self.parts.get(name)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def sequence_within(owner: np.ndarray) -> np.ndarray:
    """1-based running number of each row within its owner (rows already sorted by owner)."""
    if len(owner) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    run_lengths = np.diff(np.r_[starts, len(owner)])
    return np.arange(len(owner)) - np.repeat(starts, run_lengths) + 1


def render_orders(
    population: Population,
    out: MonthOutcome,
    customer: np.ndarray,
    month: int,
    month_start: int,
    rng: np.random.Generator,
    orders: Collector,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the month's orders; returns (owner, revenue - discount) per order."""
    rate = population.order_rate[customer] * fade_factor(population, customer, month)
    counts = rng.poisson(rate * out.repurchase * out.active_share)
    owner = np.repeat(customer, counts)
    o_lo, o_hi = np.repeat(out.lo, counts), np.repeat(out.hi, counts)
    day = month_start + o_lo + (rng.random(len(owner)) * (o_hi - o_lo)).astype(np.int64)
    value = population.order_value[owner]
    revenue = np.round(value * rng.lognormal(-0.08, 0.4, len(owner)), 2)
    cogs = np.round(
        revenue * population.cogs_ratio[owner] * rng.lognormal(-0.00125, 0.05, len(owner)), 2
    )
    discount = np.round(revenue * population.discount_rate[owner], 2)
    quantity = np.maximum(1, np.round(3 * revenue / value)).astype(np.int64)
    orders.add(
        customer=owner, day=day, revenue=revenue, cogs=cogs, discount=discount, quantity=quantity
    )
    return owner, revenue - discount


def render_invoices(
    population: Population,
    out: MonthOutcome,
    customer: np.ndarray,
    owner: np.ndarray,
    net: np.ndarray,
    month: int,
    next_month_start: int,
    export_day: int,
    rng: np.random.Generator,
    invoices: Collector,
) -> None:
    """One invoice per customer-month with orders, issued on the 1st of the next month."""
    if next_month_start >= export_day or len(owner) == 0:
        return
    billed_all = np.bincount(owner, weights=net, minlength=population.n)
    billed = billed_all[customer]
    invoiced = billed > 0
    if not invoiced.any():
        return
    c = customer[invoiced]
    invoice_day = np.full(len(c), next_month_start)
    due_day = invoice_day + 30
    disputed = rng.random(len(c)) < out.dispute_prob[invoiced]
    withheld = rng.random(len(c)) < out.withhold_prob[invoiced] + DISPUTE_WITHHELD * disputed
    slowness = 1.0 + 0.5 * np.clip(out.dissatisfaction[invoiced], 0, 3)
    delay = np.round(population.late_days[c] * slowness * rng.exponential(1.0, len(c)) - 5)
    delay = np.minimum(delay, MAX_LATE_DAYS).astype(np.int64)
    paid_day = np.maximum(due_day + delay, invoice_day + 1)
    paid_day = np.where(withheld | (paid_day >= export_day), -1, paid_day)
    invoices.add(
        customer=c,
        month=np.full(len(c), month),
        invoice_day=invoice_day,
        due_day=due_day,
        amount=np.round(billed[invoiced], 2),
        paid_day=paid_day,
        disputed=disputed,
        withheld=withheld,
    )


def render_complaints(
    population: Population,
    out: MonthOutcome,
    customer: np.ndarray,
    first_number: np.ndarray,
    month_start: int,
    rng: np.random.Generator,
    complaints: Collector,
) -> None:
    """One row per complaint of the month's cells (severity x company fault x slow)."""
    m = len(customer)
    # given the month's total, severity and (company fault, slow) are independent: pair the
    # severities with the cells at random within each customer
    by_severity = out.complaints.by_severity(m)
    owner_pos = np.repeat(np.arange(m), by_severity.sum(axis=1))
    k = len(owner_pos)
    if k == 0:
        return
    severity = np.repeat(np.tile(np.arange(3), m), by_severity.ravel())
    cell = np.repeat(np.tile(np.arange(4), m), out.complaints.by_cell(m).ravel())
    cell = cell[np.lexsort((rng.random(k), owner_pos))]
    is_fault, slow = np.divmod(cell, 2)
    is_fault, slow = is_fault.astype(bool), slow.astype(bool)
    owner = customer[owner_pos]
    misuse = population.training_fix[owner] > 0
    category = np.where(
        is_fault,
        COMPANY_FAULT_CATEGORIES[rng.integers(0, len(COMPANY_FAULT_CATEGORIES), k)],
        np.where(
            misuse,
            _MISUSE[rng.choice(len(_MISUSE), k, p=_MISUSE_WEIGHTS)],
            rng.integers(0, len(COMPLAINT_CATEGORIES), k),
        ),
    )
    hours = np.where(
        slow,
        SLA_HOURS + rng.lognormal(np.log(36.0), 0.6, k),
        np.minimum(rng.lognormal(np.log(4.0), 0.8, k), SLA_HOURS - 0.1),
    )
    c_lo, c_hi = out.lo[owner_pos], out.hi[owner_pos]
    opened_s = (month_start + c_lo) * 86_400 + (rng.random(k) * (c_hi - c_lo) * 86_400).astype(
        np.int64
    )
    resolved_s = opened_s + (hours * 3600).astype(np.int64)
    minutes = np.round(
        np.array(BASE_HANDLING_MINUTES)[severity]
        * population.handling[owner]
        * rng.lognormal(0, 0.5, k),
        1,
    )
    escalations = rng.poisson(population.escalation_rate[owner] * SEVERITY_ESCALATION[severity])
    anger = (
        -2.2 + 1.1 * out.dissatisfaction[owner_pos] + population.venting_bias[owner] + 0.8 * slow
    )
    vents = (rng.random(k) < 1 / (1 + np.exp(-anger))).astype(np.int64) * rng.integers(1, 3, k)
    number = first_number[owner_pos] + sequence_within(owner_pos)
    complaints.add(
        customer=owner,
        number=number,
        opened_s=opened_s,
        resolved_s=resolved_s,
        channel=rng.choice(len(CHANNELS), k, p=_CHANNEL_WEIGHTS),
        category=category,
        severity=severity,
        minutes=minutes,
        escalations=escalations,
        vents=vents,
    )


def render_offers(
    out: MonthOutcome,
    selection: Selection,
    customer: np.ndarray,
    month_start: int,
    rng: np.random.Generator,
    offers: Collector,
) -> None:
    """Offers made this month, and the selections held out (recorded, not contacted)."""
    made = out.contacted
    held = selection.held_kind >= 0
    rows = np.flatnonzero(made | held)
    if len(rows) == 0:
        return
    is_held = held[rows]
    offered_day = month_start + out.lo[rows] + rng.integers(0, 5, len(rows))
    responded_day = offered_day + 1 + rng.geometric(0.25, len(rows))
    offers.add(
        customer=customer[rows],
        kind=np.where(is_held, selection.held_kind[rows], selection.actions.kind[rows]),
        cost=np.where(is_held, 0.0, selection.actions.cost[rows]),
        offered_day=offered_day,
        responded_day=np.where(is_held, -1, responded_day),
        accepted=out.accepted[rows],
        targeted=selection.targeted[rows],
        holdout=is_held,
        complaint_number=np.where(selection.targeted[rows], selection.answers[rows], 0),
    )
