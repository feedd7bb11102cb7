"""Configuration of the synthetic CRM world."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# Base monthly complaint rates per severity (near-miss, minor, major) for a customer with
# propensity 1; archetype mixes multiply them. Chosen so that across the whole base the counts
# come out near Heinrich's 300 : 29 : 1 (the generator's summary reports the realised ratio).
BASE_COMPLAINT_RATES: tuple[float, float, float] = (0.12, 0.0042, 0.000075)
# Standard handling minutes per complaint of each severity.
BASE_HANDLING_MINUTES: tuple[float, float, float] = (12.0, 55.0, 240.0)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that shapes one synthetic world. Same config and seed -> same bytes.

    Attributes:
        n_customers: customers ever in the CRM (existing at the start plus those joining later).
        seed: master seed; chunk ``k`` draws from ``numpy.random.default_rng([seed, k])``.
        start: first day of CRM history (events before it are not in the export).
        months: months of history; the export is taken at the end of the last month.
        chunk_size: customers simulated together; part of the seed contract, so keep it fixed.
        existing_share: share of customers already signed up before ``start``.
        cost_per_handling_minute: money per minute of complaint handling (cost to serve).
        cost_per_escalation: money per escalation.
        dissatisfaction_hazard: log-hazard per unit of latent dissatisfaction.
        broad_campaign_months: months (0-based) in which a broad, untargeted offer goes out.
        broad_campaign_reach: share of active customers a broad campaign reaches.
        targeted_offer_prob: chance the company answers a grievance month with a remedy offer.
        zh_share: share of customers writing complaints in Chinese.
    """

    n_customers: int = 10_000
    seed: int = 42
    start: date = date(2022, 1, 1)
    months: int = 48
    chunk_size: int = 20_000
    existing_share: float = 0.45
    cost_per_handling_minute: float = 1.5
    cost_per_escalation: float = 250.0
    dissatisfaction_hazard: float = 0.9
    broad_campaign_months: tuple[int, ...] = (5, 17, 29, 41)
    broad_campaign_reach: float = 0.3
    targeted_offer_prob: float = 0.5
    zh_share: float = 0.15

    def __post_init__(self) -> None:
        if self.n_customers < 1:
            raise ValueError(f"n_customers must be at least 1, got {self.n_customers}")
        if self.months < 1:
            raise ValueError(f"months must be at least 1, got {self.months}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {self.chunk_size}")

    @property
    def n_chunks(self) -> int:
        return -(-self.n_customers // self.chunk_size)

    @property
    def end(self) -> date:
        """The export date: first day after the last simulated month (events are before it)."""
        year = self.start.year + (self.start.month - 1 + self.months) // 12
        month = (self.start.month - 1 + self.months) % 12 + 1
        return date(year, month, 1)
