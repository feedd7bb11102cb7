"""Customer archetypes of the synthetic CRM world and the parameters that make each recognisable.

Every figure is a *monthly* rate or a median; customers draw their own values around these
(log-normal spreads in :mod:`experiments.synthetic.population`), so archetypes overlap the way
real customers do. The archetypes follow the business cases in DESIGN.md:

* ``profitable_loyal`` — steady buyers, few complaints, low churn hazard.
* ``whale`` — few, very large, very profitable accounts (the left of the whale curve).
* ``silent_decliner`` — orders fade from some month on, hardly any complaints, hazard rises as
  orders fade, then they leave. Many are "sleeping dogs": an offer reminds them to leave.
* ``recoverable_complainer`` — sizeable accounts hit by company-side faults (billing errors,
  defects, outages). A fault leaves an open grievance that raises their hazard and their
  complaints (they cost a lot to serve) until it is made good; a fast, fitting remedy (refund,
  replacement, service, a gift) resolves it and makes them more loyal than before (the
  Coca-Cola Belgium / thank-you-letter cases).
* ``difficult_client`` — the unprofitable software client: misuses the product, complains
  constantly with long handling and escalations, often disputes and withholds payments, and
  declines remedies; its net margin is negative. A minority is "teachable": they accept training,
  after which their staff stop "breaking" the product.
* ``small_stable`` — many small accounts, low margin each, mostly quiet.

Offer response per customer and kind (see :mod:`experiments.synthetic.dynamics`): an accepted
offer resolves a share ``remedy_fit`` of the customer's open grievance and adds ``goodwill`` to
their loyalty; sleeping dogs are reminded to leave when contacted; ``nil_share`` of customers
react to no offer at all.
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
    fault_share: float  # share of complaints outside fault episodes that are company faults
    dispute_prob: float  # median chance that an invoice is disputed (calm customer)
    withhold_prob: float  # median chance that an invoice is withheld (never paid)
    payment_spread: float  # log-normal spread of the two payment chances across customers
    late_days: float  # median days paid after the due date
    targeted_accept: float  # acceptance of a personal offer of a fitting kind
    broad_accept: float  # acceptance of a broad, untargeted campaign offer (Pentium: 1-3 %)
    goodwill: float  # median loyalty gained from an accepted, fitting offer (log-hazard units)
    nil_share: float  # share of these customers on whom no offer has any effect
    sleeping_dog_share: float  # share reminded to leave when contacted with an offer
    # how well each offer kind fits this archetype (multiplies acceptance, fit and goodwill)
    offer_fit: dict[str, float]
    # which offer kind the company reaches for after a grievance (weights)
    offer_choice: dict[str, float]
    segments: dict[str, float]
    contracts: dict[str, float]
    fades: bool = False  # silent decliner: orders fade from a random month on
    # how strongly dissatisfaction drives complaints; low where complaints come from misuse
    complaint_drive: float = 1.0
    venting_bias: float = 0.0  # extra log-odds of venting words in complaint text
    misuse: bool = False  # complaints come from misuse: accepted training removes most of them
    teachable_share: float = 0.0  # misusers who accept training readily
    teachable_accept: float = 0.0  # their acceptance of training
    propensity_cap: float = 6.0  # the most any customer of the archetype complains (x median 1)
    propensity_spread: float = 1.2  # log-normal spread of complaint propensity
    # share with the payment habits above; the others pay like an ordinary account
    # (dispute 1%, withhold 0.3%, 5 days late)
    payment_trouble_share: float = 1.0


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
        cogs_ratio=0.64,
        discount_rate=0.03,
        base_hazard=0.0065,
        complaint_mix=(0.8, 2.2, 6.0),
        handling_factor=1.0,
        escalation_rate=0.15,
        slow_resolution_prob=0.15,
        fault_episode_prob=0.01,
        fault_share=0.0,
        dispute_prob=0.005,
        withhold_prob=0.001,
        payment_spread=0.3,
        late_days=2.0,
        targeted_accept=0.45,
        broad_accept=0.015,
        goodwill=0.15,
        nil_share=0.6,
        sleeping_dog_share=0.06,
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
        complaint_mix=(1.5, 4.1, 18.0),
        handling_factor=1.2,
        escalation_rate=0.3,
        slow_resolution_prob=0.1,
        fault_episode_prob=0.02,
        fault_share=0.0,
        dispute_prob=0.01,
        withhold_prob=0.001,
        payment_spread=0.3,
        late_days=5.0,
        targeted_accept=0.55,
        broad_accept=0.02,
        goodwill=0.2,
        nil_share=0.45,
        sleeping_dog_share=0.04,
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
        cogs_ratio=0.64,
        discount_rate=0.04,
        base_hazard=0.005,
        complaint_mix=(0.5, 1.4, 3.0),
        handling_factor=0.8,
        escalation_rate=0.05,
        slow_resolution_prob=0.15,
        fault_episode_prob=0.005,
        fault_share=0.0,
        dispute_prob=0.005,
        withhold_prob=0.002,
        payment_spread=0.3,
        late_days=3.0,
        targeted_accept=0.35,
        broad_accept=0.02,
        goodwill=0.3,
        nil_share=0.5,
        sleeping_dog_share=0.3,
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
        share=0.24,
        order_rate=2.4,
        order_value=1300.0,
        cogs_ratio=0.6,
        discount_rate=0.05,
        base_hazard=0.0055,
        complaint_mix=(1.9, 5.3, 10.1),
        handling_factor=8.0,
        escalation_rate=1.8,
        slow_resolution_prob=0.55,
        fault_episode_prob=0.12,
        fault_share=0.6,
        dispute_prob=0.02,
        withhold_prob=0.004,
        payment_spread=0.8,
        late_days=10.0,
        targeted_accept=0.75,
        broad_accept=0.02,
        goodwill=0.25,
        nil_share=0.1,
        sleeping_dog_share=0.0,
        offer_fit=_weights(
            refund=1.0, discount=0.4, replacement=0.9, training=0.15, gift=0.8, service=1.0
        ),
        offer_choice=_weights(refund=0.35, replacement=0.2, gift=0.3, service=0.15),
        segments=_weights(enterprise=0.3, mid_market=0.45, small_business=0.15, public_sector=0.1),
        contracts=_weights(monthly=0.35, annual=0.5, two_year=0.15),
        venting_bias=0.8,
        complaint_drive=1.0,
    ),
    Archetype(
        name="difficult_client",
        share=0.07,
        order_rate=3.0,
        order_value=1600.0,
        cogs_ratio=0.58,
        discount_rate=0.07,
        base_hazard=0.007,
        complaint_mix=(72.0, 200.0, 470.0),
        handling_factor=9.0,
        escalation_rate=2.0,
        slow_resolution_prob=0.6,
        fault_episode_prob=0.01,
        fault_share=0.0,
        dispute_prob=0.3,
        withhold_prob=0.15,
        payment_spread=0.6,
        late_days=60.0,
        targeted_accept=0.03,
        broad_accept=0.01,
        goodwill=0.05,
        nil_share=0.5,
        sleeping_dog_share=0.0,
        offer_fit=_weights(
            refund=0.2, discount=0.3, replacement=0.2, training=1.0, gift=0.4, service=0.3
        ),
        offer_choice=_weights(training=0.6, gift=0.4),
        segments=_weights(enterprise=0.55, mid_market=0.4, public_sector=0.05),
        contracts=_weights(annual=0.6, two_year=0.4),
        venting_bias=2.0,
        complaint_drive=0.3,
        misuse=True,
        teachable_share=0.15,
        teachable_accept=0.35,
        payment_trouble_share=0.6,
        propensity_cap=3.0,
        propensity_spread=1.2,
    ),
    Archetype(
        name="small_stable",
        share=0.23,
        order_rate=0.9,
        order_value=110.0,
        cogs_ratio=0.68,
        discount_rate=0.03,
        base_hazard=0.009,
        complaint_mix=(0.9, 2.5, 8.0),
        handling_factor=1.0,
        escalation_rate=0.1,
        slow_resolution_prob=0.2,
        fault_episode_prob=0.01,
        fault_share=0.0,
        dispute_prob=0.01,
        withhold_prob=0.004,
        payment_spread=0.3,
        late_days=4.0,
        targeted_accept=0.35,
        broad_accept=0.012,
        goodwill=0.15,
        nil_share=0.65,
        sleeping_dog_share=0.12,
        offer_fit=_GENERIC_FIT,
        offer_choice=_weights(discount=0.5, gift=0.3, service=0.2),
        segments=_weights(mid_market=0.1, small_business=0.9),
        contracts=_weights(monthly=0.7, annual=0.3),
    ),
)

ARCHETYPE_NAMES: tuple[str, ...] = tuple(a.name for a in ARCHETYPES)
ARCHETYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(ARCHETYPE_NAMES)}


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
