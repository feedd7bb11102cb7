"""Customer archetypes of the synthetic CRM world and the parameters that make each recognisable.

Every figure is a *monthly* rate or a median; customers draw their own values around these
(log-normal spreads in :mod:`experiments.synthetic.simulate`), so archetypes overlap the way real
customers do. The archetypes follow the business cases in DESIGN.md:

* ``profitable_loyal`` — steady buyers, few complaints, low churn hazard.
* ``whale`` — few, very large, very profitable accounts (the left of the whale curve).
* ``silent_decliner`` — orders fade from some month on, hardly any complaints, hazard rises as
  orders fade, then they leave.
* ``recoverable_complainer`` — the company is at fault (billing errors, defects, outages); slow
  resolution (> 24 h) raises their dissatisfaction and churn hazard, while a refund, gift or a fast
  fix brings it down (the Coca-Cola Belgium / thank-you-letter cases).
* ``difficult_client`` — the unprofitable software client: misuses the product, complains
  constantly with long handling and escalations, disputes and withholds payments, and declines
  remedies; its net margin is negative.
* ``small_stable`` — many small accounts, low margin each, mostly quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.contract import CONTRACT_TYPES, OFFER_KINDS, SEGMENTS


@dataclass(frozen=True)
class Archetype:
    """Parameters of one archetype. Rates are per month unless the name says otherwise."""

    name: str
    share: float  # of all customers ever in the CRM
    order_rate: float  # median orders per month
    order_value: float  # median revenue per order
    cogs_ratio: float  # cost of goods / revenue
    discount_rate: float  # discount / revenue
    base_hazard: float  # median monthly churn hazard with no dissatisfaction
    # multipliers on the base complaint rates (near-miss, minor, major)
    complaint_mix: tuple[float, float, float]
    handling_factor: float  # multiplier on standard handling minutes per complaint
    escalation_rate: float  # expected escalations per minor complaint (majors x3)
    slow_resolution_prob: float  # chance that a complaint takes longer than the 24 h SLA
    fault_episode_prob: float  # chance per month of a company-side fault hitting the customer
    dispute_prob: float  # chance that an invoice is disputed
    withhold_prob: float  # chance that an invoice is withheld (never paid)
    late_days: float  # mean days paid after the due date
    targeted_accept: float  # acceptance of a remedy offered after a grievance
    broad_accept: float  # acceptance of a broad, untargeted campaign offer (Pentium: 1-3 %)
    remedy_effect: float  # mean drop in dissatisfaction when a fitting remedy is accepted
    nil_share: float  # share of these customers on whom offers have no effect at all
    # how well each offer kind fits this archetype's grievance (multiplies remedy_effect)
    offer_fit: dict[str, float]
    # which offer kind the company reaches for after a grievance (weights)
    offer_choice: dict[str, float]
    segments: dict[str, float]
    contracts: dict[str, float]
    fades: bool = False  # silent decliner: orders fade from a random month on
    # how strongly dissatisfaction drives complaints; low where complaints come from misuse
    complaint_drive: float = 1.0
    venting_bias: float = 0.0  # extra log-odds of venting words in complaint text


def _weights(**kwargs: float) -> dict[str, float]:
    return kwargs


_GENERIC_FIT = _weights(
    refund=0.4, discount=0.6, replacement=0.3, training=0.2, gift=0.4, service=0.5
)

ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        name="profitable_loyal",
        share=0.30,
        order_rate=2.0,
        order_value=260.0,
        cogs_ratio=0.52,
        discount_rate=0.03,
        base_hazard=0.0065,
        complaint_mix=(0.8, 0.6, 0.5),
        handling_factor=1.0,
        escalation_rate=0.15,
        slow_resolution_prob=0.15,
        fault_episode_prob=0.01,
        dispute_prob=0.005,
        withhold_prob=0.001,
        late_days=2.0,
        targeted_accept=0.45,
        broad_accept=0.015,
        remedy_effect=0.5,
        nil_share=0.4,
        offer_fit=_GENERIC_FIT,
        offer_choice=_weights(discount=0.4, service=0.3, gift=0.3),
        segments=_weights(enterprise=0.15, mid_market=0.45, small_business=0.3, public_sector=0.1),
        contracts=_weights(monthly=0.3, annual=0.5, two_year=0.2),
    ),
    Archetype(
        name="whale",
        share=0.04,
        order_rate=5.0,
        order_value=2000.0,
        cogs_ratio=0.48,
        discount_rate=0.05,
        base_hazard=0.005,
        complaint_mix=(1.5, 1.2, 1.0),
        handling_factor=1.2,
        escalation_rate=0.3,
        slow_resolution_prob=0.1,
        fault_episode_prob=0.01,
        dispute_prob=0.01,
        withhold_prob=0.001,
        late_days=5.0,
        targeted_accept=0.55,
        broad_accept=0.02,
        remedy_effect=0.6,
        nil_share=0.3,
        offer_fit=_GENERIC_FIT,
        offer_choice=_weights(service=0.5, discount=0.3, gift=0.2),
        segments=_weights(enterprise=0.75, mid_market=0.15, public_sector=0.1),
        contracts=_weights(annual=0.5, two_year=0.5),
    ),
    Archetype(
        name="silent_decliner",
        share=0.12,
        order_rate=1.6,
        order_value=330.0,
        cogs_ratio=0.58,
        discount_rate=0.04,
        base_hazard=0.005,
        complaint_mix=(0.5, 0.4, 0.2),
        handling_factor=0.8,
        escalation_rate=0.05,
        slow_resolution_prob=0.15,
        fault_episode_prob=0.005,
        dispute_prob=0.005,
        withhold_prob=0.002,
        late_days=3.0,
        targeted_accept=0.35,
        broad_accept=0.02,
        remedy_effect=0.7,
        nil_share=0.35,
        offer_fit=_weights(
            refund=0.3, discount=1.0, replacement=0.2, training=0.2, gift=0.6, service=0.8
        ),
        offer_choice=_weights(discount=0.5, service=0.3, gift=0.2),
        segments=_weights(enterprise=0.1, mid_market=0.4, small_business=0.45, public_sector=0.05),
        contracts=_weights(monthly=0.6, annual=0.35, two_year=0.05),
        fades=True,
    ),
    Archetype(
        name="recoverable_complainer",
        share=0.12,
        order_rate=1.8,
        order_value=450.0,
        cogs_ratio=0.6,
        discount_rate=0.04,
        base_hazard=0.011,
        complaint_mix=(2.5, 4.0, 5.0),
        handling_factor=2.0,
        escalation_rate=0.35,
        slow_resolution_prob=0.55,
        fault_episode_prob=0.12,
        dispute_prob=0.03,
        withhold_prob=0.004,
        late_days=4.0,
        targeted_accept=0.7,
        broad_accept=0.03,
        remedy_effect=1.4,
        nil_share=0.1,
        offer_fit=_weights(
            refund=1.0, discount=0.5, replacement=0.9, training=0.3, gift=0.8, service=1.0
        ),
        offer_choice=_weights(refund=0.35, replacement=0.2, gift=0.25, service=0.2),
        segments=_weights(enterprise=0.15, mid_market=0.45, small_business=0.3, public_sector=0.1),
        contracts=_weights(monthly=0.45, annual=0.45, two_year=0.1),
        venting_bias=0.8,
    ),
    Archetype(
        name="difficult_client",
        share=0.08,
        order_rate=3.0,
        order_value=1500.0,
        cogs_ratio=0.60,
        discount_rate=0.12,
        base_hazard=0.007,
        complaint_mix=(50.0, 160.0, 400.0),
        handling_factor=6.0,
        escalation_rate=2.0,
        slow_resolution_prob=0.6,
        fault_episode_prob=0.01,
        dispute_prob=0.45,
        withhold_prob=0.25,
        late_days=55.0,
        targeted_accept=0.06,
        broad_accept=0.01,
        remedy_effect=0.4,
        nil_share=0.5,
        offer_fit=_weights(
            refund=0.2, discount=0.3, replacement=0.2, training=1.0, gift=0.4, service=0.3
        ),
        offer_choice=_weights(training=0.6, gift=0.4),
        segments=_weights(enterprise=0.6, mid_market=0.35, public_sector=0.05),
        contracts=_weights(annual=0.6, two_year=0.4),
        venting_bias=2.0,
        complaint_drive=0.3,
    ),
    Archetype(
        name="small_stable",
        share=0.34,
        order_rate=0.9,
        order_value=110.0,
        cogs_ratio=0.68,
        discount_rate=0.03,
        base_hazard=0.009,
        complaint_mix=(0.9, 0.9, 0.6),
        handling_factor=1.0,
        escalation_rate=0.1,
        slow_resolution_prob=0.2,
        fault_episode_prob=0.01,
        dispute_prob=0.01,
        withhold_prob=0.004,
        late_days=4.0,
        targeted_accept=0.35,
        broad_accept=0.012,
        remedy_effect=0.5,
        nil_share=0.5,
        offer_fit=_GENERIC_FIT,
        offer_choice=_weights(discount=0.5, gift=0.3, service=0.2),
        segments=_weights(mid_market=0.1, small_business=0.9),
        contracts=_weights(monthly=0.7, annual=0.3),
    ),
)

ARCHETYPE_NAMES: tuple[str, ...] = tuple(a.name for a in ARCHETYPES)


def _check_archetypes() -> None:
    total = sum(a.share for a in ARCHETYPES)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"archetype shares sum to {total}, not 1")
    for archetype in ARCHETYPES:
        for field_name, allowed in (
            ("offer_fit", OFFER_KINDS),
            ("offer_choice", OFFER_KINDS),
            ("segments", SEGMENTS),
            ("contracts", CONTRACT_TYPES),
        ):
            unknown = set(getattr(archetype, field_name)) - set(allowed)
            if unknown:
                raise ValueError(f"{archetype.name}.{field_name} names unknown {sorted(unknown)}")


_check_archetypes()
