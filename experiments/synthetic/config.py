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


def add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after the month of ``day``."""
    total = day.year * 12 + day.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that shapes one synthetic world. Same config and seed -> same bytes.

    Attributes:
        n_customers: customers ever in the CRM (existing at the start plus those joining later).
        seed: master seed; chunk ``k`` draws from ``numpy.random.default_rng([seed, k, ...])``.
        start: first day of CRM history (events before it are not in the export).
        months: months of history; the export is taken at the end of the last month.
        chunk_size: customers simulated together; part of the seed contract, so keep it fixed.
        existing_share: share of customers already signed up before ``start``.
        cost_per_handling_minute: money per minute of complaint handling (cost to serve).
        cost_per_escalation: money per escalation.
        dissatisfaction_hazard: log-hazard per unit of latent dissatisfaction (beta).
        broad_campaign_calendar_month: calendar month (1-12) in which a broad, untargeted
            offer goes out every year.
        broad_campaign_reach: share of active customers a broad campaign selects.
        targeted_offer_prob: chance the company answers a grievance month with a remedy offer.
        targeted_holdout_share: share of customers selected for a remedy who are held out at
            random (recorded with ``holdout`` true, not contacted): the randomised control
            group that makes uplift identifiable from the history.
        broad_holdout_share: the same for broad campaigns.
        zh_share: share of customers writing complaints in Chinese.
        oracle_draws: draws per customer and action of the simulated oracle
            (``truth_action_values.parquet``); 0 writes no oracle.
        oracle_dates: first-of-month dates at which the oracle is written; None means the
            training test snapshot (export minus ``oracle_horizon_months``) and the export date.
        oracle_horizon_months: the policy horizon the default oracle dates assume (the test
            snapshot is one horizon before the export).
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
    broad_campaign_calendar_month: int = 6
    broad_campaign_reach: float = 0.3
    targeted_offer_prob: float = 0.55
    targeted_holdout_share: float = 0.2
    broad_holdout_share: float = 0.2
    zh_share: float = 0.15
    oracle_draws: int = 12
    oracle_dates: tuple[date, ...] | None = None
    oracle_horizon_months: int = 12

    def __post_init__(self) -> None:
        if self.n_customers < 1:
            raise ValueError(f"n_customers must be at least 1, got {self.n_customers}")
        if self.months < 1:
            raise ValueError(f"months must be at least 1, got {self.months}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {self.chunk_size}")
        if self.oracle_draws < 0:
            raise ValueError(f"oracle_draws must be at least 0, got {self.oracle_draws}")
        if not 1 <= self.broad_campaign_calendar_month <= 12:
            raise ValueError(
                "broad_campaign_calendar_month must be 1..12, got "
                f"{self.broad_campaign_calendar_month}"
            )
        for name in ("targeted_holdout_share", "broad_holdout_share", "broad_campaign_reach"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        for day in self.oracle_dates or ():
            if day.day != 1 or not self.start <= day <= self.end:
                raise ValueError(
                    f"oracle date {day} must be the first of a month from {self.start} to "
                    f"the export date {self.end}"
                )

    @property
    def n_chunks(self) -> int:
        return -(-self.n_customers // self.chunk_size)

    @property
    def end(self) -> date:
        """The export date: first day after the last simulated month (events are before it)."""
        return add_months(self.start.replace(day=1), self.months)

    def month_index(self, day: date) -> int:
        """0-based index of the simulated month that starts on ``day`` (a first of month)."""
        return (day.year - self.start.year) * 12 + day.month - self.start.month

    def is_campaign_month(self, month_index: int) -> bool:
        """Whether the broad campaign goes out in simulated month ``month_index``."""
        return (self.start.month - 1 + month_index) % 12 + 1 == self.broad_campaign_calendar_month

    @property
    def resolved_oracle_dates(self) -> tuple[date, ...]:
        """The oracle's as-of dates: given ones, else the test snapshot and the export date."""
        if self.oracle_draws == 0:
            return ()
        if self.oracle_dates is not None:
            return tuple(sorted(set(self.oracle_dates)))
        candidates = (add_months(self.end, -self.oracle_horizon_months), self.end)
        return tuple(d for d in candidates if d >= self.start.replace(day=1))
