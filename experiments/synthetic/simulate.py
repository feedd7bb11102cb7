"""Simulate one chunk of customers month by month: the CRM tables plus the ground truth.

The model, per customer ``i`` and month ``t`` (all vectorised over the chunk):

* a latent **dissatisfaction** ``D[i,t]`` follows an AR(1) walk with shocks. Company-side fault
  episodes and complaints resolved beyond the 24 h SLA push it up; fast fixes of company faults
  and accepted remedies pull it down.
* complaint rates per severity are ``base_s * propensity_i * mix_s(archetype) * exp(a_s * D)``,
  so near-misses and minor complaints rise *before* churn (Heinrich's 1 : 29 : 300).
* the monthly churn hazard is ``h0_i * exp(beta * D) * contract * newness / fade``, capped; the
  truth also records the hazard *if* each offer kind were accepted at the start of the month
  (``exp(-beta * effect_ik)`` lower, ``effect_ik`` being the customer's own uplift, nil for some).
* orders are Poisson with a customer-specific rate (fading for silent decliners), invoices are
  monthly, disputed or withheld with archetype-specific chances; offers come after grievances
  (targeted) or in broad campaigns whose uptake is small (the Pentium replacement: 1-3 %).

The expected monthly net margin in the truth is revenue - cost of goods - discount - expected
complaint cost - expected bad debt, i.e. what the relationship earns if nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from experiments.synthetic.archetypes import ARCHETYPES
from experiments.synthetic.config import BASE_COMPLAINT_RATES, BASE_HANDLING_MINUTES, WorldConfig
from experiments.synthetic.text import LANGUAGES, complaint_texts
from features.contract import (
    CHANNELS,
    COMPLAINT_CATEGORIES,
    CONTRACT_TYPES,
    OFFER_KINDS,
    REGIONS,
    SEGMENTS,
    SEVERITIES,
    STAGES,
)

_EPOCH = np.datetime64("1970-01-01", "D")
_N_KINDS = len(OFFER_KINDS)
_KIND = {kind: k for k, kind in enumerate(OFFER_KINDS)}
_CATEGORY = {name: c for c, name in enumerate(COMPLAINT_CATEGORIES)}
_COMPANY_FAULT = np.array(
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
_CONTRACT_HAZARD = np.array([1.5, 0.8, 0.5])  # monthly, annual, two_year
_SEVERITY_DRIVE = np.array([1.4, 1.4, 0.8])  # how strongly dissatisfaction raises each severity
_SEVERITY_ESCALATION = np.array([0.05, 1.0, 3.0])
_SLA_HOURS = 24.0
_HAZARD_CAP = 0.6
# Share of last month's dissatisfaction that carries over (AR(1) coefficient); a remedy's
# relief therefore fades as DISSATISFACTION_PERSISTENCE ** months.
DISSATISFACTION_PERSISTENCE = 0.75

_FIRST_NAMES = (
    "Anna",
    "Ben",
    "Chen",
    "Dara",
    "Emil",
    "Fatima",
    "Goran",
    "Hana",
    "Ivo",
    "Jia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
)
_LAST_NAMES = (
    "Adler",
    "Brandt",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Huang",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Li",
    "Moreau",
    "Novak",
    "Okafor",
)
_NAME_PREFIX = (
    "North",
    "Blue",
    "Silver",
    "Bright",
    "Green",
    "Iron",
    "Red",
    "Summit",
    "Harbor",
    "Pine",
    "Delta",
    "Nova",
    "Atlas",
    "Cedar",
    "Vertex",
    "Orion",
)
_NAME_NOUN = (
    "Logistics",
    "Foods",
    "Dental",
    "Media",
    "Systems",
    "Retail",
    "Clinic",
    "Labs",
    "Motors",
    "Studio",
    "Builders",
    "Textiles",
    "Pharma",
    "Travel",
    "Energy",
    "Bakery",
)
_NAME_SUFFIX = ("Ltd", "GmbH", "Inc", "& Co", "AG", "SA", "LLC", "Group")


@dataclass
class ChunkTables:
    """One chunk's CRM tables and ground truth, as polars frames in contract dtypes."""

    customers: pl.DataFrame
    orders: pl.DataFrame
    payments: pl.DataFrame
    complaints: pl.DataFrame
    offers: pl.DataFrame
    truth_customers: pl.DataFrame
    truth_monthly: pl.DataFrame

    def crm_tables(self) -> dict[str, pl.DataFrame]:
        return {
            "customers": self.customers,
            "orders": self.orders,
            "payments": self.payments,
            "complaints": self.complaints,
            "offers": self.offers,
        }

    def truth_tables(self) -> dict[str, pl.DataFrame]:
        return {"truth_customers": self.truth_customers, "truth_monthly": self.truth_monthly}


def _arch_param(archetype_index: np.ndarray, field: str) -> np.ndarray:
    values = np.array([getattr(a, field) for a in ARCHETYPES], dtype=np.float64)
    return values[archetype_index]


def _choice_by_archetype(
    rng: np.random.Generator,
    archetype_index: np.ndarray,
    options: tuple[str, ...],
    weights_of: str,
) -> np.ndarray:
    """Draw one option per customer with archetype-specific weights (dicts on Archetype)."""
    cumulative = np.zeros((len(ARCHETYPES), len(options)))
    for a, archetype in enumerate(ARCHETYPES):
        weights = getattr(archetype, weights_of)
        row = np.array([weights.get(option, 0.0) for option in options])
        cumulative[a] = np.cumsum(row / row.sum())
    u = rng.random(len(archetype_index))
    chosen = (u[:, None] > cumulative[archetype_index]).sum(axis=1)
    return np.minimum(chosen, len(options) - 1)


def _month_starts(config: WorldConfig) -> np.ndarray:
    first = np.datetime64(config.start.replace(day=1), "M")
    months = first + np.arange(config.months + 2)
    return (months.astype("datetime64[D]") - _EPOCH).astype(np.int64)


def _ids(
    prefix: str,
    numbers: np.ndarray,
    width: int,
    suffix: np.ndarray | None = None,
    suffix_width: int = 0,
) -> pl.Series:
    frame = pl.DataFrame({"n": numbers.astype(np.int64)})
    expr = pl.lit(prefix) + pl.col("n").cast(pl.String).str.pad_start(width, "0")
    if suffix is not None:
        frame = frame.with_columns(s=suffix.astype(np.int64))
        expr = expr + pl.lit("-") + pl.col("s").cast(pl.String).str.pad_start(suffix_width, "0")
    return frame.select(expr.alias("id")).to_series()


def _sequence_within(owner: np.ndarray) -> np.ndarray:
    """1-based running number of each row within its owner (rows already sorted by owner)."""
    if len(owner) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    run_lengths = np.diff(np.r_[starts, len(owner)])
    return np.arange(len(owner)) - np.repeat(starts, run_lengths) + 1


class _Collector:
    """Accumulates per-month numpy arrays for one table, concatenated at the end."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.parts.setdefault(name, []).append(values)

    def get(self, name: str, dtype: type | np.dtype) -> np.ndarray:
        parts = self.parts.get(name)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


@dataclass(frozen=True)
class _CustomerDraws:
    """A chunk's per-customer draws and outcomes, one array entry per customer."""

    archetype: np.ndarray
    segment: np.ndarray
    contract: np.ndarray
    region: np.ndarray
    manager: np.ndarray
    signup_day: np.ndarray
    end_day: np.ndarray
    language: np.ndarray
    base_hazard: np.ndarray
    order_rate: np.ndarray
    order_value: np.ndarray
    propensity: np.ndarray
    targeted_accept: np.ndarray
    effect: np.ndarray
    nil: np.ndarray


@dataclass(frozen=True)
class _Events:
    """The month-by-month event collectors of a chunk."""

    orders: _Collector
    invoices: _Collector
    complaints: _Collector
    offers: _Collector
    truth: _Collector


def simulate_chunk(config: WorldConfig, chunk_index: int) -> ChunkTables:
    """Simulate customers ``chunk_index * chunk_size + 1 ...`` of the world.

    Args:
        config: the world's configuration.
        chunk_index: which chunk (0-based); determines the customer numbers and the random stream.

    Returns:
        The chunk's five CRM tables and two truth tables.
    """
    rng = np.random.default_rng([config.seed, chunk_index])
    first_number = chunk_index * config.chunk_size + 1
    n = min(config.chunk_size, config.n_customers - chunk_index * config.chunk_size)
    numbers = np.arange(first_number, first_number + n)
    width = max(7, len(str(config.n_customers)))
    starts = _month_starts(config)
    export_day = int((np.datetime64(config.end, "D") - _EPOCH).astype(np.int64))
    months = config.months

    # --- who the customers are -------------------------------------------------------------
    shares = np.array([a.share for a in ARCHETYPES])
    archetype = rng.choice(len(ARCHETYPES), size=n, p=shares / shares.sum())
    order_rate = _arch_param(archetype, "order_rate") * rng.lognormal(0.0, 0.5, n)
    order_value = _arch_param(archetype, "order_value") * rng.lognormal(0.0, 0.5, n)
    cogs_ratio = np.clip(_arch_param(archetype, "cogs_ratio") + rng.normal(0, 0.05, n), 0.2, 0.95)
    discount_rate = np.clip(
        _arch_param(archetype, "discount_rate") * rng.lognormal(0, 0.3, n), 0, 0.5
    )
    # Part of the hazard shows in behaviour, as in real data: customers who order more often
    # than their archetype's norm stay longer, bargain hunters (high discounts) leave sooner.
    # The rest is an unobservable random effect.
    engagement = order_rate / _arch_param(archetype, "order_rate")
    bargain = discount_rate / _arch_param(archetype, "discount_rate")
    base_hazard = (
        _arch_param(archetype, "base_hazard")
        * engagement**-1.8
        * bargain**1.2
        * rng.lognormal(-0.6, 0.6, n)
    )
    # heavy-tailed: a few percent of customers raise most complaints
    propensity = np.minimum(rng.lognormal(-0.72, 1.2, n), 6.0)
    mix = np.array([a.complaint_mix for a in ARCHETYPES])[archetype]
    handling = _arch_param(archetype, "handling_factor") * rng.lognormal(0, 0.3, n)
    escalation_rate = _arch_param(archetype, "escalation_rate")
    slow_prob = np.clip(
        _arch_param(archetype, "slow_resolution_prob") * rng.lognormal(0, 0.3, n), 0, 0.95
    )
    fault_prob = _arch_param(archetype, "fault_episode_prob")
    dispute_prob = _arch_param(archetype, "dispute_prob")
    withhold_prob = _arch_param(archetype, "withhold_prob")
    late_days = _arch_param(archetype, "late_days") * rng.lognormal(0, 0.5, n)
    broad_accept = _arch_param(archetype, "broad_accept")
    venting_bias = _arch_param(archetype, "venting_bias")
    complaint_drive = _arch_param(archetype, "complaint_drive")
    fit = np.array([[a.offer_fit[k] for k in OFFER_KINDS] for a in ARCHETYPES])[archetype]
    targeted_accept = np.clip(
        _arch_param(archetype, "targeted_accept")[:, None]
        * (0.6 + 0.4 * fit)
        * rng.lognormal(0, 0.3, (n, _N_KINDS)),
        0.0,
        0.97,
    )
    nil = rng.random(n) < _arch_param(archetype, "nil_share")
    effect = np.where(
        nil[:, None],
        0.0,
        _arch_param(archetype, "remedy_effect")[:, None]
        * fit
        * rng.lognormal(0, 0.35, (n, _N_KINDS)),
    )
    language = (rng.random(n) < config.zh_share).astype(np.int64)
    segment = _choice_by_archetype(rng, archetype, SEGMENTS, "segments")
    contract = _choice_by_archetype(rng, archetype, CONTRACT_TYPES, "contracts")
    region = rng.integers(0, len(REGIONS), n)
    manager = rng.integers(0, len(_FIRST_NAMES) * len(_LAST_NAMES), n)
    fades = np.array([a.fades for a in ARCHETYPES])[archetype]
    fade_rate = rng.uniform(0.08, 0.25, n)
    size = np.clip(order_value * order_rate / 800.0, 0.3, 8.0)
    offer_base_cost = np.array([0.0, 0.0, 180.0, 900.0, 60.0, 150.0])  # refund/discount: by billing

    existing = rng.random(n) < config.existing_share
    join_month = np.where(existing, 0, rng.integers(0, months, n))
    join_offset = np.where(
        existing,
        -rng.integers(30, 3000, n),
        rng.integers(0, 28, n),  # day within the joining month
    )
    signup_day = starts[join_month] + join_offset
    fade_month = join_month + rng.integers(2, 30, n)

    # --- month by month ------------------------------------------------------------------
    alive = np.ones(n, dtype=bool)
    end_day = np.full(n, -1, dtype=np.int64)
    dissatisfaction = np.zeros(n)
    pending_kind = np.full(n, -1, dtype=np.int64)  # targeted remedy to offer next month
    pending_complaint = np.full(n, -1, dtype=np.int64)  # complaint number it answers
    complaint_counter = np.zeros(n, dtype=np.int64)

    orders, invoices, complaints, offers, truth = (_Collector() for _ in range(5))
    base_rates = np.array(BASE_COMPLAINT_RATES)
    base_minutes = np.array(BASE_HANDLING_MINUTES)
    beta = config.dissatisfaction_hazard

    for t in range(months):
        month_start, month_len = starts[t], starts[t + 1] - starts[t]
        idx = np.flatnonzero(alive & (join_month <= t))
        if len(idx) == 0:
            continue
        lo = np.where(join_month[idx] == t, np.maximum(join_offset[idx], 0), 0)
        lo = np.minimum(lo, month_len - 1)

        # offers at the start of the month: targeted remedies and broad campaigns
        kind = pending_kind[idx]
        answers = pending_complaint[idx]
        pending_kind[idx] = -1
        targeted = kind >= 0
        if t in config.broad_campaign_months:
            reached = ~targeted & (rng.random(len(idx)) < config.broad_campaign_reach)
            kind = np.where(reached, _KIND["replacement" if t % 2 else "discount"], kind)
        else:
            reached = np.zeros(len(idx), dtype=bool)
        offered = targeted | reached
        accept_prob = np.where(
            targeted,
            targeted_accept[idx, np.maximum(kind, 0)],
            broad_accept[idx] * np.where(dissatisfaction[idx] > 1.0, 6.0, 1.0),
        )
        accepted = offered & (rng.random(len(idx)) < accept_prob)
        gain = np.where(accepted, effect[idx, np.maximum(kind, 0)], 0.0)
        dissatisfaction[idx] -= np.where(reached, 0.5, 1.0) * gain
        misuse_fixed = accepted & (kind == _KIND["training"])
        propensity[idx[misuse_fixed]] *= 0.4  # trained staff stop "breaking" the product
        if offered.any():
            o = np.flatnonzero(offered)
            monthly_billing = order_rate[idx[o]] * order_value[idx[o]]
            cost = np.select(
                [kind[o] == _KIND["refund"], kind[o] == _KIND["discount"]],
                [0.5 * monthly_billing, 0.3 * monthly_billing],
                offer_base_cost[kind[o]] * size[idx[o]],
            )
            offered_day = month_start + lo[o] + rng.integers(0, 5, len(o))
            responded_day = offered_day + 1 + rng.geometric(0.25, len(o))
            offers.add(
                customer=idx[o],
                kind=kind[o],
                cost=np.round(np.maximum(cost, 5.0), 2),
                offered_day=offered_day,
                responded_day=responded_day,
                accepted=accepted[o],
                targeted=targeted[o],
                complaint_number=np.where(targeted[o], answers[o], -1),
            )

        # hazard and churn
        d = dissatisfaction[idx]
        tenure_months = (month_start - signup_day[idx]) / 30.4
        newness = 1.0 + 1.5 * np.exp(-np.maximum(tenure_months, 0) / 6.0)
        fade = np.where(
            fades[idx] & (t >= fade_month[idx]),
            np.exp(-fade_rate[idx] * (t - fade_month[idx])),
            1.0,
        )
        hazard_core = base_hazard[idx] * _CONTRACT_HAZARD[contract[idx]] * newness / fade**1.5
        hazard = np.minimum(hazard_core * np.exp(beta * d), _HAZARD_CAP)
        hazard_if = np.minimum(
            hazard_core[:, None] * np.exp(beta * (d[:, None] - effect[idx])), _HAZARD_CAP
        )
        churn = rng.random(len(idx)) < hazard
        churn_day = lo + (rng.random(len(idx)) * (month_len - lo)).astype(np.int64)
        hi = np.where(churn, np.maximum(churn_day, lo + 1), month_len)
        active_share = (hi - lo) / month_len

        # orders
        counts = rng.poisson(order_rate[idx] * fade * active_share)
        owner = np.repeat(idx, counts)
        o_lo, o_hi = np.repeat(lo, counts), np.repeat(hi, counts)
        o_day = month_start + o_lo + (rng.random(len(owner)) * (o_hi - o_lo)).astype(np.int64)
        revenue = np.round(order_value[owner] * rng.lognormal(-0.08, 0.4, len(owner)), 2)
        cogs = np.round(revenue * cogs_ratio[owner] * rng.lognormal(0, 0.05, len(owner)), 2)
        discount = np.round(revenue * discount_rate[owner], 2)
        quantity = np.maximum(1, np.round(3 * revenue / order_value[owner])).astype(np.int64)
        orders.add(
            customer=owner,
            day=o_day,
            revenue=revenue,
            cogs=cogs,
            discount=discount,
            quantity=quantity,
        )

        # one invoice per customer-month with orders, issued on the 1st of the next month
        billed = np.bincount(owner, weights=revenue - discount, minlength=n)[idx]
        invoiced = billed > 0
        if invoiced.any() and starts[t + 1] < export_day:
            c = idx[invoiced]
            invoice_day = np.full(len(c), starts[t + 1])
            due_day = invoice_day + 30
            disputed = rng.random(len(c)) < dispute_prob[c] * np.where(dissatisfaction[c] > 1, 2, 1)
            withheld = rng.random(len(c)) < withhold_prob[c] + 0.3 * disputed
            delay = np.round(late_days[c] * rng.exponential(1.0, len(c)) - 5).astype(np.int64)
            paid_day = np.maximum(due_day + delay, invoice_day + 1)
            paid_day = np.where(withheld | (paid_day >= export_day), -1, paid_day)
            invoices.add(
                customer=c,
                month=np.full(len(c), t),
                invoice_day=invoice_day,
                due_day=due_day,
                amount=np.round(billed[invoiced], 2),
                paid_day=paid_day,
                disputed=disputed,
            )

        # complaints, per severity
        fault = rng.random(len(idx)) < fault_prob[idx]
        rates = (
            base_rates
            * mix[idx]
            * propensity[idx, None]
            * np.exp(_SEVERITY_DRIVE * complaint_drive[idx, None] * d[:, None])
            * (1 + 4 * fault[:, None])
        )
        sev_counts = rng.poisson(rates * active_share[:, None])
        # one row per complaint, ordered by customer (idx is ascending) then severity
        c_owner_pos = np.repeat(np.repeat(np.arange(len(idx)), 3), sev_counts.ravel())
        severity = np.repeat(np.tile(np.arange(3), len(idx)), sev_counts.ravel())
        c_owner = idx[c_owner_pos]
        k = len(c_owner)
        c_fault = fault[c_owner_pos] | (
            (archetype[c_owner] == _ARCH["recoverable_complainer"]) & (rng.random(k) < 0.6)
        )
        misuse = (archetype[c_owner] == _ARCH["difficult_client"]) & ~c_fault
        category = np.where(
            c_fault,
            _COMPANY_FAULT[rng.integers(0, len(_COMPANY_FAULT), k)],
            np.where(
                misuse,
                _MISUSE[rng.choice(len(_MISUSE), k, p=_MISUSE_WEIGHTS)],
                rng.integers(0, len(COMPLAINT_CATEGORIES), k),
            ),
        )
        slow = rng.random(k) < slow_prob[c_owner]
        hours = np.where(
            slow, rng.lognormal(np.log(60.0), 0.6, k), rng.lognormal(np.log(4.0), 0.8, k)
        )
        c_lo, c_hi = lo[c_owner_pos], hi[c_owner_pos]
        opened_s = (month_start + c_lo) * 86_400 + (rng.random(k) * (c_hi - c_lo) * 86_400).astype(
            np.int64
        )
        resolved_s = opened_s + (hours * 3600).astype(np.int64)
        minutes = np.round(base_minutes[severity] * handling[c_owner] * rng.lognormal(0, 0.5, k), 1)
        escalations = rng.poisson(escalation_rate[c_owner] * _SEVERITY_ESCALATION[severity])
        anger = -2.2 + 1.1 * dissatisfaction[c_owner] + venting_bias[c_owner] + 0.8 * slow
        vents = (rng.random(k) < 1 / (1 + np.exp(-anger))).astype(np.int64) * rng.integers(1, 3, k)
        number = complaint_counter[c_owner] + _sequence_within(c_owner)
        complaint_counter += np.bincount(c_owner, minlength=n)
        complaints.add(
            customer=c_owner,
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

        # what the month did to dissatisfaction, and the remedies it triggers
        n_slow = np.bincount(c_owner_pos, weights=hours > _SLA_HOURS, minlength=len(idx))
        n_fast_fault = np.bincount(
            c_owner_pos, weights=c_fault & (hours <= _SLA_HOURS), minlength=len(idx)
        )
        # slow handling hurts in proportion to the share of the month's complaints it affects,
        # so dissatisfaction stays bounded even for customers who complain every day
        n_month = np.bincount(c_owner_pos, minlength=len(idx))
        slow_share = np.divide(n_slow, n_month, out=np.zeros(len(idx)), where=n_month > 0)
        fast_fix_share = np.divide(n_fast_fault, n_month, out=np.zeros(len(idx)), where=n_month > 0)
        dissatisfaction[idx] = (
            DISSATISFACTION_PERSISTENCE * d
            + rng.normal(0, 0.3, len(idx))
            + 0.8 * fault
            + 0.6 * slow_share
            - 0.3 * fast_fix_share
        )
        grievance = (sev_counts[:, 2] >= 1) | (n_slow >= 2) | (sev_counts[:, 1] >= 2)
        wants_offer = grievance & ~churn & (rng.random(len(idx)) < config.targeted_offer_prob)
        w = idx[wants_offer]
        pending_kind[w] = _choice_by_archetype(rng, archetype[w], OFFER_KINDS, "offer_choice")
        pending_complaint[w] = complaint_counter[w]  # answers the latest complaint

        # truth for the month
        revenue_rate = order_rate[idx] * fade * order_value[idx]
        complaint_cost = (rates * base_minutes * handling[idx, None] * np.exp(0.125)).sum(
            axis=1
        ) * config.cost_per_handling_minute + (rates * _SEVERITY_ESCALATION).sum(
            axis=1
        ) * escalation_rate[idx] * config.cost_per_escalation
        bad_debt = (
            revenue_rate * (1 - discount_rate[idx]) * (withhold_prob[idx] + 0.3 * dispute_prob[idx])
        )
        margin = (
            revenue_rate * (1 - cogs_ratio[idx] - discount_rate[idx]) - complaint_cost - bad_debt
        )
        truth.add(
            customer=idx,
            month=np.full(len(idx), t),
            hazard=hazard,
            hazard_if=hazard_if,
            margin=margin,
            complaint_cost=complaint_cost,
            dissatisfaction=d,
            churned=churn,
        )

        ended = idx[churn]
        alive[ended] = False
        end_day[ended] = month_start + churn_day[churn]

    draws = _CustomerDraws(
        archetype=archetype,
        segment=segment,
        contract=contract,
        region=region,
        manager=manager,
        signup_day=signup_day,
        end_day=end_day,
        language=language,
        base_hazard=base_hazard,
        order_rate=order_rate,
        order_value=order_value,
        propensity=propensity,
        targeted_accept=targeted_accept,
        effect=effect,
        nil=nil,
    )
    events = _Events(
        orders=orders, invoices=invoices, complaints=complaints, offers=offers, truth=truth
    )
    return _assemble(config, rng, numbers, width, starts, export_day, draws, events)


_ARCH = {a.name: i for i, a in enumerate(ARCHETYPES)}


def _dates(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype(np.int64)).cast(pl.Int32).cast(pl.Date)


def _nullable_dates(days: np.ndarray) -> pl.Series:
    series = pl.Series(days.astype(np.int64))
    return pl.select(
        pl.when(series >= 0).then(series).otherwise(None).cast(pl.Int32).cast(pl.Date)
    ).to_series()


def _assemble(
    config: WorldConfig,
    rng: np.random.Generator,
    numbers: np.ndarray,
    width: int,
    starts: np.ndarray,
    export_day: int,
    draws: _CustomerDraws,
    events: _Events,
) -> ChunkTables:
    n = len(numbers)
    customer_ids = _ids("C", numbers, width)
    names = (
        pl.DataFrame(
            {
                "a": pl.Series(_NAME_PREFIX).gather(rng.integers(0, len(_NAME_PREFIX), n)),
                "b": pl.Series(_NAME_NOUN).gather(rng.integers(0, len(_NAME_NOUN), n)),
                "c": pl.Series(_NAME_SUFFIX).gather(rng.integers(0, len(_NAME_SUFFIX), n)),
            }
        )
        .select(pl.concat_str("a", "b", "c", separator=" "))
        .to_series()
    )
    managers = pl.Series([f"{f} {last}" for f in _FIRST_NAMES for last in _LAST_NAMES]).gather(
        draws.manager
    )
    customers = pl.DataFrame(
        {
            "customer_id": customer_ids,
            "name": names,
            "segment": pl.Series(SEGMENTS).gather(draws.segment),
            "signup_date": _dates(draws.signup_day),
            "contract_type": pl.Series(CONTRACT_TYPES).gather(draws.contract),
            "region": pl.Series(REGIONS).gather(draws.region),
            "account_manager": managers,
            "end_date": _nullable_dates(draws.end_day),
        }
    )

    # orders: sorted by customer then date, numbered within customer
    o_customer = events.orders.get("customer", np.int64)
    o_day = events.orders.get("day", np.int64)
    order_sort = np.lexsort((o_day, o_customer))
    o_customer, o_day = o_customer[order_sort], o_day[order_sort]
    orders_frame = pl.DataFrame(
        {
            "order_id": _ids("O", numbers[o_customer], width, _sequence_within(o_customer), 4),
            "customer_id": customer_ids.gather(o_customer),
            "order_date": _dates(o_day),
            "revenue": events.orders.get("revenue", np.float64)[order_sort],
            "cost_of_goods": events.orders.get("cogs", np.float64)[order_sort],
            "discount": events.orders.get("discount", np.float64)[order_sort],
            "quantity": events.orders.get("quantity", np.int64)[order_sort],
        }
    )

    p_customer = events.invoices.get("customer", np.int64)
    p_sort = np.lexsort((events.invoices.get("month", np.int64), p_customer))
    p_customer = p_customer[p_sort]
    payments = pl.DataFrame(
        {
            "invoice_id": _ids(
                "I", numbers[p_customer], width, events.invoices.get("month", np.int64)[p_sort], 3
            ),
            "customer_id": customer_ids.gather(p_customer),
            "invoice_date": _dates(events.invoices.get("invoice_day", np.int64)[p_sort]),
            "due_date": _dates(events.invoices.get("due_day", np.int64)[p_sort]),
            "amount": events.invoices.get("amount", np.float64)[p_sort],
            "paid_date": _nullable_dates(events.invoices.get("paid_day", np.int64)[p_sort]),
            "disputed": events.invoices.get("disputed", bool)[p_sort],
        }
    )

    complaints_frame = _complaints_frame(
        events.complaints, numbers, width, customer_ids, draws.language, export_day, rng
    )
    offers_frame = _offers_frame(events.offers, numbers, width, customer_ids, export_day)

    truth_customers = pl.DataFrame(
        {
            "customer_id": customer_ids,
            "archetype": pl.Series([a.name for a in ARCHETYPES]).gather(draws.archetype),
            "language": pl.Series(LANGUAGES).gather(draws.language),
            "base_hazard": draws.base_hazard,
            "order_rate": draws.order_rate,
            "order_value": draws.order_value,
            "complaint_propensity": draws.propensity,
            "offer_nil_effect": draws.nil,
            **{
                f"accept_prob_{kind}": draws.targeted_accept[:, k]
                for k, kind in enumerate(OFFER_KINDS)
            },
            **{f"uplift_effect_{kind}": draws.effect[:, k] for k, kind in enumerate(OFFER_KINDS)},
        }
    ).with_columns(pl.selectors.float().cast(pl.Float32))

    t_customer = events.truth.get("customer", np.int64)
    t_month = events.truth.get("month", np.int64)
    t_sort = np.lexsort((t_month, t_customer))
    hazard_if = (
        np.concatenate(events.truth.parts["hazard_if"])
        if "hazard_if" in events.truth.parts
        else np.zeros((0, _N_KINDS))
    )
    truth_monthly = pl.DataFrame(
        {
            "customer_id": customer_ids.gather(t_customer[t_sort]),
            "month": _dates(starts[t_month[t_sort]]),
            "true_churn_hazard": events.truth.get("hazard", np.float64)[t_sort],
            **{
                f"true_hazard_if_{kind}": hazard_if[t_sort, k] for k, kind in enumerate(OFFER_KINDS)
            },
            "true_net_margin": events.truth.get("margin", np.float64)[t_sort],
            "true_complaint_cost_rate": events.truth.get("complaint_cost", np.float64)[t_sort],
            "true_dissatisfaction": events.truth.get("dissatisfaction", np.float64)[t_sort],
            "churned_this_month": events.truth.get("churned", bool)[t_sort],
        }
    ).with_columns(pl.selectors.float().cast(pl.Float32))

    return ChunkTables(
        customers,
        orders_frame,
        payments,
        complaints_frame,
        offers_frame,
        truth_customers,
        truth_monthly,
    )


def _complaints_frame(
    complaints: _Collector, numbers, width, customer_ids, language, export_day, rng
) -> pl.DataFrame:
    owner = complaints.get("customer", np.int64)
    sort = np.lexsort((complaints.get("number", np.int64), owner))
    owner = owner[sort]
    opened_s = complaints.get("opened_s", np.int64)[sort]
    resolved_s = complaints.get("resolved_s", np.int64)[sort]
    export_s = export_day * 86_400
    still_open = resolved_s >= export_s
    stage_code = np.where(still_open, rng.integers(0, len(STAGES) - 1, len(owner)), len(STAGES) - 1)
    category = complaints.get("category", np.int64)[sort]
    channel = complaints.get("channel", np.int64)[sort]
    # phone notes are often not written down: no text for a third of phone complaints
    has_text = ~((channel == CHANNELS.index("phone")) & (rng.random(len(owner)) < 0.33))
    text = complaint_texts(language[owner], category, complaints.get("vents", np.int64)[sort], rng)
    to_ts = lambda seconds: pl.Series(seconds * 1_000_000).cast(pl.Datetime("us"))  # noqa: E731
    frame = pl.DataFrame(
        {
            "complaint_id": _ids(
                "K", numbers[owner], width, complaints.get("number", np.int64)[sort], 4
            ),
            "customer_id": customer_ids.gather(owner),
            "opened_at": to_ts(opened_s),
            "resolved_at": to_ts(resolved_s),
            "still_open": still_open,
            "channel": pl.Series(CHANNELS).gather(channel),
            "category": pl.Series(COMPLAINT_CATEGORIES).gather(category),
            "severity": pl.Series(SEVERITIES).gather(complaints.get("severity", np.int64)[sort]),
            "handling_minutes": complaints.get("minutes", np.float64)[sort],
            "escalations": complaints.get("escalations", np.int64)[sort],
            "stage": pl.Series(STAGES).gather(stage_code),
            "text": text,
            "has_text": has_text,
        }
    )
    return frame.with_columns(
        resolved_at=pl.when(pl.col("still_open")).then(None).otherwise(pl.col("resolved_at")),
        text=pl.when(pl.col("has_text")).then(pl.col("text")).otherwise(None),
    ).drop("still_open", "has_text")


def _offers_frame(offers: _Collector, numbers, width, customer_ids, export_day) -> pl.DataFrame:
    owner = offers.get("customer", np.int64)
    offered_day = offers.get("offered_day", np.int64)
    sort = np.lexsort((offered_day, owner))
    owner, offered_day = owner[sort], offered_day[sort]
    responded_day = offers.get("responded_day", np.int64)[sort]
    answered = responded_day < export_day
    keep = offered_day < export_day
    complaint_number = offers.get("complaint_number", np.int64)[sort]
    complaint_ids = _ids("K", numbers[owner], width, np.maximum(complaint_number, 0), 4)
    frame = pl.DataFrame(
        {
            "offer_id": _ids("F", numbers[owner], width, _sequence_within(owner), 3),
            "customer_id": customer_ids.gather(owner),
            "offered_at": _dates(offered_day),
            "kind": pl.Series(OFFER_KINDS).gather(offers.get("kind", np.int64)[sort]),
            "cost": offers.get("cost", np.float64)[sort],
            "accepted": offers.get("accepted", bool)[sort],
            "responded_at": _nullable_dates(np.where(answered, responded_day, -1)),
            "targeted": offers.get("targeted", bool)[sort],
            "complaint_id": complaint_ids,
            "answered": answered,
            "links": complaint_number > 0,
            "keep": keep,
        }
    )
    return (
        frame.filter("keep")
        .with_columns(
            accepted=pl.when("answered").then("accepted").otherwise(None),
            complaint_id=pl.when("links").then("complaint_id").otherwise(None),
        )
        .drop("answered", "links", "keep")
    )
