"""Configuration of the feature pipelines: windows, cost rates, SLA, venting lexicon, churn rule.

Every number a feature depends on lives here and reaches the pipelines as an argument; nothing is
read from the environment or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChurnDefinition = Literal["contractual", "non_contractual"]

# Venting words: expressions of emotion, not of fact (DESIGN.md, business case 7). Matched
# case-insensitively as substrings; see features.complaints for the counting rule.
DEFAULT_VENTING_LEXICON: tuple[str, ...] = (
    "always",
    "every time",
    "never",
    "useless",
    "useless company",
    "ridiculous",
    "worst",
    "总是",
    "经常",
    "每次",
    "破公司",
    "垃圾",
)


@dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the point-in-time feature pipelines.

    Feature names carry fixed window tags: ``_3m`` is the short window and ``_12m`` the long
    window, whatever their configured lengths in days.

    Attributes:
        short_window_days: Length of the "last 3 months" window, in days.
        long_window_days: Length of the "last 12 months" window, in days.
        cost_per_handling_minute: Cost of one minute of staff time spent on a complaint.
        cost_per_escalation: Cost of one complaint escalation.
        sla_hours: Resolution-time target; a complaint resolved later breaches it (IBM's 24 h).
        venting_lexicon: Venting words and phrases counted in complaint text (EN + ZH).
        churn_definition: ``"contractual"``: a customer churns when ``customers.end_date``
            falls in the horizon. ``"non_contractual"``: a customer churns when they place no
            order in the horizon.
        inactivity_days: Non-contractual only. A customer with no order in the last
            ``inactivity_days`` before ``as_of`` (and a tenure at least that long) has already
            lapsed and is not part of the active population; ignored for contractual churn.
        receivables_provision_rate: Share of receivables that are overdue or disputed at the end
            of a window which is taken off that window's net margin as expected bad debt.
    """

    short_window_days: int = 91
    long_window_days: int = 365
    cost_per_handling_minute: float = 1.5
    cost_per_escalation: float = 250.0
    sla_hours: float = 24.0
    venting_lexicon: tuple[str, ...] = DEFAULT_VENTING_LEXICON
    churn_definition: ChurnDefinition = "contractual"
    inactivity_days: int = 365
    receivables_provision_rate: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.short_window_days < self.long_window_days:
            raise ValueError(
                "FeatureConfig: need 0 < short_window_days < long_window_days, got "
                f"{self.short_window_days} and {self.long_window_days}"
            )
        for name in ("cost_per_handling_minute", "cost_per_escalation", "sla_hours"):
            if getattr(self, name) < 0:
                raise ValueError(f"FeatureConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.receivables_provision_rate <= 1.0:
            raise ValueError(
                "FeatureConfig.receivables_provision_rate must be within [0, 1], got "
                f"{self.receivables_provision_rate}"
            )
        if self.churn_definition not in ("contractual", "non_contractual"):
            raise ValueError(
                "FeatureConfig.churn_definition must be 'contractual' or 'non_contractual', "
                f"got {self.churn_definition!r}"
            )
        if self.inactivity_days <= 0:
            raise ValueError(
                f"FeatureConfig.inactivity_days must be > 0, got {self.inactivity_days}"
            )
        if not isinstance(self.venting_lexicon, tuple) or not all(
            isinstance(term, str) and term for term in self.venting_lexicon
        ):
            raise ValueError("FeatureConfig.venting_lexicon must be a tuple of non-empty strings")

    @property
    def prior_window_days(self) -> int:
        """Length of the comparison period before the short window (the "9 months before")."""
        return self.long_window_days - self.short_window_days
