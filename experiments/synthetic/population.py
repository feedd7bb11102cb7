"""Who the customers of one chunk are: every per-customer trait the world keeps fixed.

Each trait is an archetype median (:mod:`experiments.synthetic.archetypes`) times a log-normal
spread, so archetypes overlap the way real customers do. Part of the churn hazard shows in
behaviour, as in real data: customers who order more often than their archetype's norm stay
longer, bargain hunters (high discounts) leave sooner; the rest is an unobservable random effect.

Offer response per customer ``i`` and kind ``k`` (used by :mod:`experiments.synthetic.dynamics`):

* ``accept[i, k]`` — chance of accepting a personal offer of kind ``k``: the archetype's
  acceptance times ``0.6 + 0.4 * fit_k`` times a log-normal spread; teachable misusers accept
  training with ``teachable_accept``.
* ``remedy_fit[i, k]`` in [0, 1] — share of an *open grievance* an accepted offer resolves.
* ``goodwill[i, k]`` >= 0 — loyalty (log-hazard units) an accepted offer adds.
* ``nil[i]`` — the customer reacts to no offer at all (fit and goodwill 0); ``sleeping_dog[i]``
  — a quiet customer whom any contact reminds to leave (goodwill 0).
* ``training_fix[i]`` — share of the complaint propensity that accepted training removes for
  good (misusers only; 0 for everyone else).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.synthetic.archetypes import ARCHETYPES
from experiments.synthetic.config import WorldConfig
from features.contract import CONTRACT_TYPES, OFFER_KINDS, REGIONS, SEGMENTS

N_KINDS = len(OFFER_KINDS)
KIND = {kind: k for k, kind in enumerate(OFFER_KINDS)}
# How an ordinary account pays (archetypes' customers without payment trouble).
ORDINARY_DISPUTE, ORDINARY_WITHHOLD, ORDINARY_LATE_DAYS = 0.01, 0.003, 5.0
# Account managers of the synthetic world: first x last names.
N_MANAGERS = 20 * 15


def archetype_param(archetype_index: np.ndarray, field: str) -> np.ndarray:
    """One archetype field per customer, as float64."""
    values = np.array([getattr(a, field) for a in ARCHETYPES], dtype=np.float64)
    return values[archetype_index]


def archetype_weights(field: str, options: tuple[str, ...]) -> np.ndarray:
    """Cumulative weights of an archetype dict field over ``options``: (archetypes, options)."""
    cumulative = np.zeros((len(ARCHETYPES), len(options)))
    for a, archetype in enumerate(ARCHETYPES):
        weights = getattr(archetype, field)
        row = np.array([weights.get(option, 0.0) for option in options])
        cumulative[a] = np.cumsum(row / row.sum())
    return cumulative


def choose(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Pick one option per row from cumulative weights (rows, options) with uniforms ``u``."""
    chosen = (u[:, None] > cumulative).sum(axis=1)
    return np.minimum(chosen, cumulative.shape[1] - 1)


@dataclass(frozen=True)
class Population:
    """A chunk's fixed per-customer traits, one array entry per customer."""

    archetype: np.ndarray
    segment: np.ndarray
    contract: np.ndarray
    region: np.ndarray
    manager: np.ndarray
    language: np.ndarray
    join_month: np.ndarray
    signup_day: np.ndarray
    fades: np.ndarray
    fade_month: np.ndarray
    fade_rate: np.ndarray
    base_hazard: np.ndarray
    order_rate: np.ndarray
    order_value: np.ndarray
    cogs_ratio: np.ndarray
    discount_rate: np.ndarray
    propensity: np.ndarray  # complaint propensity at signup
    mix: np.ndarray  # (n, 3) complaint mix
    handling: np.ndarray
    escalation_rate: np.ndarray
    slow_prob: np.ndarray
    fault_prob: np.ndarray
    fault_share: np.ndarray
    dispute_prob: np.ndarray
    withhold_prob: np.ndarray
    late_days: np.ndarray
    broad_accept: np.ndarray
    venting_bias: np.ndarray
    complaint_drive: np.ndarray
    accept: np.ndarray  # (n, kinds)
    remedy_fit: np.ndarray  # (n, kinds)
    goodwill: np.ndarray  # (n, kinds)
    nil: np.ndarray
    sleeping_dog: np.ndarray
    teachable: np.ndarray
    training_fix: np.ndarray
    size: np.ndarray  # account size, scales the cost of in-kind remedies

    @property
    def n(self) -> int:
        return len(self.archetype)


def draw_population(
    config: WorldConfig, rng: np.random.Generator, n: int, month_starts: np.ndarray
) -> Population:
    """Draw ``n`` customers.

    Args:
        config: the world's configuration.
        rng: the chunk's population stream.
        n: customers in the chunk.
        month_starts: day numbers (days since 1970-01-01) of the first of each month.

    Returns:
        The chunk's population.
    """
    shares = np.array([a.share for a in ARCHETYPES])
    archetype = rng.choice(len(ARCHETYPES), size=n, p=shares / shares.sum())
    param = lambda field: archetype_param(archetype, field)  # noqa: E731
    order_rate = param("order_rate") * rng.lognormal(0.0, 0.5, n)
    order_value = param("order_value") * rng.lognormal(0.0, 0.5, n)
    cogs_ratio = np.clip(param("cogs_ratio") + rng.normal(0, 0.05, n), 0.2, 0.95)
    discount_rate = np.clip(param("discount_rate") * rng.lognormal(0, 0.3, n), 0, 0.5)
    engagement = order_rate / param("order_rate")
    bargain = discount_rate / param("discount_rate")
    base_hazard = (
        param("base_hazard") * engagement**-1.8 * bargain**1.2 * rng.lognormal(-0.75, 0.75, n)
    )
    # heavy-tailed: a few percent of customers raise most complaints
    propensity = np.minimum(
        np.exp(-0.72 + param("propensity_spread") * rng.standard_normal(n)),
        param("propensity_cap"),
    )
    mix = np.array([a.complaint_mix for a in ARCHETYPES])[archetype]
    handling = param("handling_factor") * rng.lognormal(0, 0.3, n)
    slow_prob = np.clip(param("slow_resolution_prob") * rng.lognormal(0, 0.3, n), 0, 0.95)
    spread = param("payment_spread")
    trouble = rng.random(n) < param("payment_trouble_share")
    dispute_prob = np.clip(
        np.where(trouble, param("dispute_prob"), ORDINARY_DISPUTE) * rng.lognormal(0, spread, n),
        0,
        0.9,
    )
    withhold_prob = np.clip(
        np.where(trouble, param("withhold_prob"), ORDINARY_WITHHOLD) * rng.lognormal(0, spread, n),
        0,
        0.6,
    )
    late_days = np.where(trouble, param("late_days"), ORDINARY_LATE_DAYS) * rng.lognormal(
        0, 0.5 + 0.5 * spread, n
    )

    fit = np.array([[a.offer_fit[k] for k in OFFER_KINDS] for a in ARCHETYPES])[archetype]
    accept = np.clip(
        param("targeted_accept")[:, None] * (0.6 + 0.4 * fit) * rng.lognormal(0, 0.3, (n, N_KINDS)),
        0.0,
        0.97,
    )
    misuse = np.array([a.misuse for a in ARCHETYPES])[archetype]
    teachable = misuse & (rng.random(n) < param("teachable_share"))
    accept[:, KIND["training"]] = np.where(
        teachable,
        np.clip(param("teachable_accept") * rng.lognormal(0, 0.2, n), 0, 0.9),
        accept[:, KIND["training"]],
    )
    nil = rng.random(n) < param("nil_share")
    sleeping_dog = ~nil & (rng.random(n) < param("sleeping_dog_share"))
    remedy_fit = np.where(
        nil[:, None], 0.0, np.clip(fit * rng.lognormal(0, 0.25, (n, N_KINDS)), 0.0, 1.0)
    )
    goodwill = np.where(
        (nil | sleeping_dog)[:, None],
        0.0,
        param("goodwill")[:, None] * fit * rng.lognormal(0, 0.5, (n, N_KINDS)),
    )
    training_fix = np.where(misuse, rng.uniform(0.7, 0.95, n), 0.0)

    language = (rng.random(n) < config.zh_share).astype(np.int64)
    segment = choose(archetype_weights("segments", SEGMENTS)[archetype], rng.random(n))
    contract = choose(archetype_weights("contracts", CONTRACT_TYPES)[archetype], rng.random(n))
    region = rng.integers(0, len(REGIONS), n)
    manager = rng.integers(0, N_MANAGERS, n)
    fades = np.array([a.fades for a in ARCHETYPES])[archetype]
    fade_rate = rng.uniform(0.08, 0.25, n)
    size = np.clip(order_value * order_rate / 800.0, 0.3, 8.0)

    months = config.months
    existing = rng.random(n) < config.existing_share
    join_month = np.where(existing, 0, rng.integers(0, months, n))
    join_offset = np.where(
        existing,
        -rng.integers(30, 3000, n),
        rng.integers(0, 28, n),  # day within the joining month
    )
    signup_day = month_starts[join_month] + join_offset
    fade_month = join_month + rng.integers(2, 30, n)
    return Population(
        archetype=archetype,
        segment=segment,
        contract=contract,
        region=region,
        manager=manager,
        language=language,
        join_month=join_month,
        signup_day=signup_day,
        fades=fades,
        fade_month=fade_month,
        fade_rate=fade_rate,
        base_hazard=base_hazard,
        order_rate=order_rate,
        order_value=order_value,
        cogs_ratio=cogs_ratio,
        discount_rate=discount_rate,
        propensity=propensity,
        mix=mix,
        handling=handling,
        escalation_rate=param("escalation_rate"),
        slow_prob=slow_prob,
        fault_prob=param("fault_episode_prob"),
        fault_share=param("fault_share"),
        dispute_prob=dispute_prob,
        withhold_prob=withhold_prob,
        late_days=late_days,
        broad_accept=param("broad_accept"),
        venting_bias=param("venting_bias"),
        complaint_drive=param("complaint_drive"),
        accept=accept,
        remedy_fit=remedy_fit,
        goodwill=goodwill,
        nil=nil,
        sleeping_dog=sleeping_dog,
        teachable=teachable,
        training_fix=training_fix,
        size=size,
    )
