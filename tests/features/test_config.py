"""FeatureConfig rejects values that would make features meaningless."""

from __future__ import annotations

import pytest

from features.config import DEFAULT_VENTING_LEXICON, FeatureConfig


def test_defaults() -> None:
    config = FeatureConfig()
    assert (config.short_window_days, config.long_window_days) == (91, 365)
    assert config.prior_window_days == 274
    assert (config.cost_per_handling_minute, config.cost_per_escalation) == (1.5, 250.0)
    assert config.sla_hours == 24.0
    assert config.churn_definition == "contractual"
    assert {"always", "every time", "useless company", "总是", "破公司"} <= set(
        DEFAULT_VENTING_LEXICON
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"short_window_days": 400}, "short_window_days"),
        ({"short_window_days": 0}, "short_window_days"),
        ({"cost_per_escalation": -1.0}, "cost_per_escalation"),
        ({"receivables_provision_rate": 1.5}, "receivables_provision_rate"),
        ({"churn_definition": "sometimes"}, "churn_definition"),
        ({"inactivity_days": 0}, "inactivity_days"),
        ({"venting_lexicon": ["always"]}, "venting_lexicon"),
        ({"venting_lexicon": ("always", "")}, "venting_lexicon"),
    ],
)
def test_invalid_values_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FeatureConfig(**changes)


def test_misspelt_field_is_an_error() -> None:
    with pytest.raises(TypeError):
        FeatureConfig(cost_per_minute=2.0)  # type: ignore[call-arg]
